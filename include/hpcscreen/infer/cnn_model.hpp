#pragma once
// A user's TorchScript image model behind the hpcscreen.image/1 contract
// (data_schemas/image_contract.md): forward(float32 [B, 3, H, W]) -> float32 [B, C].
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hpcscreen/infer/precision.hpp"

namespace hpcscreen::infer {

inline constexpr const char* image_contract = "hpcscreen.image/1";

struct cnn_metadata {
  std::string name;
  std::vector<std::string> labels;
  std::string rank_by;
  bool higher_is_better = true;
  std::string values = "probabilities";  // "probabilities", "logits" or "scores" (kept as they are)
  std::string activation = "sigmoid";    // how logits map to probabilities: sigmoid, softmax
  std::string preprocess_json;           // the "preprocess" object (image/preprocess.hpp)
  bool statically_quantized = false;     // "precision": "int8-static" (tools/quantize_image_model.py)
  std::string raw_json;
  std::size_t label_index(const std::string& label) const;  // throws usage_error
};

class cnn_model {
 public:
  // Loads, reads hpcscreen.json and probes forward() on two images of the size input_size says
  // (from the metadata's preprocessing; it may throw model_error). `precision` as for the other
  // models; a statically quantized file runs as it is (INT8).
  cnn_model(const std::string& path, const std::string& precision,
            const std::function<std::array<int, 2>(const cnn_metadata&)>& input_size);
  ~cnn_model();
  cnn_model(const cnn_model&) = delete;
  cnn_model& operator=(const cnn_model&) = delete;

  const cnn_metadata& metadata() const;
  // The model file's checksum, of the bytes loaded (core/checksum.hpp's form).
  const std::string& checksum() const;
  const precision_choice& precision() const;
  // inputs: [batch, 3, h, w] row-major; returns [batch, C].
  std::vector<float> run(const float* inputs, std::int64_t batch, std::int64_t h, std::int64_t w);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hpcscreen::infer
