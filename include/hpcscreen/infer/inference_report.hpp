#pragma once
// The inference layer's figures for run.json, the same for every workload: batches split for
// memory or to isolate a model error, and the memory tier's use. Numbers are per rank; the
// pipeline sums them over ranks (peaks and per-rank settings: the maximum).
#include <nlohmann/json.hpp>

#include "hpcscreen/infer/backoff.hpp"
#include "hpcscreen/infer/memory_tier.hpp"
#include "hpcscreen/infer/precision.hpp"

namespace hpcscreen::infer {

inline nlohmann::json inference_report(const backoff_counters& c) {
  nlohmann::json j = {{"batch_backoffs", c.memory_splits.load()},
                      {"model_error_splits", c.error_splits.load()}};
  const auto t = memory_tier_stats();
  if (!t.installed) {
    j["memory_tier"] = {{"installed", false}};
    return j;
  }
  j["memory_tier"] = {{"installed", true},
                      {"spill_kind", t.spill_kind},
                      {"dram_budget_bytes_per_rank", t.dram_budget_bytes},
                      {"dram_peak_bytes_max", t.dram_peak_bytes},
                      {"spill_peak_bytes_max", t.spill_peak_bytes},
                      {"spill_total_bytes", t.spill_total_bytes},
                      {"dram_allocations", t.dram_allocations},
                      {"spill_allocations", t.spill_allocations},
                      {"failed_allocations", t.failed_allocations}};
  return j;
}

// run.json["<workload>"]["precision"]: what the model ran at, what the CPU offered, how.
inline nlohmann::json precision_report(const precision_choice& c) {
  nlohmann::json j = {{"requested", c.requested},
                      {"used", precision_name(c.used)},
                      {"isa_found", c.cpu.names()},
                      {"quantized_engine", c.quantized_engine},
                      {"graph_passes", c.graph_passes},
                      {"converted", c.n_converted}};
  if (!c.reason.empty()) j["reason"] = c.reason;
  if (c.cpu.faked) j["isa_faked"] = true;  // HPCSCREEN_FAKE_CPU_FEATURES (tests)
  return j;
}

}  // namespace hpcscreen::infer
