#include "hpcscreen/screen/screen.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/infer/backoff.hpp"
#include "hpcscreen/infer/gnn_model.hpp"
#include "hpcscreen/infer/inference_report.hpp"
#include "hpcscreen/infer/memory_tier.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;
using hpcscreen::pipeline::json;

namespace hpcscreen::screen {
namespace {

class screen_workload : public pipeline::workload {
 public:
  // Threads come from the rank's stage pool; each scores one batch at a time.
  screen_workload(const screen_settings& s, int /*threads*/)
      : settings_(s), model_(s.model_path, s.precision) {
    chem::silence_rdkit_logs();
    infer::keep_freed_tensor_memory();
  }

  const pipeline::workload_kind& kind() const override {
    return pipeline::find_workload_kind("screen");
  }
  pipeline::score_layout scores() const override {
    const auto& m = model_.metadata();
    return {m.tasks, m.rank_task_index(), m.higher_is_better, true};
  }
  json identity() const override {
    json id = {{"max_atoms", settings_.featurize.max_atoms}, {"all_scores", settings_.all_scores}};
    // Scores differ slightly between precisions: a resumed run keeps its own. (FP32 adds no key,
    // so run folders from before precisions existed still resume.)
    if (model_.precision().used != infer::precision::fp32)
      id["precision"] = infer::precision_name(model_.precision().used);
    return id;
  }
  void prepare_run_folder(const std::string& out_dir) const override {
    if (settings_.all_scores) fs::create_directories(fs::path(out_dir) / "scores");
  }
  std::map<std::string, int> stage_split(int featurize_threads, int threads) const override {
    return {{"featurize", featurize_threads}, {"infer", std::max(1, threads - featurize_threads)}};
  }
  // A GNN's matrix products are too small to keep several threads busy inside one batch: the
  // pool's threads score different batches at once instead, one intra-op thread each.
  void on_thread_start() const override { infer::configure_threads(1); }

  std::unique_ptr<pipeline::chunk_work> start(pipeline::chunk_input input) override;
  void on_committed(pipeline::chunk_work& work) override;

  json rank_report() const override {
    auto j = infer::inference_report(backoffs_);
    j["batches"] = n_batches_;
    return j;
  }

  json finish(const pipeline::run_view&, const json& summed) const override {
    json section = summed;
    section["model"] = json::parse(model_.metadata().raw_json);
    section["precision"] = infer::precision_report(model_.precision());
    section["config"] = {{"max_atoms", settings_.featurize.max_atoms},
                         {"batch_molecules", settings_.budget.max_molecules},
                         {"batch_atoms", settings_.budget.max_atoms},
                         {"all_scores", settings_.all_scores}};
    section["versions"] = {
        {"libtorch", infer::libtorch_version()},
        {"rdkit", chem::rdkit_version()},
        {"featurizer",
         std::string(chem::featurizer_name) + "/" + std::to_string(chem::featurizer_version)}};
    return section;
  }

  const screen_settings& settings() const { return settings_; }
  std::size_t n_tasks() const { return model_.metadata().tasks.size(); }
  infer::gnn_model& model() { return model_; }
  infer::backoff_counters& backoffs() { return backoffs_; }
  std::string scores_header() const {
    std::string header = "shard,row,id";
    for (const auto& t : model_.metadata().tasks) header += ',' + csv_field(t);
    return header + '\n';
  }

 private:
  screen_settings settings_;
  infer::gnn_model model_;
  std::uint64_t n_batches_ = 0;
  infer::backoff_counters backoffs_;
  bool spilling_announced_ = false;
};

// One chunk: featurize in blocks of molecules, then score the batches planned from the graphs'
// sizes. The batches are fixed by the chunk alone, so scoring them on any threads, in any order,
// beside any other chunk, gives the same numbers.
class screen_job : public pipeline::chunk_work {
 public:
  static constexpr std::size_t block = 32;  // molecules per featurize task

  screen_job(screen_workload& w, pipeline::chunk_input input)
      : w_(w), in_(std::move(input)), smiles_(in_["smiles"]) {
    features_.resize(in_.n_rows());
  }

  pipeline::stage next_stage() override {
    if (phase_ == phase::start) {
      phase_ = phase::featurize;
      return {"featurize", (features_.size() + block - 1) / block, 0};
    }
    if (phase_ == phase::featurize) {
      phase_ = phase::infer;
      std::vector<std::int64_t> atom_counts;
      for (std::size_t i = 0; i < features_.size(); ++i) {
        if (!features_[i].ok) continue;
        good_.push_back(i);
        atom_counts.push_back(features_[i].graph.n_atoms);
      }
      ranges_ = batch::plan_batches(atom_counts, w_.settings().budget);
      results_.resize(ranges_.size());
      return {"infer", ranges_.size(), 0};
    }
    return {"done", 0, 0};
  }

  void run_task(std::size_t i) override {
    if (pipeline::stop_requested()) return;  // the conductor abandons the chunk
    if (phase_ == phase::featurize) {
      const auto end = std::min(features_.size(), (i + 1) * block);
      for (auto k = i * block; k < end; ++k)
        features_[k] = chem::featurize_smiles(smiles_[k], w_.settings().featurize);
      return;
    }
    const auto [begin, end] = ranges_[i];
    auto& r = results_[i];
    const auto n_tasks = w_.n_tasks();
    r.scores.assign((end - begin) * n_tasks, 0.0f);
    infer::run_isolating(
        0, end - begin,
        [&](std::size_t b, std::size_t e) {
          std::vector<const chem::mol_graph*> graphs;
          for (auto k = begin + b; k < begin + e; ++k) graphs.push_back(&features_[good_[k]].graph);
          const auto part = w_.model().score(batch::assemble(graphs));
          std::copy(part.begin(), part.end(), r.scores.begin() + static_cast<std::ptrdiff_t>(b * n_tasks));
        },
        [&](std::size_t k, const char* reason, std::string detail) {
          r.failures.push_back({k, reason, std::move(detail)});
        },
        w_.backoffs());
  }

  void collect(pipeline::chunk_outcomes& out) override {
    for (std::size_t i = 0; i < features_.size(); ++i) {
      if (!features_[i].ok)
        out.reject(i, "featurize", features_[i].reason, features_[i].detail);
    }
    const auto n_tasks = w_.n_tasks();
    for (std::size_t b = 0; b < ranges_.size(); ++b) {
      const auto [begin, end] = ranges_[b];
      auto& r = results_[b];
      for (auto& f : r.failures) out.reject(good_[begin + f.item], "infer", f.reason, std::move(f.detail));
      for (auto k = begin; k < end; ++k) {
        if (out.at(good_[k]) == pipeline::chunk_outcomes::state::pending)
          out.score(good_[k], &r.scores[(k - begin) * n_tasks]);
      }
    }
  }

  void write_outputs(const std::string& out_dir, std::uint64_t chunk_id,
                     const pipeline::chunk_outcomes& out) override {
    if (!w_.settings().all_scores) return;
    const auto& ids = in_["id"];
    std::string csv = w_.scores_header();
    for (std::size_t i = 0; i < out.n_rows(); ++i) {
      if (out.at(i) != pipeline::chunk_outcomes::state::scored) continue;
      csv += csv_field(in_.shard_file) + ',' + std::to_string(in_.chunk.row_begin + i) + ',' +
             csv_field(ids[i]);
      for (std::size_t t = 0; t < out.n_scores(); ++t) csv += ',' + format_score(out.scores(i)[t]);
      csv += '\n';
    }
    char name[48];
    std::snprintf(name, sizeof name, "chunk-%010llu.csv", static_cast<unsigned long long>(chunk_id));
    run::write_file_atomically((fs::path(out_dir) / "scores" / name).string(), csv);
  }

  std::size_t n_batches() const { return ranges_.size(); }

 private:
  struct failure {
    std::size_t item;  // within the batch
    std::string reason, detail;
  };
  struct batch_result {
    std::vector<float> scores;  // [n, n_tasks]
    std::vector<failure> failures;
  };
  enum class phase { start, featurize, infer };
  screen_workload& w_;
  pipeline::chunk_input in_;
  const string_column& smiles_;
  phase phase_ = phase::start;
  std::vector<chem::featurize_result> features_;
  std::vector<std::size_t> good_;  // rows that featurized, in batch order
  std::vector<std::pair<std::size_t, std::size_t>> ranges_;
  std::vector<batch_result> results_;
};

std::unique_ptr<pipeline::chunk_work> screen_workload::start(pipeline::chunk_input input) {
  return std::make_unique<screen_job>(*this, std::move(input));
}

void screen_workload::on_committed(pipeline::chunk_work& work) {
  n_batches_ += static_cast<screen_job&>(work).n_batches();
  if (spilling_announced_) return;
  const auto t = infer::memory_tier_stats();
  if (t.installed && t.spill_allocations > 0) {
    spilling_announced_ = true;
    std::fprintf(stderr, "hpcscreen: DRAM budget of %llu MiB reached; spilling to %s\n",
                 static_cast<unsigned long long>(t.dram_budget_bytes >> 20), t.spill_kind.c_str());
  }
}

}  // namespace

std::unique_ptr<pipeline::workload> make_screen_workload(const screen_settings& settings,
                                                         int threads) {
  return std::make_unique<screen_workload>(settings, threads);
}

}  // namespace hpcscreen::screen
