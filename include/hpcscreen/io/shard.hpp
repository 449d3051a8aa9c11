#pragma once
// HDF5 shards of packed strings. The layout is documented in data_schemas/shard.md:
// per field a group `/<field>` with `bytes` (uint8) and `offsets` (uint64, n+1 entries),
// chunked, compressed, with HDF5's Fletcher-32 checksum so a damaged chunk fails on read.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hpcscreen/core/record.hpp"

namespace hpcscreen::io {

inline constexpr const char* compound_shard_schema = "hpcscreen.compounds/1";
inline const std::vector<std::string> compound_fields{"id", "smiles"};
inline constexpr const char* protein_shard_schema = "hpcscreen.proteins/1";
inline const std::vector<std::string> protein_fields{"id", "description", "sequence"};

struct shard_write_options {
  int deflate_level = 4;
  std::uint64_t bytes_chunk = 1 << 20;    // elements per HDF5 chunk of a bytes dataset
  std::uint64_t offsets_chunk = 1 << 16;  // elements per HDF5 chunk of an offsets dataset
  std::map<std::string, std::string> attributes;  // more string attributes on the file
};

// Writes one whole shard: `columns[i]` is field `fields[i]`; all columns have equal size.
void write_shard(const std::string& path, const std::string& schema,
                 const std::vector<std::string>& fields, const std::vector<string_column>& columns,
                 const shard_write_options& options = {});

// Reads row ranges of a shard. Not thread-safe (HDF5 is not): one reader per I/O thread.
class shard_reader {
 public:
  // Checks the schema attribute, the fields and that every offsets dataset has n_records+1
  // entries. Throws shard_error naming the file.
  // `optional` fields are opened when the file has them (has() says which).
  shard_reader(const std::string& path, const std::string& expected_schema,
               const std::vector<std::string>& fields,
               const std::vector<std::string>& optional = {});
  ~shard_reader();
  shard_reader(const shard_reader&) = delete;
  shard_reader& operator=(const shard_reader&) = delete;

  std::uint64_t n_records() const;
  const std::string& path() const;
  // Whether a field was opened (every required one; an optional one the file has).
  bool has(const std::string& field) const;
  // A string attribute of the file (write_shard's `attributes`); nullopt when it has none.
  std::optional<std::string> attribute(const std::string& name) const;
  // Rows [row_begin, row_end) of one field, offsets rebased to 0. Throws shard_error on a
  // checksum failure or inconsistent offsets.
  string_column read(const std::string& field, std::uint64_t row_begin, std::uint64_t row_end);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hpcscreen::io
