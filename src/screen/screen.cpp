#include "hpcscreen/screen/screen.hpp"

#include <omp.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <mutex>

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
  screen_workload(const screen_settings& s, int threads)
      : settings_(s), threads_(threads), model_(s.model_path) {
    chem::silence_rdkit_logs();
    // A GNN's matrix products are too small to keep several threads busy inside one batch:
    // the rank's threads score different batches at once instead, one thread each.
    infer::configure_threads(1);
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

  bool process(const plan::chunk& c, const std::string& shard_file,
               const std::vector<string_column>& columns, run::chunk_record& rec, rank::topk& top,
               const std::function<void()>& between_batches) override {
    const auto& ids = columns[0];
    const auto& smiles = columns[1];
    const auto n = static_cast<std::int64_t>(ids.size());
    std::vector<chem::featurize_result> features(static_cast<std::size_t>(n));
    const auto t1 = clock_type::now();
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads_)
    for (std::int64_t i = 0; i < n; ++i) {
      features[static_cast<std::size_t>(i)] =
          chem::featurize_smiles(smiles[static_cast<std::size_t>(i)], settings_.featurize);
    }
    featurize_s_ += seconds_since(t1);

    std::vector<std::size_t> good;
    std::vector<std::int64_t> atom_counts;
    for (std::size_t i = 0; i < features.size(); ++i) {
      if (features[i].ok) {
        good.push_back(i);
        atom_counts.push_back(features[i].graph.n_atoms);
      } else {
        rec.rejects.push_back({c.row_begin + i, std::string(ids[i]), "featurize",
                               features[i].reason, features[i].detail});
      }
    }

    const auto& meta = model_.metadata();
    const auto n_tasks = meta.tasks.size();
    const auto task = meta.rank_task_index();
    scores_csv_.clear();
    const auto t2 = clock_type::now();
    // The batches are fixed by the chunk, so scoring them on several threads at once gives the
    // same numbers as scoring them in turn; results are then taken in batch order.
    const auto ranges = batch::plan_batches(atom_counts, settings_.budget);
    std::vector<std::vector<float>> batch_scores(ranges.size());
    std::vector<std::vector<bool>> batch_oom(ranges.size());
    std::atomic<bool> stopped{false};
    std::exception_ptr failure;
    std::mutex failure_mutex;
    const auto n_ranges = static_cast<std::int64_t>(ranges.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (std::int64_t r = 0; r < n_ranges; ++r) {
      if (stopped || pipeline::stop_requested()) {
        stopped = true;
        continue;
      }
      try {
        const auto [begin, end] = ranges[static_cast<std::size_t>(r)];
        std::vector<const chem::mol_graph*> graphs;
        for (auto k = begin; k < end; ++k) graphs.push_back(&features[good[k]].graph);
        auto& scores = batch_scores[static_cast<std::size_t>(r)];
        auto& oom = batch_oom[static_cast<std::size_t>(r)];
        scores.resize(graphs.size() * n_tasks);
        oom.assign(graphs.size(), false);
        score_with_backoff(graphs, 0, graphs.size(), scores, oom);
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        stopped = true;
      }
    }
    if (failure) std::rethrow_exception(failure);
    if (stopped) return false;
    n_batches_ += ranges.size();
    announce_spilling();
    for (std::size_t r = 0; r < ranges.size(); ++r) {
      const auto [begin, end] = ranges[r];
      const auto& scores = batch_scores[r];
      const auto& out_of_memory = batch_oom[r];
      for (auto k = begin; k < end; ++k) {
        const auto i = good[k];
        const float* row = &scores[(k - begin) * n_tasks];
        if (out_of_memory[k - begin]) {
          rec.rejects.push_back({c.row_begin + i, std::string(ids[i]), "infer", "out_of_memory",
                                 "even alone the molecule fits neither DRAM nor the spill tier"});
          continue;
        }
        if (!std::isfinite(row[task])) {
          rec.rejects.push_back({c.row_begin + i, std::string(ids[i]), "infer", "non_finite_score",
                                 "the model returned " + format_score(row[task])});
          continue;
        }
        ++rec.counts.n_scored;
        if ((c.row_begin + i) % run::chunk_record::sample_every == 0)
          rec.score_sample.push_back(row[task]);
        if (settings_.all_scores) {
          scores_csv_ += csv_field(shard_file) + ',' + std::to_string(c.row_begin + i) + ',' +
                         csv_field(ids[i]);
          for (std::size_t t = 0; t < n_tasks; ++t) scores_csv_ += ',' + format_score(row[t]);
          scores_csv_ += '\n';
        }
        top.offer(
            {row[task], {c.shard, c.row_begin + i}, std::string(ids[i]), std::string(smiles[i])});
      }
      between_batches();
    }
    infer_s_ += seconds_since(t2);
    return true;
  }

  void write_chunk_outputs(const std::string& out_dir, const run::chunk_record& rec) override {
    if (!settings_.all_scores) return;
    char name[48];
    std::snprintf(name, sizeof name, "chunk-%010llu.csv",
                  static_cast<unsigned long long>(rec.chunk_id));
    std::string header = "shard,row,id";
    for (const auto& t : model_.metadata().tasks) header += ',' + csv_field(t);
    run::write_file_atomically((fs::path(out_dir) / "scores" / name).string(),
                               header + '\n' + scores_csv_);
  }

  pipeline::json rank_report() const override {
    pipeline::json j = {{"featurize_s", featurize_s_},
                        {"infer_s", infer_s_},
                        {"batches", n_batches_},
                        {"batch_backoffs", n_backoffs_.load()}};
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

 private:
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

  screen_settings settings_;
  int threads_;
  infer::gnn_model model_;
  std::string scores_csv_;  // this chunk's rows of scores/chunk-N.csv
  double featurize_s_ = 0, infer_s_ = 0;
  std::uint64_t n_batches_ = 0;
  std::atomic<std::uint64_t> n_backoffs_{0};
  bool spilling_announced_ = false;
};

}  // namespace

std::unique_ptr<pipeline::workload> make_screen_workload(const screen_settings& settings,
                                                         int threads) {
  return std::make_unique<screen_workload>(settings, threads);
}

}  // namespace hpcscreen::screen
