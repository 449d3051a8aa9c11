#pragma once
// What one committed chunk leaves behind: its counts, its top-K and its rejects. Written to
// RUN/parts/ under a temporary name, fsync'd and renamed, before the chunk is journaled, so a
// crash at any instant leaves either a committed chunk or nothing.
#include <cstdint>
#include <string>
#include <vector>

#include "hpcscreen/core/record.hpp"
#include "hpcscreen/ranking/topk.hpp"

namespace hpcscreen::run {

struct chunk_counts {
  std::uint64_t n_read = 0;
  std::uint64_t n_scored = 0;
  std::uint64_t n_rejected = 0;
  std::uint64_t n_failed = 0;  // rows of a shard that could not be read
  std::uint64_t n_filtered = 0;  // scored rows kept out of the hit lists by --where (not in the balance)
  chunk_counts& operator+=(const chunk_counts& o) {
    n_read += o.n_read;
    n_scored += o.n_scored;
    n_rejected += o.n_rejected;
    n_failed += o.n_failed;
    n_filtered += o.n_filtered;
    return *this;
  }
  bool balanced() const { return n_read == n_scored + n_rejected + n_failed; }
};

// A file a workload wrote for the chunk (its scores, annotations or predictions), as written:
// its path below the run folder, its size and its CRC-32, checked on --resume.
struct output_file {
  std::string file;
  std::uint64_t bytes = 0;
  std::string checksum;
};

struct chunk_record {
  std::uint64_t chunk_id = 0;
  std::uint32_t shard = 0;
  std::uint64_t row_begin = 0, row_end = 0;
  int rank = 0, attempt = 0;
  chunk_counts counts;
  std::string failure;          // the shard error when counts.n_failed > 0
  // This chunk's top-K for each ranking key of the run, best first; none for a failed chunk.
  std::vector<std::vector<ranking::hit>> hit_lists;
  std::vector<reject> rejects;  // in row order
  std::vector<output_file> outputs;  // none in records written before December 2026
  double elapsed_s = 0;
  double end_time_s = 0;  // Unix time of the commit, for throughput over time
  std::vector<float>
      score_sample;  // the sampled score of rows divisible by sample_every, for the histogram
  static constexpr std::uint64_t sample_every = 16;
};

std::string to_json(const chunk_record& r);
chunk_record chunk_record_from_json(const std::string& text);

// What a record of one run must hold to be used: a chunk of its plan (an id below n_chunks, a
// shard of its library) and, unless the chunk's shard failed, one hit list per ranking, each
// hit a row of the chunk, once, with the run's scores and shown fields.
struct record_shape {
  std::uint64_t n_chunks = 0;
  std::size_t n_shards = 0, n_hit_lists = 0, n_scores = 0, n_hit_fields = 0;
};
// Throws run_error saying what does not fit.
void check_shape(const chunk_record& r, const record_shape& shape);

// The files a chunk wrote (paths below the run folder `dir`), with their sizes and checksums,
// for its record.
std::vector<output_file> describe_outputs(const std::string& dir,
                                          const std::vector<std::string>& files);
// Why one of a record's outputs is not as it was written ("" when all are): missing, another
// size, another checksum (reading each file once; not with `sizes_only`).
std::string damaged_output(const std::string& dir, const chunk_record& r, bool sizes_only = false);

}  // namespace hpcscreen::run
