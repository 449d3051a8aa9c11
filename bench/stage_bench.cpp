// Stage limits on this machine: each stage of the screen alone on one thread, in records per
// second, plus the single-precision matmul rate. One JSON object on stdout; tools/bench/bench.py
// runs it and puts the figures beside the end-to-end ones.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <thread>

#include "hpcscreen/batch/graph_batch.hpp"
#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/infer/gnn_model.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/ranking/topk.hpp"

using namespace hpcscreen;
using clock_type = std::chrono::steady_clock;

namespace {
double since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

template <class F>
double rate(std::size_t n,
            F&& f) {  // items per second of f over n items, after one warm-up pass, at least ~0.2 s
  f();  // TorchScript's profiling executor optimizes a graph only after its first calls
  std::size_t done = 0;
  const auto t = clock_type::now();
  do {
    f();
    done += n;
  } while (since(t) < 0.2);
  return static_cast<double>(done) / since(t);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: hpcscreen-stage-bench LIBRARY MODEL [N=20000] [--quick] [--precision P]\n");
    return 2;
  }
  const std::string lib = argv[1], model_path = argv[2];
  std::size_t want = 20000;
  bool quick = false;
  std::string precision = "fp32";
  for (int i = 3; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") quick = true;
    else if (arg == "--precision" && i + 1 < argc) precision = argv[++i];
    else want = std::stoul(arg);
  }
  chem::silence_rdkit_logs();
  infer::configure_threads(1);
  infer::keep_freed_tensor_memory();
  nlohmann::json out;
  volatile std::size_t sink = 0;

  const auto m = io::read_manifest(lib);
  io::shard_reader reader(lib + "/" + m.shards[0].file, m.shard_schema, m.fields);
  const auto n = std::min<std::uint64_t>(want, reader.n_records());
  string_column smiles;
  out["shard_read_records_per_s"] = rate(n, [&] {
    smiles = reader.read("smiles", 0, n);
    sink += smiles.bytes.size();
  });

  // RDKit's parse step by step (each rate includes the steps before it), then featurization
  // with every step (as before the parse was trimmed) and with the steps the features need.
  const auto parse_rate = [&](chem::parse_step step) {
    return rate(n, [&] {
      for (std::size_t i = 0; i < smiles.size(); ++i) sink += chem::parse_to_step(smiles[i], step);
    });
  };
  out["parse_syntax_per_core_per_s"] = parse_rate(chem::parse_step::syntax);
  out["parse_sanitize_per_core_per_s"] = parse_rate(chem::parse_step::sanitize);
  out["parse_smiles_to_mol_per_core_per_s"] = parse_rate(chem::parse_step::smiles_to_mol);
  std::vector<chem::featurize_result> feats(smiles.size());
  const auto featurize_rate = [&](chem::parse_steps steps) {
    chem::featurize_options options;
    options.parse = steps;
    return rate(n, [&] {
      for (std::size_t i = 0; i < smiles.size(); ++i)
        feats[i] = chem::featurize_smiles(smiles[i], options);
    });
  };
  out["featurize_all_parse_steps_per_core_per_s"] = featurize_rate(chem::parse_steps::all);
  out["featurize_per_core_per_s"] = featurize_rate(chem::parse_steps::needed);
  std::vector<const chem::mol_graph*> graphs;
  std::vector<std::int64_t> atoms;
  for (const auto& f : feats) {
    if (f.ok) {
      graphs.push_back(&f.graph);
      atoms.push_back(f.graph.n_atoms);
    }
  }
  const auto ranges = batch::plan_batches(atoms, {});
  std::vector<batch::graph_batch> batches;
  out["batch_assembly_per_s"] = rate(graphs.size(), [&] {
    batches.clear();
    for (const auto& [b, e] : ranges)
      batches.push_back(batch::assemble({graphs.begin() + b, graphs.begin() + e}));
    sink += batches.size();
  });
  infer::gnn_model model(model_path, precision);
  out["precision"] = infer::precision_name(model.precision().used);
  out["inference_per_core_per_s"] = rate(graphs.size(), [&] {
    for (const auto& b : batches) sink += model.score(b).size();
  });
  // Scores of the first batch, to compare precisions and graph passes with each other.
  if (!batches.empty()) out["first_batch_scores"] = model.score(batches.front());

  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<ranking::hit> hits(quick ? 10000 : 1000000);
  for (std::size_t i = 0; i < hits.size(); ++i) hits[i] = {u(gen), {0, i}, "", {}, {}};
  out["topk_offer_per_s"] = rate(hits.size(), [&] {
    ranking::topk t(1000, true);
    for (const auto& h : hits) t.offer(h);
    sink += t.size();
  });
  out["matmul_gflops_1_thread"] = infer::measure_matmul_gflops(quick ? 256 : 2048, quick ? 1 : 5);
  infer::configure_threads(static_cast<int>(std::thread::hardware_concurrency()));
  out["matmul_gflops_all_cores"] = infer::measure_matmul_gflops(quick ? 256 : 2048, quick ? 1 : 5);
  out["molecules"] = graphs.size();
  out["records"] = n;
  out["mean_atoms"] = atoms.empty()
                          ? 0.0
                          : double(std::accumulate(atoms.begin(), atoms.end(), std::int64_t{0})) /
                                double(atoms.size());
  std::printf("%s\n", out.dump(2).c_str());
  return sink == 42 ? 1 : 0;
}
