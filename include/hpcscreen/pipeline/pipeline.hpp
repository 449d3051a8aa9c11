#pragma once
// The machinery every workload shares: manifest → chunk plan → chunks taken from a shared
// counter → outcomes → per-chunk records committed to the run folder → hits, rejects and
// run.json at rank 0. A workload (screen, annotate) supplies what happens to one chunk's rows.
//   conductor.hpp   one rank's share of the chunks (the loop)
//   outcome.hpp     per-record outcomes and the books of one chunk
//   run_report.hpp  the run's books at rank 0: hits.csv, rejects.csv, run.json
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/pipeline/workload.hpp"

namespace hpcscreen::pipeline {

// Exit statuses, documented in the README and data_schemas/run_folder.md.
enum exit_status : int {
  exit_ok = 0,
  exit_error = 1,  // refused before work (model, library, run folder) or an error while running
  exit_usage = 2,  // command line
  exit_incomplete = 3,    // failed shards (without --allow-failed-shards) or accounting mismatch
  exit_interrupted = 75,  // stopped by a signal, --stop-after or --max-chunks; rerun with --resume
};

struct run_options {
  std::string library_dir;
  std::vector<std::string> model_paths;  // their checksums fix the run's identity
  std::string out_dir;
  std::size_t top_k = 100;
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
  std::string command_line;
  std::string version;
};

inline constexpr int max_threads_per_rank = 1024;

using workload_factory = std::function<std::unique_ptr<workload>(int threads)>;

// Collective over ctx. Returns the same exit status on every rank.
int run(dist::context& ctx, const run_options& options, const workload_factory& make_workload);

}  // namespace hpcscreen::pipeline
