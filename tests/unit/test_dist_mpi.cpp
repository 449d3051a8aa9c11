// Runs under mpirun with 1, 2 and 3 ranks (see tests/CMakeLists.txt): the real MPI layer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "hpcscreen/dist/context.hpp"

using namespace hpcscreen;

namespace {
dist::context* world = nullptr;
}

TEST(mpi_counter, every_index_is_handed_out_exactly_once) {
  const std::uint64_t n = 1000;
  std::vector<std::uint64_t> mine;
  {
    auto counter = world->make_counter();
    // Unequal work per rank: rank r stalls a little on every (r+2)-th index.
    for (auto i = counter->next(); i < n; i = counter->next()) {
      mine.push_back(i);
      if (i % static_cast<std::uint64_t>(world->rank() + 2) == 0) std::this_thread::yield();
    }
  }
  const auto all = world->gather(nlohmann::json(mine).dump());
  if (world->rank() == 0) {
    std::multiset<std::uint64_t> seen;
    for (const auto& blob : all)
      for (auto v : nlohmann::json::parse(blob)) seen.insert(v.get<std::uint64_t>());
    ASSERT_EQ(seen.size(), n);
    for (std::uint64_t i = 0; i < n; ++i) EXPECT_EQ(seen.count(i), 1u) << i;
  }
}

TEST(mpi_context, gather_broadcast_and_agreement) {
  const auto all = world->gather("rank" + std::to_string(world->rank()));
  if (world->rank() == 0) {
    ASSERT_EQ(static_cast<int>(all.size()), world->size());
    for (int r = 0; r < world->size(); ++r)
      EXPECT_EQ(all[static_cast<std::size_t>(r)], "rank" + std::to_string(r));
  }
  EXPECT_EQ(world->broadcast(world->rank() == 0 ? std::string(100000, 'x') : ""),
            std::string(100000, 'x'));
  EXPECT_TRUE(world->all_ok(true));
  EXPECT_EQ(world->all_ok(world->rank() != world->size() - 1), false);
}

TEST(progress_board, rank0_reads_every_rank_without_a_collective) {
  auto board = world->make_progress_board();
  const std::uint64_t v[dist::progress_board::n_slots] = {
      static_cast<std::uint64_t>(10 * (world->rank() + 1)), 1, 0, 1};
  board->publish(v);
  world->barrier();
  if (world->rank() == 0) {
    const auto all = board->read_all();
    for (int r = 0; r < world->size(); ++r)
      EXPECT_EQ(all[static_cast<std::size_t>(r) * 4], 10u * (r + 1));
  }
  world->barrier();
}

int main(int argc, char** argv) {
  dist::mpi_session mpi(argc, argv);
  auto w = mpi.world();
  world = w.get();
  ::testing::InitGoogleTest(&argc, argv);
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  return world->all_ok(failed == 0) ? 0 : 1;
}
