#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hpcscreen::io {

inline constexpr const char* manifest_schema = "hpcscreen.manifest/1";
inline constexpr const char* manifest_file_name = "manifest.json";

struct shard_entry {
  std::string file;  // relative to the library folder
  std::uint64_t n_records = 0;
  std::string checksum;  // file_checksum() of the shard as written
};

// The only file a run reads at start: which shards exist and how many records each holds.
struct manifest {
  std::string kind;          // "compounds" or "proteins"
  std::string shard_schema;  // e.g. "hpcscreen.compounds/1"
  std::vector<std::string> fields;
  std::vector<shard_entry> shards;
  std::string provenance_json = "{}";  // what pack read, kept for people; not interpreted
  // The manifest file's checksum (file_checksum's form), of the bytes read_manifest parsed: a
  // run's identity names it, so --resume continues over the same library only.
  std::string checksum;

  std::uint64_t n_records() const;
};

// Throws shard_error naming the file on anything missing or malformed.
manifest read_manifest(const std::string& library_dir);
// manifest.json's text for m (pack writes it last, as the run folder's files are written).
std::string manifest_text(const manifest& m);

}  // namespace hpcscreen::io
