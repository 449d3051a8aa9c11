#pragma once
// SMILES → molecular graph with the Open Graph Benchmark featurization (ogb smiles2graph).
// The only stage that includes RDKit. Bad input is never an exception here: a SMILES that
// cannot be featurized returns a reject reason (see data_schemas/rejects.md for the codes).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hpcscreen/batch/molecule_tensors.hpp"

namespace hpcscreen::chem {

// More '*' dummy atoms than this are rejected before RDKit sees them: its kekulization backtracks
// exponentially over aromatic rings of dummy atoms (21 take 2 s, each more ~2.3x; found by fuzzing).
inline constexpr int max_dummy_atoms = 8;

// Which of RDKit's parse steps run. `needed` skips the steps no feature can read for the
// molecule at hand: stereo perception when the SMILES has no stereo mark ('@', '/', '\\') and
// no CXSMILES extension, and the hydrogen-removal pass when it has no H atom. The features and
// rejects are those of `all` (RDKit's SmilesToMol with its defaults: sanitization, H removal,
// legacy stereo perception), checked molecule by molecule on the NCI, HIV and nasty sets by
// test_featurize; `all` stays for that check and for the stage benchmark.
enum class parse_steps { needed, all };

struct featurize_options {
  std::int64_t max_atoms = 500;  // heavy atoms; larger molecules are rejected ("too_many_atoms")
  parse_steps parse = parse_steps::needed;
};

struct featurize_result {
  bool ok = false;
  mol_graph graph;
  std::string reason;  // stable code when !ok
  std::string detail;  // RDKit's message or an explanation
};

// Thread-safe: featurize from as many threads as you like.
featurize_result featurize_smiles(std::string_view smiles, const featurize_options& options);

// RDKit's SMILES parse up to one step, for the stage benchmark's share of each step: the
// syntax alone, then sanitization, then the whole SmilesToMol (H removal and stereo
// perception). True when the molecule got through.
enum class parse_step { syntax, sanitize, smiles_to_mol };
bool parse_to_step(std::string_view smiles, parse_step step);

// Keeps RDKit's log lines out of the run's output. Call once before any featurization.
void silence_rdkit_logs();

// "RDKit <version>", for run.json.
std::string rdkit_version();

}  // namespace hpcscreen::chem
