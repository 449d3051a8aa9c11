#include "hpcscreen/screen/screen.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/timing.hpp"
#include "hpcscreen/infer/gnn_model.hpp"
#include "hpcscreen/infer/memory_tier.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::screen {
namespace {

class screen_workload : public pipeline::workload {
 public:
  // Threads come from the rank's stage pool; each scores one batch at a time.
  screen_workload(const screen_settings& s, int /*threads*/) : settings_(s), model_(s.model_path) {
    chem::silence_rdkit_logs();
    infer::keep_freed_tensor_memory();
  }

  std::string name() const override { return "screen"; }
  std::string library_kind() const override { return "compounds"; }
  std::vector<std::string> fields() const override { return {"id", "smiles"}; }
  std::string hit_text_column() const override { return "smiles"; }
  bool higher_is_better() const override { return model_.metadata().higher_is_better; }
  bool produces_hits() const override { return true; }

  pipeline::json identity() const override {
    return {{"max_atoms", settings_.featurize.max_atoms}, {"all_scores", settings_.all_scores}};
  }
  pipeline::json model_report() const override {
    return {{"metadata", pipeline::json::parse(model_.metadata().raw_json)}};
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

  std::unique_ptr<pipeline::chunk_work> start(const plan::chunk& c, const std::string& shard_file,
                                              std::vector<string_column> columns) override;

  void note_chunk(std::size_t batches) { n_batches_ += batches; }  // on the conductor

  pipeline::json rank_report() const override {
    pipeline::json j = {{"batches", n_batches_}, {"batch_backoffs", n_backoffs_.load()}};
    const auto t = infer::memory_tier_stats();
    if (t.installed) {
      j["memory_tier"] = {{"spill_kind", t.spill_kind},
                          {"dram_budget_bytes", t.dram_budget_bytes},
                          {"dram_peak_bytes", t.dram_peak_bytes},
                          {"spill_peak_bytes", t.spill_peak_bytes},
                          {"spill_total_bytes", t.spill_total_bytes},
                          {"dram_allocations", t.dram_allocations},
                          {"spill_allocations", t.spill_allocations},
                          {"failed_allocations", t.failed_allocations}};
    }
    return j;
  }

  void finish(const std::string&, const io::manifest&, const plan::chunk_plan&,
              const std::set<std::uint64_t>&, const std::vector<pipeline::json>& ranks,
              pipeline::json& report) const override {
    std::uint64_t backoffs = 0;
    pipeline::json tier;
    for (const auto& r : ranks) {
      backoffs += r.value("batch_backoffs", std::uint64_t{0});
      if (!r.contains("memory_tier")) continue;
      const auto& t = r["memory_tier"];
      if (tier.is_null())
        tier = {
            {"spill_kind", t["spill_kind"]}, {"dram_budget_bytes_per_rank", t["dram_budget_bytes"]},
            {"dram_peak_bytes_max", 0},      {"spill_peak_bytes_max", 0},
            {"spill_total_bytes", 0},        {"dram_allocations", 0},
            {"spill_allocations", 0},        {"failed_allocations", 0}};
      tier["dram_peak_bytes_max"] = std::max(tier["dram_peak_bytes_max"].get<std::uint64_t>(),
                                             t["dram_peak_bytes"].get<std::uint64_t>());
      tier["spill_peak_bytes_max"] = std::max(tier["spill_peak_bytes_max"].get<std::uint64_t>(),
                                              t["spill_peak_bytes"].get<std::uint64_t>());
      for (const char* k :
           {"spill_total_bytes", "dram_allocations", "spill_allocations", "failed_allocations"}) {
        tier[k] = tier[k].get<std::uint64_t>() + t[k].get<std::uint64_t>();
      }
    }
    report["batch_backoffs"] = backoffs;
    report["memory_tier"] = tier.is_null() ? pipeline::json{{"installed", false}} : tier;
    report["config"]["max_atoms"] = settings_.featurize.max_atoms;
    report["config"]["batch_molecules"] = settings_.budget.max_molecules;
    report["config"]["batch_atoms"] = settings_.budget.max_atoms;
    report["config"]["all_scores"] = settings_.all_scores;
    report["versions"]["libtorch"] = infer::libtorch_version();
    report["versions"]["rdkit"] = chem::rdkit_version();
    report["versions"]["featurizer"] =
        std::string(chem::featurizer_name) + "/" + std::to_string(chem::featurizer_version);
  }

 public:
  const screen_settings& settings() const { return settings_; }
  std::size_t n_tasks() const { return model_.metadata().tasks.size(); }
  std::size_t rank_task() const { return model_.metadata().rank_task_index(); }
  std::string scores_header() const {
    std::string header = "shard,row,id";
    for (const auto& t : model_.metadata().tasks) header += ',' + csv_field(t);
    return header + '\n';
  }

  // Scores graphs[begin, end); a batch that does not fit in memory is retried in halves, down
  // to single molecules, before anything is rejected.
  void score_with_backoff(const std::vector<const chem::mol_graph*>& graphs, std::size_t begin,
                          std::size_t end, std::vector<float>& scores,
                          std::vector<bool>& out_of_memory) {
    const auto n_tasks = model_.metadata().tasks.size();
    try {
      const auto part =
          model_.score(batch::assemble({graphs.begin() + static_cast<std::ptrdiff_t>(begin),
                                        graphs.begin() + static_cast<std::ptrdiff_t>(end)}));
      std::copy(part.begin(), part.end(),
                scores.begin() + static_cast<std::ptrdiff_t>(begin * n_tasks));
    } catch (const model_error& e) {
      if (!infer::is_out_of_memory(e.what())) throw;
      if (end - begin == 1) {
        out_of_memory[begin] = true;
        return;
      }
      if (++n_backoffs_ == 1) {
        std::fprintf(
            stderr,
            "hpcscreen: a batch of %zu molecules does not fit in memory; retrying in halves\n",
            end - begin);
      }
      const auto mid = begin + (end - begin) / 2;
      score_with_backoff(graphs, begin, mid, scores, out_of_memory);
      score_with_backoff(graphs, mid, end, scores, out_of_memory);
    }
  }

  // Once, on the conductor, when the memory tier first spills.
  void announce_spilling() {
    if (spilling_announced_) return;
    const auto t = infer::memory_tier_stats();
    if (t.installed && t.spill_allocations > 0) {
      spilling_announced_ = true;
      std::fprintf(stderr, "hpcscreen: DRAM budget of %llu MiB reached; spilling to %s\n",
                   static_cast<unsigned long long>(t.dram_budget_bytes >> 20),
                   t.spill_kind.c_str());
    }
  }

 private:
  screen_settings settings_;
  infer::gnn_model model_;
  std::uint64_t n_batches_ = 0;
  std::atomic<std::uint64_t> n_backoffs_{0};
  bool spilling_announced_ = false;
};

// One chunk: featurize in blocks of molecules, then score the batches planned from the graphs'
// sizes. The batches are fixed by the chunk alone, so scoring them on any threads, in any order,
// beside any other chunk, gives the same numbers.
class screen_job : public pipeline::chunk_work {
 public:
  static constexpr std::size_t block = 32;  // molecules per featurize task

  screen_job(screen_workload& w, const plan::chunk& c, std::string shard_file,
             std::vector<string_column> columns)
      : w_(w), c_(c), shard_file_(std::move(shard_file)), columns_(std::move(columns)) {
    features_.resize(columns_[0].size());
  }

  pipeline::stage next_stage() override {
    const auto& s = w_.settings();
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
      ranges_ = batch::plan_batches(atom_counts, s.budget);
      batch_scores_.resize(ranges_.size());
      batch_oom_.resize(ranges_.size());
      return {"infer", ranges_.size(), 0};
    }
    return {"done", 0, 0};
  }

  void run_task(std::size_t i) override {
    if (pipeline::stop_requested()) return;  // the conductor abandons the chunk
    if (phase_ == phase::featurize) {
      const auto& smiles = columns_[1];
      const auto end = std::min(features_.size(), (i + 1) * block);
      for (auto k = i * block; k < end; ++k)
        features_[k] = chem::featurize_smiles(smiles[k], w_.settings().featurize);
      return;
    }
    const auto [begin, end] = ranges_[i];
    std::vector<const chem::mol_graph*> graphs;
    for (auto k = begin; k < end; ++k) graphs.push_back(&features_[good_[k]].graph);
    auto& scores = batch_scores_[i];
    auto& oom = batch_oom_[i];
    scores.resize(graphs.size() * w_.n_tasks());
    oom.assign(graphs.size(), false);
    w_.score_with_backoff(graphs, 0, graphs.size(), scores, oom);
  }

  void finish(run::chunk_record& rec, rank::topk& top) override {
    const auto& ids = columns_[0];
    const auto& smiles = columns_[1];
    const auto& s = w_.settings();
    const auto n_tasks = w_.n_tasks();
    const auto task = w_.rank_task();
    for (std::size_t i = 0; i < features_.size(); ++i) {
      if (!features_[i].ok) {
        rec.rejects.push_back({c_.row_begin + i, std::string(ids[i]), "featurize",
                               features_[i].reason, features_[i].detail});
      }
    }
    for (std::size_t r = 0; r < ranges_.size(); ++r) {
      const auto [begin, end] = ranges_[r];
      for (auto k = begin; k < end; ++k) {
        const auto i = good_[k];
        const float* row = &batch_scores_[r][(k - begin) * n_tasks];
        if (batch_oom_[r][k - begin]) {
          rec.rejects.push_back({c_.row_begin + i, std::string(ids[i]), "infer", "out_of_memory",
                                 "even alone the molecule fits neither DRAM nor the spill tier"});
          continue;
        }
        if (!std::isfinite(row[task])) {
          rec.rejects.push_back({c_.row_begin + i, std::string(ids[i]), "infer", "non_finite_score",
                                 "the model returned " + format_score(row[task])});
          continue;
        }
        ++rec.counts.n_scored;
        if ((c_.row_begin + i) % run::chunk_record::sample_every == 0)
          rec.score_sample.push_back(row[task]);
        if (s.all_scores) {
          scores_csv_ += csv_field(shard_file_) + ',' + std::to_string(c_.row_begin + i) + ',' +
                         csv_field(ids[i]);
          for (std::size_t t = 0; t < n_tasks; ++t) scores_csv_ += ',' + format_score(row[t]);
          scores_csv_ += '\n';
        }
        top.offer(
            {row[task], {c_.shard, c_.row_begin + i}, std::string(ids[i]), std::string(smiles[i])});
      }
    }
    w_.note_chunk(ranges_.size());
    w_.announce_spilling();
  }

  void write_outputs(const std::string& out_dir, const run::chunk_record& rec) override {
    if (!w_.settings().all_scores) return;
    char name[48];
    std::snprintf(name, sizeof name, "chunk-%010llu.csv",
                  static_cast<unsigned long long>(rec.chunk_id));
    run::write_file_atomically((fs::path(out_dir) / "scores" / name).string(),
                               w_.scores_header() + scores_csv_);
  }

 private:
  enum class phase { start, featurize, infer };
  screen_workload& w_;
  plan::chunk c_;
  std::string shard_file_;
  std::vector<string_column> columns_;
  phase phase_ = phase::start;
  std::vector<chem::featurize_result> features_;
  std::vector<std::size_t> good_;
  std::vector<std::pair<std::size_t, std::size_t>> ranges_;
  std::vector<std::vector<float>> batch_scores_;
  std::vector<std::vector<bool>> batch_oom_;
  std::string scores_csv_;  // this chunk's rows of scores/chunk-N.csv
};

std::unique_ptr<pipeline::chunk_work> screen_workload::start(const plan::chunk& c,
                                                             const std::string& shard_file,
                                                             std::vector<string_column> columns) {
  return std::make_unique<screen_job>(*this, c, shard_file, std::move(columns));
}

}  // namespace

std::unique_ptr<pipeline::workload> make_screen_workload(const screen_settings& settings,
                                                         int threads) {
  return std::make_unique<screen_workload>(settings, threads);
}

}  // namespace hpcscreen::screen
