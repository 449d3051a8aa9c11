#pragma once
// A user's TorchScript GNN behind the hpcscreen.gnn/1 contract. The only stage that includes
// LibTorch, and only in its .cpp: this header is cheap to include.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hpcscreen/batch/graph_batch.hpp"
#include "hpcscreen/batch/molecule_tensors.hpp"
#include "hpcscreen/infer/model_metadata.hpp"
#include "hpcscreen/infer/precision.hpp"
#include "hpcscreen/infer/runtime.hpp"

namespace hpcscreen::infer {

// What a model's featurizer hands it, decided from its hpcscreen.json (the screen asks the
// featurizer registry); throws std::invalid_argument for a featurizer it cannot provide.
using declare_tensors = std::function<chem::feature_tensors(const model_metadata&)>;

// The declaration when no registry is at hand: the OGB graph, and nothing else.
chem::feature_tensors ogb_graph_only(const model_metadata& m);

class gnn_model {
 public:
  // Loads the archive, reads and checks hpcscreen.json, asks `declare` what its featurizer
  // hands it, checks forward()'s arity (5 inputs for a graph, 1 for dense features) and probes
  // it on two tiny molecules for a float32 [B, T] output. Throws model_error with LibTorch's
  // own message kept. `precision` (fp32, bf16, int8, auto) is checked against the CPU first
  // (precision_error) and the model converted once, here; scores stay float32.
  explicit gnn_model(const std::string& path, const std::string& precision = "fp32",
                     const declare_tensors& declare = ogb_graph_only);
  ~gnn_model();
  gnn_model(const gnn_model&) = delete;
  gnn_model& operator=(const gnn_model&) = delete;

  const model_metadata& metadata() const;
  // The model file's checksum, of the bytes loaded (core/checksum.hpp's form).
  const std::string& checksum() const;
  const precision_choice& precision() const;
  const chem::feature_tensors& tensors() const;
  // Scores one batch: returns [n_graphs, n_tasks] float32, row-major, in batch order.
  std::vector<float> score(const batch::graph_batch& b);
  // Dense features: x is [n, tensors().width] float32, row-major.
  std::vector<float> score_dense(const std::vector<float>& x, std::int64_t n);
  // Float graphs (Chemprop's D-MPNN): the molecules are concatenated here, in order.
  std::vector<float> score_float_graphs(const std::vector<const chem::float_graph*>& graphs);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hpcscreen::infer
