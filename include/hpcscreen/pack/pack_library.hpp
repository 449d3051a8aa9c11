#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string_view>
#include <string>
#include <vector>

#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pack/compound_readers.hpp"

namespace hpcscreen::dist {
class context;
}

namespace hpcscreen::pack {

struct pack_options {
  std::vector<std::string> inputs;
  std::string out_dir;
  std::uint64_t shard_records = 1'000'000;  // records per shard; one shard is buffered at a time
  // 0: no limit; else a shard is also closed once its records hold this many bytes, so a rank's
  // memory stays bounded whatever the size of one record (images: megabytes each).
  std::uint64_t shard_bytes = 0;
  std::string format;  // smi|csv|tsv|cxsmiles|sdf; empty: from each file's extension
  reader_options csv;  // columns, delimiter, line limit (.smi with a header uses it too)
  std::string sdf_id_field;
  bool resume = false;  // continue a pack that did not complete (see pack_compounds)
  // Called after each shard is committed, with its input's index and its index within that
  // input; tests stop a pack there.
  std::function<void(std::size_t input, std::size_t shard)> after_shard_commit;
  // Polled while reading (every few thousand rows) and between inputs: true stops the pack
  // cleanly (stopped_error) with every finished input kept for --resume.
  std::function<bool()> stop_requested;
  // A kind's own settings that decide what the library holds (part of a resume's identity).
  std::string kind_config;
  // How the kind's shards are written (HDF5 deflate level, chunking); every reader reads any.
  io::shard_write_options shard_writing;
};

struct pack_summary {
  std::uint64_t n_rows_read = 0;     // input rows (records and rejects; not headers or comments)
  std::uint64_t n_records = 0;       // packed into shards
  std::uint64_t n_pack_rejects = 0;  // written to pack_rejects.csv
  std::uint64_t n_comments = 0;      // '#' lines of .smi inputs
  std::size_t n_shards = 0;
  std::size_t n_shards_kept = 0;     // --resume: shards of the earlier attempt kept as they were
  std::size_t n_inputs_skipped = 0;  // --resume: inputs the earlier attempt had finished
};

// Writes shards, pack_rejects.csv and manifest.json into out_dir, which must not exist or be
// empty. Records that cannot be packed (SDF records RDKit cannot read, CSV rows with the wrong
// field count or an unterminated quote, lines over the line limit) go to pack_rejects.csv with
// file, line and reason. Shards never span two inputs: input i's shards are
// shard-<i>-<k>.h5, k = 0, 1, ..., and the manifest lists them in input order.
//
// With a context of several ranks (collective: every rank calls it with the same options),
// ranks take inputs from a shared counter; the library is the same for any rank count. Rank 0
// owns the folder: it checks the inputs, writes the INCOMPLETE marker (the options the pack
// was started with) or checks it on --resume, and at the end concatenates the per-input
// rejects into pack_rejects.csv and writes the manifest, last. Every finished input leaves a
// completion record (pack_parts/input-<i>.json, written atomically). With options.resume, a
// folder with the marker is continued: the same options and inputs are required, inputs with
// a completion record (and their shards) are kept, and the others are packed again from the
// start (their partial shards replaced). Failures are agreed by all ranks before any throws,
// so every rank throws the same exception (usage_error or error). Throws error (after
// everything is written except the manifest) when rows read != records + pack rejects.
pack_summary pack_compounds(dist::context& ctx, const pack_options& options);
// The same on one process.
pack_summary pack_compounds(const pack_options& options);

// Writes protein shards (fields id, description, sequence) from FASTA inputs, as above.
pack_summary pack_proteins(dist::context& ctx, const pack_options& options);
pack_summary pack_proteins(const pack_options& options);

// Registers the compound and protein library kinds and their pack commands
// (src/app/registrations.cpp).
void register_text_library_kinds();

// Where a kind's reader puts what it reads (one input at a time): records into shards, rejects
// into pack_rejects.csv.
class shard_sink {
 public:
  virtual ~shard_sink() = default;
  // A record: its id and the kind's other fields in order (then --keep-columns values).
  virtual void add(std::string id, std::initializer_list<std::string_view> rest,
                   const std::vector<std::string>& kept = {}) = 0;
  virtual void reject(pack_reject&& r) = 0;
  virtual std::uint64_t n_rejects() const = 0;
};

// What a kind of library brings to the shared pack (pack_library).
struct pack_reader {
  std::string kind;                 // manifest "kind"
  std::string schema;               // shard schema
  std::vector<std::string> fields;  // "id" first, then the kind's, then kept columns
  bool folders = false;             // inputs may be folders (read whole, recursively)
  // Rank 0, before anything is written: checks the inputs and says each one's format.
  std::function<std::vector<std::string>()> check_inputs;
  // Reads input i (of the given format) into the sink.
  std::function<read_counts(std::size_t, const std::string&, shard_sink&)> read_input;
};

// The pack every kind shares (described at pack_compounds): inputs from a shared counter,
// per-input shards and completion records, --resume, rejects, the manifest last.
pack_summary pack_library(dist::context& ctx, const pack_options& options, const pack_reader& reader);

// The marker a pack leaves in its folder until the library is complete.
inline constexpr const char* incomplete_marker = "INCOMPLETE";

// The id given to a record packed without one: "<shard file stem>:<row>".
std::string derived_id(const std::string& shard_file, std::uint64_t row);

// The file name of input `input`'s shard `index`: shard-00003-00000.h5.
std::string shard_file_name(std::size_t input, std::size_t index);

// The format a file's name says: .smi/.smiles/.txt, .csv, .tsv, .cxsmiles, .sdf/.sd/.mol,
// each optionally followed by .gz, .bz2, .xz or .zst (the compression itself is detected from
// the content). Throws usage_error for anything else.
std::string format_from_name(const std::string& path);

}  // namespace hpcscreen::pack
