#pragma once
// A user's TorchScript BERT behind the hpcscreen.bert/1 contract (data_schemas/bert_contract.md):
// forward(input_ids int64[B,L], attention_mask int64[B,L]) -> float32 [B,L,C] or [B,C], or for an
// encoder ("output_level": "embedding") its last hidden states float32 [B,L,H].
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
  bool embedding = false;   // "output_level": "embedding" (per_residue is then false)
  std::int64_t hidden_size = 0;  // embedding: H, as the probe batch found it
  std::vector<std::string> labels;  // empty for an encoder
  std::string rank_by;  // sequence-level models: the label hits are ranked by
  bool higher_is_better = true;
  tokenize::tokenizer_config tokenizer;
  std::string raw_json;
  std::size_t rank_label_index() const;
};

struct bert_output {
  std::vector<float> values;  // [B, L, C] (per residue), [B, C], or [B, L, H] (embedding)
  std::int64_t batch = 0, length = 0, n_labels = 0;  // n_labels: C, or H for an encoder
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
  // The model file's checksum, of the bytes loaded (core/checksum.hpp's form).
  const std::string& checksum() const;
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
