#include "hpcscreen/annotate/annotate.hpp"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/half.hpp"
#include "hpcscreen/core/timing.hpp"
#include "hpcscreen/infer/backoff.hpp"
#include "hpcscreen/infer/bert_model.hpp"
#include "hpcscreen/infer/gnn_model.hpp"
#include "hpcscreen/infer/inference_report.hpp"
#include "hpcscreen/io/annotation_file.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;
using hpcscreen::pipeline::json;

namespace hpcscreen::annotate {

long_policy parse_long_policy(const std::string& text) {
  if (text == "reject") return long_policy::reject;
  if (text == "truncate") return long_policy::truncate;
  if (text == "window") return long_policy::window;
  throw usage_error(
      "the argument ('" + text +
      "') for option '--long-sequences' is invalid: expected reject, truncate or window");
}

void parse_embeddings(const std::string& text, annotate_settings& s) {
  if (text != "per-sequence" && text != "per-residue" && text != "both") {
    throw usage_error("the argument ('" + text +
                      "') for option '--embeddings' is invalid: expected per-sequence, "
                      "per-residue or both");
  }
  s.embed_per_sequence = text != "per-residue";
  s.embed_per_residue = text != "per-sequence";
}

void parse_embedding_dtype(const std::string& text, annotate_settings& s) {
  if (text != "float16" && text != "float32") {
    throw usage_error("the argument ('" + text +
                      "') for option '--embedding-dtype' is invalid: expected float16 or float32");
  }
  s.embed_float16 = text == "float16";
}

namespace {

const char* policy_name(long_policy p) {
  return p == long_policy::reject ? "reject" : p == long_policy::truncate ? "truncate" : "window";
}

const char* embeddings_name(const annotate_settings& s) {
  return s.embed_per_sequence && s.embed_per_residue ? "both"
         : s.embed_per_sequence                      ? "per-sequence"
                                                     : "per-residue";
}

// Appends n floats to `out` as float16 bits or float32, little-endian as in memory.
void append_values(std::vector<std::uint8_t>& out, const float* v, std::size_t n, bool float16) {
  const auto at = out.size();
  out.resize(at + n * (float16 ? 2 : 4));
  if (!float16) {
    std::memcpy(out.data() + at, v, n * 4);
    return;
  }
  for (std::size_t k = 0; k < n; ++k) {
    const auto h = float_to_half(v[k]);
    std::memcpy(out.data() + at + 2 * k, &h, 2);
  }
}

std::string chunk_file_name(std::uint64_t chunk_id) {
  char name[48];
  std::snprintf(name, sizeof name, "chunk-%010llu.h5", static_cast<unsigned long long>(chunk_id));
  return name;
}

// Counters that go to run.json, summed over ranks.
struct token_counts {
  std::uint64_t residues = 0, unknown = 0, mapped = 0, stop_removed = 0;
  std::uint64_t truncated_sequences = 0, truncated_residues = 0, windowed_sequences = 0,
                windows = 0;
  std::uint64_t real_tokens = 0, padded_tokens = 0, batches = 0;
  json to_json() const {
    return {{"residues", residues},
            {"unknown_residues", unknown},
            {"mapped_residues", mapped},
            {"terminal_stops_removed", stop_removed},
            {"truncated_sequences", truncated_sequences},
            {"truncated_residues", truncated_residues},
            {"windowed_sequences", windowed_sequences},
            {"windows", windows},
            {"real_tokens", real_tokens},
            {"padded_tokens", padded_tokens},
            {"batches", batches}};
  }
  token_counts& operator+=(const token_counts& o) {
    for (auto [mine, theirs] : {std::pair{&residues, o.residues},
                                {&unknown, o.unknown},
                                {&mapped, o.mapped},
                                {&stop_removed, o.stop_removed},
                                {&truncated_sequences, o.truncated_sequences},
                                {&truncated_residues, o.truncated_residues},
                                {&windowed_sequences, o.windowed_sequences},
                                {&windows, o.windows},
                                {&real_tokens, o.real_tokens},
                                {&padded_tokens, o.padded_tokens},
                                {&batches, o.batches}})
      *mine += theirs;
    return *this;
  }
};

class annotate_workload : public pipeline::workload {
 public:
  annotate_workload(const annotate_settings& s, int threads)
      : settings_(s),
        threads_(threads),
        model_(s.model_path, s.precision),
        tokenizer_(model_.metadata().tokenizer) {
    infer::configure_threads(threads);
    infer::keep_freed_tensor_memory();
    const auto w = tokenizer_.max_residues();
    overlap_ = settings_.window_overlap >= 0 ? settings_.window_overlap : w / 4;
    if (overlap_ >= w) {
      throw usage_error("--window-overlap " + std::to_string(overlap_) +
                        " must be smaller than the model's window of " + std::to_string(w) +
                        " residues");
    }
    if (settings_.hits && model_.metadata().per_residue) {
      throw usage_error(
          "--top-k ranks per-sequence outputs; this model's output_level is 'residue'");
    }
    check_embedding_options();
  }

  // Per-sequence models score each record with their labels; per-residue outputs stay in the
  // annotation files (no score vector, no hit list).
  pipeline::score_layout scores() const override {
    const auto& m = model_.metadata();
    pipeline::score_layout layout;
    layout.top_k = settings_.top_k;
    layout.ranked = false;
    if (m.per_residue || m.embedding) return layout;
    layout.names = m.labels;
    layout.keys = {{m.rank_label_index(), m.higher_is_better, "hits.csv"}};
    layout.sampled = m.rank_label_index();
    layout.ranked = settings_.hits;
    return layout;
  }
  json identity() const override {
    // Batches decide a record's rounding, so they are part of what a resume must keep.
    json id = {{"model_checksums", json::array({model_.checksum()})},
               {"top_k", settings_.top_k},
               {"long_sequences", policy_name(settings_.long_sequences)},
               {"window_overlap", overlap_},
               {"max_tokens", settings_.budget.max_tokens},
               {"max_sequences", settings_.budget.max_sequences},
               {"length_aware", settings_.length_aware}};
    if (model_.metadata().embedding) {  // a resumed run must not mix what its files hold
      id["embeddings"] = embeddings_name(settings_);
      id["embedding_dtype"] = settings_.embed_float16 ? "float16" : "float32";
    }
    // As in screen: a resumed run keeps its precision; FP32 adds no key (older runs resume).
    if (model_.precision().used != infer::precision::fp32)
      id["precision"] = infer::precision_name(model_.precision().used);
    return id;
  }
  json run_keys() const override {
    const auto path = fs::absolute(settings_.model_path).string();
    return {{"model", {{"path", path}, {"paths", json::array({path})}}}};
  }
  void prepare_run_folder(const std::string& out_dir) const override {
    fs::create_directories(fs::path(out_dir) / "annotations");
  }
  bool has_chunk_outputs(const std::string& out_dir, std::uint64_t chunk_id) const override {
    return pipeline::output_file_present(
        (fs::path(out_dir) / "annotations" / chunk_file_name(chunk_id)).string());
  }

  // Each batch uses all the rank's threads inside LibTorch.
  void on_thread_start() const override { infer::configure_threads(threads_); }
  std::map<std::string, int> stage_split(int featurize_threads, int) const override {
    return {{"tokenize", featurize_threads}};
  }
  std::unique_ptr<pipeline::chunk_work> start(pipeline::chunk_input input) override;
  // A committed chunk's token counts and output write time, for run.json.
  void add_committed(const token_counts& counts, double write_s) {
    counts_ += counts;
    write_s_ += write_s;
  }
  const annotate_settings& settings() const { return settings_; }
  const infer::bert_model& model() const { return model_; }
  infer::bert_model& model() { return model_; }
  const tokenize::tokenizer& tokenizer() const { return tokenizer_; }
  std::int64_t overlap() const { return overlap_; }

  json rank_report() const override {
    return {{"tokens", counts_.to_json()},
            {"inference", infer::inference_report(backoffs_)},
            {"output_write_s", write_s_}};
  }

  json report(const json& summed) const override {
    json section = summed;
    const auto& tokens = summed.at("tokens");
    const auto padded = tokens.at("padded_tokens").get<std::uint64_t>();
    section["padding_fraction"] =
        padded ? 1.0 - double(tokens.at("real_tokens").get<std::uint64_t>()) / double(padded) : 0.0;
    section["model"] = json::parse(model_.metadata().raw_json);
    section["precision"] = infer::precision_report(model_.precision());
    section["config"] = {{"max_tokens", settings_.budget.max_tokens},
                         {"max_sequences", settings_.budget.max_sequences},
                         {"batching", settings_.length_aware ? "length-aware" : "fixed"},
                         {"long_sequences", policy_name(settings_.long_sequences)},
                         {"window_overlap", overlap_}};
    section["versions"] = {{"libtorch", infer::libtorch_version()}};
    if (model_.metadata().embedding) section["config"]["embeddings"] = embeddings_name(settings_);
    return section;
  }

  json write_run_outputs(const pipeline::run_view& run) const override {
    json section = json::object();
    // The map from every record to where its result lives: one file per committed chunk.
    const auto& meta = model_.metadata();
    json files = json::array();
    for (const auto id : run.committed) {
      const auto& c = run.plan.chunks[id];
      const auto path = fs::path(run.out_dir) / "annotations" / chunk_file_name(id);
      if (!fs::exists(path)) continue;  // a chunk of a failed shard has no results
      files.push_back({{"file", "annotations/" + chunk_file_name(id)},
                       {"shard", run.manifest.shards[c.shard].file},
                       {"row_begin", c.row_begin},
                       {"row_end", c.row_end}});
    }
    json manifest = {{"schema", "hpcscreen.annotations_manifest/1"},
                     {"output_level", meta.embedding     ? "embedding"
                                      : meta.per_residue ? "residue"
                                                         : "sequence"},
                     {"labels", meta.labels},
                     {"complete", run.committed.size() == run.plan.chunks.size()},
                     {"files", files}};
    if (meta.embedding) {
      manifest["embeddings"] = {{"per_sequence", settings_.embed_per_sequence},
                                {"per_residue", settings_.embed_per_residue},
                                {"dtype", settings_.embed_float16 ? "float16" : "float32"},
                                {"hidden_size", meta.hidden_size}};
      section["embeddings"] = embedding_report(run.out_dir, files);
    }
    run::write_file_atomically((fs::path(run.out_dir) / "annotations.json").string(),
                               manifest.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
    // A TSV asked for by an earlier attempt is kept whole too: left as it was, it would hold
    // that attempt's records only.
    if (settings_.tsv || fs::exists(fs::path(run.out_dir) / "annotations.tsv"))
      write_tsv(run.out_dir, files);
    return section;
  }

  infer::backoff_counters& backoffs() { return backoffs_; }

 private:
  // An encoder needs --embeddings; --embeddings needs an encoder; an encoder has nothing to rank
  // (--top-k) and no labels to print (--tsv). All are command-line errors, found before any work.
  void check_embedding_options() const {
    const bool wanted = settings_.embed_per_sequence || settings_.embed_per_residue;
    const auto& m = model_.metadata();
    const std::string path = settings_.model_path;
    if (m.embedding && !wanted) {
      throw usage_error("model '" + path +
                        "' is an encoder (output_level 'embedding'): choose what to keep with "
                        "--embeddings per-sequence|per-residue|both");
    }
    if (!m.embedding && wanted) {
      throw usage_error("--embeddings needs an encoder whose hpcscreen.json says output_level "
                        "'embedding'; model '" + path + "' has output_level '" +
                        (m.per_residue ? "residue" : "sequence") +
                        "' (export one with tools/make_encoder.py; see "
                        "data_schemas/bert_contract.md)");
    }
    if (m.embedding && settings_.hits) {
      throw usage_error("--top-k ranks per-sequence scores; an encoder (output_level "
                        "'embedding') has none: there is nothing to rank");
    }
    if (m.embedding && settings_.tsv) {
      throw usage_error("--tsv writes predicted labels; an encoder has none (read embeddings with "
                        "tools/hpcscreen_py/embeddings.py or 'hpcscreen export embeddings')");
    }
  }

  // Shapes and sizes over every committed chunk file of the run (earlier attempts included).
  json embedding_report(const std::string& out_dir, const json& files) const {
    const auto H = model_.metadata().hidden_size;
    const std::uint64_t value_bytes = settings_.embed_float16 ? 2 : 4;
    std::uint64_t records = 0, residues = 0, file_bytes = 0;
    for (const auto& f : files) {
      const auto path = (fs::path(out_dir) / f["file"].get<std::string>()).string();
      const auto e = io::read_embedding_extent(path);
      records += e.n_records;
      residues += e.n_residues;
      file_bytes += fs::file_size(path);
    }
    json levels = json::array();
    json r = {{"dtype", settings_.embed_float16 ? "float16" : "float32"},
              {"hidden_size", H},
              {"records", records},
              {"file_bytes", file_bytes}};
    std::uint64_t payload = 0;
    if (settings_.embed_per_sequence) {
      levels.push_back("per-sequence");
      r["per_sequence_shape"] = {records, H};
      payload += records * static_cast<std::uint64_t>(H) * value_bytes;
    }
    if (settings_.embed_per_residue) {
      levels.push_back("per-residue");
      r["per_residue_shape"] = {residues, H};
      r["bytes_per_residue"] = static_cast<std::uint64_t>(H) * value_bytes;
      payload += residues * static_cast<std::uint64_t>(H) * value_bytes;
    }
    r["levels"] = levels;
    r["payload_bytes"] = payload;  // the values alone, before compression
    return r;
  }

  void write_tsv(const std::string& out_dir, const json& files) const {
    const auto& meta = model_.metadata();
    const auto tmp = run::fresh_temporary((fs::path(out_dir) / "annotations.tsv").string());
    std::ofstream tsv(tmp);
    tsv << "id\tshard\trow\tlength";
    if (meta.per_residue) {
      tsv << "\tprediction\n";
    } else {
      tsv << "\tlabel";
      for (const auto& l : meta.labels) tsv << '\t' << l;
      tsv << '\n';
    }
    for (const auto& f : files) {
      const auto a =
          io::read_annotation_chunk((fs::path(out_dir) / f["file"].get<std::string>()).string());
      const auto C = a.labels.size();
      for (std::size_t i = 0; i < a.rows.size(); ++i) {
        tsv << a.ids[i] << '\t' << a.shard_file << '\t' << a.rows[i] << '\t' << a.lengths[i];
        if (a.per_residue) {
          tsv << '\t';
          for (auto r = a.residue_offsets[i]; r < a.residue_offsets[i + 1]; ++r)
            tsv << a.labels[a.prediction[r]];
        } else {
          const float* v = &a.values[i * C];
          tsv << '\t' << a.labels[static_cast<std::size_t>(std::max_element(v, v + C) - v)];
          for (std::size_t k = 0; k < C; ++k) tsv << '\t' << format_score(v[k]);
        }
        tsv << '\n';
      }
    }
    tsv.close();
    if (!tsv) throw run_error("cannot write '" + tmp + "': " + std::strerror(errno));
    run::publish_file(tmp, (fs::path(out_dir) / "annotations.tsv").string());
  }

  annotate_settings settings_;
  int threads_;
  infer::bert_model model_;
  tokenize::tokenizer tokenizer_;
  std::int64_t overlap_ = 0;
  token_counts counts_;
  double write_s_ = 0;  // writing chunk files (HDF5, compression), this attempt
  infer::backoff_counters backoffs_;
};

// One chunk: tokenize in blocks of sequences, plan length-aware batches of whole sequences and
// windows, then run the batches one at a time (each uses all the rank's intra-op threads) in
// batch order, so that windows are stitched in the same order on any number of ranks.
class annotate_job : public pipeline::chunk_work {
 public:
  static constexpr std::size_t block = 16;  // sequences per tokenize task

  annotate_job(annotate_workload& w, pipeline::chunk_input input)
      : chunk_work(std::move(input)), w_(w), sequences_(in_["sequence"]) {
    enc_.resize(in_.n_rows());
  }
  void on_committed() override { w_.add_committed(counts(), write_s()); }

  pipeline::stage next_stage() override {
    if (phase_ == phase::start) {
      phase_ = phase::tokenize;
      return {"tokenize", (enc_.size() + block - 1) / block, 0};
    }
    if (phase_ == phase::tokenize) {
      phase_ = phase::infer;
      plan();
      failures_.resize(batches_.size());
      return {"infer", batches_.size(), 1};
    }
    return {"done", 0, 0};
  }

  void run_task(std::size_t i) override {
    if (pipeline::stop_requested()) return;  // the conductor abandons the chunk
    if (phase_ == phase::tokenize) {
      const auto end = std::min(enc_.size(), (i + 1) * block);
      for (auto k = i * block; k < end; ++k) enc_[k] = w_.tokenizer().encode(sequences_[k]);
      return;
    }
    const auto& b = batches_[i];
    infer::run_isolating(
        0, b.size(),
        [&](std::size_t begin, std::size_t end) {
          infer_items({b.begin() + static_cast<std::ptrdiff_t>(begin),
                       b.begin() + static_cast<std::ptrdiff_t>(end)});
        },
        [&](std::size_t k, const char* reason, std::string detail) {
          failures_[i].push_back({items_[b[k]].record, reason, std::move(detail)});
        },
        w_.backoffs());
  }

  void collect(pipeline::chunk_outcomes& out) override {
    for (auto& r : rejects_) out.reject(r.record, "tokenize", r.reason, std::move(r.detail));
    for (auto& batch : failures_) {
      for (auto& f : batch) {  // a record with several failed windows is rejected once
        if (out.at(f.record) == pipeline::chunk_outcomes::state::pending)
          out.reject(f.record, "infer", f.reason, std::move(f.detail));
      }
    }
    if (w_.model().metadata().embedding) return collect_embeddings(out);
    const bool per_residue = w_.model().metadata().per_residue;
    for (std::size_t i = 0; i < out_.size(); ++i) {
      if (!annotated_[i] || out.at(i) != pipeline::chunk_outcomes::state::pending) continue;
      if (per_residue) {
        out.score(i, nullptr, out_[i].data(), out_[i].size());
      } else {
        out.score(i, out_[i].data());
      }
    }
  }

  std::vector<std::string> write_outputs(const std::string& out_dir, std::uint64_t chunk_id,
                                         const pipeline::chunk_outcomes& out) override {
    const auto t_write = clock_type::now();
    struct add_on_exit {  // the cost of writing the chunk's outputs, for run.json
      double& total;
      clock_type::time_point t;
      ~add_on_exit() { total += seconds_since(t); }
    } timed{write_s_, t_write};
    const auto name = "annotations/" + chunk_file_name(chunk_id);
    const auto path = (fs::path(out_dir) / name).string();
    if (w_.model().metadata().embedding) {
      write_embeddings(path, out);
      return {name};
    }
    const auto& ids = in_["id"];
    const auto& meta = w_.model().metadata();
    const auto n_labels = static_cast<std::int64_t>(meta.labels.size());
    io::annotation_chunk result;
    result.shard_file = in_.shard_file;
    result.row_begin = in_.chunk.row_begin;
    result.row_end = in_.chunk.row_end;
    result.per_residue = meta.per_residue;
    result.labels = meta.labels;
    for (std::size_t i = 0; i < out_.size(); ++i) {
      if (out.at(i) != pipeline::chunk_outcomes::state::scored) continue;
      result.rows.push_back(in_.chunk.row_begin + i);
      result.ids.push_back(std::string(ids[i]));
      result.lengths.push_back(static_cast<std::uint64_t>(kept_len_[i]));
      result.values.insert(result.values.end(), out_[i].begin(), out_[i].end());
      if (!meta.per_residue) continue;
      for (std::int64_t res = 0; res < kept_len_[i]; ++res) {
        const auto* v = &out_[i][static_cast<std::size_t>(res * n_labels)];
        result.prediction.push_back(static_cast<std::uint8_t>(std::max_element(v, v + n_labels) - v));
      }
      result.residue_offsets.push_back(result.prediction.size());
    }
    io::write_annotation_chunk(path + ".tmp", result);
    run::publish_file(path + ".tmp", path);
    return {name};
  }

  const token_counts& counts() const { return counts_; }
  double write_s() const { return write_s_; }

 private:
  // Work items: whole sequences, or windows of long ones.
  struct item {
    std::size_t record;
    tokenize::window w;
  };

  // Embeddings are checked outputs: a record with a NaN or inf anywhere is rejected
  // (non_finite_output). With float16 the values checked are those stored, so a value beyond
  // float16's range (|x| > 65504) is an inf and rejected too, never written.
  void collect_embeddings(pipeline::chunk_outcomes& out) {
    const auto& s = w_.settings();
    std::vector<float> checked;
    for (std::size_t i = 0; i < out_.size(); ++i) {
      if (!annotated_[i] || out.at(i) != pipeline::chunk_outcomes::state::pending) continue;
      checked.clear();
      if (s.embed_per_sequence) {
        if (s.embed_float16)
          for (auto& v : out_[i]) v = half_to_float(float_to_half(v));
        checked.insert(checked.end(), out_[i].begin(), out_[i].end());
      }
      if (s.embed_per_residue) {
        const auto& b = residue_emb_[i];
        const auto at = checked.size();
        checked.resize(at + b.size() / (s.embed_float16 ? 2 : 4));
        if (s.embed_float16) {
          for (std::size_t k = at; k < checked.size(); ++k) {
            std::uint16_t h;
            std::memcpy(&h, b.data() + 2 * (k - at), 2);
            checked[k] = half_to_float(h);
          }
        } else {
          std::memcpy(checked.data() + at, b.data(), b.size());
        }
      }
      out.score(i, nullptr, checked.data(), checked.size());
    }
  }

  // The chunk's embeddings file at `path`.
  void write_embeddings(const std::string& path, const pipeline::chunk_outcomes& out) {
    const auto& s = w_.settings();
    const auto& ids = in_["id"];
    io::annotation_chunk result;
    result.shard_file = in_.shard_file;
    result.row_begin = in_.chunk.row_begin;
    result.row_end = in_.chunk.row_end;
    result.embedding = true;
    result.per_residue = false;
    result.float16 = s.embed_float16;
    result.hidden_size = static_cast<std::uint64_t>(w_.model().metadata().hidden_size);
    result.has_per_sequence = s.embed_per_sequence;
    result.has_per_residue = s.embed_per_residue;
    for (std::size_t i = 0; i < out_.size(); ++i) {
      if (out.at(i) != pipeline::chunk_outcomes::state::scored) continue;
      result.rows.push_back(in_.chunk.row_begin + i);
      result.ids.push_back(std::string(ids[i]));
      result.lengths.push_back(static_cast<std::uint64_t>(kept_len_[i]));
      if (s.embed_per_sequence)
        append_values(result.per_sequence_bytes, out_[i].data(), out_[i].size(), s.embed_float16);
      if (s.embed_per_residue) {
        auto& b = residue_emb_[i];
        result.per_residue_bytes.insert(result.per_residue_bytes.end(), b.begin(), b.end());
        std::vector<std::uint8_t>().swap(b);  // the chunk's largest buffer: do not hold it twice
        result.residue_offsets.push_back(result.residue_offsets.back() +
                                         static_cast<std::uint64_t>(kept_len_[i]));
      }
    }
    io::write_annotation_chunk(path + ".tmp", result);
    run::publish_file(path + ".tmp", path);
  }

  // One window's (or whole sequence's) hidden states, `hidden` = [window residues, H] starting at
  // its first residue (special and padding tokens are not in it): per residue, the rows it keeps
  // go to their residues; per sequence, its mean over all its residues is added, weighted by the
  // residues it keeps, so a windowed sequence gets the residue-weighted mean of its windows.
  void place_embeddings(const item& it, const float* hidden, std::int64_t H) {
    const auto& s = w_.settings();
    const auto n_window = it.w.end - it.w.begin;
    if (s.embed_per_sequence) {
      std::vector<double> sum(static_cast<std::size_t>(H), 0.0);
      for (std::int64_t p = 0; p < n_window; ++p)
        for (std::int64_t k = 0; k < H; ++k) sum[static_cast<std::size_t>(k)] += hidden[p * H + k];
      const double weight = static_cast<double>(it.w.keep_end - it.w.keep_begin) /
                            static_cast<double>(kept_len_[it.record]) /
                            static_cast<double>(n_window);
      auto& dst = out_[it.record];
      for (std::int64_t k = 0; k < H; ++k)
        dst[static_cast<std::size_t>(k)] +=
            static_cast<float>(weight * sum[static_cast<std::size_t>(k)]);
    }
    if (s.embed_per_residue) {
      const std::size_t row_bytes = static_cast<std::size_t>(H) * (s.embed_float16 ? 2 : 4);
      auto& dst = residue_emb_[it.record];
      std::vector<std::uint8_t> row;
      for (auto res = it.w.keep_begin; res < it.w.keep_end; ++res) {
        row.clear();
        append_values(row, hidden + (res - it.w.begin) * H, static_cast<std::size_t>(H),
                      s.embed_float16);
        std::memcpy(dst.data() + static_cast<std::size_t>(res) * row_bytes, row.data(), row_bytes);
      }
    }
  }

  // After tokenizing: rejects, windows, result buffers and the batches.
  void plan() {
    const auto& s = w_.settings();
    const auto& tok = w_.tokenizer();
    const auto& meta = w_.model().metadata();
    const auto n = enc_.size();
    const auto n_labels = static_cast<std::int64_t>(meta.labels.size());
    annotated_.assign(n, false);
    const auto max_res = tok.max_residues();
    for (std::size_t i = 0; i < n; ++i) {
      const auto& e = enc_[i];
      if (!e.ok) {
        rejects_.push_back({i, e.reason, e.detail});
        continue;
      }
      const auto len = static_cast<std::int64_t>(e.ids.size());
      counts_.residues += static_cast<std::uint64_t>(len);
      counts_.unknown += e.n_unknown;
      counts_.mapped += e.n_mapped;
      counts_.stop_removed += e.stop_removed ? 1 : 0;
      std::vector<tokenize::window> windows;
      if (len <= max_res) {
        windows = {{0, len, 0, len}};
      } else if (s.long_sequences == long_policy::reject) {
        rejects_.push_back({i, "too_long",
                            "sequence of " + std::to_string(len) +
                                " residues exceeds the model's " + std::to_string(max_res) +
                                "; use --long-sequences window (or truncate)"});
        continue;
      } else if (s.long_sequences == long_policy::truncate) {
        windows = {{0, max_res, 0, max_res}};
        ++counts_.truncated_sequences;
        counts_.truncated_residues += static_cast<std::uint64_t>(len - max_res);
      } else {
        windows = tokenize::plan_windows(len, max_res, w_.overlap());
        ++counts_.windowed_sequences;
        counts_.windows += windows.size();
      }
      annotated_[i] = true;
      for (const auto& w : windows) {
        items_.push_back({i, w});
        lengths_.push_back(w.end - w.begin + tok.n_special());
      }
    }

    // Results per record: per residue [len (kept), C], per sequence [C] weighted by residues kept.
    out_.resize(n);
    if (meta.embedding) residue_emb_.resize(n);
    kept_len_.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
      if (!annotated_[i]) continue;
      kept_len_[i] =
          std::min<std::int64_t>(static_cast<std::int64_t>(enc_[i].ids.size()),
                                 s.long_sequences == long_policy::truncate ? max_res : INT64_MAX);
      if (meta.embedding) {
        const auto H = meta.hidden_size;
        out_[i].assign(s.embed_per_sequence ? static_cast<std::size_t>(H) : 0, 0.0f);
        if (s.embed_per_residue)
          residue_emb_[i].assign(
              static_cast<std::size_t>(kept_len_[i] * H) * (s.embed_float16 ? 2 : 4), 0);
        continue;
      }
      out_[i].assign(
          static_cast<std::size_t>(meta.per_residue ? kept_len_[i] * n_labels : n_labels), 0.0f);
    }
    batches_ = s.length_aware ? batch::plan_length_aware(lengths_, s.budget)
                              : batch::plan_fixed(lengths_.size(),
                                                  static_cast<std::size_t>(s.budget.max_sequences));
    const auto pad = batch::padding_of(batches_, lengths_);
    counts_.real_tokens += pad.real_tokens;
    counts_.padded_tokens += pad.padded_tokens;
    counts_.batches += batches_.size();
  }

  // Runs work items b (indices into items_) as one model call and places their outputs.
  void infer_items(const std::vector<std::size_t>& b) {
    const auto& tok = w_.tokenizer();
    const auto& meta = w_.model().metadata();
    const auto n_labels = static_cast<std::int64_t>(meta.labels.size());
    const std::int64_t first = tok.n_special() ? 1 : 0;
    std::int64_t L = 0;
    for (const auto k : b) L = std::max(L, lengths_[k]);
    const auto B = static_cast<std::int64_t>(b.size());
    std::vector<std::int64_t> input(static_cast<std::size_t>(B * L), tok.pad_id()),
        mask(static_cast<std::size_t>(B * L), 0);
    for (std::int64_t r = 0; r < B; ++r) {
      const auto& it = items_[b[static_cast<std::size_t>(r)]];
      const auto& ids = enc_[it.record].ids;
      auto p = static_cast<std::size_t>(r * L);
      if (first) input[p++] = tok.cls_id();
      for (auto k = it.w.begin; k < it.w.end; ++k) input[p++] = ids[static_cast<std::size_t>(k)];
      if (first) input[p++] = tok.sep_id();
      std::fill(mask.begin() + r * L, mask.begin() + static_cast<std::int64_t>(p), 1);
    }
    const auto result = w_.model().run(input, mask, B, L);
    const auto n_out = result.n_labels;  // C, or H for an encoder
    for (std::int64_t r = 0; r < B; ++r) {
      const auto& it = items_[b[static_cast<std::size_t>(r)]];
      if (meta.embedding) {
        place_embeddings(it, &result.values[static_cast<std::size_t>((r * L + first) * n_out)],
                         n_out);
        continue;
      }
      auto& dst = out_[it.record];
      if (meta.per_residue) {
        for (auto res = it.w.keep_begin; res < it.w.keep_end; ++res) {
          const float* src = &result.values[static_cast<std::size_t>(
              ((r * L) + first + (res - it.w.begin)) * n_labels)];
          std::copy(src, src + n_labels, dst.begin() + res * n_labels);
        }
      } else {
        // A windowed sequence's score is the mean over its windows, weighted by residues kept.
        const float weight = static_cast<float>(it.w.keep_end - it.w.keep_begin) /
                             static_cast<float>(kept_len_[it.record]);
        for (std::int64_t k = 0; k < n_labels; ++k)
          dst[static_cast<std::size_t>(k)] +=
              weight * result.values[static_cast<std::size_t>(r * n_labels + k)];
      }
    }
  }

  struct record_reject {
    std::size_t record;
    std::string reason, detail;
  };
  enum class phase { start, tokenize, infer };
  annotate_workload& w_;
  const string_column& sequences_;
  phase phase_ = phase::start;
  std::vector<tokenize::encoded> enc_;
  std::vector<item> items_;
  std::vector<std::int64_t> lengths_;
  std::vector<bool> annotated_;
  std::vector<std::vector<float>> out_;  // per record: [len, C], [C], or per-sequence embedding [H]
  std::vector<std::vector<std::uint8_t>> residue_emb_;  // per record: [len, H] float16 or float32
  std::vector<std::int64_t> kept_len_;
  std::vector<std::vector<std::size_t>> batches_;
  std::vector<record_reject> rejects_;                 // from tokenizing, by record
  std::vector<std::vector<record_reject>> failures_;  // from inference, per batch
  token_counts counts_;
  double write_s_ = 0;
};

std::unique_ptr<pipeline::chunk_work> annotate_workload::start(pipeline::chunk_input input) {
  return std::make_unique<annotate_job>(*this, std::move(input));
}

}  // namespace

std::unique_ptr<pipeline::workload> make_annotate_workload(const annotate_settings& settings,
                                                           int threads) {
  return std::make_unique<annotate_workload>(settings, threads);
}

}  // namespace hpcscreen::annotate
