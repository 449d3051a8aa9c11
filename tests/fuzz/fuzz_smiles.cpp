// Any bytes as a SMILES: featurization returns a graph or a reject, never crashes, and a graph
// is internally consistent. Differential: the parse with only the steps the molecule needs gives
// the same graph, or the same reject with the same message, as RDKit's whole SmilesToMol.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "hpcscreen/chem/featurize.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hpcscreen::chem;
  silence_rdkit_logs();
  if (size > 4096) return 0;
  const std::string_view smiles(reinterpret_cast<const char*>(data), size);
  featurize_options needed{200}, all{200};
  all.parse = parse_steps::all;
  const auto r = featurize_smiles(smiles, needed);
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
  const auto whole = featurize_smiles(smiles, all);
  if (whole.ok != r.ok || whole.reason != r.reason || whole.detail != r.detail ||
      whole.graph.atom_features != r.graph.atom_features || whole.graph.edges != r.graph.edges ||
      whole.graph.bond_features != r.graph.bond_features) {
    std::abort();
  }
  return 0;
}
