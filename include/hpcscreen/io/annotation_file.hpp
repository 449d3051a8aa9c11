#pragma once
// One chunk's annotation results as an HDF5 file (data_schemas/annotations.md).
#include <cstdint>
#include <string>
#include <vector>

#include "hpcscreen/core/record.hpp"

namespace hpcscreen::io {

inline constexpr const char* annotation_schema = "hpcscreen.annotations/1";

struct annotation_chunk {
  std::string shard_file;
  std::uint64_t row_begin = 0, row_end = 0;
  bool per_residue = true;
  std::vector<std::string> labels;
  std::vector<std::uint64_t> rows;     // [n] shard rows annotated (rejected rows are absent)
  string_column ids;                   // [n]
  std::vector<std::uint64_t> lengths;  // [n] residues annotated (after truncation, if any)
  // per residue: values [total_residues, C], residue_offsets [n+1], prediction [total_residues]
  // per sequence: values [n, C]
  std::vector<float> values;
  std::vector<std::uint64_t> residue_offsets{0};
  std::vector<std::uint8_t> prediction;  // argmax label index per residue

  // An encoder's outputs ("output_level": "embedding"; labels, values and prediction unused).
  // Stored as IEEE float16 bits or float32, row-major; residue_offsets as above when per residue.
  bool embedding = false;
  bool float16 = true;
  std::uint64_t hidden_size = 0;                // H
  bool has_per_sequence = false, has_per_residue = false;
  std::vector<std::uint8_t> per_sequence_bytes;  // [n, H] of float16 or float32
  std::vector<std::uint8_t> per_residue_bytes;   // [total_residues, H]
};

void write_annotation_chunk(const std::string& path, const annotation_chunk& a);
annotation_chunk read_annotation_chunk(const std::string& path);

// The sizes of an embedding chunk file, read from its attributes and dataset shapes alone.
struct embedding_extent {
  bool float16 = true, has_per_sequence = false, has_per_residue = false;
  std::uint64_t n_records = 0, n_residues = 0, hidden_size = 0;
};
embedding_extent read_embedding_extent(const std::string& path);

// A file of one dataset per name at its root, as bio_embeddings writes them ([H] per sequence,
// [L, H] per residue), each with an `original_id` attribute. Names must be valid HDF5 link names.
class named_array_file {
 public:
  explicit named_array_file(const std::string& path);  // anew: what was there is removed
  ~named_array_file();
  named_array_file(const named_array_file&) = delete;
  named_array_file& operator=(const named_array_file&) = delete;
  // rows == 0: a 1-D dataset [cols]; otherwise [rows, cols]. data: float16 bits or float32.
  void add(const std::string& name, const std::string& original_id, std::uint64_t rows,
           std::uint64_t cols, bool float16, const void* data);
  void close();  // flushes; errors here are reported, not swallowed by the destructor

 private:
  std::string path_;
  std::int64_t file_ = -1;  // hid_t
};

}  // namespace hpcscreen::io
