#include "hpcscreen/infer/bert_model.hpp"

#include <torch/script.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/infer/model_metadata.hpp"
#include "graph_passes.hpp"
#include "torchscript_archive.hpp"

namespace hpcscreen::infer {

std::size_t bert_metadata::rank_label_index() const {
  const auto it = std::find(labels.begin(), labels.end(), rank_by);
  HPCSCREEN_ASSERT(it != labels.end());
  return static_cast<std::size_t>(it - labels.begin());
}

namespace {
bert_metadata parse_bert_metadata(const std::string& text, const std::string& path) {
  const std::string where = "model '" + path + "': hpcscreen.json: ";
  bert_metadata m;
  m.raw_json = text;
  std::string contract, kind, level;
  try {
    const auto j = nlohmann::json::parse(text);
    contract = j.at("contract").get<std::string>();
    kind = j.at("kind").get<std::string>();
    if (kind != "bert")
      throw model_error(where + "kind is '" + kind + "', but 'annotate' needs kind 'bert'");
    m.name = j.value("name", "");
    level = j.at("output_level").get<std::string>();
    // An encoder has no output columns to name.
    if (level != "embedding" || j.contains("labels"))
      m.labels = j.at("labels").get<std::vector<std::string>>();
    m.rank_by = j.value("rank_by", m.labels.empty() ? std::string() : m.labels.front());
    m.higher_is_better = j.value("higher_is_better", true);
  } catch (const nlohmann::json::exception& e) {
    throw model_error(where + "malformed or missing field: " + e.what());
  }
  if (contract != bert_contract)
    throw model_error(where + "contract is '" + contract + "', expected '" + bert_contract + "'");
  if (level != "residue" && level != "sequence" && level != "embedding") {
    throw model_error(where + "output_level is '" + level +
                      "', expected 'residue', 'sequence' or 'embedding'");
  }
  m.per_residue = level == "residue";
  m.embedding = level == "embedding";
  if (m.embedding) {
    m.labels.clear();
    m.rank_by.clear();
    m.tokenizer = tokenize::parse_tokenizer_config(text, path);
    return m;
  }
  if (m.labels.empty()) throw model_error(where + "'labels' is empty; list the output columns");
  check_unique_names(m.labels, where + "'labels'");
  if (std::find(m.labels.begin(), m.labels.end(), m.rank_by) == m.labels.end()) {
    throw model_error(where + "rank_by '" + m.rank_by + "' is not one of the labels");
  }
  m.tokenizer = tokenize::parse_tokenizer_config(text, path);
  return m;
}
}  // namespace

struct bert_model::impl {
  std::string path;
  std::string checksum;
  torch::jit::Module module;
  bert_metadata metadata;
  precision_choice precision;

  at::Tensor forward(at::Tensor ids, at::Tensor mask) {
    auto out = module.forward({ids, mask});
    // A Hugging Face model traced with torchscript=True returns a tuple: logits first.
    if (out.isTuple() && !out.toTupleRef().elements().empty()) out = out.toTupleRef().elements()[0];
    if (!out.isTensor()) {
      throw model_error("model '" + path + "': forward() returned " + out.tagKind() +
                        ", expected a float32 tensor");
    }
    return detail::to_float32(out.toTensor(), precision);
  }

  // The probe batch fixes an encoder's H; every later batch must return the same.
  void check_embedding(const at::Tensor& t, std::int64_t b, std::int64_t l) {
    const auto h = metadata.hidden_size;
    if (t.scalar_type() == torch::kFloat && t.dim() == 3 && t.size(0) == b && t.size(1) == l &&
        t.size(2) > 0 && (h == 0 || t.size(2) == h)) {
      if (h == 0) metadata.hidden_size = t.size(2);
      return;
    }
    std::ostringstream found;
    found << t.sizes() << " " << t.scalar_type();
    throw model_contract_error("model '" + path + "': forward() on a " +
                      (h == 0 ? std::string("probe batch") : "batch") + " returned " + found.str() +
                      ", expected float32 [" + std::to_string(b) + ", " + std::to_string(l) + ", " +
                      (h == 0 ? std::string("H") : std::to_string(h)) +
                      "] (output_level 'embedding': the last hidden states, one H-vector per "
                      "token, as a Hugging Face BertModel returns first)");
  }

  void check_output(const at::Tensor& t, std::int64_t b, std::int64_t l) {
    if (metadata.embedding) return check_embedding(t, b, l);
    const auto c = static_cast<std::int64_t>(metadata.labels.size());
    const bool ok =
        t.scalar_type() == torch::kFloat &&
        (metadata.per_residue ? (t.dim() == 3 && t.size(0) == b && t.size(1) == l && t.size(2) == c)
                              : (t.dim() == 2 && t.size(0) == b && t.size(1) == c));
    if (!ok) {
      std::ostringstream found;
      found << t.sizes() << " " << t.scalar_type();
      const auto expected =
          metadata.per_residue
              ? "[" + std::to_string(b) + ", " + std::to_string(l) + ", " + std::to_string(c) + "]"
              : "[" + std::to_string(b) + ", " + std::to_string(c) + "]";
      throw model_contract_error("model '" + path + "': forward() on a batch of " +
                                 std::to_string(b) + " sequences returned " + found.str() +
                        ", expected float32 " + expected + " (output_level '" +
                        (metadata.per_residue ? "residue" : "sequence") + "', " +
                        std::to_string(c) + " labels in hpcscreen.json)");
    }
  }
};

bert_model::bert_model(const std::string& path, const std::string& precision)
    : impl_(std::make_unique<impl>()) {
  impl_->path = path;
  impl_->precision = choose_precision(precision, model_family::bert, detect_cpu_features());
  impl_->precision.quantized_engine = detail::select_quantized_engine();
  auto a = detail::load_archive(path, "data_schemas/bert_contract.md");
  impl_->checksum = a.checksum;
  impl_->module = std::move(a.module);
  impl_->metadata = parse_bert_metadata(a.metadata_json, path);
  tokenize::tokenizer tok(impl_->metadata.tokenizer);  // checks the special tokens exist
  const auto n_inputs = detail::forward_arity(impl_->module, path);
  if (n_inputs != 2) {
    throw model_error("model '" + path + "': forward() takes " + std::to_string(n_inputs) +
                      " inputs, expected 2: (input_ids int64[B,L], attention_mask int64[B,L])");
  }
  impl_->module = detail::guarded(
      "model '" + path + "': cannot prepare it for " + precision_name(impl_->precision.used),
      [&] { return detail::prepare_module(impl_->module, impl_->precision); });
  // Two sequences, 3 and 5 residues: [CLS] x x x [SEP] [PAD] [PAD] and [CLS] x x x x x [SEP].
  const std::int64_t l = 5 + tok.n_special();
  std::vector<std::int64_t> ids(2 * l, tok.pad_id()), mask(2 * l, 0);
  const auto residue = tok.encode("A").ok ? tok.encode("A").ids[0] : tok.pad_id();
  for (int b = 0; b < 2; ++b) {
    const std::int64_t n = b == 0 ? 3 : 5;
    std::int64_t p = b * l;
    if (tok.n_special()) ids[p++] = tok.cls_id();
    for (std::int64_t i = 0; i < n; ++i) ids[p++] = residue;
    if (tok.n_special()) ids[p++] = tok.sep_id();
    std::fill(mask.begin() + b * l, mask.begin() + p, 1);
  }
  detail::probe("model '" + path + "' failed on a probe batch of 2 sequences",
                  [&] { run(ids, mask, 2, l); });
}

bert_model::~bert_model() = default;
const std::string& bert_model::checksum() const {
  return impl_->checksum;
}

const bert_metadata& bert_model::metadata() const {
  return impl_->metadata;
}
const precision_choice& bert_model::precision() const {
  return impl_->precision;
}

bert_output bert_model::run(const std::vector<std::int64_t>& input_ids,
                            const std::vector<std::int64_t>& attention_mask, std::int64_t batch,
                            std::int64_t length) {
  c10::InferenceMode guard;
  auto ids =
      torch::from_blob(const_cast<std::int64_t*>(input_ids.data()), {batch, length}, torch::kLong);
  auto mask = torch::from_blob(const_cast<std::int64_t*>(attention_mask.data()), {batch, length},
                               torch::kLong);
  auto out = detail::guarded("model '" + impl_->path + "' failed on a batch of " +
                                 std::to_string(batch) + " x " + std::to_string(length) + " tokens",
                             [&] { return impl_->forward(ids, mask); });
  impl_->check_output(out, batch, length);
  out = out.contiguous();
  bert_output r;
  r.batch = batch;
  r.length = length;
  r.n_labels = impl_->metadata.embedding ? impl_->metadata.hidden_size
                                         : static_cast<std::int64_t>(impl_->metadata.labels.size());
  r.values.assign(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
  return r;
}

}  // namespace hpcscreen::infer
