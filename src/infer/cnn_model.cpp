#include "hpcscreen/infer/cnn_model.hpp"

#include <torch/script.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/infer/model_metadata.hpp"
#include "graph_passes.hpp"
#include "torchscript_archive.hpp"

namespace hpcscreen::infer {

std::size_t cnn_metadata::label_index(const std::string& label) const {
  const auto it = std::find(labels.begin(), labels.end(), label);
  if (it == labels.end()) {
    std::string known;
    for (const auto& l : labels) known += (known.empty() ? "" : ", ") + l;
    throw usage_error("'" + label + "' is not a label of model '" + name + "' (" + known + ")");
  }
  return static_cast<std::size_t>(it - labels.begin());
}

namespace {

cnn_metadata parse_cnn_metadata(const std::string& text, const std::string& path) {
  const std::string where = "model '" + path + "': hpcscreen.json: ";
  cnn_metadata m;
  m.raw_json = text;
  std::string contract;
  try {
    const auto j = nlohmann::json::parse(text);
    contract = j.at("contract").get<std::string>();
    if (contract != image_contract) {
      throw model_error(where + "contract is '" + contract + "', expected '" + image_contract +
                        "' (an image model; data_schemas/image_contract.md)");
    }
    m.name = j.value("name", "");
    m.labels = j.at("labels").get<std::vector<std::string>>();
    m.rank_by = j.value("rank_by", m.labels.empty() ? std::string() : m.labels.front());
    m.higher_is_better = j.value("higher_is_better", true);
    if (j.contains("output")) {
      m.values = j["output"].value("values", m.values);
      m.activation = j["output"].value("activation", m.activation);
    }
    if (!j.contains("preprocess") || !j["preprocess"].is_object())
      throw model_error(where + "'preprocess' (an object) is missing: how images become tensors");
    m.preprocess_json = j["preprocess"].dump();
    m.statically_quantized = j.value("precision", std::string()) == "int8-static";
  } catch (const nlohmann::json::exception& e) {
    throw model_error(where + "malformed or missing field: " + e.what());
  }
  if (m.labels.empty()) throw model_error(where + "'labels' is empty; list the output columns");
  check_unique_names(m.labels, where + "'labels'");
  if (std::find(m.labels.begin(), m.labels.end(), m.rank_by) == m.labels.end())
    throw model_error(where + "rank_by '" + m.rank_by + "' is not one of the labels");
  if (m.values != "probabilities" && m.values != "logits" && m.values != "scores")
    throw model_error(where + "output.values is '" + m.values +
                      "', expected 'probabilities', 'logits' or 'scores'");
  if (m.activation != "sigmoid" && m.activation != "softmax")
    throw model_error(where + "output.activation is '" + m.activation + "', expected 'sigmoid' or 'softmax'");
  return m;
}

}  // namespace

struct cnn_model::impl {
  std::string path;
  std::string checksum;
  torch::jit::Module module;
  cnn_metadata metadata;
  precision_choice precision;

  void check_output(const at::Tensor& t, std::int64_t b) {
    const auto c = static_cast<std::int64_t>(metadata.labels.size());
    if (t.scalar_type() == torch::kFloat && t.dim() == 2 && t.size(0) == b && t.size(1) == c) return;
    std::ostringstream found;
    found << t.sizes() << " " << t.scalar_type();
    throw model_contract_error("model '" + path + "': forward() on a batch of " +
                               std::to_string(b) + " images returned " + found.str() +
                               ", expected float32 [" + std::to_string(b) + ", " +
                               std::to_string(c) + "] (" + std::to_string(c) +
                               " labels in hpcscreen.json)");
  }
};

cnn_model::cnn_model(const std::string& path, const std::string& precision,
                     const std::function<std::array<int, 2>(const cnn_metadata&)>& input_size)
    : impl_(std::make_unique<impl>()) {
  impl_->path = path;
  // The engine first: a statically quantized file packs its weights for the engine in force
  // when it is loaded.
  const auto engine = detail::select_quantized_engine();
  auto a = detail::load_archive(path, "data_schemas/image_contract.md");
  impl_->checksum = a.checksum;
  impl_->metadata = parse_cnn_metadata(a.metadata_json, path);
  const auto [probe_h, probe_w] = input_size(impl_->metadata);
  auto& c = impl_->precision;
  if (impl_->metadata.statically_quantized) {
    // INT8 convolutions need static quantization, done by the export step: run it as it is.
    check_precision_text(precision);
    // A fact of the model, like an FP32 file given --precision int8: exit 1, not a usage error.
    if (precision == "bf16")
      throw precision_error("model '" + path + "' is statically quantized (INT8); --precision " +
                            precision + " needs its FP32 file");
    c.requested = precision;
    c.used = precision::int8;
    c.cpu = detect_cpu_features();
    // oneDNN's INT8 kernels without VNNI add pairs of products in 16 bits, which saturate for
    // weights quantized over the full range (as these are): other numbers, not just slower.
    if (!c.cpu.runs_int8()) {
      throw precision_error(
          "model '" + path +
          "' is statically quantized (INT8), which needs "
          "AVX512_VNNI (or AVX-VNNI, AMX-INT8); this CPU lacks it (" +
          std::string(c.cpu.faked ? "faked by HPCSCREEN_FAKE_CPU_FEATURES" : "CPUID") +
          "): use the model's FP32 file on this node");
    }
    c.reason = "the model file is statically quantized (tools/quantize_image_model.py)";
    c.quantized_engine = engine;
    impl_->module = std::move(a.module);
  } else {
    if (precision == "int8") {
      throw precision_error(
          "model '" + path + "' is FP32: INT8 for convolutions needs static quantization, "
          "calibrated on your images: run tools/quantize_image_model.py and give its output "
          "(or use --precision fp32, bf16 or auto)");
    }
    c = choose_precision(precision, model_family::cnn, detect_cpu_features());
    c.quantized_engine = engine;
    const auto n_inputs = detail::forward_arity(a.module, path);
    if (n_inputs != 1) {
      throw model_error("model '" + path + "': forward() takes " + std::to_string(n_inputs) +
                        " inputs, expected 1: (images float32 [B, 3, H, W])");
    }
    impl_->module = detail::guarded(
        "model '" + path + "': cannot prepare it for " + precision_name(c.used),
        [&] { return detail::prepare_module(a.module, c, /*freeze_fp32=*/true); });
  }
  std::vector<float> probe(std::size_t(2) * 3 * probe_h * probe_w, 0.0f);
  for (std::size_t i = 0; i < probe.size(); ++i) probe[i] = float(i % 7) * 0.1f - 0.3f;
  detail::probe("model '" + path + "' failed on a probe batch of 2 images of " +
                    std::to_string(probe_h) + " x " + std::to_string(probe_w),
                [&] { run(probe.data(), 2, probe_h, probe_w); });
}

cnn_model::~cnn_model() = default;
const std::string& cnn_model::checksum() const {
  return impl_->checksum;
}

const cnn_metadata& cnn_model::metadata() const { return impl_->metadata; }
const precision_choice& cnn_model::precision() const { return impl_->precision; }

std::vector<float> cnn_model::run(const float* inputs, std::int64_t batch, std::int64_t h,
                                  std::int64_t w) {
  c10::InferenceMode guard;
  auto x = torch::from_blob(const_cast<float*>(inputs), {batch, 3, h, w}, torch::kFloat);
  if (impl_->precision.used == precision::bf16) x = x.to(torch::kBFloat16);
  auto out = detail::guarded(
      "model '" + impl_->path + "' failed on a batch of " + std::to_string(batch) + " images",
      [&] {
        auto r = impl_->module.forward({x});
        if (r.isTuple() && !r.toTupleRef().elements().empty()) r = r.toTupleRef().elements()[0];
        if (!r.isTensor()) {
          throw model_contract_error("model '" + impl_->path + "': forward() returned " +
                                     r.tagKind() + ", expected a float32 tensor");
        }
        return detail::to_float32(r.toTensor(), impl_->precision);
      });
  impl_->check_output(out, batch);
  out = out.contiguous();
  return {out.data_ptr<float>(), out.data_ptr<float>() + out.numel()};
}

}  // namespace hpcscreen::infer
