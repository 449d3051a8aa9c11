#pragma once
// Molecular graphs → model-ready batches, by a graph budget (molecules and atoms), so that
// one huge molecule cannot blow up a batch. Plain vectors: no LibTorch here.
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "hpcscreen/batch/molecule_tensors.hpp"

namespace hpcscreen::batch {

struct graph_budget {
  std::int64_t max_molecules = 256;
  std::int64_t max_atoms = 8192;
};

// Concatenated graphs in the GNN contract's layout (data_schemas/model_contract.md).
struct graph_batch {
  std::int64_t n_graphs = 0;
  std::int64_t n_atoms = 0;
  std::int64_t n_edges = 0;
  std::vector<std::int64_t> x;           // [n_atoms, 9]
  std::vector<std::int64_t> edge_index;  // [2, n_edges]: all sources, then all targets
  std::vector<std::int64_t> edge_attr;   // [n_edges, 3]
  std::vector<std::int64_t> batch;       // [n_atoms], graph of each atom
};

// Splits graphs [0, atom_counts.size()) into consecutive [begin, end) ranges within the
// budget. A single graph larger than max_atoms still gets a batch of its own.
std::vector<std::pair<std::size_t, std::size_t>> plan_batches(
    const std::vector<std::int64_t>& atom_counts, const graph_budget& budget);

graph_batch assemble(const std::vector<const chem::mol_graph*>& graphs);

}  // namespace hpcscreen::batch
