#pragma once
// Readers for compound inputs. Each record keeps the line it came from so that pack can
// name it in pack_rejects.csv. The SDF reader lives in chem/ because it needs RDKit.
// Inputs may be plain or gzip/bzip2/xz/zstd-compressed (see text_source).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hpcscreen::pack {

struct compound_record {
  std::string id;      // empty: pack derives one from shard and row
  std::string smiles;  // a CXSMILES extension (" |...|") stays part of it
  std::uint64_t line = 0;
  std::vector<std::string> kept;  // values of reader_options::keep_columns, in that order
};

struct pack_reject {
  std::string source;
  std::uint64_t line = 0;
  std::string reason;
};

using record_sink = std::function<void(compound_record&&)>;
using reject_sink = std::function<void(pack_reject&&)>;

struct reader_options {
  char delimiter = ',';
  bool quoting = true;        // RFC 4180 quotes; false: fields are taken literally (.cxsmiles)
  std::string smiles_column;  // empty: the first of smiles, canonical_smiles, cxsmiles, ...
  std::string id_column;      // empty: the first of id, idnumber, zinc_id, name, ... if present
  std::vector<std::string> keep_columns;  // more columns to carry into the shards
  // No line, and no quoted record joined across lines, may be longer: longer ones are pack
  // rejects, so a stray quote or a runaway line cannot swallow the rows after it.
  std::uint64_t max_line_bytes = 100'000;
};
using csv_options = reader_options;

// What a reader saw. Every row is either a record or a reject: n_rows = n_records + n_rejects
// (pack checks this against what reached the shards and pack_rejects.csv).
struct read_counts {
  std::uint64_t n_rows = 0;
  std::uint64_t n_records = 0;
  std::uint64_t n_rejects = 0;
  std::uint64_t n_comments = 0;      // '#' lines of .smi inputs, not rows
  std::uint64_t n_header_lines = 0;  // not rows
};

// Column names matched case-insensitively when no column is named on the command line.
const std::vector<std::string>& default_smiles_columns();
const std::vector<std::string>& default_id_columns();

// .smi: "SMILES [id ...]" separated by whitespace. Lines starting with '#' are comments and
// are counted, not packed. Blank and whitespace-only lines are packed as they are, so the
// screen rejects them with a reason instead of dropping them. A CXSMILES extension after the
// SMILES (" |&1:1|") stays with it. A first line with a word that is a SMILES column name
// ("smiles zinc_id", ZINC's header) is a header: columns are then found by name, as in CSV.
read_counts read_smi(const std::string& path, const reader_options& options,
                     const record_sink& on_record, const reject_sink& on_reject);

// CSV/TSV with a header row. RFC 4180 fields when options.quoting: quoted fields may hold
// delimiters, doubled quotes and newlines. A row whose field count differs from the header,
// an unterminated quote or a line over max_line_bytes rejects that row alone; the lines after
// it are read again as rows of their own.
read_counts read_csv(const std::string& path, const reader_options& options,
                     const record_sink& on_record, const reject_sink& on_reject);

// Checks, before any row is read, that the header at the start of `text` (a file's first
// bytes) has the columns the options need; throws usage_error as read_smi/read_csv would.
void check_header(const std::string& path, const std::string& text, bool smi,
                  const reader_options& options);

// Splits one CSV record (already joined across quoted newlines) into fields.
// Returns false if a quote is left open.
bool split_csv_record(const std::string& record, char delimiter, std::vector<std::string>& fields);

}  // namespace hpcscreen::pack
