#pragma once
#include <string>

namespace hpcscreen::chem {

// A 2D drawing of the molecule as an SVG element (RDKit's coordinate generation and SVG
// drawer); empty when RDKit cannot read the SMILES.
std::string smiles_to_svg(const std::string& smiles, int width, int height);

}  // namespace hpcscreen::chem
