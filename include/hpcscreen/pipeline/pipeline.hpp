#pragma once
// The machinery every workload shares: manifest → chunk plan → chunks taken from a shared
// counter → outcomes → per-chunk records committed to the run folder → hits, rejects and
// run.json at rank 0. A workload (workload.hpp, registered in registry.hpp) supplies what
// happens to one chunk's rows.
//   conductor.hpp     one rank's share of the chunks (the loop)
//   outcome.hpp       per-record outcomes and the score layout
//   chunk_ledger.hpp  what the run folder keeps of one chunk
//   run_report.hpp    the run's outputs at rank 0: hits.csv, rejects.csv, run.json
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hpcscreen/core/exit_status.hpp"
#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/pipeline/registry.hpp"
#include "hpcscreen/pipeline/workload.hpp"

namespace hpcscreen::pipeline {

// Exit statuses (core/exit_status.hpp), under the pipeline's name too.
using hpcscreen::exit_error;
using hpcscreen::exit_incomplete;
using hpcscreen::exit_interrupted;
using hpcscreen::exit_ok;
using hpcscreen::exit_status;
using hpcscreen::exit_usage;

// What every run command takes, whatever its workload (src/app/commands.cpp parses it).
struct run_options {
  std::string library_dir;
  std::string out_dir;
  int threads = 0;  // per rank; 0: from the scheduler or the machine
  std::uint64_t chunk_rows = 4096;
  bool resume = false;
  bool retry_failed = false;              // with resume: chunks of failed shards are done again
  double stop_after_s = 0;                // 0: no limit
  std::uint64_t max_chunks_per_rank = 0;  // 0: no limit; for trial runs and resume tests
  bool allow_failed_shards = false;
  double progress_interval_s = 10;
  int chunks_in_flight = 3;   // per rank: read ahead, featurizing, inferring
  int featurize_threads = 0;  // 0: threads move between stages as the work needs them
  bool check_only = false;    // set up and check as a run does, then stop before any work
  std::string command_line;
  std::string version;
};

using workload_factory = std::function<std::unique_ptr<workload>(int threads)>;

// Collective over ctx: runs a workload of `kind` over the library. Returns the same exit status
// on every rank.
int run(dist::context& ctx, const run_options& options, const workload_kind& kind,
        const workload_factory& make_workload);

}  // namespace hpcscreen::pipeline
