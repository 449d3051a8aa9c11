#include "hpcscreen/plan/chunk_plan.hpp"

#include <stdexcept>

#include "hpcscreen/core/error.hpp"

namespace hpcscreen::plan {

chunk_plan make_chunk_plan(const io::manifest& m, std::uint64_t chunk_rows) {
  if (chunk_rows == 0) throw usage_error("--chunk-rows must be positive");
  chunk_plan p;
  p.chunk_rows = chunk_rows;
  for (std::uint32_t s = 0; s < m.shards.size(); ++s) {
    const auto n = m.shards[s].n_records;
    for (std::uint64_t begin = 0; begin < n; begin += chunk_rows) {
      p.chunks.push_back({p.chunks.size(), s, begin, std::min(n, begin + chunk_rows)});
    }
  }
  return p;
}

void check(const chunk_plan& p, const io::manifest& m) {
  std::vector<std::uint64_t> next_row(m.shards.size(), 0);
  for (std::size_t i = 0; i < p.chunks.size(); ++i) {
    const auto& c = p.chunks[i];
    if (c.id != i) throw std::logic_error("chunk ids are not consecutive");
    if (c.shard >= m.shards.size())
      throw std::logic_error("chunk names a shard not in the manifest");
    if (c.row_begin != next_row[c.shard] || c.row_end <= c.row_begin) {
      throw std::logic_error("chunk " + std::to_string(i) + " leaves a gap or overlaps");
    }
    next_row[c.shard] = c.row_end;
  }
  for (std::size_t s = 0; s < m.shards.size(); ++s) {
    if (next_row[s] != m.shards[s].n_records) {
      throw std::logic_error("shard " + m.shards[s].file + " is not fully covered by the plan");
    }
  }
}

std::string describe(const chunk& c, const io::manifest& m) {
  return m.shards[c.shard].file + " rows " + std::to_string(c.row_begin) + "-" +
         std::to_string(c.row_end - 1);
}

}  // namespace hpcscreen::plan
