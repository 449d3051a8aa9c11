#include "hpcscreen/chem/depict.hpp"

#include <GraphMol/Depictor/RDDepictor.h>
#include <GraphMol/GraphMol.h>
#include <GraphMol/MolDraw2D/MolDraw2DSVG.h>
#include <GraphMol/SmilesParse/SmilesParse.h>

#include <memory>

#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/core/error.hpp"

namespace hpcscreen::chem {

std::string smiles_to_svg(const std::string& smiles, int width, int height) {
  silence_rdkit_logs();
  std::unique_ptr<RDKit::RWMol> mol;
  try {
    mol.reset(RDKit::SmilesToMol(smiles));
  } catch (const std::exception&) {
    return "";
  }
  if (!mol) return "";
  // 2D coordinates take time growing with the cube of the atoms (1,000 atoms 2.4 s, 4,000 about
  // 160 s): a page of 50 hits must not wait on one peptide or polymer.
  if (mol->getNumAtoms() > max_drawn_atoms)
    throw error("not drawn: " + std::to_string(mol->getNumAtoms()) +
                " atoms (structures are drawn up to " + std::to_string(max_drawn_atoms) + ")");
  try {
    RDDepict::compute2DCoords(*mol);
    RDKit::MolDraw2DSVG drawer(width, height);
    drawer.drawOptions().clearBackground = false;
    drawer.drawMolecule(*mol);
    drawer.finishDrawing();
    auto svg = drawer.getDrawingText();
    // Keep the <svg> element only: the page embeds it inline.
    const auto start = svg.find("<svg");
    return start == std::string::npos ? "" : svg.substr(start);
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace hpcscreen::chem
