#include "hpcscreen/infer/gnn_model.hpp"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <malloc.h>
#include <torch/script.h>
#include <torch/version.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <unordered_map>

#include "hpcscreen/core/error.hpp"
#include "graph_passes.hpp"
#include "torchscript_archive.hpp"

namespace hpcscreen::infer {

void configure_threads(int n_threads) {
  n_threads = std::max(1, n_threads);
  // LibTorch hands matrix products to OpenBLAS, which keeps threads of its own. OpenBLAS with
  // two threads or more partitions a product differently from one thread and rounds
  // differently (logits moved by ~1e-6 between --threads 1 and 2), so it always gets one:
  // results never depend on the thread count. LibTorch's own intra-op threads (n_threads) give
  // identical results for any count. OpenBLAS reads OPENBLAS_NUM_THREADS when it is loaded,
  // before main(), so its API is the only way to set it here. The symbol is absent when
  // LibTorch uses another BLAS.
  using set_threads_fn = void (*)(int);
  if (auto* f = reinterpret_cast<set_threads_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    f(1);
  }
  at::set_num_threads(n_threads);
}

#ifdef HPCSCREEN_WITH_JEMALLOC
// jemalloc reads this at its first allocation. Its default hands allocations above 8 MiB
// (oversize_threshold) back to the kernel at once; a BERT batch's attention and feed-forward
// tensors are hundreds of MiB, so every layer faulted them in again (a quarter of annotate's
// time went to the kernel zeroing pages). Pages freed stay for reuse for 10 s.
extern "C" {
const char* malloc_conf = "oversize_threshold:0,dirty_decay_ms:10000,muzzy_decay_ms:0";
}
#endif

void keep_freed_tensor_memory() {
#ifdef HPCSCREEN_WITH_JEMALLOC
  (void)malloc_conf;  // jemalloc is the allocator; nothing to set at run time
#else
  for (const char* v : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"}) {
    if (std::getenv(v) != nullptr) return;
  }
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

std::string libtorch_version() {
  return std::string("LibTorch ") + TORCH_VERSION;
}

double measure_matmul_gflops(int n, int repeats) {
  c10::InferenceMode guard;
  const auto a = torch::randn({n, n}), b = torch::randn({n, n});
  auto c = torch::mm(a, b);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) c = torch::mm(a, b);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * n * double(n) * n * repeats / s / 1e9 + 0.0 * c.sum().item<float>();
}

chem::feature_tensors ogb_graph_only(const model_metadata& m) {
  if (m.featurizer_name != chem::featurizer_name ||
      m.featurizer_version != chem::featurizer_version) {
    throw std::invalid_argument("featurizer '" + m.featurizer_name + "/" +
                                std::to_string(m.featurizer_version) + "' is not '" +
                                chem::featurizer_name + "/" +
                                std::to_string(chem::featurizer_version) +
                                "'; the model was trained on other features and would score noise");
  }
  return {chem::feature_tensors::kind::graph, 0};
}

struct gnn_model::impl {
  std::string path;
  std::string checksum;
  torch::jit::Module module;
  model_metadata metadata;
  precision_choice precision;
  chem::feature_tensors tensors;

  // Float features enter a BF16 model as BF16 (its weights were converted at load); the outputs
  // come back as float32 (to_float32).
  at::Tensor as_model_floats(const at::Tensor& t) const {
    return precision.used == precision::bf16 ? t.to(torch::kBFloat16) : t;
  }

  // forward(V, E, edge_index, rev_edge_index, batch, num_graphs) over molecules concatenated:
  // atom indices offset by the rows before, edge indices by the edges before.
  at::Tensor run_float_graphs(const std::vector<const chem::float_graph*>& graphs) {
    std::int64_t n_rows = 0, n_edges = 0;
    for (const auto* g : graphs) {
      n_rows += g->n_atoms;
      n_edges += g->n_edges;
    }
    auto V = torch::empty({n_rows, tensors.width}, torch::kFloat);
    auto E = torch::empty({n_edges, tensors.edge_width}, torch::kFloat);
    auto index = torch::empty({2, n_edges}, torch::kLong);
    auto rev = torch::empty({n_edges}, torch::kLong);
    auto batch = torch::empty({n_rows}, torch::kLong);
    float* v = V.data_ptr<float>();
    float* e = E.data_ptr<float>();
    auto* src = index.data_ptr<std::int64_t>();
    auto* dst = src + n_edges;
    auto* r = rev.data_ptr<std::int64_t>();
    auto* b = batch.data_ptr<std::int64_t>();
    std::int64_t row0 = 0, edge0 = 0;
    for (std::size_t m = 0; m < graphs.size(); ++m) {
      const auto& g = *graphs[m];
      v = std::copy(g.atom_features.begin(), g.atom_features.end(), v);
      e = std::copy(g.edge_features.begin(), g.edge_features.end(), e);
      for (std::int64_t k = 0; k < g.n_edges; ++k) {
        src[edge0 + k] = row0 + g.edges[static_cast<std::size_t>(2 * k)];
        dst[edge0 + k] = row0 + g.edges[static_cast<std::size_t>(2 * k + 1)];
        r[edge0 + k] = edge0 + (k ^ 1);
      }
      std::fill(b + row0, b + row0 + g.n_atoms, static_cast<std::int64_t>(m));
      row0 += g.n_atoms;
      edge0 += g.n_edges;
    }
    std::vector<torch::jit::IValue> inputs{as_model_floats(V), as_model_floats(E), index, rev,
                                           batch, static_cast<std::int64_t>(graphs.size())};
    auto out = module.forward(inputs);
    if (!out.isTensor()) {
      throw model_error("model '" + path + "': forward() returned " + out.tagKind() +
                        ", expected a float32 tensor [B, T]");
    }
    return detail::to_float32(out.toTensor(), precision);
  }

  at::Tensor run_dense(const std::vector<float>& x, std::int64_t n) {
    std::vector<torch::jit::IValue> inputs{as_model_floats(
        torch::from_blob(const_cast<float*>(x.data()), {n, tensors.width}, torch::kFloat))};
    auto out = module.forward(inputs);
    if (!out.isTensor()) {
      throw model_error("model '" + path + "': forward() returned " + out.tagKind() +
                        ", expected a float32 tensor [B, T]");
    }
    return detail::to_float32(out.toTensor(), precision);
  }

  at::Tensor run(const batch::graph_batch& b) {
    auto as_tensor = [](const std::vector<std::int64_t>& v, std::vector<std::int64_t> shape) {
      return torch::from_blob(const_cast<std::int64_t*>(v.data()), shape, torch::kLong);
    };
    std::vector<torch::jit::IValue> inputs{
        as_tensor(b.x, {b.n_atoms, chem::n_atom_features}),
        as_tensor(b.edge_index, {2, b.n_edges}),
        as_tensor(b.edge_attr, {b.n_edges, chem::n_bond_features}),
        as_tensor(b.batch, {b.n_atoms}),
        b.n_graphs,
    };
    auto out = module.forward(inputs);
    if (!out.isTensor()) {
      throw model_error("model '" + path + "': forward() returned " + out.tagKind() +
                        ", expected a float32 tensor [B, T]");
    }
    return detail::to_float32(out.toTensor(), precision);
  }

  void check_output(const at::Tensor& t, std::int64_t n_graphs) const {
    const auto n_tasks = static_cast<std::int64_t>(metadata.tasks.size());
    std::ostringstream found;
    found << t.sizes() << " " << t.scalar_type();
    if (t.dim() != 2 || t.size(0) != n_graphs || t.size(1) != n_tasks ||
        t.scalar_type() != torch::kFloat) {
      throw model_contract_error("model '" + path + "': forward() on a batch of " +
                        std::to_string(n_graphs) + " molecules returned " + found.str() +
                        ", expected float32 [" + std::to_string(n_graphs) + ", " +
                        std::to_string(n_tasks) +
                        "] (one row per molecule, one column per task "
                        "in hpcscreen.json)");
    }
  }
};

namespace {
chem::mol_graph probe_graph(std::int64_t n_atoms) {
  // A carbon chain with OGB features of sp3 carbons: enough to exercise forward().
  chem::mol_graph g;
  g.n_atoms = n_atoms;
  for (std::int64_t i = 0; i < n_atoms; ++i) {
    const std::int64_t n_h = 4 - (i > 0) - (i + 1 < n_atoms);
    g.atom_features.insert(g.atom_features.end(), {5, 0, 4, 5, n_h, 0, 2, 0, 0});
    if (i + 1 < n_atoms) {
      g.edges.insert(g.edges.end(), {i, i + 1, i + 1, i});
      g.bond_features.insert(g.bond_features.end(), {0, 0, 0, 0, 0, 0});
      g.n_edges += 2;
    }
  }
  return g;
}
}  // namespace

gnn_model::gnn_model(const std::string& path, const std::string& precision,
                     const declare_tensors& declare)
    : impl_(std::make_unique<impl>()) {
  impl_->path = path;
  impl_->precision = choose_precision(precision, model_family::gnn, detect_cpu_features());
  impl_->precision.quantized_engine = detail::select_quantized_engine();
  auto a = detail::load_archive(path, "data_schemas/model_contract.md");
  impl_->checksum = a.checksum;
  impl_->module = std::move(a.module);
  impl_->metadata = parse_gnn_metadata(a.metadata_json, path);
  try {
    impl_->tensors = declare(impl_->metadata);
  } catch (const std::invalid_argument& e) {
    throw model_error("model '" + path + "': " + metadata_file_name + ": " + e.what());
  }
  const bool dense = impl_->tensors.what == chem::feature_tensors::kind::dense;
  const bool float_graph = impl_->tensors.what == chem::feature_tensors::kind::float_graph;
  const auto n_inputs = detail::forward_arity(impl_->module, path);
  if (float_graph) {
    if (n_inputs != 6) {
      throw model_error("model '" + path + "': forward() takes " + std::to_string(n_inputs) +
                        " inputs, expected 6: (V float32[N," + std::to_string(impl_->tensors.width) +
                        "], E float32[E," + std::to_string(impl_->tensors.edge_width) +
                        "], edge_index int64[2,E], rev_edge_index int64[E], batch int64[N], "
                        "num_graphs int)");
    }
    impl_->module = detail::guarded(
        "model '" + path + "': cannot prepare it for " + precision_name(impl_->precision.used),
        [&] { return detail::prepare_module(impl_->module, impl_->precision); });
    // Two molecules: one atom alone, and a chain of three (two bonds, four edges).
    chem::float_graph g1, g2;
    g1.n_atoms = 1;
    g1.atom_features.assign(static_cast<std::size_t>(impl_->tensors.width), 0.0f);
    g2.n_atoms = 3;
    g2.n_edges = 4;
    g2.atom_features.assign(static_cast<std::size_t>(3 * impl_->tensors.width), 0.0f);
    g2.edge_features.assign(static_cast<std::size_t>(4 * impl_->tensors.edge_width), 0.0f);
    g2.edges = {0, 1, 1, 0, 1, 2, 2, 1};
    detail::probe("model '" + path + "' failed on a probe batch of 2 molecules with its " +
                      "featurizer's " + std::to_string(impl_->tensors.width) + " atom and " +
                      std::to_string(impl_->tensors.edge_width) +
                      " bond columns (does it take that many?)",
                  [&] {
      c10::InferenceMode guard;
      impl_->check_output(impl_->run_float_graphs({&g1, &g2}), 2);
    });
    return;
  }
  if (!dense && n_inputs != 5) {
    throw model_error("model '" + path + "': forward() takes " + std::to_string(n_inputs) +
                      " inputs, expected 5: (x int64[N,9], edge_index int64[2,E], edge_attr "
                      "int64[E,3], batch int64[N], num_graphs int)");
  }
  if (dense && n_inputs != 1) {
    throw model_error("model '" + path + "': forward() takes " + std::to_string(n_inputs) +
                      " inputs, expected 1: x float32[B, " + std::to_string(impl_->tensors.width) +
                      "] (its featurizer's " + std::to_string(impl_->tensors.width) +
                      " columns per molecule)");
  }
  impl_->module = detail::guarded(
      "model '" + path + "': cannot prepare it for " + precision_name(impl_->precision.used),
      [&] { return detail::prepare_module(impl_->module, impl_->precision); });
  if (dense) {
    // Two rows: one of zeros, one of ones, as fingerprints of two molecules.
    std::vector<float> x(static_cast<std::size_t>(2 * impl_->tensors.width), 0.0f);
    std::fill(x.begin() + impl_->tensors.width, x.end(), 1.0f);
    detail::probe("model '" + path + "' failed on a probe batch of 2 molecules of its featurizer's " +
                      std::to_string(impl_->tensors.width) + " columns (does it take that many?)",
                  [&] {
      c10::InferenceMode guard;
      impl_->check_output(impl_->run_dense(x, 2), 2);
    });
    return;
  }
  const auto g1 = probe_graph(1), g2 = probe_graph(3);
  const auto probe = batch::assemble({&g1, &g2});
  detail::probe("model '" + path + "' failed on a probe batch of 2 molecules", [&] {
    c10::InferenceMode guard;
    impl_->check_output(impl_->run(probe), 2);
  });
}

gnn_model::~gnn_model() = default;
const std::string& gnn_model::checksum() const {
  return impl_->checksum;
}

const model_metadata& gnn_model::metadata() const {
  return impl_->metadata;
}
const precision_choice& gnn_model::precision() const {
  return impl_->precision;
}

const chem::feature_tensors& gnn_model::tensors() const {
  return impl_->tensors;
}

std::vector<float> gnn_model::score_dense(const std::vector<float>& x, std::int64_t n) {
  c10::InferenceMode guard;
  auto out = detail::guarded("model '" + impl_->path + "' failed on a batch of " +
                                 std::to_string(n) + " molecules",
                             [&] { return impl_->run_dense(x, n); });
  impl_->check_output(out, n);
  out = out.contiguous();
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

std::vector<float> gnn_model::score_float_graphs(const std::vector<const chem::float_graph*>& graphs) {
  c10::InferenceMode guard;
  const auto n = static_cast<std::int64_t>(graphs.size());
  auto out = detail::guarded("model '" + impl_->path + "' failed on a batch of " +
                                 std::to_string(n) + " molecules",
                             [&] { return impl_->run_float_graphs(graphs); });
  impl_->check_output(out, n);
  out = out.contiguous();
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

std::vector<float> gnn_model::score(const batch::graph_batch& b) {
  c10::InferenceMode guard;
  auto out = detail::guarded("model '" + impl_->path + "' failed on a batch of " +
                                 std::to_string(b.n_graphs) + " molecules",
                             [&] { return impl_->run(b); });
  impl_->check_output(out, b.n_graphs);
  out = out.contiguous();
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

}  // namespace hpcscreen::infer
