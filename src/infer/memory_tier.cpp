#include "hpcscreen/infer/memory_tier.hpp"

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>

#include "hpcscreen/core/error.hpp"

#ifdef HPCSCREEN_WITH_MEMKIND
#include <memkind.h>
#include <unistd.h>
#endif

namespace hpcscreen::infer {
namespace {

constexpr const char* oom_message = "hpcscreen memory tier: out of memory";

// Every block starts with this header, so the deleter knows the tier and size without asking
// memkind (memkind_detect_kind must never see a pointer memkind did not allocate). 64 bytes
// keep the data 64-byte aligned, as LibTorch's own allocator does.
struct alignas(64) block_header {
  std::uint64_t size;
  std::uint32_t spilled;
  std::uint32_t magic;
};
constexpr std::uint32_t header_magic = 0x48505343;  // "HPSC"
static_assert(sizeof(block_header) == 64, "header keeps 64-byte alignment");

void update_peak(std::atomic<std::uint64_t>& peak, std::uint64_t value) {
  auto p = peak.load(std::memory_order_relaxed);
  while (value > p && !peak.compare_exchange_weak(p, value, std::memory_order_relaxed)) {
  }
}

// Adds n to counter when the sum stays within limit (limit 0: no limit), lock-free, so that
// threads allocating at once can never pass the limit together. Sets now to the new value.
bool try_reserve(std::atomic<std::uint64_t>& counter, std::uint64_t n, std::uint64_t limit,
                 std::uint64_t& now) {
  auto cur = counter.load(std::memory_order_relaxed);
  do {
    if (limit != 0 && (n > limit || cur > limit - n)) return false;
    now = cur + n;
  } while (!counter.compare_exchange_weak(cur, now, std::memory_order_relaxed));
  return true;
}

#ifdef HPCSCREEN_WITH_MEMKIND
// memkind's own cap on the pmem file when the tier caps what it hands out at cap bytes: above
// it, because the allocator inside memkind rounds sizes up to its size classes (up to +25%)
// and keeps freed and pre-grown extents mapped. A backstop for the disk, not the tier's limit;
// 0 (no cap) stays 0.
std::uint64_t memkind_file_cap(std::uint64_t cap) {
  if (cap == 0) return 0;
  const std::uint64_t slack = std::max<std::uint64_t>(cap, 64u << 20);
  return cap > std::numeric_limits<std::uint64_t>::max() - slack ? 0 : cap + slack;
}
#endif

// Set by an atexit handler: memkind's own library destructor runs after atexit handlers, and a
// tensor released during teardown must not reach memkind_free after it.
std::atomic<bool> exiting{false};

class tiered_allocator final : public c10::Allocator {
 public:
  std::uint64_t budget = 0;
  std::uint64_t spill_cap = 0;  // bytes handed out from the spill tier at most; 0: no cap
  std::string spill_kind;
#ifdef HPCSCREEN_WITH_MEMKIND
  memkind_t kind = nullptr;
#endif
  std::atomic<std::uint64_t> dram_in_use{0}, dram_peak{0}, spill_in_use{0}, spill_peak{0},
      spill_total{0};
  std::atomic<std::uint64_t> dram_allocs{0}, spill_allocs{0}, failed{0};
  std::atomic<std::uint64_t> spill_refused{0};  // memkind said no within the tier's cap

  c10::DataPtr allocate(size_t n) const override {
    if (n == 0) return {nullptr, nullptr, &deleter, c10::Device(c10::DeviceType::CPU)};
    auto* self = const_cast<tiered_allocator*>(this);
    void* block = nullptr;
    bool spilled = false;
    std::uint64_t total = 0;
    if (n <= std::numeric_limits<std::uint64_t>::max() - sizeof(block_header)) {
      total = n + sizeof(block_header);
      std::uint64_t now = 0;
      // DRAM first: reserve against the budget (never 0 once installed), then ask for it.
      if (try_reserve(self->dram_in_use, total, budget, now)) {
        if (posix_memalign(&block, 64, total) != 0) {
          block = nullptr;
          self->dram_in_use.fetch_sub(total, std::memory_order_relaxed);
        } else {
          update_peak(self->dram_peak, now);
        }
      }
#ifdef HPCSCREEN_WITH_MEMKIND
      // Then the spill tier: the tier enforces --pmem-max itself, before memkind is asked, so a
      // batch too large for the tier fails here, the same way every time, whatever memkind's
      // arenas hold. memkind may still say no within the cap (its file cap is a backstop);
      // that is the same clean out-of-memory. Never after memkind's destructor.
      if (!block && kind && !exiting.load(std::memory_order_relaxed) &&
          try_reserve(self->spill_in_use, total, spill_cap, now)) {
        if (memkind_posix_memalign(kind, &block, 64, total) != 0 || block == nullptr) {
          block = nullptr;
          self->spill_in_use.fetch_sub(total, std::memory_order_relaxed);
          self->spill_refused.fetch_add(1, std::memory_order_relaxed);
        } else {
          spilled = true;
          update_peak(self->spill_peak, now);
          self->spill_total.fetch_add(total, std::memory_order_relaxed);
        }
      }
#endif
    }
    if (!block) {
      self->failed.fetch_add(1, std::memory_order_relaxed);
      TORCH_CHECK(false, oom_message, ": ", n, " bytes fit neither the DRAM budget of ", budget,
                  " bytes nor the spill tier (", spill_kind, ")");
    }
    (spilled ? self->spill_allocs : self->dram_allocs).fetch_add(1, std::memory_order_relaxed);
    auto* h = static_cast<block_header*>(block);
    h->size = total;
    h->spilled = spilled ? 1 : 0;
    h->magic = header_magic;
    void* data = h + 1;
    return {data, data, &deleter,
            c10::Device(c10::DeviceType::CPU)};  // ctx == data: the raw path needs it
  }

  c10::DeleterFnPtr raw_deleter() const override {
    return &deleter;
  }

  static tiered_allocator& instance() {
    static auto* a = new tiered_allocator();  // never freed: tensors may outlive everything
    return *a;
  }

  static void deleter(void* data) {
    if (!data) return;
    auto* h = static_cast<block_header*>(data) - 1;
    HPCSCREEN_ASSERT_MSG(h->magic == header_magic,
                         "memory tier: freeing a block it did not allocate");
    auto& a = instance();
    const auto size = h->size;
    const bool spilled = h->spilled != 0;
    h->magic = 0;  // freeing the same block twice trips the assertion above, not the allocator
    // Release the reservation after the memory: the tier's count never runs below what its
    // allocators hold.
    if (spilled) {
#ifdef HPCSCREEN_WITH_MEMKIND
      if (!exiting.load(std::memory_order_relaxed)) memkind_free(a.kind, h);
      a.spill_in_use.fetch_sub(size, std::memory_order_relaxed);
#endif
    } else {
      std::free(h);
      a.dram_in_use.fetch_sub(size, std::memory_order_relaxed);
    }
  }
};

std::once_flag installed_once;
bool installed = false;

}  // namespace

bool memkind_available() {
#ifdef HPCSCREEN_WITH_MEMKIND
  return true;
#else
  return false;
#endif
}

bool is_out_of_memory(const std::string& message) {
  return message.find(oom_message) != std::string::npos ||
         message.find("DefaultCPUAllocator: not enough memory") != std::string::npos ||
         message.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos;
}

void install_memory_tier(const tier_config& c) {
  if (!c.configured()) return;
  if (c.pmem_dir.empty() == !c.pmem_kmem) {
    throw usage_error("--dram-budget needs exactly one spill tier: --pmem-dir DIR or --pmem-kmem");
  }
#ifndef HPCSCREEN_WITH_MEMKIND
  throw usage_error(
      "this hpcscreen was built without memkind (HPCSCREEN_WITH_MEMKIND=OFF): --dram-budget is "
      "unavailable");
#else
  // Check everything before touching the allocator, so a bad configuration changes nothing.
  if (!c.pmem_dir.empty()) {
    if (!std::filesystem::is_directory(c.pmem_dir)) {
      throw usage_error("--pmem-dir '" + c.pmem_dir +
                        "' is not an existing folder (mount the DAX device there, or use any file "
                        "system for testing)");
    }
    if (c.pmem_max_bytes != 0 && c.pmem_max_bytes < (16u << 20)) {
      throw usage_error("--pmem-max must be 0 (unlimited) or at least 16M (memkind's minimum)");
    }
  } else if (memkind_check_available(MEMKIND_DAX_KMEM) != 0) {
    throw error(  // the machine, not the command line: exit 1
        "--pmem-kmem: MEMKIND_DAX_KMEM is not available on this node (no persistent memory "
        "configured as "
        "system RAM, see 'daxctl reconfigure-device --mode=system-ram'); use --pmem-dir on a DAX "
        "mount instead");
  }
  if (installed) throw usage_error("the memory tier is already installed in this process");
  auto& a = tiered_allocator::instance();
  a.budget = c.dram_budget_bytes;
  a.spill_cap = c.pmem_max_bytes;
  if (!c.pmem_dir.empty()) {
    // One jemalloc arena for the kind, not memkind's default of 4 per CPU (issue 13). memkind
    // 1.14's pmem kind unmaps freed extents (pmem_extent_dalloc), while its jemalloc 5.3 runs
    // with opt.retain, under which extents of different arenas are kept apart only by "head"
    // marks and never actually compared (jemalloc/include/jemalloc/internal/extent.h,
    // extent_can_acquire_neighbor: the arena check is an assert). Once a mapping's head is
    // unmapped and another arena maps right below the rest, jemalloc coalesces across arenas
    // and corrupts both arenas' extent heaps: a SIGSEGV inside memkind, with two or more
    // threads allocating and freeing, whether or not the kind is full. With one arena there
    // is nothing to merge across. memkind reads this when it creates the kind.
    // memkind makes its file there (O_TMPFILE): a folder it cannot write to is the node's file
    // system, not the command line (exit 1), and memkind would only say its arguments are bad.
    if (::access(c.pmem_dir.c_str(), W_OK | X_OK) != 0) {
      throw hpcscreen::error("--pmem-dir '" + c.pmem_dir + "' is not writable (" +
                             std::strerror(errno) + "); give a folder this job may write to");
    }
    if (::setenv("MEMKIND_ARENA_NUM_PER_KIND", "1", /*overwrite=*/1) != 0) {
      throw hpcscreen::error("memory tier: cannot set MEMKIND_ARENA_NUM_PER_KIND");
    }
    const int err =
        memkind_create_pmem(c.pmem_dir.c_str(), memkind_file_cap(c.pmem_max_bytes), &a.kind);
    if (err != 0) {
      char msg[MEMKIND_ERROR_MESSAGE_SIZE];
      memkind_error_message(err, msg, sizeof msg);
      throw hpcscreen::error("cannot create a memkind pmem kind in '" + c.pmem_dir + "': " + msg);
    }
    a.spill_kind =
        "pmem-dir " + c.pmem_dir +
        (memkind_check_dax_path(c.pmem_dir.c_str()) == 0 ? " (DAX)"
                                                         : " (not DAX: page cache backed)");
  } else {
    a.kind = MEMKIND_DAX_KMEM;
    a.spill_kind = "dax-kmem";
  }
  std::call_once(installed_once, [&] {
    // Priority must be at least the current allocator's, or LibTorch ignores the call.
    c10::SetCPUAllocator(&a, /*priority=*/255);
    std::atexit([] { exiting = true; });
    installed = true;
  });
#endif
}

tier_stats memory_tier_stats() {
  tier_stats s;
  if (!installed) return s;
  auto& a = tiered_allocator::instance();
  s.installed = true;
  s.spill_kind = a.spill_kind;
  s.dram_budget_bytes = a.budget;
  s.dram_in_use_bytes = a.dram_in_use.load();
  s.dram_peak_bytes = a.dram_peak.load();
  s.spill_in_use_bytes = a.spill_in_use.load();
  s.spill_peak_bytes = a.spill_peak.load();
  s.spill_total_bytes = a.spill_total.load();
  s.dram_allocations = a.dram_allocs.load();
  s.spill_allocations = a.spill_allocs.load();
  s.failed_allocations = a.failed.load();
  return s;
}

}  // namespace hpcscreen::infer
