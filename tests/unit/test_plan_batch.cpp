#include <gtest/gtest.h>

#include "hpcscreen/batch/graph_batch.hpp"
#include "hpcscreen/plan/chunk_plan.hpp"

using namespace hpcscreen;

namespace {
io::manifest manifest_with(std::vector<std::uint64_t> counts) {
  io::manifest m;
  for (std::size_t i = 0; i < counts.size(); ++i)
    m.shards.push_back({"s" + std::to_string(i), counts[i], ""});
  return m;
}
}  // namespace

TEST(chunk_plan, covers_every_row_once) {
  const auto m = manifest_with({10, 0, 7, 3});
  const auto p = plan::make_chunk_plan(m, 4);
  plan::check(p, m);
  // 10 -> 4,4,2; 0 -> none; 7 -> 4,3; 3 -> 3
  ASSERT_EQ(p.chunks.size(), 6u);
  EXPECT_EQ(p.chunks[2].row_begin, 8u);
  EXPECT_EQ(p.chunks[2].row_end, 10u);
  EXPECT_EQ(p.chunks[3].shard, 2u);
  EXPECT_EQ(p.chunks[5].n_rows(), 3u);
}

TEST(chunk_plan, check_catches_gaps_and_overlaps) {
  // 10 rows by 4: [0,4) [4,8) [8,10). The untouched plan passes, so each throw below is the
  // check finding the one defect made in a fresh copy of it.
  const auto m = manifest_with({10});
  const auto good = plan::make_chunk_plan(m, 4);
  ASSERT_EQ(good.chunks.size(), 3u);
  EXPECT_NO_THROW(plan::check(good, m));

  auto p = good;  // gap: row 4 in no chunk
  p.chunks[1].row_begin = 5;
  EXPECT_THROW(plan::check(p, m), std::logic_error);

  p = good;  // gap at the end: rows 8 and 9 in no chunk
  p.chunks.pop_back();
  EXPECT_THROW(plan::check(p, m), std::logic_error);

  p = good;  // overlap: row 3 in chunks 0 and 1, the shard still covered to its end
  p.chunks[1].row_begin = 3;
  EXPECT_THROW(plan::check(p, m), std::logic_error);

  p = good;  // overlap: rows 8 and 9 in two chunks, ids still consecutive
  p.chunks.push_back({3, 0, 8, 10});
  EXPECT_THROW(plan::check(p, m), std::logic_error);

  p = good;  // overlap: chunk 2 reaches back into chunk 1, ends unchanged
  p.chunks[2].row_begin = 6;
  EXPECT_THROW(plan::check(p, m), std::logic_error);

  // Across shards: the same rows of shard 1 twice, shard 0 untouched.
  const auto m2 = manifest_with({4, 6});
  auto q = plan::make_chunk_plan(m2, 4);  // [0,4) of 0, [0,4) [4,6) of 1
  ASSERT_EQ(q.chunks.size(), 3u);
  EXPECT_NO_THROW(plan::check(q, m2));
  q.chunks[2] = {2, 1, 2, 6};
  EXPECT_THROW(plan::check(q, m2), std::logic_error);
}

TEST(graph_batch, plan_respects_molecule_and_atom_budgets) {
  // Atom counts 3,3,3,50,3: budget 2 molecules / 10 atoms.
  const auto ranges = batch::plan_batches({3, 3, 3, 50, 3}, {2, 10});
  const std::vector<std::pair<std::size_t, std::size_t>> expected{{0, 2}, {2, 3}, {3, 4}, {4, 5}};
  EXPECT_EQ(ranges, expected);  // the 50-atom molecule gets a batch of its own
}

TEST(graph_batch, assemble_offsets_edges_and_batch_vector) {
  chem::mol_graph a, b;
  a.n_atoms = 2;
  a.atom_features.assign(18, 1);
  a.n_edges = 2;
  a.edges = {0, 1, 1, 0};
  a.bond_features = {0, 0, 0, 0, 0, 0};
  b.n_atoms = 3;
  b.atom_features.assign(27, 2);
  b.n_edges = 2;
  b.edges = {1, 2, 2, 1};
  b.bond_features = {1, 2, 1, 1, 2, 1};
  const auto g = batch::assemble({&a, &b});
  EXPECT_EQ(g.n_graphs, 2);
  EXPECT_EQ(g.n_atoms, 5);
  EXPECT_EQ(g.n_edges, 4);
  EXPECT_EQ(g.batch, (std::vector<std::int64_t>{0, 0, 1, 1, 1}));
  // [2, E]: sources 0,1,3,4 then targets 1,0,4,3
  EXPECT_EQ(g.edge_index, (std::vector<std::int64_t>{0, 1, 3, 4, 1, 0, 4, 3}));
  EXPECT_EQ(g.edge_attr[9], 1);
}
