// `hpcscreen screen` and `hpcscreen featurize` as the host sees them: their options and what
// they make, registered with pipeline/registry.hpp.
#include <chrono>
#include <cstdio>

#include "hpcscreen/chem/featurizer.hpp"
#include "hpcscreen/core/cli.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/scheduler.hpp"
#include "hpcscreen/dist/agreement.hpp"
#include "hpcscreen/infer/gnn_model.hpp"
#include "hpcscreen/infer/precision.hpp"
#include "hpcscreen/pipeline/pipeline.hpp"
#include "hpcscreen/pipeline/registry.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/screen/feature_cache.hpp"
#include "hpcscreen/screen/screen.hpp"

namespace hpcscreen::screen {
namespace {

namespace po = boost::program_options;
using cli::in_range;

class screen_command : public pipeline::workload_command {
 public:
  void add_options(po::options_description& desc) override {
    desc.add_options()(
        "model,m", po::value(&s_.model_paths)->required()->composing(),
        "TorchScript GNN with hpcscreen.json (data_schemas/model_contract.md); give --model "
        "several times to score each record with several models, featurized once")(
        "top-k,k", in_range(s_.top_k, "top-k", 1, cli::int32_max), "hits to keep");
    infer::add_precision_option(desc, s_.precision);
    desc.add_options()("max-atoms", in_range(s_.featurize.max_atoms, "max-atoms", 1, 100000),
                       "reject molecules with more atoms in the model's graph (heavy atoms, and "
                       "hydrogens RDKit keeps as atoms, e.g. [2H])")(
        "batch-molecules", in_range(s_.budget.max_molecules, "batch-molecules", 1, cli::int32_max),
        "molecules per inference batch, at most")(
        "batch-atoms", in_range(s_.budget.max_atoms, "batch-atoms", 1, cli::int32_max),
        "atoms per inference batch, at most")("all-scores", po::bool_switch(&s_.all_scores),
                                              "also keep every score of every task in RUN/scores/")(
        "rank-by", po::value(&s_.rank_by)->composing(),
        "MODEL:TASK to rank hits.csv by (default: the first model's rank_by); each further "
        "--rank-by writes hits-MODEL-TASK.csv; with --ensemble also mean, lcb:K, ucb:K")(
        "where", po::value(&s_.where)->composing(),
        "'MODEL:TASK < VALUE' or '>': only records that pass every --where enter the hit lists")(
        "ensemble", po::bool_switch(&s_.ensemble),
        "the models are members of one ensemble (same tasks): mean and sd per task")(
        "require-cache", po::bool_switch(&s_.require_cache),
        "refuse to run unless every featurizer the models need has a feature cache in the "
        "library ('hpcscreen featurize')")("no-feature-cache",
                                           "featurize from SMILES even where a cache exists");
  }
  void check(const po::variables_map& vm) override {
    s_.library_dir = vm["library"].as<std::string>();  // where feature caches are looked for
    s_.use_cache = vm.count("no-feature-cache") == 0;
    if (s_.require_cache && !s_.use_cache)
      throw usage_error("--require-cache and --no-feature-cache contradict each other");
    if (s_.ensemble && s_.model_paths.size() < 2)
      throw usage_error("--ensemble needs at least two --model members");
  }
  std::unique_ptr<pipeline::workload> make(int threads) override {
    return make_screen_workload(s_, threads);
  }

 private:
  screen_settings s_;
};

// featurize: feature caches for a library, one per featurizer (feature_cache.hpp).
int featurize_main(const std::vector<std::string>& args, int argc, char** argv) {
  featurize_settings s;
  std::vector<std::string> models;
  int threads = 0;  // 0: from the scheduler or the machine
  po::options_description desc("featurize options");
  desc.add_options()("help,h", "show this help")("library", po::value(&s.library_dir)->required(),
                                                 "compound library folder (from pack)")(
      "featurizer", po::value(&s.featurizer_specs)->composing(),
      "a featurizer as in a model's hpcscreen.json, e.g. '{\"name\": \"morgan\", "
      "\"version\": 1, \"radius\": 2, \"bits\": 2048}' (repeatable)")(
      "model", po::value(&models)->composing(),
      "the featurizer this model's hpcscreen.json names (repeatable)")(
      "max-atoms", in_range(s.featurize.max_atoms, "max-atoms", 1, 100000),
      "as screen's --max-atoms: a cache is used only by screens with the same value")(
      "threads,t", in_range(threads, "threads", 0, max_threads_per_rank),
      "threads per rank (default: as screen, from the scheduler or the machine)")(
      "resume", po::bool_switch(&s.resume), "finish a build that was cut off");
  po::variables_map vm;
  if (!cli::parse(args, desc, vm,
                  "usage: [mpirun -np N] hpcscreen featurize --library DIR (--model M.pt | "
                  "--featurizer JSON)...\n"
                  "Computes each featurizer's output for every record once, into DIR/features/, "
                  "so that screens skip RDKit."))
    return 0;
  if (s.library_dir.empty()) throw usage_error("--library must name a library folder (it is empty)");
  for (const auto& m : models) {  // the featurizer object of the model's hpcscreen.json
    std::string spec;
    infer::gnn_model model(m, "fp32", [&](const infer::model_metadata& meta) {
      spec = meta.featurizer_json;
      return chem::make_featurizer(spec)->tensors();
    });
    s.featurizer_specs.push_back(spec);
  }
  s.threads = threads_per_rank(detect_scheduler(), threads);
  pipeline::install_stop_handlers();
  return dist::run_collective_command(argc, argv, "featurize", [&](dist::context& ctx) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = build_feature_caches(ctx, s);
    if (ctx.rank() != 0) return;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (std::size_t k = 0; k < r.dirs.size(); ++k)
      std::printf("cache: %s%s\n", r.dirs[k].c_str(), r.kept[k] ? " (complete already: kept)" : "");
    std::printf("%llu records (%llu accepted, %llu rejected with their reasons), %.1f MB of "
                "caches (%.0f bytes per record), %.1f s on %d rank(s) x %d threads\n",
                static_cast<unsigned long long>(r.n_records),
                static_cast<unsigned long long>(r.n_accepted),
                static_cast<unsigned long long>(r.n_rejected), static_cast<double>(r.bytes) / 1e6,
                r.n_records ? static_cast<double>(r.bytes) / static_cast<double>(r.n_records) : 0.0,
                wall, ctx.size(), s.threads);
  });
}

}  // namespace

void register_screen() {
  pipeline::register_workload(
      {"screen", "compounds", "scored",
       "score a compound library with TorchScript GNNs; top hits at rank 0",
       "usage: hpcscreen screen --library DIR --model M.pt --out RUN [--top-k K]",
       [] { return std::make_unique<screen_command>(); }});
  pipeline::register_tool(
      {"featurize", "feature caches in a compound library: featurize once, screen often",
       featurize_main});
}

}  // namespace hpcscreen::screen
