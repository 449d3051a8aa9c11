#pragma once
// Readers for compound inputs. Each record keeps the line it came from so that pack can
// name it in pack_rejects.csv. The SDF reader lives in chem/ because it needs RDKit.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hpcscreen::pack {

struct compound_record {
  std::string id;  // empty: pack derives one from shard and row
  std::string smiles;
  std::uint64_t line = 0;
};

struct pack_reject {
  std::string source;
  std::uint64_t line = 0;
  std::string reason;
};

using record_sink = std::function<void(compound_record&&)>;
using reject_sink = std::function<void(pack_reject&&)>;

// .smi: "SMILES [id ...]" separated by whitespace. Lines starting with '#' are comments and
// are counted, not packed. Blank and whitespace-only lines are packed as they are, so the
// screen rejects them with a reason instead of dropping them.
struct smi_counts {
  std::uint64_t n_records = 0;
  std::uint64_t n_comments = 0;
};
smi_counts read_smi(const std::string& path, const record_sink& on_record);

struct csv_options {
  char delimiter = ',';
  std::string smiles_column;  // empty: the first of smiles, SMILES, canonical_smiles, ...
  std::string id_column;      // empty: id, ID, name, Name, ... if present
};
// RFC 4180 fields: quoted fields may hold delimiters, doubled quotes and newlines.
// A row whose field count differs from the header is a pack reject.
std::uint64_t read_csv(const std::string& path, const csv_options& options,
                       const record_sink& on_record, const reject_sink& on_reject);

// Splits one CSV record (already joined across quoted newlines) into fields.
// Returns false if a quote is left open.
bool split_csv_record(const std::string& record, char delimiter, std::vector<std::string>& fields);

}  // namespace hpcscreen::pack
