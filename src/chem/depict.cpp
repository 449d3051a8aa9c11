#include "hpcscreen/chem/depict.hpp"

#include <GraphMol/Depictor/RDDepictor.h>
#include <GraphMol/GraphMol.h>
#include <GraphMol/MolDraw2D/MolDraw2DSVG.h>
#include <GraphMol/SmilesParse/SmilesParse.h>

#include <memory>

#include "hpcscreen/chem/featurize.hpp"

namespace hpcscreen::chem {

std::string smiles_to_svg(const std::string& smiles, int width, int height) {
  silence_rdkit_logs();
  try {
    std::unique_ptr<RDKit::RWMol> mol(RDKit::SmilesToMol(smiles));
    if (!mol) return "";
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
