#pragma once
// `hpcscreen screen`: shards → chunks → RDKit graphs → TorchScript GNN → top-K at rank 0.
#include <cstdint>
#include <string>

#include "hpcscreen/batch/graph_batch.hpp"
#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/dist/context.hpp"

namespace hpcscreen::screen {

// Exit statuses, documented in the README.
enum exit_status : int {
  exit_ok = 0,
  exit_error = 1,        // configuration, model or run folder refused; nothing was screened
  exit_usage = 2,        // command line
  exit_incomplete = 3,   // failed shards (without --allow-failed-shards) or accounting mismatch
  exit_interrupted = 75, // stopped by a signal or --stop-after; rerun with --resume
};

struct screen_options {
  std::string library_dir;
  std::string model_path;
  std::string out_dir;
  std::size_t top_k = 100;
  int threads = 0;  // per rank; 0: from the scheduler or the machine
  std::uint64_t chunk_rows = 4096;
  chem::featurize_options featurize;
  batch::graph_budget budget;
  bool resume = false;
  double stop_after_s = 0;  // 0: no limit
  std::uint64_t max_chunks_per_rank = 0;  // 0: no limit; for trial runs and resume tests
  bool allow_failed_shards = false;
  bool all_scores = false;  // every score of every task, in RUN/scores/chunk-N.csv
  double progress_interval_s = 10;
  std::string command_line;
  std::string version;
};

// Collective over ctx. Returns the same exit status on every rank.
int run_screen(dist::context& ctx, const screen_options& options);

}  // namespace hpcscreen::screen
