#pragma once
// A user's TorchScript BERT behind the hpcscreen.bert/1 contract (data_schemas/bert_contract.md):
// forward(input_ids int64[B,L], attention_mask int64[B,L]) -> float32 [B,L,C] or [B,C].
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hpcscreen/infer/precision.hpp"
#include "hpcscreen/tokenize/tokenizer.hpp"

namespace hpcscreen::infer {

inline constexpr const char* bert_contract = "hpcscreen.bert/1";

struct bert_metadata {
  std::string name;
  bool per_residue = true;  // "output_level": "residue" | "sequence"
  std::vector<std::string> labels;
  std::string rank_by;  // sequence-level models: the label hits are ranked by
  bool higher_is_better = true;
  tokenize::tokenizer_config tokenizer;
  std::string raw_json;
  std::size_t rank_label_index() const;
};

struct bert_output {
  std::vector<float> values;  // [B, L, C] (per residue) or [B, C], row-major
  std::int64_t batch = 0, length = 0, n_labels = 0;
};

class bert_model {
 public:
  // Loads, reads hpcscreen.json and probes forward() on two sequences of different lengths.
  // `precision` (fp32, bf16, int8, auto) as for gnn_model: checked, converted once, float32 out.
  explicit bert_model(const std::string& path, const std::string& precision = "fp32");
  ~bert_model();
  bert_model(const bert_model&) = delete;
  bert_model& operator=(const bert_model&) = delete;

  const bert_metadata& metadata() const;
  const precision_choice& precision() const;
  // input_ids and attention_mask: [batch, length] row-major.
  bert_output run(const std::vector<std::int64_t>& input_ids,
                  const std::vector<std::int64_t>& attention_mask, std::int64_t batch,
                  std::int64_t length);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hpcscreen::infer
