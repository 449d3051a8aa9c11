#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "hpcscreen/ranking/topk.hpp"

using namespace hpcscreen;
using namespace hpcscreen::ranking;

namespace {
std::vector<hit> random_hits(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> score(0, 20);  // few distinct scores: many ties
  std::vector<hit> out;
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back({static_cast<float>(score(gen)) / 4,
                   {static_cast<std::uint32_t>(i % 3), i},
                   "id" + std::to_string(i),
                   {},
                   {}});
  }
  return out;
}
// The reference: a full sort by (score, shard, row) written out longhand.
std::vector<hit> brute_force(std::vector<hit> all, std::size_t k, bool higher) {
  std::sort(all.begin(), all.end(), [&](const hit& a, const hit& b) {
    if (a.score != b.score) return higher ? a.score > b.score : a.score < b.score;
    if (a.key.shard != b.key.shard) return a.key.shard < b.key.shard;
    return a.key.row < b.key.row;
  });
  all.resize(std::min(k, all.size()));
  return all;
}
std::vector<std::uint64_t> rows(const std::vector<hit>& h) {
  std::vector<std::uint64_t> r;
  for (const auto& x : h) r.push_back(x.key.row);
  return r;
}
}  // namespace

TEST(topk, keeps_best_k_with_ties_broken_by_key) {
  for (bool higher : {true, false}) {
    const auto all = random_hits(500, 7);
    topk t(17, higher);
    for (const auto& h : all) t.offer(h);
    EXPECT_EQ(rows(t.sorted()), rows(brute_force(all, 17, higher)));
  }
}

TEST(topk, chunk_tops_offered_again_are_independent_of_split_and_order) {
  // What the run does at rank 0: every chunk's own top-K offered to one run-wide top-K.
  const auto all = random_hits(300, 11);
  const auto expected = rows(brute_force(all, 25, true));
  for (int parts : {1, 2, 3, 7}) {
    std::vector<topk> tops(static_cast<std::size_t>(parts), topk(25, true));
    for (std::size_t i = 0; i < all.size(); ++i) tops[(i * 31) % parts].offer(all[i]);
    topk run(25, true);
    for (auto it = tops.rbegin(); it != tops.rend(); ++it) {
      for (const auto& h : it->sorted()) run.offer(h);
    }
    EXPECT_EQ(rows(run.sorted()), expected) << parts << " parts";
  }
}

TEST(topk, fewer_records_than_k) {
  topk t(10, true);
  t.offer({1.0f, {0, 5}, "a", {}, {}});
  t.offer({3.0f, {0, 4}, "b", {}, {}});
  EXPECT_EQ(rows(t.sorted()), (std::vector<std::uint64_t>{4, 5}));
}
