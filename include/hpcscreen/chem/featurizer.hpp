#pragma once
// Featurizers as registered parts. A model's hpcscreen.json names its featurizer and
// parameters ({"name": "morgan", "version": 1, "radius": 2, ...}); the registry makes it, the
// screen parses each molecule once and runs every featurizer its models need on it. Each
// featurizer declares the tensors it hands the model (a graph, or a dense [B, width] float32
// row per molecule) and its identity (name, version, parameters: what a feature cache is
// keyed by). RDKit stays behind this stage: callers never see an RDKit type.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hpcscreen/chem/featurize.hpp"

namespace hpcscreen::chem {

class parsed_molecule;  // an RDKit molecule, parsed and checked once per record

class featurizer {
 public:
  virtual ~featurizer() = default;
  virtual const std::string& name() const = 0;
  virtual int version() const = 0;
  // Canonical "name/version" plus every parameter ("morgan/1 radius=2 bits=2048 ..."): two
  // featurizers with the same identity give the same features for every molecule.
  virtual std::string identity() const = 0;
  virtual feature_tensors tensors() const = 0;
  // Dense featurizers: fills row[0, width). Graph featurizers: fills graph. Thread-safe.
  virtual void dense(const parsed_molecule& m, float* row) const;
  virtual void graph(const parsed_molecule& m, mol_graph& g) const;
  virtual void float_graph_of(const parsed_molecule& m, float_graph& g) const;
};

// The registered featurizers' names, for messages.
std::vector<std::string> featurizer_names();

// Makes the featurizer a model's hpcscreen.json asks for: `spec_json` is the "featurizer"
// object. Throws std::invalid_argument naming what is unknown or out of range (an unknown
// name or version, a parameter this featurizer lacks, a value out of range).
std::unique_ptr<featurizer> make_featurizer(const std::string& spec_json);

// One record's features for a set of featurizers, from one parse.
struct record_features {
  bool ok = false;
  std::string reason, detail;  // stable reject code and message when !ok
  // When one featurizer failed on the parsed molecule (which rejects the record for the whole
  // set): its index in the set; npos when the parse itself rejected it, or nothing failed.
  std::size_t failed_featurizer = std::string::npos;
  std::int64_t n_atoms = 0;
  mol_graph graph;                       // when a graph featurizer is in the set
  std::vector<std::vector<float>> dense;  // [featurizer index] rows; empty for other kinds
  std::vector<float_graph> float_graphs;  // [featurizer index]; empty for other kinds
};

// Parses `smiles` once with the same checks and rejects as featurize_smiles, then runs every
// featurizer of `set` on the molecule. Thread-safe.
record_features featurize_record(std::string_view smiles, const featurize_options& options,
                                 const std::vector<const featurizer*>& set);

// The features of featurizer k of an accepted record as bytes, for a feature cache, and back:
// decode(encode(r, k)) restores n_atoms and featurizer k's part of r exactly (little-endian
// u32 counts and indices, the OGB features as bytes, fingerprints as their nonzero columns,
// float features as float32). decode throws std::invalid_argument on bytes it cannot hold.
std::string encode_features(const record_features& r, std::size_t k, const feature_tensors& t);
void decode_features(std::string_view bytes, std::size_t k, const feature_tensors& t,
                     record_features& r);

}  // namespace hpcscreen::chem
