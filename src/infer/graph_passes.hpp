#pragma once
// What happens to a loaded TorchScript module before it runs: the FP32 graph passes kept because
// they measured faster (freezing), and the conversion to the precision asked for. Internal to the
// inference stage.
#include <torch/script.h>

#include <string>

#include "hpcscreen/infer/precision.hpp"

namespace hpcscreen::infer::detail {

// Chooses LibTorch's quantized engine (oneDNN on x86; its default here is QNNPACK, 7x slower)
// and returns its name. Called before a model is loaded: a model saved with quantized layers
// packs its weights for the engine in force when it is loaded.
std::string select_quantized_engine();

// Freezes `m` (parameters become graph constants) and converts the whole graph to c.used:
//  - bf16: every floating-point constant (parameters, buffers, folded scalars) and every
//    float32 dtype the graph names (`dtype=torch.float32`, `.to(torch.float32)`, factories left
//    to the default dtype) becomes bfloat16, so no FP32 tensor mixes in;
//  - int8: every aten::linear with a constant weight becomes quantized::linear_dynamic with
//    int8 weights (symmetric, per output channel) and activations quantized per batch.
// Records the passes and the count of conversions in c. With freeze_fp32 an FP32 model is frozen
// too (CNNs: batch norms fold into convolutions). Graph passes for FP32 follow the
// defaults in graph_passes.cpp, or HPCSCREEN_GRAPH_PASSES (benchmarks only: "none" or a comma
// list of freeze, optimize).
torch::jit::Module prepare_module(torch::jit::Module m, precision_choice& c,
                                  bool freeze_fp32 = false);

// A model's output back to float32 for the pipeline, whatever it ran at.
inline at::Tensor to_float32(const at::Tensor& t, const precision_choice& c) {
  return c.used != precision::fp32 && t.is_floating_point() ? t.to(torch::kFloat) : t;
}

}  // namespace hpcscreen::infer::detail
