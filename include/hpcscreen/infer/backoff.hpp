#pragma once
// Running one planned batch so that a failure costs only the records it must. A batch that does
// not fit in memory (out_of_memory_error) is retried in halves, down to one record; a record
// that does not fit even alone is rejected as too_large_for_memory. A batch on which the user's
// model raises (model_error: an edge-case bug in forward()) is split the same way until the
// failing records are isolated; each is rejected as model_error with the model's own message and
// the rest are scored. Halves are run in order, so results never depend on where a batch split.
// Header only, free of LibTorch: the model call is the caller's.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "hpcscreen/core/error.hpp"

namespace hpcscreen::infer {

struct backoff_counters {
  std::atomic<std::uint64_t> memory_splits{0};  // batches retried in halves for memory
  std::atomic<std::uint64_t> error_splits{0};   // batches split to isolate a model error
};

// The part of a model's error worth a reject row: TorchScript puts its traceback first and the
// exception ("RuntimeError: ...") last.
inline std::string condensed(const std::string& message) {
  auto end = message.find_last_not_of(" \n");
  if (end == std::string::npos) return message;
  const auto begin = message.rfind('\n', end);
  return begin == std::string::npos ? message : message.substr(begin + 1, end - begin);
}

// run(begin, end) infers items [begin, end) and throws out_of_memory_error or model_error;
// fail(i, reason, detail) is told of item i that could not be inferred.
template <class Run, class Fail>
void run_isolating(std::size_t begin, std::size_t end, Run&& run, Fail&& fail,
                   backoff_counters& counters) {
  if (begin >= end) return;
  try {
    run(begin, end);
    return;
  } catch (const out_of_memory_error& e) {
    if (end - begin == 1) {
      fail(begin, "too_large_for_memory",
           std::string("even alone it fits neither DRAM nor the spill tier: ") + e.what());
      return;
    }
    if (counters.memory_splits++ == 0) {
      std::fprintf(stderr,
                   "hpcscreen: a batch of %zu records does not fit in memory; retrying in halves\n",
                   end - begin);
    }
  } catch (const model_error& e) {
    if (end - begin == 1) {
      fail(begin, "model_error", condensed(e.what()));
      return;
    }
    ++counters.error_splits;
  }
  const auto mid = begin + (end - begin) / 2;
  run_isolating(begin, mid, run, fail, counters);
  run_isolating(mid, end, run, fail, counters);
}

}  // namespace hpcscreen::infer
