#pragma once
// The machinery every workload shares: manifest → chunk plan → chunks taken from a shared
// counter → per-chunk records committed to the run folder → hits, rejects and run.json at
// rank 0. A workload (screen, annotate) supplies what happens to the rows of one chunk.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "hpcscreen/core/record.hpp"
#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/pipeline/stage_pool.hpp"
#include "hpcscreen/plan/chunk_plan.hpp"
#include "hpcscreen/rank/topk.hpp"
#include "hpcscreen/run/chunk_record.hpp"

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
  std::string model_path;
  std::string out_dir;
  std::size_t top_k = 100;
  int threads = 0;  // per rank; 0: from the scheduler or the machine
  std::uint64_t chunk_rows = 4096;
  bool resume = false;
  double stop_after_s = 0;                // 0: no limit
  std::uint64_t max_chunks_per_rank = 0;  // 0: no limit; for trial runs and resume tests
  bool allow_failed_shards = false;
  double progress_interval_s = 10;
  int chunks_in_flight = 3;   // per rank: read ahead, featurizing, inferring
  int featurize_threads = 0;  // 0: threads move between stages as the work needs them
  std::string command_line;
  std::string version;
};

using json = nlohmann::json;

// A chunk_job as a workload makes it. Once its last stage is done, the conductor (the rank's
// main thread) calls finish() and then write_outputs(), never concurrently with its tasks.
// Tasks return at once when pipeline::stop_requested(); the conductor then never finishes the
// job (it is abandoned, to be done again on --resume).
class chunk_work : public chunk_job {
 public:
  // Fills rec.counts.n_scored, rec.rejects and rec.score_sample, and offers hits to `top`.
  virtual void finish(run::chunk_record& rec, rank::topk& top) = 0;
  // Durably writes the chunk's own outputs, before its record is committed. Outputs are named
  // by chunk id, so a chunk processed again replaces them.
  virtual void write_outputs(const std::string& out_dir, const run::chunk_record& rec) = 0;
};

class workload {
 public:
  virtual ~workload() = default;
  virtual std::string name() const = 0;          // "screen", "annotate"
  virtual std::string library_kind() const = 0;  // manifest kind it reads
  virtual std::vector<std::string> fields() const = 0;
  virtual std::string hit_text_column() const = 0;  // last column of hits.csv
  virtual bool higher_is_better() const = 0;
  virtual bool produces_hits() const = 0;
  // Settings that must not change on --resume, beyond library, model and chunking.
  virtual json identity() const = 0;
  virtual json model_report() const = 0;
  // Called on rank 0 once the run folder exists, before any chunk.
  virtual void prepare_run_folder(const std::string& out_dir) const = 0;

  // A fixed split for --featurize-threads N of `threads`: stage name → most tasks at once.
  virtual std::map<std::string, int> stage_split(int featurize_threads, int threads) const = 0;
  // Called first on every worker thread of the rank's stage_pool (e.g. its intra-op threads).
  virtual void on_thread_start() const {}
  // The work of one chunk: columns[i] holds fields()[i] for rows [c.row_begin, c.row_end).
  // Its stages run on the pool's threads, possibly beside other chunks' jobs.
  virtual std::unique_ptr<chunk_work> start(const plan::chunk& c, const std::string& shard_file,
                                            std::vector<string_column> columns) = 0;
  // This rank's workload-specific figures for run.json (timings, counters).
  virtual json rank_report() const = 0;
  // Rank 0 at the end: combines per-rank reports into run.json and writes workload outputs
  // that span the run (e.g. the annotation manifest).
  virtual void finish(const std::string& out_dir, const io::manifest& m, const plan::chunk_plan& p,
                      const std::set<std::uint64_t>& committed,
                      const std::vector<json>& rank_reports, json& report) const = 0;
};

using workload_factory = std::function<std::unique_ptr<workload>(int threads)>;

// Collective over ctx. Returns the same exit status on every rank.
int run(dist::context& ctx, const run_options& options, const workload_factory& make_workload);

}  // namespace hpcscreen::pipeline
