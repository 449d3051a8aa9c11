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
};

void write_annotation_chunk(const std::string& path, const annotation_chunk& a);
annotation_chunk read_annotation_chunk(const std::string& path);

}  // namespace hpcscreen::io
