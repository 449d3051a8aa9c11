// Any bytes as a SMILES: featurization returns a graph or a reject, never crashes, and a graph
// is internally consistent.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "hpcscreen/chem/featurize.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hpcscreen::chem;
  silence_rdkit_logs();
  if (size > 4096) return 0;
  const auto r =
      featurize_smiles(std::string_view(reinterpret_cast<const char*>(data), size), {200});
  if (r.ok) {
    const auto& g = r.graph;
    if (g.n_atoms <= 0 ||
        g.atom_features.size() != static_cast<size_t>(g.n_atoms) * n_atom_features ||
        g.edges.size() != static_cast<size_t>(g.n_edges) * 2 ||
        g.bond_features.size() != static_cast<size_t>(g.n_edges) * n_bond_features) {
      std::abort();
    }
    for (const auto e : g.edges)
      if (e < 0 || e >= g.n_atoms) std::abort();
  } else if (r.reason.empty()) {
    std::abort();
  }
  return 0;
}
