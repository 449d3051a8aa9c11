#pragma once
// `hpcscreen screen`: compound rows → RDKit graphs → TorchScript GNN → scores and hits.
#include <memory>
#include <string>
#include <vector>

#include "hpcscreen/batch/graph_batch.hpp"
#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/pipeline/pipeline.hpp"

namespace hpcscreen::screen {

struct screen_settings {
  std::vector<std::string> model_paths;  // one or more: each record featurized once, scored by each
  std::size_t top_k = 100;               // records in each hit list
  // What the hit lists are ranked by: "MODEL:TASK", or with `ensemble` "mean", "lcb:K", "ucb:K"
  // (the ensemble's ranked task). Empty: the first model's rank_by. Each key after the first
  // writes its own hits-<key>.csv.
  std::vector<std::string> rank_by;
  std::vector<std::string> where;  // "MODEL:TASK < VALUE" or ">": all must hold to enter hit lists
  bool ensemble = false;           // the models are members of one ensemble: mean and sd per task
  chem::featurize_options featurize;
  batch::graph_budget budget;
  bool all_scores = false;  // every score of every task, in RUN/scores/chunk-N.csv
  std::string precision = "fp32";  // fp32, bf16, int8, auto (infer/precision.hpp)
  std::string library_dir;         // where feature caches are looked for (feature_cache.hpp)
  bool use_cache = true;           // false: always featurize from SMILES
  bool require_cache = false;      // refuse unless every featurizer has a usable cache
};

// Registers the screen workload and its featurize command (src/app/registrations.cpp).
void register_screen();

// Loads and checks the model; throws model_error.
std::unique_ptr<pipeline::workload> make_screen_workload(const screen_settings& settings,
                                                         int threads);

}  // namespace hpcscreen::screen
