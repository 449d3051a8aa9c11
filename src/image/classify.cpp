// `hpcscreen classify`: image rows → decode + preprocess (stage "decode", one task per image)
// → batches → TorchScript CNN (stage "infer", all the rank's threads per batch) → C
// probabilities per image, kept for every image (RUN/predictions/, predictions.csv) and ranked
// into hit lists by label.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "hpcscreen/core/cli.hpp"
#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/image/decode.hpp"
#include "hpcscreen/image/image.hpp"
#include "hpcscreen/image/preprocess.hpp"
#include "hpcscreen/infer/backoff.hpp"
#include "hpcscreen/infer/cnn_model.hpp"
#include "hpcscreen/infer/inference_report.hpp"
#include "hpcscreen/infer/memory_tier.hpp"
#include "hpcscreen/infer/runtime.hpp"
#include "hpcscreen/io/annotation_file.hpp"
#include "hpcscreen/pipeline/pipeline.hpp"
#include "hpcscreen/pipeline/registry.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::image {
namespace {

namespace po = boost::program_options;
using json = nlohmann::json;

struct classify_settings {
  std::string model_path;
  std::size_t top_k = 100;
  std::vector<std::string> rank_by;  // labels; empty: the model's rank_by
  std::string precision = "fp32";
  int batch_images = 16;
  std::uint64_t max_pixels = default_max_pixels;
};

std::string chunk_file_name(std::uint64_t chunk_id) {
  char name[64];
  std::snprintf(name, sizeof name, "chunk-%08llu.csv", static_cast<unsigned long long>(chunk_id));
  return name;
}

class classify_workload;

class classify_job : public pipeline::chunk_work {
 public:
  classify_job(classify_workload& w, pipeline::chunk_input input);
  pipeline::stage next_stage() override;
  void run_task(std::size_t i) override;
  void collect(pipeline::chunk_outcomes& outcomes) override;
  std::vector<std::string> write_outputs(const std::string& out_dir, std::uint64_t chunk_id,
                                         const pipeline::chunk_outcomes& outcomes) override;
  std::size_t n_batches() const { return batches_.size(); }
  void on_committed() override;

 private:
  void decode_one(std::size_t row);
  void infer_batch(std::size_t b);

  classify_workload& w_;
  int phase_ = 0;
  std::vector<std::vector<std::uint8_t>> crops_;  // per row: n_crops x [3, h, w]
  std::vector<pipeline::chunk_outcomes::rejection> rejects_;  // per row; empty reason: decoded
  std::vector<std::pair<std::size_t, std::size_t>> batches_;  // ranges of good_
  std::vector<std::size_t> good_;                              // rows that decoded, in order
  std::vector<float> probs_;                                   // [rows, C]
  std::vector<char> inferred_;                                 // per row
  std::mutex reject_mutex_;
};

class classify_workload : public pipeline::workload {
 public:
  classify_workload(const classify_settings& s, int threads)
      : s_(s),
        threads_(threads),
        model_(s.model_path, s.precision, [this](const infer::cnn_metadata& m) {
          spec_ = preprocess_spec::from_json(m.preprocess_json);
          return spec_.crop == "none" ? std::array<int, 2>{spec_.resize_h, spec_.resize_w}
                                      : std::array<int, 2>{spec_.crop_size, spec_.crop_size};
        }) {
    const auto& m = model_.metadata();
    for (const auto& label : s_.rank_by.empty() ? std::vector<std::string>{m.rank_by} : s_.rank_by)
      keys_.push_back({m.label_index(label), m.higher_is_better, {}});  // file: name_hit_files
    input_h_ = spec_.crop == "none" ? spec_.resize_h : spec_.crop_size;
    input_w_ = spec_.crop == "none" ? spec_.resize_w : spec_.crop_size;
    infer::configure_threads(threads_);
    infer::keep_freed_tensor_memory();
  }

  pipeline::score_layout scores() const override {
    pipeline::score_layout l;
    l.names = model_.metadata().labels;
    l.keys = keys_;
    pipeline::name_hit_files(l.keys, l.names);
    l.sampled = l.keys.front().index;  // the histogram shows the first --rank-by
    l.top_k = s_.top_k;
    return l;
  }
  json identity() const override {
    json id = {{"model_checksums", json::array({model_.checksum()})},
               {"top_k", s_.top_k},
               {"rank_by", s_.rank_by},
               {"batch_images", s_.batch_images},
               {"max_pixels", s_.max_pixels}};
    if (model_.precision().used != infer::precision::fp32)
      id["precision"] = infer::precision_name(model_.precision().used);
    return id;
  }
  json run_keys() const override {
    const auto path = fs::absolute(s_.model_path).string();
    return {{"model", {{"path", path}, {"paths", json::array({path})}}}};
  }
  void prepare_run_folder(const std::string& out_dir) const override {
    fs::create_directories(fs::path(out_dir) / "predictions");
  }
  bool has_chunk_outputs(const std::string& out_dir, std::uint64_t chunk_id) const override {
    const auto csv = fs::path(out_dir) / "predictions" / chunk_file_name(chunk_id);
    return pipeline::output_file_present(csv.string()) &&
           pipeline::output_file_present(fs::path(csv).replace_extension(".h5").string());
  }
  // Each batch uses all the rank's threads inside LibTorch; decoding takes the others' turns.
  void on_thread_start() const override { infer::configure_threads(threads_); }
  std::map<std::string, int> stage_split(int featurize_threads, int) const override {
    return {{"decode", featurize_threads}};
  }
  std::unique_ptr<pipeline::chunk_work> start(pipeline::chunk_input input) override {
    return std::make_unique<classify_job>(*this, std::move(input));
  }
  void add_committed(std::size_t n_batches) { n_batches_ += n_batches; }
  json rank_report() const override {
    auto j = infer::inference_report(backoffs_);
    j["batches"] = n_batches_;
    j["images_decoded"] = n_decoded_.load();
    return j;
  }
  json report(const json& summed) const override {
    json section = summed;
    section["model"] = json::parse(model_.metadata().raw_json);
    section["precision"] = infer::precision_report(model_.precision());
    section["preprocess"] = json::parse(spec_.describe());
    section["config"] = {{"batch_images", s_.batch_images}, {"max_pixels", s_.max_pixels}};
    section["versions"] = {{"libtorch", infer::libtorch_version()},
                           {"decoders", decoder_versions()}};
    return section;
  }
  // predictions.csv: every committed chunk's rows, in library order.
  json write_run_outputs(const pipeline::run_view& run) const override {
    const auto dir = fs::path(run.out_dir);
    const auto tmp = run::fresh_temporary((dir / "predictions.csv").string());
    std::ofstream out(tmp, std::ios::binary);
    if (!out) throw error("cannot write '" + tmp + "': " + std::strerror(errno));
    out << predictions_header(run.manifest.fields);
    std::uint64_t rows = 0;
    for (const auto id : run.committed) {
      // A chunk of a failed shard has no predictions; a file that is not a plain file (a FIFO
      // would block here) is not read: the host names the chunk's missing files.
      const auto chunk = dir / "predictions" / chunk_file_name(id);
      if (!fs::is_regular_file(chunk)) continue;
      std::ifstream in(chunk, std::ios::binary);
      if (!in) continue;
      std::string line;
      std::getline(in, line);  // its header
      while (std::getline(in, line)) {
        out << line << '\n';
        ++rows;
      }
    }
    out.close();
    if (!out) throw error("cannot write '" + tmp + "': " + std::strerror(errno));
    run::publish_file(tmp, (dir / "predictions.csv").string());
    return {{"predictions", {{"file", "predictions.csv"}, {"rows", rows}}}};
  }

  std::string predictions_header(const std::vector<std::string>& fields) const {
    std::string h = "shard,row,id";
    for (const auto& f : kept_columns(fields)) h += ',' + csv_field(f);
    for (const auto& l : model_.metadata().labels) h += ',' + csv_field(l);
    return h + '\n';
  }
  static std::vector<std::string> kept_columns(const std::vector<std::string>& fields) {
    std::vector<std::string> kept;
    const auto& own = image_fields();
    for (const auto& f : fields) {
      if (std::find(own.begin(), own.end(), f) == own.end()) kept.push_back(f);
    }
    return kept;
  }

  const classify_settings& settings() const { return s_; }
  const preprocess_spec& spec() const { return spec_; }
  infer::cnn_model& model() { return model_; }
  infer::backoff_counters& backoffs() { return backoffs_; }
  int input_h() const { return input_h_; }
  int input_w() const { return input_w_; }
  std::atomic<std::uint64_t> n_decoded_{0};

 private:
  classify_settings s_;
  int threads_;
  preprocess_spec spec_;
  infer::cnn_model model_;
  std::vector<pipeline::rank_key> keys_;
  int input_h_ = 0, input_w_ = 0;
  std::uint64_t n_batches_ = 0;
  mutable infer::backoff_counters backoffs_;
};

classify_job::classify_job(classify_workload& w, pipeline::chunk_input input)
    : pipeline::chunk_work(std::move(input)),
      w_(w),
      crops_(in_.n_rows()),
      rejects_(in_.n_rows()),
      probs_(in_.n_rows() * w.model().metadata().labels.size(), 0.0f),
      inferred_(in_.n_rows(), 0) {}

void classify_job::on_committed() { w_.add_committed(batches_.size()); }

pipeline::stage classify_job::next_stage() {
  if (phase_ == 0) {
    phase_ = 1;
    return {"decode", in_.n_rows(), 0};
  }
  if (phase_ == 1) {
    phase_ = 2;
    for (std::size_t i = 0; i < in_.n_rows(); ++i) {
      if (rejects_[i].reason.empty()) good_.push_back(i);
    }
    const auto b = static_cast<std::size_t>(w_.settings().batch_images);
    for (std::size_t begin = 0; begin < good_.size(); begin += b)
      batches_.push_back({begin, std::min(good_.size(), begin + b)});
    return {"infer", batches_.size(), 1};
  }
  return {"done", 0, 0};
}

void classify_job::run_task(std::size_t i) {
  if (pipeline::stop_requested()) return;
  if (phase_ == 1) {
    decode_one(i);
  } else {
    infer_batch(i);
  }
}

void classify_job::decode_one(std::size_t row) {
  const auto bytes = in_["bytes"][row];
  try {
    const auto img = decode(bytes, w_.settings().max_pixels);
    int h = 0, w = 0;
    // The resize's output is bounded too (a thin strip grows to gigabytes), by the decoder's
    // default limit where --max-pixels is lower.
    crop_u8(img, w_.spec(), std::max(w_.settings().max_pixels, default_max_pixels), crops_[row], h,
            w);
    ++w_.n_decoded_;
  } catch (const image_reject& r) {
    rejects_[row] = {"decode", r.reason(), r.what()};
  } catch (const std::bad_alloc&) {
    rejects_[row] = {"decode", "too_large_for_memory", "the decoded image does not fit in memory"};
  }
}

void classify_job::infer_batch(std::size_t b) {
  auto& model = w_.model();
  const auto& spec = w_.spec();
  const std::size_t n_labels = model.metadata().labels.size();
  const std::size_t n_crops = static_cast<std::size_t>(spec.n_crops());
  const int h = w_.input_h(), wd = w_.input_w();
  const std::size_t per_crop = std::size_t(3) * h * wd;
  const bool logits = model.metadata().values == "logits";
  const bool softmax = model.metadata().activation == "softmax";
  const bool raw_scores = model.metadata().values == "scores";
  const auto [first, last] = batches_[b];
  std::vector<float> input;
  auto run = [&](std::size_t begin, std::size_t end) {
    const std::size_t n = end - begin;
    input.resize(n * n_crops * per_crop);
    for (std::size_t k = 0; k < n; ++k) {
      const auto row = good_[first + begin + k];
      normalize(crops_[row].data(), n_crops, h, wd, spec, input.data() + k * n_crops * per_crop);
    }
    const auto out = model.run(input.data(), std::int64_t(n * n_crops), h, wd);
    for (std::size_t k = 0; k < n; ++k) {
      const auto row = good_[first + begin + k];
      float* dst = &probs_[row * n_labels];
      std::fill(dst, dst + n_labels, 0.0f);
      for (std::size_t c = 0; c < n_crops; ++c) {
        const float* o = &out[(k * n_crops + c) * n_labels];
        std::vector<float> p(o, o + n_labels);
        if (logits && softmax) {
          const float m = *std::max_element(p.begin(), p.end());
          double sum = 0;
          for (auto& v : p) sum += (v = std::exp(v - m));
          for (auto& v : p) v = static_cast<float>(v / sum);
        } else if (logits) {
          for (auto& v : p) v = 1.0f / (1.0f + std::exp(-v));
        }
        // Ten crops: the mean of the crops' probabilities, as CheXNet's evaluation does.
        for (std::size_t l = 0; l < n_labels; ++l) dst[l] += p[l];
      }
      if (n_crops > 1) {
        for (std::size_t l = 0; l < n_labels; ++l) dst[l] /= float(n_crops);
      }
      // A model that says it gives probabilities must: anything outside [0, 1] (NaN is left to
      // the host's non-finite check) is a reject, never written as a probability.
      for (std::size_t l = 0; l < n_labels && !raw_scores; ++l) {
        if (dst[l] < 0.0f || dst[l] > 1.0f) {
          std::lock_guard<std::mutex> lock(reject_mutex_);
          rejects_[row] = {"infer", "not_a_probability",
                           "label '" + model.metadata().labels[l] + "' is " + format_score(dst[l]) +
                               ", outside [0, 1] (hpcscreen.json says output.values " +
                               model.metadata().values + ")"};
          break;
        }
      }
      inferred_[row] = 1;
    }
  };
  auto fail = [&](std::size_t i, const std::string& reason, const std::string& detail) {
    std::lock_guard<std::mutex> lock(reject_mutex_);
    rejects_[good_[first + i]] = {"infer", reason, detail};
  };
  infer::run_isolating(0, last - first, run, fail, w_.backoffs());
  for (std::size_t k = first; k < last; ++k) crops_[good_[k]] = {};  // bounded memory
}

void classify_job::collect(pipeline::chunk_outcomes& outcomes) {
  for (std::size_t i = 0; i < in_.n_rows(); ++i) {
    if (!rejects_[i].reason.empty()) {
      outcomes.reject(i, rejects_[i].stage, rejects_[i].reason, rejects_[i].detail);
    } else if (inferred_[i]) {
      outcomes.score(i, &probs_[i * w_.model().metadata().labels.size()]);
    } else {
      outcomes.reject(i, "infer", "not_inferred", "the batch holding this image was not run");
    }
  }
}

std::vector<std::string> classify_job::write_outputs(const std::string& out_dir,
                                                     std::uint64_t chunk_id,
                                                     const pipeline::chunk_outcomes& outcomes) {
  const auto kept = classify_workload::kept_columns(in_.names);
  std::string csv = w_.predictions_header(in_.names);
  const auto& ids = in_["id"];
  const std::size_t n_labels = w_.model().metadata().labels.size();
  for (std::size_t i = 0; i < in_.n_rows(); ++i) {
    if (outcomes.at(i) != pipeline::chunk_outcomes::state::scored) continue;
    csv += csv_field(in_.shard_file) + ',' + std::to_string(in_.chunk.row_begin + i) + ',' +
           csv_field(std::string(ids[i]));
    for (const auto& k : kept) csv += ',' + csv_field(std::string(in_[k][i]));
    const float* p = outcomes.scores(i);
    for (std::size_t l = 0; l < n_labels; ++l) csv += ',' + format_score(p[l]);
    csv += '\n';
  }
  const auto csv_name = "predictions/" + chunk_file_name(chunk_id);
  run::write_file_atomically((fs::path(out_dir) / csv_name).string(), csv);
  // The same rows as HDF5 for programs: an annotation chunk file at output level "sequence"
  // (data_schemas/annotations.md: /row, /id, /scores [n, C], labels).
  io::annotation_chunk h5;
  h5.shard_file = in_.shard_file;
  h5.row_begin = in_.chunk.row_begin;
  h5.row_end = in_.chunk.row_end;
  h5.per_residue = false;
  h5.labels = w_.model().metadata().labels;
  for (std::size_t i = 0; i < in_.n_rows(); ++i) {
    if (outcomes.at(i) != pipeline::chunk_outcomes::state::scored) continue;
    h5.rows.push_back(in_.chunk.row_begin + i);
    h5.ids.push_back(ids[i]);
    h5.lengths.push_back(0);
    h5.values.insert(h5.values.end(), outcomes.scores(i), outcomes.scores(i) + n_labels);
  }
  const auto h5_name = fs::path(csv_name).replace_extension(".h5").string();
  const auto h5_path = (fs::path(out_dir) / h5_name).string();
  io::write_annotation_chunk(h5_path + ".tmp", h5);
  run::publish_file(h5_path + ".tmp", h5_path);
  return {csv_name, h5_name};
}

class classify_command : public pipeline::workload_command {
 public:
  void add_options(po::options_description& desc) override {
    desc.add_options()("model,m", po::value(&models_)->required()->composing(),
                       "TorchScript image model with hpcscreen.json (data_schemas/image_contract.md)")(
        "top-k,k", cli::in_range(s_.top_k, "top-k", 1, cli::int32_max), "images per hit list")(
        "rank-by", po::value(&s_.rank_by)->composing(),
        "LABEL to rank hits.csv by (default: the model's rank_by); each further --rank-by "
        "writes hits-LABEL.csv");
    infer::add_precision_option(desc, s_.precision);
    desc.add_options()(
        "batch-images", cli::in_range(s_.batch_images, "batch-images", 1, 4096),
        "images per inference batch (each of ten crops counts as one image to the model)")(
        "max-pixels", cli::in_range(s_.max_pixels, "max-pixels", 1, 1LL << 40),
        "larger images are rejects, refused from the header before decoding");
  }
  void check(const po::variables_map&) override {
    if (models_.size() != 1) throw usage_error("classify takes exactly one --model");
    s_.model_path = models_.front();
  }
  std::unique_ptr<pipeline::workload> make(int threads) override {
    return std::make_unique<classify_workload>(s_, threads);
  }

 private:
  classify_settings s_;
  std::vector<std::string> models_;
};

}  // namespace

void register_classify() {
  pipeline::workload_kind k{"classify", image_library_kind, "classified",
                            "classify an image library with a TorchScript CNN (CheXNet-class); "
                            "every result kept",
                            "usage: hpcscreen classify --library DIR --model M.pt --out RUN",
                            [] { return std::make_unique<classify_command>(); }};
  k.default_chunk_rows = 256;  // an image is large: a chunk holds its decoded crops at once
  pipeline::register_workload(std::move(k));
}

}  // namespace hpcscreen::image
