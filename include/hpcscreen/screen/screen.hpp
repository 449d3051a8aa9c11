#pragma once
// `hpcscreen screen`: compound rows → RDKit graphs → TorchScript GNN → scores and hits.
#include <memory>
#include <string>

#include "hpcscreen/batch/graph_batch.hpp"
#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/pipeline/pipeline.hpp"

namespace hpcscreen::screen {

struct screen_settings {
  std::string model_path;
  chem::featurize_options featurize;
  batch::graph_budget budget;
  bool all_scores = false;  // every score of every task, in RUN/scores/chunk-N.csv
  std::string precision = "fp32";  // fp32, bf16, int8, auto (infer/precision.hpp)
};

// Loads and checks the model; throws model_error.
std::unique_ptr<pipeline::workload> make_screen_workload(const screen_settings& settings,
                                                         int threads);

}  // namespace hpcscreen::screen
