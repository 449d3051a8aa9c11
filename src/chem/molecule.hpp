#pragma once
// Inside the chem stage only: the parsed molecule every featurizer reads, and the two steps
// featurize_smiles is made of (parse with its checks, then the OGB graph).
#include <GraphMol/RWMol.h>

#include <memory>
#include <string_view>

#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/chem/featurizer.hpp"

namespace hpcscreen::chem {

class parsed_molecule {
 public:
  parsed_molecule(const RDKit::ROMol& m, std::string_view s) : mol(m), smiles(s) {}
  const RDKit::ROMol& mol;
  std::string_view smiles;  // as read: a featurizer with its own parse options starts here
};

// The byte checks, RDKit's parse with sanitization and the atom limits of featurize_smiles:
// ok, with `mol` set, or a reject (reason, detail).
featurize_result parse_checked(std::string_view smiles, const featurize_options& options,
                               std::unique_ptr<RDKit::RWMol>& mol);

// The OGB smiles2graph features of a parsed molecule.
void ogb_graph(const RDKit::ROMol& mol, mol_graph& g);

}  // namespace hpcscreen::chem
