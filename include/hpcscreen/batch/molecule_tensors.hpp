#pragma once
// What a featurizer makes of one molecule, as plain vectors: the types the chemistry stage
// produces and the batching and inference stages consume. Defined here, below all three, so
// that neither batch nor infer includes the chemistry stage (which links RDKit).
#include <cstdint>
#include <vector>

namespace hpcscreen::chem {

// The OGB graph of one molecule (ogb-smiles2graph/1): 9 atom and 3 bond features, as indices.
inline constexpr const char* featurizer_name = "ogb-smiles2graph";
inline constexpr int featurizer_version = 1;
inline constexpr int n_atom_features = 9;
inline constexpr int n_bond_features = 3;

struct mol_graph {
  std::int64_t n_atoms = 0;
  std::int64_t n_edges = 0;                 // directed edges: two per bond
  std::vector<std::int64_t> atom_features;  // [n_atoms, 9]
  std::vector<std::int64_t> edges;          // [n_edges, 2] (source, target) pairs
  std::vector<std::int64_t> bond_features;  // [n_edges, 3]
};

// What a featurizer gives a model: the OGB graph (forward(x, edge_index, edge_attr, batch,
// num_graphs)), one dense float32 row per molecule (forward(x [B, width])), or a graph with
// float32 atom and bond features and reverse edges, as Chemprop's D-MPNN takes it
// (forward(V [N, width], E [E, edge_width], edge_index, rev_edge_index, batch, num_graphs)).
struct feature_tensors {
  enum class kind { graph, dense, float_graph };
  kind what = kind::graph;
  std::int64_t width = 0;       // dense: columns per molecule; float_graph: per atom
  std::int64_t edge_width = 0;  // float_graph: columns per directed edge
};

// One molecule as a float_graph featurizer gives it. Edge 2i is bond i's begin → end atom,
// edge 2i + 1 the reverse, so an edge's reverse is e ^ 1.
struct float_graph {
  std::int64_t n_atoms = 0;  // rows of atom_features (a molecule may have a zero row)
  std::int64_t n_edges = 0;
  std::vector<float> atom_features;  // [n_atoms, width]
  std::vector<float> edge_features;  // [n_edges, edge_width]
  std::vector<std::int64_t> edges;   // [n_edges, 2] (source, target) pairs
};

}  // namespace hpcscreen::chem
