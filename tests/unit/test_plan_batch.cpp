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
  const auto m = manifest_with({10});
  auto p = plan::make_chunk_plan(m, 4);
  p.chunks[1].row_begin = 5;
  EXPECT_THROW(plan::check(p, m), std::logic_error);
  p = plan::make_chunk_plan(m, 4);
  p.chunks.pop_back();
  EXPECT_THROW(plan::check(p, m), std::logic_error);
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
