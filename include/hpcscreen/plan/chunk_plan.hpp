#pragma once
// The unit of work: a row range of one shard. The plan is a value computed from the manifest
// alone; check() proves every row is assigned exactly once.
#include <cstdint>
#include <string>
#include <vector>

#include "hpcscreen/io/manifest.hpp"

namespace hpcscreen::plan {

struct chunk {
  std::uint64_t id = 0;
  std::uint32_t shard = 0;
  std::uint64_t row_begin = 0;
  std::uint64_t row_end = 0;
  std::uint64_t n_rows() const { return row_end - row_begin; }
};

struct chunk_plan {
  std::uint64_t chunk_rows = 0;
  std::vector<chunk> chunks;  // ordered by (shard, row_begin); chunks[i].id == i
};

chunk_plan make_chunk_plan(const io::manifest& m, std::uint64_t chunk_rows);

// Throws std::logic_error unless the chunks cover every row of every shard exactly once.
void check(const chunk_plan& p, const io::manifest& m);

std::string describe(const chunk& c, const io::manifest& m);

}  // namespace hpcscreen::plan
