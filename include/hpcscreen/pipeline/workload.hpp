#pragma once
// The contract between the host and a workload: what a workload makes of one chunk's rows (its
// stages run on the rank's stage pool), what fixes its runs' identity, how its scores are laid
// out and ranked, and its own part of run.json. It never sees journals, run.json's shared keys
// or the hit lists: the host derives those from the outcomes. A workload registers itself with
// pipeline/registry.hpp; this header and that one are all it includes of the host.
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/pipeline/outcome.hpp"
#include "hpcscreen/pipeline/stage.hpp"
#include "hpcscreen/plan/chunk_plan.hpp"

namespace hpcscreen::pipeline {

using json = nlohmann::json;

// One chunk's work. Once its last stage is done the conductor (the rank's main thread) calls
// collect() and, if the chunk is to be committed, write_outputs(), never concurrently with its
// tasks. Tasks return at once when pipeline::stop_requested(); the chunk is then abandoned.
class chunk_work : public chunk_job {
 public:
  explicit chunk_work(chunk_input input) : in_(std::move(input)) {}
  // The rows the chunk was read with; the conductor closes the chunk's ledger from them.
  const chunk_input& input() const { return in_; }

  // Gives every row of the chunk its outcome.
  virtual void collect(chunk_outcomes& outcomes) = 0;
  // Durably writes the chunk's own outputs (named by chunk id, so a chunk done again replaces
  // them) before it is committed, and returns their paths below out_dir: the chunk's record
  // keeps their sizes and checksums, and --resume does again a chunk whose files are not as
  // written. `outcomes` are final: rows with non-finite outputs are rejects.
  virtual std::vector<std::string> write_outputs(const std::string& /*out_dir*/,
                                                 std::uint64_t /*chunk_id*/,
                                                 const chunk_outcomes& /*outcomes*/) {
    return {};
  }
  // Called on the conductor once the chunk is committed (e.g. to add its counts to its
  // workload's report).
  virtual void on_committed() {}

 protected:
  chunk_input in_;
};

// A file a workload wrote for a chunk is still there: a regular file that is not empty.
bool output_file_present(const std::string& path);

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
  // The score vector of each record, the rankings and the file each fills, the hit lists'
  // length and filters, the score sampled for report.html.
  virtual score_layout scores() const = 0;
  // Everything that must not change on --resume besides the library and the chunking (which the
  // host adds): the model files' checksums, top-K, precision, batch settings, ...
  virtual json identity() const = 0;
  // Keys of run.json's top level that say what the run used (e.g. "model": its paths).
  virtual json run_keys() const { return json::object(); }
  // Called on rank 0 once the run folder exists, before any chunk.
  virtual void prepare_run_folder(const std::string& /*out_dir*/) const {}
  // Rank 0 at an attempt's start, for each chunk committed before whose shard was read: whether
  // the files this workload writes for a chunk are in the run folder (the chunk's record, if it
  // lists them, also has their sizes and checksums checked). A chunk whose files are gone or
  // empty is done again.
  virtual bool has_chunk_outputs(const std::string& /*out_dir*/, std::uint64_t /*chunk_id*/) const {
    return true;
  }
  // A fixed split for --featurize-threads N of `threads`: stage name → most tasks at once.
  virtual std::map<std::string, int> stage_split(int featurize_threads, int threads) const = 0;
  // Called first on every worker thread of the rank's stage_pool (e.g. its intra-op threads).
  virtual void on_thread_start() const {}
  // The work of one chunk; its stages run on the pool's threads, possibly beside other chunks.
  virtual std::unique_ptr<chunk_work> start(chunk_input input) = 0;
  // This rank's counters and timings; numbers are summed over ranks (peaks: the maximum).
  virtual json rank_report() const { return json::object(); }
  // Rank 0 at the end: writes the outputs that span the run (e.g. an annotation manifest) and
  // returns what run.json should say about them.
  virtual json write_run_outputs(const run_view& /*run*/) const { return json::object(); }
  // Rank 0 at the end: this workload's section of run.json; `summed` is the ranks' reports
  // combined (combine_rank_reports).
  virtual json report(const json& summed) const = 0;
};

// Combines ranks' reports: numbers are summed, except keys containing "peak" or ending in "_max"
// (maximum); other values are taken from the first rank that has them.
json combine_rank_reports(const std::vector<json>& reports);

}  // namespace hpcscreen::pipeline
