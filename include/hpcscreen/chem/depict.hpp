#pragma once
#include <string>

namespace hpcscreen::chem {

// Molecules with more atoms are not drawn (RDKit's 2D coordinates would take minutes).
inline constexpr unsigned max_drawn_atoms = 300;

// A 2D drawing of the molecule as an SVG element (RDKit's coordinate generation and SVG
// drawer); empty when RDKit cannot read the SMILES; throws error ("not drawn: ...") for a
// molecule of more than max_drawn_atoms atoms.
std::string smiles_to_svg(const std::string& smiles, int width, int height);

}  // namespace hpcscreen::chem
