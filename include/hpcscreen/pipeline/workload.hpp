#pragma once
// What a workload supplies to the pipeline: how one chunk's rows become outcomes (its stages run
// on the rank's stage pool), and its own section of run.json. It never sees journals, run.json's
// shared keys or the hit lists: the pipeline derives those from the outcomes.
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/pipeline/outcome.hpp"
#include "hpcscreen/pipeline/registry.hpp"
#include "hpcscreen/pipeline/stage_pool.hpp"
#include "hpcscreen/plan/chunk_plan.hpp"

namespace hpcscreen::pipeline {

using json = nlohmann::json;

// One chunk's work. Once its last stage is done the conductor (the rank's main thread) calls
// collect() and, if the chunk is to be committed, write_outputs(), never concurrently with its
// tasks. Tasks return at once when pipeline::stop_requested(); the chunk is then abandoned.
class chunk_work : public chunk_job {
 public:
  explicit chunk_work(chunk_input input) : in_(std::move(input)) {}
  // The rows the chunk was read with; the conductor closes the chunk's books from them.
  const chunk_input& input() const { return in_; }

  // Gives every row of the chunk its outcome.
  virtual void collect(chunk_outcomes& outcomes) = 0;
  // Durably writes the chunk's own outputs (named by chunk id, so a chunk done again replaces
  // them) before it is committed. `outcomes` are final: rows with non-finite outputs are rejects.
  virtual void write_outputs(const std::string& /*out_dir*/, std::uint64_t /*chunk_id*/,
                             const chunk_outcomes& /*outcomes*/) {}

 protected:
  chunk_input in_;
};

// What rank 0 knows at the end of a run, for workload outputs that span it.
struct run_view {
  std::string out_dir;
  const io::manifest& manifest;
  const plan::chunk_plan& plan;
  const std::set<std::uint64_t>& committed;
};

class workload {
 public:
  virtual ~workload() = default;
  virtual const workload_kind& kind() const = 0;
  virtual score_layout scores() const = 0;
  // Settings that must not change on --resume, beyond library, model and chunking.
  virtual json identity() const = 0;
  // Called on rank 0 once the run folder exists, before any chunk.
  virtual void prepare_run_folder(const std::string& /*out_dir*/) const {}
  // A fixed split for --featurize-threads N of `threads`: stage name → most tasks at once.
  virtual std::map<std::string, int> stage_split(int featurize_threads, int threads) const = 0;
  // Called first on every worker thread of the rank's stage_pool (e.g. its intra-op threads).
  virtual void on_thread_start() const {}
  // The work of one chunk; its stages run on the pool's threads, possibly beside other chunks.
  virtual std::unique_ptr<chunk_work> start(chunk_input input) = 0;
  // Called on the conductor after a chunk is committed (e.g. to count its batches).
  virtual void on_committed(chunk_work& /*work*/) {}
  // This rank's counters and timings; numbers are summed over ranks (peaks: the maximum).
  virtual json rank_report() const { return json::object(); }
  // Rank 0 at the end: this workload's section of run.json (`summed` is the ranks' reports
  // combined), after writing any outputs that span the run (e.g. an annotation manifest).
  virtual json finish(const run_view& run, const json& summed) const = 0;
};

// Combines ranks' reports: numbers are summed, except keys containing "peak" or ending in "_max"
// (maximum); other values are taken from the first rank that has them.
json combine_rank_reports(const std::vector<json>& reports);

}  // namespace hpcscreen::pipeline
