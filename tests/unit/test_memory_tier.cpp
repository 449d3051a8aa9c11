// The memory tier as LibTorch's CPU allocator, in one process (it is installed once).
#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <thread>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/infer/memory_tier.hpp"

using namespace hpcscreen;
namespace fs = std::filesystem;

namespace {
std::string pmem_dir() {
  const auto d = fs::temp_directory_path() / ("hpcscreen_pmem_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d.string();
}
// CTest runs each test in its own process; the tier is installed once per process.
void ensure_installed() {
  if (!infer::memory_tier_stats().installed)
    infer::install_memory_tier({4u << 20, pmem_dir(), false, 0});  // 4 MiB of DRAM
}
}  // namespace

TEST(memory_tier, a_bad_configuration_is_refused_and_changes_nothing) {
  infer::tier_config missing{1 << 20, "/nonexistent/pmem", false, 0};
  try {
    infer::install_memory_tier(missing);
    FAIL();
  } catch (const usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/pmem"), std::string::npos);
  }
  infer::tier_config both{1 << 20, pmem_dir(), true, 0};
  EXPECT_THROW(infer::install_memory_tier(both), usage_error);
  infer::tier_config tiny_cap{1 << 20, pmem_dir(), false, 1 << 20};
  EXPECT_THROW(infer::install_memory_tier(tiny_cap), usage_error);
  EXPECT_FALSE(infer::memory_tier_stats().installed);
}

TEST(memory_tier, kmem_unavailable_is_said) {
  infer::tier_config kmem{1 << 20, "", true, 0};
  try {
    infer::install_memory_tier(kmem);
    // A node with persistent memory in system-RAM mode would get here; this machine has none.
    GTEST_SKIP() << "MEMKIND_DAX_KMEM is available here";
  } catch (const usage_error& e) {
    ADD_FAILURE() << "the machine lacking DAX KMEM is not a command-line error: " << e.what();
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("MEMKIND_DAX_KMEM is not available"), std::string::npos)
        << e.what();
  }
}

TEST(memory_tier, results_are_bitwise_those_of_the_default_allocator_and_big_tensors_spill) {
  torch::manual_seed(0);
  const auto a = torch::randn({700, 700}), b = torch::randn({700, 700});
  const auto before = torch::mm(a, b);  // default allocator
  ensure_installed();
  ASSERT_TRUE(infer::memory_tier_stats().installed);
  const auto a2 = a.clone(), b2 = b.clone();
  const auto after = torch::mm(a2, b2);  // 700x700 floats = 1.9 MiB each: the third does not fit
  EXPECT_TRUE(torch::equal(before, after));
  {
    auto big = torch::ones({16, 1 << 20});  // 64 MiB: spills
    EXPECT_EQ(big.sum().item<float>(), 16.0f * (1 << 20));
    const auto s = infer::memory_tier_stats();
    EXPECT_GT(s.spill_allocations, 0u);
    EXPECT_GE(s.spill_in_use_bytes, 64u << 20);
    EXPECT_LE(s.dram_in_use_bytes, 4u << 20);
  }
  EXPECT_LT(infer::memory_tier_stats().spill_in_use_bytes, 64u << 20);
}

TEST(memory_tier, zero_size_is_null_and_the_raw_path_works) {
  ensure_installed();
  auto* alloc = c10::GetCPUAllocator();
  const auto empty = alloc->allocate(0);
  EXPECT_EQ(empty.get(), nullptr);
  void* p = alloc->raw_allocate(8 << 20);  // oneDNN scratch memory goes this way
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
  std::memset(p, 1, 8 << 20);
  alloc->raw_deallocate(p);
}

TEST(memory_tier, many_threads_allocating_and_freeing_leave_the_counters_at_zero) {
  ensure_installed();
  const auto base = infer::memory_tier_stats();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([t] {
      std::mt19937 gen(static_cast<unsigned>(t));
      std::uniform_int_distribution<std::int64_t> size(1, 1 << 20);
      std::vector<torch::Tensor> keep;
      for (int i = 0; i < 300; ++i) {
        keep.push_back(torch::empty({size(gen)}, torch::kUInt8));
        if (keep.size() > 6)
          keep.erase(keep.begin() + static_cast<std::ptrdiff_t>(gen() % keep.size()));
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto s = infer::memory_tier_stats();
  EXPECT_EQ(s.dram_in_use_bytes, base.dram_in_use_bytes);
  EXPECT_EQ(s.spill_in_use_bytes, base.spill_in_use_bytes);
  EXPECT_GT(s.spill_allocations, base.spill_allocations);  // 8 threads x 7 x up to 1 MiB > 4 MiB
  EXPECT_EQ(s.failed_allocations, 0u);
}
