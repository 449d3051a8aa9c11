#include "graph_passes.hpp"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

namespace hpcscreen::infer::detail {
namespace {

using torch::jit::Block;
using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// Visits every node, sub-blocks (if/loop bodies) first; f may replace or destroy the node.
template <class F>
void for_each_node(Block* block, F&& f) {
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    Node* n = *it;
    ++it;
    for (Block* sub : n->blocks()) for_each_node(sub, f);
    f(n);
  }
}

// Factories whose dtype=None means the default dtype, float32.
bool makes_default_float(const Node* n) {
  static const char* names[] = {"aten::zeros",  "aten::ones",  "aten::empty", "aten::full",
                                "aten::rand",   "aten::randn", "aten::eye",   "aten::linspace",
                                "aten::scalar_tensor"};
  const auto kind = n->kind().toQualString();
  return std::any_of(std::begin(names), std::end(names),
                     [&](const char* k) { return std::string(kind) == k; });
}

std::size_t convert_graph_to_bf16(Graph& g) {
  std::size_t n_converted = 0;
  const auto bf16_code = static_cast<std::int64_t>(c10::ScalarType::BFloat16);
  const auto fp32_code = static_cast<std::int64_t>(c10::ScalarType::Float);
  for_each_node(g.block(), [&](Node* n) {
    if (n->kind() == c10::prim::Constant) {
      const auto v = torch::jit::toIValue(n->output());
      if (!v || !v->isTensor()) return;
      const auto& t = v->toTensor();
      if (!t.is_floating_point() || t.scalar_type() == c10::ScalarType::BFloat16) return;
      torch::jit::WithInsertPoint here(n);
      n->output()->replaceAllUsesWith(g.insertConstant(t.to(torch::kBFloat16)));
      ++n_converted;
      return;
    }
    const auto* schema = n->maybeSchema();
    if (schema == nullptr) return;
    const auto& args = schema->arguments();
    for (std::size_t i = 0; i < args.size() && i < n->inputs().size(); ++i) {
      if (args[i].name() != "dtype") continue;
      const auto v = torch::jit::toIValue(n->input(i));
      if (!v) continue;  // a dtype computed at run time (x.dtype) follows its tensor
      const bool names_fp32 = v->isInt() && v->toInt() == fp32_code;
      if (!names_fp32 && !(v->isNone() && makes_default_float(n))) continue;
      torch::jit::WithInsertPoint here(n);
      n->replaceInput(i, g.insertConstant(bf16_code));
      ++n_converted;
    }
  });
  torch::jit::EliminateDeadCode(g.block());
  return n_converted;
}

std::size_t quantize_graph_linears(Graph& g) {
  const auto prepack =
      c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
  const auto linear_dynamic = c10::Symbol::fromQualString("quantized::linear_dynamic");
  std::size_t n_quantized = 0;
  for_each_node(g.block(), [&](Node* n) {
    if (n->kind() != c10::aten::linear || n->inputs().size() != 3) return;
    const auto w = torch::jit::toIValue(n->input(1));
    const auto b = torch::jit::toIValue(n->input(2));
    if (!w || !w->isTensor() || !b) return;  // weights computed at run time stay FP32
    const auto& weight = w->toTensor();      // [out, in] float32
    if (weight.scalar_type() != torch::kFloat || weight.dim() != 2) return;
    // Symmetric per output channel: scale = max|w| / 127.5, zero point 0 (as PyTorch's
    // per_channel_dynamic_qconfig does).
    const auto scales = (weight.abs().amax(1).clamp_min(1e-8) / 127.5).to(torch::kDouble);
    const auto zero_points = torch::zeros({weight.size(0)}, torch::kLong);
    const auto qweight = at::quantize_per_channel(weight, scales, zero_points, 0, torch::kQInt8);
    torch::jit::Stack stack{qweight, b->isTensor() ? c10::IValue(b->toTensor()) : c10::IValue()};
    prepack.callBoxed(&stack);
    torch::jit::WithInsertPoint here(n);
    Value* packed = g.insertConstant(stack.at(0));
    Value* reduce_range = g.insertConstant(false);
    Node* q = g.create(linear_dynamic, {n->input(0), packed, reduce_range}, 1);
    q->insertBefore(n);
    q->output()->setType(n->output()->type());
    n->output()->replaceAllUsesWith(q->output());
    n->destroy();
    ++n_quantized;
  });
  torch::jit::EliminateDeadCode(g.block());
  return n_quantized;
}

// FP32 graph passes, each kept only where it measured faster with the same scores (README,
// "Graph passes for FP32"). Neither did for the GNNs and BERTs; freezing did for CNNs (it folds
// batch norms into convolutions: DenseNet-121 1.4x), so their models ask for it. The tensor-expression fuser is not offered: on
// CPU it needs LLVM, which Debian's LibTorch is built without ("LLVM Backend not found" at the
// first fused call).
struct pass_set {
  bool freeze = false;    // torch::jit::freeze
  bool optimize = false;  // torch::jit::optimize_for_inference
};

pass_set passes_from_env(bool freeze_by_default) {
  pass_set p;
  p.freeze = freeze_by_default;
  const char* env = std::getenv("HPCSCREEN_GRAPH_PASSES");
  if (env == nullptr) return p;
  p = {false, false};
  std::stringstream in(env);
  for (std::string name; std::getline(in, name, ',');) {
    if (name == "freeze") p.freeze = true;
    if (name == "optimize") p.optimize = true;
  }
  return p;
}

}  // namespace

std::string select_quantized_engine() {
  const auto& engines = at::globalContext().supportedQEngines();
  if (std::find(engines.begin(), engines.end(), at::QEngine::ONEDNN) != engines.end()) {
    at::globalContext().setQEngine(at::QEngine::ONEDNN);
    return "onednn";
  }
  return c10::toString(at::globalContext().qEngine());
}

torch::jit::Module prepare_module(torch::jit::Module m, precision_choice& c, bool freeze_fp32) {
  const auto passes = passes_from_env(freeze_fp32);
  // Conversion rewrites the frozen graph, where parameters are constants.
  if (passes.freeze || passes.optimize || c.used != precision::fp32) {
    m = torch::jit::freeze(m);
    c.graph_passes.push_back("freeze");
  }
  auto graph = m.get_method("forward").graph();
  if (c.used == precision::bf16) {
    c.n_converted = convert_graph_to_bf16(*graph);
    c.graph_passes.push_back("convert_bf16");
  } else if (c.used == precision::int8) {
    c.n_converted = quantize_graph_linears(*graph);
    c.graph_passes.push_back("quantize_dynamic_linear_int8");
    if (c.n_converted == 0) {  // nothing ran in INT8: never reported as if it had
      if (c.requested != "auto") {
        throw precision_error(
            "--precision int8: the model has no linear layer (aten::linear) to "
            "quantize, so it would run at FP32; use --precision fp32 or bf16");
      }
      c.used = precision::fp32;
      c.reason += "; the model has no linear layer to quantize: fp32";
    }
  }
  if (passes.optimize) {
    m = torch::jit::optimize_for_inference(m);
    c.graph_passes.push_back("optimize_for_inference");
  }
  return m;
}

}  // namespace hpcscreen::infer::detail
