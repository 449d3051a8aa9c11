#pragma once
// A memory tier behind LibTorch's CPU allocator: tensor storage comes from DRAM up to a
// budget and from a memkind persistent-memory kind beyond it (Optane on a DAX mount, or any
// file system for testing), so batches larger than DRAM allows still run. Off by default:
// without install_memory_tier() LibTorch's own allocator stays in place.
#include <cstdint>
#include <string>

namespace hpcscreen::infer {

struct tier_config {
  std::uint64_t dram_budget_bytes = 0;  // 0: no tier
  std::string pmem_dir;                 // file-backed kind (memkind_create_pmem) in this folder
  bool pmem_kmem = false;               // MEMKIND_DAX_KMEM: Optane in system-RAM mode
  std::uint64_t pmem_max_bytes = 0;     // 0: as much as the file system gives
  bool configured() const { return dram_budget_bytes > 0; }
};

struct tier_stats {
  bool installed = false;
  std::string spill_kind;  // "pmem-dir DIR", "dax-kmem"
  std::uint64_t dram_budget_bytes = 0;
  std::uint64_t dram_in_use_bytes = 0, dram_peak_bytes = 0;
  std::uint64_t spill_in_use_bytes = 0, spill_peak_bytes = 0, spill_total_bytes = 0;
  std::uint64_t dram_allocations = 0, spill_allocations = 0, failed_allocations = 0;
};

// Installs the tier as LibTorch's CPU allocator (once per process). Throws usage_error when
// the tier cannot be set up (missing folder, no DAX KMEM, memkind not compiled in), saying why.
void install_memory_tier(const tier_config& config);
tier_stats memory_tier_stats();
bool memkind_available();  // compiled with memkind support

// True when an exception message is the tier's (or LibTorch's) out-of-memory error, for the
// batch back-off.
bool is_out_of_memory(const std::string& message);

}  // namespace hpcscreen::infer
