#include "hpcscreen/chem/featurize.hpp"

#include "molecule.hpp"

#include <GraphMol/GraphMol.h>
#include <GraphMol/MolOps.h>
#include <GraphMol/SmilesParse/SmilesParse.h>
#include <RDGeneral/RDLog.h>
#include <RDGeneral/versions.h>

#include <algorithm>
#include <memory>
#include <mutex>

namespace hpcscreen::chem {
namespace {

// Index into an OGB allowable-value list; anything outside maps to the last ("misc") index.
std::int64_t range_index(int value, int first, int last) {
  return (value >= first && value <= last) ? value - first : last - first + 1;
}

std::int64_t chirality_index(RDKit::Atom::ChiralType t) {
  switch (t) {
    case RDKit::Atom::CHI_UNSPECIFIED:
      return 0;
    case RDKit::Atom::CHI_TETRAHEDRAL_CW:
      return 1;
    case RDKit::Atom::CHI_TETRAHEDRAL_CCW:
      return 2;
    case RDKit::Atom::CHI_OTHER:
      return 3;
    default:
      return 4;
  }
}

std::int64_t hybridization_index(RDKit::Atom::HybridizationType h) {
  switch (h) {
    case RDKit::Atom::SP:
      return 0;
    case RDKit::Atom::SP2:
      return 1;
    case RDKit::Atom::SP3:
      return 2;
    case RDKit::Atom::SP3D:
      return 3;
    case RDKit::Atom::SP3D2:
      return 4;
    default:
      return 5;
  }
}

std::int64_t bond_type_index(RDKit::Bond::BondType t) {
  switch (t) {
    case RDKit::Bond::SINGLE:
      return 0;
    case RDKit::Bond::DOUBLE:
      return 1;
    case RDKit::Bond::TRIPLE:
      return 2;
    case RDKit::Bond::AROMATIC:
      return 3;
    default:
      return 4;
  }
}

// OGB's list is [NONE, Z, E, CIS, TRANS, ANY]; RDKit's enum orders them differently.
std::int64_t bond_stereo_index(RDKit::Bond::BondStereo s) {
  switch (s) {
    case RDKit::Bond::STEREONONE:
      return 0;
    case RDKit::Bond::STEREOZ:
      return 1;
    case RDKit::Bond::STEREOE:
      return 2;
    case RDKit::Bond::STEREOCIS:
      return 3;
    case RDKit::Bond::STEREOTRANS:
      return 4;
    default:
      return 5;
  }
}

featurize_result reject(std::string reason, std::string detail) {
  featurize_result r;
  r.reason = std::move(reason);
  r.detail = std::move(detail);
  return r;
}

// Limits checked before RDKit sees a string, so that no single record can hold a thread for
// long (a 1 MB SMILES took RDKit over 20 minutes and 2.6 GB). A heavy atom needs at most about
// a dozen bytes of SMILES: its longest usual token is a bracket atom such as [13C@@H+] (9),
// plus a bond, a branch and a ring closure (%nn). 20 bytes per allowed atom is generous; the
// floor keeps tiny --max-atoms values usable. A CXSMILES extension with 2D/3D coordinates
// takes about 30 bytes per atom.
constexpr std::size_t max_smiles_bytes_per_atom = 20;
constexpr std::size_t max_extension_bytes_per_atom = 64;
constexpr std::size_t min_byte_limit = 256;

bool is_control_or_space(unsigned char c) {
  return c <= 0x20 || c == 0x7f;
}

// Atom tokens of a SMILES, counted without parsing: organic-subset symbols (Cl and Br count
// once, by their first letter), aromatic symbols, '*' and bracket atoms other than hydrogen.
// Every one of them is a heavy (or dummy) atom RDKit keeps, so the count never exceeds the
// parsed molecule's atom count: rejecting on it rejects nothing RDKit would accept.
std::size_t count_atom_tokens(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '[') {
      auto close = s.find(']', i + 1);
      if (close == std::string_view::npos) close = s.size();
      std::size_t j = i + 1;
      while (j < close && s[j] >= '0' && s[j] <= '9') ++j;  // isotope
      const bool hydrogen =
          j < close && s[j] == 'H' && (j + 1 == close || s[j + 1] < 'a' || s[j + 1] > 'z');
      if (!hydrogen) ++n;
      i = close;
      continue;
    }
    switch (c) {
      case 'B':
      case 'C':
      case 'N':
      case 'O':
      case 'P':
      case 'S':
      case 'F':
      case 'I':
      case 'b':
      case 'c':
      case 'n':
      case 'o':
      case 'p':
      case 's':
      case '*':
        ++n;
        break;
      default:
        break;
    }
  }
  return n;
}

// RDKit's SmilesToMol as every featurizer's molecule has always been made: sanitization, H
// removal and stereo perception. A CXSMILES extension is parsed (stereo groups and all); a
// name after the SMILES never is: parse_checked allows no text outside the extension.
RDKit::SmilesParserParams smiles_to_mol_params() {
  RDKit::SmilesParserParams params;
  params.allowCXSMILES = true;
  params.parseName = false;
  return params;
}

// The same molecule as SmilesToMol with smiles_to_mol_params(), without the steps that cannot
// change it (measured in the stage benchmark: stereo perception was about a quarter of the
// parse, the H-removal pass about 7%). SmilesToMol (RDKit 2022.09) parses, then for a CXSMILES
// extension sets stereo from coordinates and wedges, then removes H atoms and sanitizes
// (removeHs with sanitize), then perceives stereo (legacy, cleanIt, force, flagPossible).
// - Without '@', '/', '\\' and an extension, no atom has a chiral tag and no bond a direction,
//   so stereo perception only sets properties no feature reads (_CIPRank, _ChiralityPossible):
//   it is skipped. Any stereo mark takes SmilesToMol's whole path.
// - Without an H atom, removeHs removes nothing and then sanitizes: sanitizeMol alone.
// Sanitization, which every reject of a parsed molecule comes from, runs whole either way.
std::unique_ptr<RDKit::RWMol> parse_smiles(const std::string& smiles, bool extension,
                                           parse_steps steps) {
  const auto full = smiles_to_mol_params();
  if (steps == parse_steps::all || extension ||
      smiles.find_first_of("@/\\") != std::string::npos) {
    return std::unique_ptr<RDKit::RWMol>(RDKit::SmilesToMol(smiles, full));
  }
  auto syntax_only = full;
  syntax_only.sanitize = false;
  syntax_only.removeHs = false;
  std::unique_ptr<RDKit::RWMol> mol(RDKit::SmilesToMol(smiles, syntax_only));
  if (!mol) return mol;
  // A query feature (never expected in a SMILES without extension) takes the whole path.
  if (mol->hasProp(RDKit::common_properties::_NeedsQueryScan)) {
    return std::unique_ptr<RDKit::RWMol>(RDKit::SmilesToMol(smiles, full));
  }
  bool has_h = false;
  for (const auto* atom : mol->atoms()) has_h = has_h || atom->getAtomicNum() == 1;
  if (has_h) {
    RDKit::MolOps::removeHs(*mol, /*implicitOnly=*/false, /*updateExplicitCount=*/true,
                            /*sanitize=*/true);
  } else {
    RDKit::MolOps::sanitizeMol(*mol);
  }
  return mol;
}

}  // namespace

void silence_rdkit_logs() {
  static std::once_flag once;
  std::call_once(once, [] { boost::logging::disable_logs("rdApp.*"); });
}

bool parse_to_step(std::string_view smiles, parse_step step) {
  try {
    auto params = smiles_to_mol_params();
    if (step != parse_step::smiles_to_mol) {
      params.sanitize = false;
      params.removeHs = false;
    }
    std::unique_ptr<RDKit::RWMol> mol(RDKit::SmilesToMol(std::string(smiles), params));
    if (mol && step == parse_step::sanitize) RDKit::MolOps::sanitizeMol(*mol);
    return mol != nullptr;
  } catch (const std::exception&) {
    return false;
  }
}

std::string rdkit_version() {
  return std::string("RDKit ") + RDKit::rdkitVersion;
}

featurize_result parse_checked(std::string_view smiles, const featurize_options& options,
                               std::unique_ptr<RDKit::RWMol>& mol) {
  if (smiles.empty()) return reject("empty_smiles", "the SMILES string is empty");
  bool all_space = true;
  for (const unsigned char c : smiles) {
    if (c >= 0x80) {
      // RDKit stops silently at a non-ASCII byte ("CéC" parses as methane): reject first.
      return reject("non_ascii", "the SMILES contains a non-ASCII byte");
    }
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\v' && c != '\f')
      all_space = false;
  }
  if (all_space) return reject("whitespace_only", "the SMILES is whitespace only");
  // A CXSMILES extension (Enamine REAL's enhanced stereo: "C[C@H](N)C(=O)O |&1:1|") follows
  // the SMILES after one space, between '|'s, with no whitespace inside.
  std::string_view core = smiles;
  std::string_view extension;
  const auto space = smiles.find(' ');
  if (space != std::string_view::npos && space + 2 < smiles.size() && smiles[space + 1] == '|' &&
      smiles.back() == '|') {
    core = smiles.substr(0, space);
    extension = smiles.substr(space + 1);
  }
  for (const std::string_view part : {core, extension}) {
    for (const unsigned char c : part) {
      if (is_control_or_space(c)) {
        return reject("invalid_character",
                      "the SMILES contains whitespace or a control character (byte " +
                          std::to_string(static_cast<int>(c)) + ")");
      }
    }
  }
  const auto max_atoms = static_cast<std::size_t>(std::max<std::int64_t>(options.max_atoms, 0));
  const auto max_core_bytes = std::max(max_smiles_bytes_per_atom * max_atoms, min_byte_limit);
  const auto max_extension_bytes =
      std::max(max_extension_bytes_per_atom * max_atoms, min_byte_limit);
  if (core.size() > max_core_bytes) {
    return reject("too_long", "the SMILES is " + std::to_string(core.size()) +
                                  " bytes, more than " + std::to_string(max_core_bytes) + " (" +
                                  std::to_string(max_smiles_bytes_per_atom) +
                                  " per atom of --max-atoms)");
  }
  if (extension.size() > max_extension_bytes) {
    return reject("too_long", "the CXSMILES extension is " + std::to_string(extension.size()) +
                                  " bytes, more than " + std::to_string(max_extension_bytes) +
                                  " (" + std::to_string(max_extension_bytes_per_atom) +
                                  " per atom of --max-atoms)");
  }

  const auto n_dummy = std::count(core.begin(), core.end(), '*');
  if (n_dummy > max_dummy_atoms) {
    return reject("too_many_dummy_atoms", std::to_string(n_dummy) + " dummy atoms '*', more than " +
                                              std::to_string(max_dummy_atoms) +
                                              " (RDKit's kekulization is exponential in them)");
  }
  const auto n_atom_tokens = count_atom_tokens(core);
  if (n_atom_tokens > max_atoms) {
    return reject("too_many_atoms", std::to_string(n_atom_tokens) + " atoms exceed --max-atoms " +
                                        std::to_string(options.max_atoms) +
                                        " (counted in the SMILES before parsing)");
  }
  mol.reset();
  try {
    // The molecule OGB's Chem.MolFromSmiles makes (sanitized, stereo assigned and cleaned),
    // with only the steps this SMILES needs.
    mol = parse_smiles(std::string(smiles), !extension.empty(), options.parse);
    if (!mol) return reject("smiles_syntax", "RDKit could not parse the SMILES");
  } catch (const RDKit::AtomValenceException& e) {
    return reject("valence", e.what());
  } catch (const RDKit::AtomKekulizeException& e) {
    return reject("kekulization", e.what());
  } catch (const RDKit::KekulizeException& e) {
    return reject("kekulization", e.what());
  } catch (const RDKit::MolSanitizeException& e) {
    return reject("sanitization", e.what());
  } catch (const std::exception& e) {
    return reject("smiles_syntax", e.what());
  }
  const auto n_atoms = static_cast<std::int64_t>(mol->getNumAtoms());
  if (n_atoms == 0) return reject("no_atoms", "the molecule has no atoms");
  if (n_atoms > options.max_atoms) {
    return reject("too_many_atoms", std::to_string(n_atoms) + " atoms exceed --max-atoms " +
                                        std::to_string(options.max_atoms));
  }

  featurize_result ok;
  ok.ok = true;
  return ok;
}

void ogb_graph(const RDKit::ROMol& m, mol_graph& g) {
  const auto* mol = &m;
  const auto n_atoms = static_cast<std::int64_t>(mol->getNumAtoms());
  g = mol_graph{};
  g.n_atoms = n_atoms;
  g.atom_features.reserve(static_cast<std::size_t>(n_atoms) * n_atom_features);
  const auto* rings = mol->getRingInfo();
  for (const auto* atom : mol->atoms()) {
    const std::int64_t f[n_atom_features] = {
        range_index(atom->getAtomicNum(), 1, 118),
        chirality_index(atom->getChiralTag()),
        range_index(static_cast<int>(atom->getTotalDegree()), 0, 10),
        range_index(atom->getFormalCharge(), -5, 5),
        range_index(static_cast<int>(atom->getTotalNumHs()), 0, 8),
        range_index(static_cast<int>(atom->getNumRadicalElectrons()), 0, 4),
        hybridization_index(atom->getHybridization()),
        atom->getIsAromatic() ? 1 : 0,
        rings->numAtomRings(atom->getIdx()) > 0 ? 1 : 0,
    };
    g.atom_features.insert(g.atom_features.end(), f, f + n_atom_features);
  }
  g.n_edges = 2 * static_cast<std::int64_t>(mol->getNumBonds());
  g.edges.reserve(static_cast<std::size_t>(g.n_edges) * 2);
  g.bond_features.reserve(static_cast<std::size_t>(g.n_edges) * n_bond_features);
  for (const auto* bond : mol->bonds()) {
    const std::int64_t i = bond->getBeginAtomIdx();
    const std::int64_t j = bond->getEndAtomIdx();
    const std::int64_t f[n_bond_features] = {bond_type_index(bond->getBondType()),
                                             bond_stereo_index(bond->getStereo()),
                                             bond->getIsConjugated() ? 1 : 0};
    g.edges.insert(g.edges.end(), {i, j, j, i});
    g.bond_features.insert(g.bond_features.end(), f, f + n_bond_features);
    g.bond_features.insert(g.bond_features.end(), f, f + n_bond_features);
  }
}

featurize_result featurize_smiles(std::string_view smiles, const featurize_options& options) {
  std::unique_ptr<RDKit::RWMol> mol;
  auto r = parse_checked(smiles, options, mol);
  if (r.ok) ogb_graph(*mol, r.graph);
  return r;
}

}  // namespace hpcscreen::chem
