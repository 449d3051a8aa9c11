// The screen workload: compound rows → RDKit graphs (once) → every model's TorchScript GNN →
// one score vector per record (each model's tasks, an ensemble's mean/sd/bounds). The pipeline
// ranks, filters and keeps the books from those vectors.
#include "hpcscreen/screen/screen.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/infer/backoff.hpp"
#include "hpcscreen/infer/gnn_model.hpp"
#include "hpcscreen/infer/inference_report.hpp"
#include "hpcscreen/infer/memory_tier.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/run/run_folder.hpp"
#include "hpcscreen/screen/feature_cache.hpp"

namespace fs = std::filesystem;
using hpcscreen::pipeline::json;

namespace hpcscreen::screen {
namespace {

// One model of the screen, named by its hpcscreen.json "name" (the file stem when empty).
struct scoring_model {
  std::string name;
  std::unique_ptr<infer::gnn_model> model;
  std::size_t featurizer = 0;  // into the screen's featurizers, each run once per record
  std::size_t offset = 0;  // its first score in the record's vector
  std::atomic<std::uint64_t> infer_ns{0};
};

// --all-scores: every scored record of a chunk, in RUN/scores/.
// A chunk's --all-scores file, below the run folder.
std::string scores_name(std::uint64_t chunk_id) {
  char name[48];
  std::snprintf(name, sizeof name, "scores/chunk-%010llu.csv",
                static_cast<unsigned long long>(chunk_id));
  return name;
}

std::string scores_file(const std::string& out_dir, std::uint64_t chunk_id) {
  return (fs::path(out_dir) / scores_name(chunk_id)).string();
}

// A decimal number written in full (no hex, nothing after it), finite as a float.
bool parse_decimal(const std::string& text, double& value) {
  char* end = nullptr;
  value = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size() &&
         text.find_first_of("xX") == std::string::npos && std::isfinite(static_cast<float>(value));
}

// An ensemble's derived score: mean − K·sd (lcb) or mean + K·sd (ucb) of the ranked task.
struct bound_column {
  double k = 0;  // signed: negative for lcb
  std::size_t mean_index = 0, sd_index = 0;
};

// The layout of a record's score vector: every model's tasks ("MODEL:TASK"), then with an
// ensemble "mean:TASK" and "sd:TASK" per task and the bound columns the rank keys ask for.
class score_plan {
 public:
  score_plan(std::vector<scoring_model>& models, const screen_settings& s) {
    for (auto& m : models) {
      m.offset = names_.size();
      for (const auto& t : m.model->metadata().tasks) names_.push_back(m.name + ":" + t);
    }
    n_model_scores_ = names_.size();
    const auto& first = models.front().model->metadata();
    if (s.ensemble) {
      for (const auto& m : models) {
        const auto& meta = m.model->metadata();
        auto describe = [](const infer::model_metadata& x) {
          return "tasks " + json(x.tasks).dump() + " (" +
                 (x.higher_is_better ? "higher" : "lower") + " is better)";
        };
        if (meta.tasks != first.tasks || meta.higher_is_better != first.higher_is_better) {
          throw usage_error("--ensemble: every member must have the same tasks and direction; '" +
                            m.name + "' has " + describe(meta) + ", '" + models.front().name +
                            "' has " + describe(first));
        }
      }
      for (const auto& t : first.tasks) {
        mean_of_[t] = names_.size();
        names_.push_back("mean:" + t);
        sd_of_[t] = names_.size();
        names_.push_back("sd:" + t);
      }
      n_members_ = models.size();
      task_count_ = first.tasks.size();
    }
    const auto ranked_task = first.tasks[first.rank_task_index()];
    auto direction_of = [&](std::size_t index) {
      for (const auto& m : models) {
        const auto n = m.model->metadata().tasks.size();
        if (index >= m.offset && index < m.offset + n) return m.model->metadata().higher_is_better;
      }
      return first.higher_is_better;  // an ensemble column: the members' direction
    };
    std::vector<std::string> keys = s.rank_by;
    if (keys.empty()) keys.push_back(models.front().name + ":" + ranked_task);
    for (const auto& key : keys) {
      std::size_t index = names_.size();
      if (s.ensemble && (key == "mean" || key.rfind("lcb:", 0) == 0 || key.rfind("ucb:", 0) == 0)) {
        if (key == "mean") {
          index = mean_of_.at(ranked_task);
        } else {
          double k = -1;
          const auto text = key.substr(4);  // unsigned: lcb:-0 would be lcb:0 under another name
          if (text.empty() ||
              (!std::isdigit(static_cast<unsigned char>(text[0])) && text[0] != '.') ||
              !parse_decimal(text, k) || !(k >= 0) || k > 1e6) {
            throw usage_error("--rank-by " + key + ": K must be a number 0 or more, as in lcb:2");
          }
          index = column(key + ":" + ranked_task);
          if (index == names_.size()) {
            names_.push_back(key + ":" + ranked_task);
            bounds_.push_back({key[0] == 'l' ? -k : k, mean_of_.at(ranked_task), sd_of_.at(ranked_task)});
          }
        }
      } else {
        index = column(key);
        if (index == names_.size()) {
          throw usage_error("--rank-by '" + key + "' is not a score of this screen; the scores are " +
                            json(names_).dump() +
                            (s.ensemble ? " (and mean, lcb:K, ucb:K with --ensemble)" : ""));
        }
      }
      keys_.push_back({index, direction_of(index), {}});  // its file: name_hit_files
    }
    for (const auto& w : s.where) filters_.push_back(parse_filter(w));
  }

  const std::vector<std::string>& names() const { return names_; }
  std::size_t n_model_scores() const { return n_model_scores_; }
  pipeline::score_layout layout(std::size_t top_k) const {
    pipeline::score_layout l;
    l.names = names_;
    l.keys = keys_;
    pipeline::name_hit_files(l.keys, l.names);
    l.sampled = l.keys.front().index;  // the histogram shows the first --rank-by
    l.top_k = top_k;
    l.filters = filters_;
    return l;
  }

  // Fills the ensemble and bound columns of one record's vector from its model scores.
  void derive(float* v) const {
    for (std::size_t t = 0; t < task_count_; ++t) {
      double sum = 0, sq = 0;
      for (std::size_t m = 0; m < n_members_; ++m) sum += v[m * task_count_ + t];
      const double mean = sum / static_cast<double>(n_members_);
      for (std::size_t m = 0; m < n_members_; ++m) {
        const double d = v[m * task_count_ + t] - mean;
        sq += d * d;
      }
      v[n_model_scores_ + 2 * t] = static_cast<float>(mean);
      v[n_model_scores_ + 2 * t + 1] = static_cast<float>(std::sqrt(sq / static_cast<double>(n_members_)));
    }
    for (std::size_t b = 0; b < bounds_.size(); ++b) {
      v[names_.size() - bounds_.size() + b] =
          static_cast<float>(static_cast<double>(v[bounds_[b].mean_index]) +
                             bounds_[b].k * static_cast<double>(v[bounds_[b].sd_index]));
    }
  }

 private:
  std::size_t column(const std::string& name) const {
    return static_cast<std::size_t>(std::find(names_.begin(), names_.end(), name) - names_.begin());
  }

  pipeline::score_filter parse_filter(const std::string& text) const {
    const auto op = text.find_first_of("<>");
    auto trim = [](std::string x) {
      x.erase(0, x.find_first_not_of(" \t"));
      x.erase(x.find_last_not_of(" \t") + 1);
      return x;
    };
    if (op == std::string::npos || text.find_first_of("<>", op + 1) != std::string::npos) {
      throw usage_error("--where '" + text + "' must read 'MODEL:TASK < VALUE' or 'MODEL:TASK > VALUE'");
    }
    const auto name = trim(text.substr(0, op)), value_text = trim(text.substr(op + 1));
    const auto index = column(name);
    if (index == names_.size()) {
      throw usage_error("--where '" + text + "': '" + name + "' is not a score of this screen; the scores are " +
                        json(names_).dump());
    }
    double parsed = 0;
    if (!parse_decimal(value_text, parsed)) {
      throw usage_error("--where '" + text + "': '" + value_text + "' is not a number");
    }
    return {index, text[op] == '<', static_cast<float>(parsed), text};
  }

  std::vector<std::string> names_;
  std::size_t n_model_scores_ = 0, n_members_ = 0, task_count_ = 0;
  std::map<std::string, std::size_t> mean_of_, sd_of_;
  std::vector<bound_column> bounds_;
  std::vector<pipeline::rank_key> keys_;
  std::vector<pipeline::score_filter> filters_;
};

// Loads models[i] from paths[i] (models is sized already: its counters cannot move), and makes
// the featurizers they need from the registry: one per distinct identity, so models sharing a
// featurizer share its work.
std::vector<scoring_model>& load_models(const std::vector<std::string>& paths,
                                        const std::string& precision,
                                        std::vector<scoring_model>& models,
                                        std::vector<std::unique_ptr<chem::featurizer>>& featurizers) {
  if (paths.empty()) throw usage_error("screen needs at least one --model");
  std::map<std::string, std::string> path_of;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    std::unique_ptr<chem::featurizer> made;
    models[i].model = std::make_unique<infer::gnn_model>(
        paths[i], precision, [&](const infer::model_metadata& m) {
          made = chem::make_featurizer(m.featurizer_json);
          return made->tensors();
        });
    models[i].featurizer = featurizers.size();
    for (std::size_t k = 0; k < featurizers.size(); ++k)
      if (featurizers[k]->identity() == made->identity()) models[i].featurizer = k;
    if (models[i].featurizer == featurizers.size()) featurizers.push_back(std::move(made));
    const auto& declared = models[i].model->metadata().name;
    models[i].name = declared.empty() ? fs::path(paths[i]).stem().string() : declared;
    // Names become column names ("NAME:TASK") beside the ensemble's own ("mean:TASK", ...).
    const auto& n = models[i].name;
    if (n.find(':') != std::string::npos || n == "mean" || n == "sd" || n == "lcb" || n == "ucb") {
      throw model_error("model '" + paths[i] + "' is named '" + n +
                        "': a model's name may not contain ':' or be mean, sd, lcb or ucb "
                        "(they name score columns); set another \"name\" in its hpcscreen.json");
    }
    if (const auto [it, fresh] = path_of.emplace(models[i].name, paths[i]); !fresh) {
      throw usage_error("two models are named '" + models[i].name + "' ('" + it->second +
                        "' and '" + paths[i] +
                        "'): give each a distinct \"name\" in its hpcscreen.json, or distinct "
                        "file names if the name is empty");
    }
  }
  return models;
}

class screen_workload : public pipeline::workload {
 public:
  // Threads come from the rank's stage pool; each scores one batch with one model at a time.
  screen_workload(const screen_settings& s, int /*threads*/)
      : settings_(s),
        models_(s.model_paths.size()),
        plan_(load_models(s.model_paths, s.precision, models_, featurizers_), s) {
    for (const auto& f : featurizers_) featurizer_set_.push_back(f.get());
    open_caches();
    chem::silence_rdkit_logs();
    infer::keep_freed_tensor_memory();
  }

  pipeline::score_layout scores() const override { return plan_.layout(settings_.top_k); }
  json identity() const override {
    auto checksums = json::array();
    for (const auto& m : models_) checksums.push_back(m.model->checksum());  // as loaded
    // Batches decide a record's rounding, so they are part of what a resume must keep.
    json id = {{"model_checksums", checksums},
               {"top_k", settings_.top_k},
               {"max_atoms", settings_.featurize.max_atoms},
               {"batch_molecules", settings_.budget.max_molecules},
               {"batch_atoms", settings_.budget.max_atoms},
               {"all_scores", settings_.all_scores},
               {"score_columns", plan_.names()},
               {"rank_by", settings_.rank_by},
               {"where", settings_.where}};
    // Scores differ slightly between precisions: a resumed run keeps its own. (FP32 adds no key,
    // so run folders from before precisions existed still resume.)
    const auto used = models_.front().model->precision().used;
    if (used != infer::precision::fp32) id["precision"] = infer::precision_name(used);
    return id;
  }
  json run_keys() const override {
    auto paths = json::array();
    for (const auto& p : settings_.model_paths) paths.push_back(fs::absolute(p).string());
    return {{"model", {{"path", paths.empty() ? json("") : paths[0]}, {"paths", paths}}}};
  }
  void prepare_run_folder(const std::string& out_dir) const override {
    if (settings_.all_scores) fs::create_directories(fs::path(out_dir) / "scores");
  }
  bool has_chunk_outputs(const std::string& out_dir, std::uint64_t chunk_id) const override {
    return !settings_.all_scores || pipeline::output_file_present(scores_file(out_dir, chunk_id));
  }
  std::map<std::string, int> stage_split(int featurize_threads, int threads) const override {
    return {{"featurize", featurize_threads}, {"infer", std::max(1, threads - featurize_threads)}};
  }
  // A GNN's matrix products are too small to keep several threads busy inside one batch: the
  // pool's threads score different batches at once instead, one intra-op thread each.
  void on_thread_start() const override { infer::configure_threads(1); }

  std::unique_ptr<pipeline::chunk_work> start(pipeline::chunk_input input) override;
  // A committed chunk's batches; announces the first spill to the memory tier.
  void add_committed(std::size_t n_batches);

  json rank_report() const override {
    auto j = infer::inference_report(backoffs_);
    j["feature_cache"] = {{"chunks_from_cache", chunks_from_cache_},
                          {"chunks_from_smiles", chunks_from_smiles_},
                          {"damaged_cache_shards", cache_shards_damaged_},
                          {"records_not_decoded", cache_records_not_decoded_.load()}};
    j["batches"] = n_batches_;
    json per_model = json::object();
    for (const auto& m : models_)
      per_model[m.name] = {{"infer_thread_s", static_cast<double>(m.infer_ns.load()) * 1e-9}};
    j["models"] = per_model;
    return j;
  }

  json report(const json& summed) const override {
    json section = summed;
    json models = json::array();
    for (const auto& m : models_) {
      models.push_back({{"name", m.name}, {"metadata", json::parse(m.model->metadata().raw_json)}});
    }
    section["models"] = summed.value("models", json::object());
    section["model_list"] = models;
    section["model"] = json::parse(models_.front().model->metadata().raw_json);
    section["ensemble"] = settings_.ensemble;
    json cache = {{"used", !caches_.empty()}};
    if (caches_.empty()) {
      cache["why_not"] = settings_.use_cache ? cache_note_ : "--no-feature-cache";
    } else {
      cache["dirs"] = json::array();
      for (const auto& c : caches_) cache["dirs"].push_back(c->dir());
    }
    // chunks from the cache or from SMILES, summed over ranks
    cache.update(summed.value("feature_cache", json::object()));
    section["feature_cache"] = cache;
    section["precision"] = infer::precision_report(models_.front().model->precision());
    section["config"] = {{"max_atoms", settings_.featurize.max_atoms},
                         {"batch_molecules", settings_.budget.max_molecules},
                         {"batch_atoms", settings_.budget.max_atoms},
                         {"all_scores", settings_.all_scores}};
    section["versions"] = {
        {"libtorch", infer::libtorch_version()},
        {"rdkit", chem::rdkit_version()},
        {"featurizer", featurizer_identities()}};
    return section;
  }

  std::string featurizer_identities() const {
    std::string all;
    for (const auto* f : featurizer_set_) all += (all.empty() ? "" : "; ") + f->identity();
    return all;
  }
  const screen_settings& settings() const { return settings_; }
  std::vector<scoring_model>& models() { return models_; }
  const score_plan& plan() const { return plan_; }
  infer::backoff_counters& backoffs() { return backoffs_; }
  std::string scores_header() const {
    std::string header = "shard,row,id";
    for (const auto& n : plan_.names()) header += ',' + csv_field(n);
    return header + '\n';
  }

  const std::vector<const chem::featurizer*>& featurizers() const { return featurizer_set_; }

  // The chunk's rows from every featurizer's cache ([featurizer][reason, detail, features]),
  // or empty: some featurizer has no cache shard for it, or one was found damaged (then it is
  // not used again, and the chunk is featurized from SMILES like any other). Main thread.
  std::vector<std::vector<string_column>> cached_rows(const pipeline::chunk_input& in) {
    std::vector<std::vector<string_column>> rows;
    if (caches_.empty()) {
      ++chunks_from_smiles_;
      return rows;
    }
    for (const auto& c : caches_)
      if (!c->covers(in.shard_file)) return ++chunks_from_smiles_, rows;
    for (auto& c : caches_) {
      try {
        rows.push_back(c->read(in.shard_file, in.chunk.row_begin, in.chunk.row_end, in["smiles"]));
      } catch (const std::exception& e) {
        if (settings_.require_cache)  // the cache or nothing: the run stops here
          throw run_error("--require-cache: the feature cache of '" + in.shard_file + "' in '" +
                          c->dir() + "' cannot be used (" + e.what() + ")");
        std::fprintf(stderr,
                     "hpcscreen: warning: the feature cache of '%s' in '%s' cannot be read (%s); "
                     "its records are featurized from SMILES\n",
                     in.shard_file.c_str(), c->dir().c_str(), e.what());
        c->drop(in.shard_file);
        ++cache_shards_damaged_;
        ++chunks_from_smiles_;
        return {};
      }
    }
    ++chunks_from_cache_;
    return rows;
  }

  // A cached record whose features cannot be decoded (a damaged blob): it is featurized from
  // SMILES instead; the first one is warned about, all are counted in run.json. Any thread.
  void note_not_decoded(const std::string& what) {
    if (cache_records_not_decoded_.fetch_add(1) == 0) {
      std::fprintf(stderr,
                   "hpcscreen: warning: %s; such records are featurized from SMILES (run.json "
                   "counts them: feature_cache.records_not_decoded)\n",
                   what.c_str());
    }
  }

 private:
  void open_caches() {
    if (!settings_.use_cache || settings_.library_dir.empty()) return;
    const auto library = io::read_manifest(settings_.library_dir);
    std::string missing;
    for (const auto* f : featurizer_set_) {
      auto c = std::make_unique<feature_cache>(settings_.library_dir, library, *f, settings_.featurize);
      if (c->usable() && c->n_stale() > 0) {
        std::fprintf(stderr,
                     "hpcscreen: warning: %zu shard(s) of the feature cache '%s' were made from "
                     "other library shards (or are missing): those are featurized from SMILES\n",
                     c->n_stale(), c->dir().c_str());
      }
      if (!c->usable()) missing += (missing.empty() ? "" : "; ") + c->why_not();
      if (c->usable() && !c->smiles_checked()) {
        std::fprintf(stderr,
                     "hpcscreen: warning: the feature cache '%s' was built, in part, before cached "
                     "records carried the checks of their SMILES: its shards without them are "
                     "read unchecked (a library shard replaced in place would go unnoticed); "
                     "remove the folder and run featurize to have every shard checked\n",
                     c->dir().c_str());
      }
      if (c->usable() && settings_.require_cache) {  // every shard from the cache, or none
        c->check_shards();
        std::size_t uncovered = 0;
        for (const auto& shard : library.shards) uncovered += c->covers(shard.file) ? 0 : 1;
        if (uncovered > 0) {
          throw run_error("--require-cache: " + std::to_string(uncovered) + " of the library's " +
                          std::to_string(library.shards.size()) +
                          " shards have no usable shard in the feature cache '" + c->dir() +
                          "' (made from other library shards, missing or damaged); 'hpcscreen "
                          "featurize ... --resume' builds them");
        }
      }
      caches_.push_back(std::move(c));
    }
    if (!missing.empty()) {
      caches_.clear();  // a chunk is read from caches only when every featurizer has one
      if (settings_.require_cache) throw run_error("--require-cache: " + missing);
      cache_note_ = missing;
    }
  }

  screen_settings settings_;
  std::vector<std::unique_ptr<feature_cache>> caches_;  // [featurizer], or none
  std::string cache_note_;                              // why no cache is used
  std::uint64_t chunks_from_cache_ = 0, chunks_from_smiles_ = 0, cache_shards_damaged_ = 0;
  std::atomic<std::uint64_t> cache_records_not_decoded_{0};
  std::vector<std::unique_ptr<chem::featurizer>> featurizers_;  // before models_: they use them
  std::vector<const chem::featurizer*> featurizer_set_;
  std::vector<scoring_model> models_;
  score_plan plan_;
  std::uint64_t n_batches_ = 0;
  infer::backoff_counters backoffs_;
  bool spilling_announced_ = false;
};

// One chunk: featurize in blocks of molecules once, then score the batches planned from the
// graphs' sizes with every model (one task per batch and model). The batches are fixed by the
// chunk alone, so scoring them on any threads, in any order, beside any other chunk, gives the
// same numbers, and each model sees the batches it would see alone.
class screen_job : public pipeline::chunk_work {
 public:
  static constexpr std::size_t block = 32;  // molecules per featurize task

  screen_job(screen_workload& w, pipeline::chunk_input input)
      : chunk_work(std::move(input)), w_(w), smiles_(in_["smiles"]) {
    features_.resize(in_.n_rows());
    cached_ = w_.cached_rows(in_);
  }
  void on_committed() override { w_.add_committed(n_batches()); }

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
        atom_counts.push_back(features_[i].n_atoms);
      }
      ranges_ = batch::plan_batches(atom_counts, w_.settings().budget);
      results_.assign(ranges_.size() * w_.models().size(), {});
      return {"infer", results_.size(), 0};
    }
    return {"done", 0, 0};
  }

  void run_task(std::size_t i) override {
    if (pipeline::stop_requested()) return;  // the conductor abandons the chunk
    if (phase_ == phase::featurize) {
      const auto end = std::min(features_.size(), (i + 1) * block);
      for (auto k = i * block; k < end; ++k) {
        features_[k] = cached_.empty()
                           ? chem::featurize_record(smiles_[k], w_.settings().featurize, w_.featurizers())
                           : from_cache(k);
      }
      return;
    }
    auto& m = w_.models()[i / ranges_.size()];
    const auto [begin, end] = ranges_[i % ranges_.size()];
    auto& r = results_[i];
    const auto n_tasks = m.model->metadata().tasks.size();
    r.scores.assign((end - begin) * n_tasks, 0.0f);
    const auto t0 = std::chrono::steady_clock::now();
    infer::run_isolating(
        0, end - begin,
        [&](std::size_t b, std::size_t e) {
          std::vector<float> part;
          if (m.model->tensors().what == chem::feature_tensors::kind::float_graph) {
            std::vector<const chem::float_graph*> graphs;
            for (auto k = begin + b; k < begin + e; ++k)
              graphs.push_back(&features_[good_[k]].float_graphs[m.featurizer]);
            part = m.model->score_float_graphs(graphs);
          } else if (m.model->tensors().what == chem::feature_tensors::kind::dense) {
            const auto width = static_cast<std::size_t>(m.model->tensors().width);
            std::vector<float> x;
            x.reserve((e - b) * width);
            for (auto k = begin + b; k < begin + e; ++k) {
              const auto& row = features_[good_[k]].dense[m.featurizer];
              x.insert(x.end(), row.begin(), row.end());
            }
            part = m.model->score_dense(x, static_cast<std::int64_t>(e - b));
          } else {
            std::vector<const chem::mol_graph*> graphs;
            for (auto k = begin + b; k < begin + e; ++k) graphs.push_back(&features_[good_[k]].graph);
            part = m.model->score(batch::assemble(graphs));
          }
          std::copy(part.begin(), part.end(), r.scores.begin() + static_cast<std::ptrdiff_t>(b * n_tasks));
        },
        [&](std::size_t k, const char* reason, std::string detail) {
          r.failures.push_back({k, reason, std::move(detail)});
        },
        w_.backoffs());
    m.infer_ns += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count());
  }

  // Record k as the caches hold it: the first featurizer's reject, in featurizer order (as
  // featurize_record decides), or every featurizer's features. A blob that cannot be decoded
  // is damaged: the record is featurized from its SMILES instead, never guessed.
  chem::record_features from_cache(std::size_t k) const {
    chem::record_features r;
    const auto& set = w_.featurizers();
    for (std::size_t f = 0; f < set.size(); ++f) {
      if (!cached_[f][0][k].empty()) {
        r.reason = std::string(cached_[f][0][k]);
        r.detail = std::string(cached_[f][1][k]);
        return r;
      }
    }
    r.ok = true;
    r.dense.resize(set.size());
    r.float_graphs.resize(set.size());
    for (std::size_t f = 0; f < set.size(); ++f) {
      try {
        chem::decode_features(cached_[f][2][k], f, set[f]->tensors(), r);
      } catch (const std::invalid_argument& e) {
        w_.note_not_decoded("the feature cache of " + in_.shard_file + " row " +
                            std::to_string(in_.chunk.row_begin + k) + " cannot be decoded (" +
                            e.what() + ")");
        return chem::featurize_record(smiles_[k], w_.settings().featurize, w_.featurizers());
      }
    }
    return r;
  }

  void collect(pipeline::chunk_outcomes& out) override {
    for (std::size_t i = 0; i < features_.size(); ++i) {
      if (!features_[i].ok) out.reject(i, "featurize", features_[i].reason, features_[i].detail);
    }
    const auto& models = w_.models();
    const bool several = models.size() > 1;
    for (std::size_t t = 0; t < results_.size(); ++t) {  // a record fails if any model failed on it
      const auto begin = ranges_[t % ranges_.size()].first;
      for (auto& f : results_[t].failures) {
        const auto row = good_[begin + f.item];
        if (out.at(row) != pipeline::chunk_outcomes::state::pending) continue;
        out.reject(row, "infer", f.reason,
                   several ? "model '" + models[t / ranges_.size()].name + "': " + f.detail : f.detail);
      }
    }
    std::vector<float> v(w_.plan().names().size());
    for (std::size_t b = 0; b < ranges_.size(); ++b) {
      const auto [begin, end] = ranges_[b];
      for (auto k = begin; k < end; ++k) {
        if (out.at(good_[k]) != pipeline::chunk_outcomes::state::pending) continue;
        std::string non_finite;  // the first model and task whose score is NaN or inf
        for (std::size_t m = 0; m < models.size(); ++m) {
          const auto& tasks = models[m].model->metadata().tasks;
          const auto& scores = results_[m * ranges_.size() + b].scores;
          std::copy_n(&scores[(k - begin) * tasks.size()], tasks.size(), v.begin() + static_cast<std::ptrdiff_t>(models[m].offset));
          for (std::size_t t = 0; t < tasks.size() && non_finite.empty(); ++t) {
            const float x = scores[(k - begin) * tasks.size() + t];
            if (!std::isfinite(x))
              non_finite = "model '" + models[m].name + "' returned " + format_score(x) + " for " + tasks[t];
          }
        }
        if (!non_finite.empty()) {  // named here; the pipeline would only say "the model"
          out.reject(good_[k], "infer", "non_finite_score", non_finite);
          continue;
        }
        w_.plan().derive(v.data());
        out.score(good_[k], v.data());
      }
    }
  }

  std::vector<std::string> write_outputs(const std::string& out_dir, std::uint64_t chunk_id,
                                         const pipeline::chunk_outcomes& out) override {
    if (!w_.settings().all_scores) return {};
    const auto& ids = in_["id"];
    std::string csv = w_.scores_header();
    for (std::size_t i = 0; i < out.n_rows(); ++i) {
      if (out.at(i) != pipeline::chunk_outcomes::state::scored) continue;
      csv += csv_field(in_.shard_file) + ',' + std::to_string(in_.chunk.row_begin + i) + ',' +
             csv_field(ids[i]);
      for (std::size_t t = 0; t < out.n_scores(); ++t) csv += ',' + format_score(out.scores(i)[t]);
      csv += '\n';
    }
    run::write_file_atomically(scores_file(out_dir, chunk_id), csv);
    return {scores_name(chunk_id)};
  }

  std::size_t n_batches() const { return ranges_.size(); }

 private:
  struct failure {
    std::size_t item;  // within the batch
    std::string reason, detail;
  };
  struct batch_result {
    std::vector<float> scores;  // [n, n_tasks of its model]
    std::vector<failure> failures;
  };
  enum class phase { start, featurize, infer };
  screen_workload& w_;
  const string_column& smiles_;
  phase phase_ = phase::start;
  std::vector<chem::record_features> features_;
  std::vector<std::vector<string_column>> cached_;  // [featurizer][reason, detail, features]
  std::vector<std::size_t> good_;  // rows that featurized, in batch order
  std::vector<std::pair<std::size_t, std::size_t>> ranges_;
  std::vector<batch_result> results_;  // [model * n_batches + batch]
};

std::unique_ptr<pipeline::chunk_work> screen_workload::start(pipeline::chunk_input input) {
  return std::make_unique<screen_job>(*this, std::move(input));
}

void screen_workload::add_committed(std::size_t n_batches) {
  n_batches_ += n_batches;
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
