#pragma once
// One rank's share of a run. The conductor (the rank's main thread, the only one that calls MPI
// and HDF5) takes chunks from the shared counter, reads them, hands each to the workload as a
// job for the stage pool, and closes and commits each chunk once its last stage is done, keeping
// up to chunks_in_flight chunks in the pool. A stop request abandons chunks in flight.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hpcscreen/core/scheduler.hpp"
#include "hpcscreen/core/timing.hpp"
#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/pipeline/pipeline.hpp"
#include "hpcscreen/plan/chunk_plan.hpp"
#include "hpcscreen/run/chunk_record.hpp"

namespace hpcscreen::pipeline {

// One run as every step sees it: the user's options, and what set-up found from them before
// the first chunk (the library, the workload and its models, the chunks), checked on every rank.
struct run_context {
  run_options options;
  io::manifest manifest;
  const workload_kind* kind = nullptr;
  std::unique_ptr<workload> work;
  const library_kind* library = nullptr;
  // Fields read from each chunk: the kind's, then columns the library kept besides them
  // (pack --keep-columns), which hits.csv shows after the kind's own hit fields.
  std::vector<std::string> read_fields, hit_fields;
  score_layout layout;
  plan::chunk_plan plan;
  scheduler_info scheduler;
  int threads = 1;

  // What each committed chunk's record holds in this run (close_chunk makes one hit list per
  // ranking key, each hit with every score and the shown fields).
  run::record_shape record_shape() const {
    return {plan.chunks.size(), manifest.shards.size(), layout.keys.size(), layout.names.size(),
            hit_fields.size()};
  }
};

// Which chunks this attempt does.
struct attempt_plan {
  int attempt = 1;
  std::vector<std::uint64_t> remaining;  // chunk ids, in the order the counter hands them out
  std::uint64_t n_done_before = 0;       // records of chunks committed by earlier attempts
};

// What one rank did in this attempt.
struct rank_result {
  run::chunk_counts totals;
  std::uint64_t n_chunks = 0;
  bool interrupted = false;  // a stop request, --stop-after or --max-chunks
  std::string error;         // the first error that ended the rank's work; empty if none
  double read_s = 0, commit_s = 0, coordination_s = 0;
  int pool_threads = 0;
  double pool_idle_thread_s = 0;
  json stages = json::object();  // thread-seconds and tasks per stage
  // A stop request found a thread still inside a record after the grace period: it was left
  // running, so the workload must outlive this run (never destroyed).
  bool threads_abandoned = false;
};

// How long a stop request waits for threads still inside a record (RDKit, a model) before the
// rank leaves them running and ends the attempt anyway.
inline constexpr double stop_grace_s = 3.0;

// Collective (the counter and progress board are created and freed by every rank). Never throws:
// any failure is in the result, for the ranks to agree on.
rank_result conduct(dist::context& ctx, run_context& c, const attempt_plan& a,
                    clock_type::time_point run_start);

}  // namespace hpcscreen::pipeline
