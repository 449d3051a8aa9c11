#include "hpcscreen/batch/graph_batch.hpp"

#include "hpcscreen/core/error.hpp"

namespace hpcscreen::batch {

std::vector<std::pair<std::size_t, std::size_t>> plan_batches(
    const std::vector<std::int64_t>& atom_counts, const graph_budget& budget) {
  HPCSCREEN_ASSERT(budget.max_molecules > 0 && budget.max_atoms > 0);
  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  std::size_t begin = 0;
  std::int64_t atoms = 0;
  for (std::size_t i = 0; i < atom_counts.size(); ++i) {
    const auto n_mols = static_cast<std::int64_t>(i - begin);
    if (i > begin &&
        (n_mols + 1 > budget.max_molecules || atoms + atom_counts[i] > budget.max_atoms)) {
      ranges.emplace_back(begin, i);
      begin = i;
      atoms = 0;
    }
    atoms += atom_counts[i];
  }
  if (begin < atom_counts.size()) ranges.emplace_back(begin, atom_counts.size());
  return ranges;
}

graph_batch assemble(const std::vector<const chem::mol_graph*>& graphs) {
  graph_batch b;
  b.n_graphs = static_cast<std::int64_t>(graphs.size());
  for (const auto* g : graphs) {
    b.n_atoms += g->n_atoms;
    b.n_edges += g->n_edges;
  }
  b.x.reserve(static_cast<std::size_t>(b.n_atoms) * chem::n_atom_features);
  b.batch.reserve(static_cast<std::size_t>(b.n_atoms));
  b.edge_index.resize(static_cast<std::size_t>(b.n_edges) * 2);
  b.edge_attr.reserve(static_cast<std::size_t>(b.n_edges) * chem::n_bond_features);
  std::int64_t atom_base = 0, edge_base = 0;
  for (std::int64_t gi = 0; gi < b.n_graphs; ++gi) {
    const auto& g = *graphs[static_cast<std::size_t>(gi)];
    b.x.insert(b.x.end(), g.atom_features.begin(), g.atom_features.end());
    b.batch.insert(b.batch.end(), static_cast<std::size_t>(g.n_atoms), gi);
    for (std::int64_t e = 0; e < g.n_edges; ++e) {
      b.edge_index[static_cast<std::size_t>(edge_base + e)] = atom_base + g.edges[2 * e];
      b.edge_index[static_cast<std::size_t>(b.n_edges + edge_base + e)] =
          atom_base + g.edges[2 * e + 1];
    }
    b.edge_attr.insert(b.edge_attr.end(), g.bond_features.begin(), g.bond_features.end());
    atom_base += g.n_atoms;
    edge_base += g.n_edges;
  }
  return b;
}

}  // namespace hpcscreen::batch
