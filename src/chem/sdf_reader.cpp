#include "hpcscreen/chem/sdf_reader.hpp"

#include <GraphMol/FileParsers/FileParsers.h>
#include <GraphMol/GraphMol.h>
#include <GraphMol/SmilesParse/SmilesWrite.h>

#include <memory>

#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/pack/text_source.hpp"

namespace hpcscreen::chem {

std::uint64_t read_sdf(const std::string& path, const sdf_options& options,
                       const pack::record_sink& on_record, const pack::reject_sink& on_reject) {
  silence_rdkit_logs();
  pack::text_source in(path);
  std::string line, block, title, wanted_value;
  std::uint64_t n = 0, first_line = 0;
  bool in_block = false, in_props = false, capture_next = false;
  auto finish = [&] {
    pack::compound_record r;
    r.line = first_line;
    r.id = options.id_field.empty() ? title : wanted_value;
    std::string why;
    try {
      std::unique_ptr<RDKit::RWMol> mol(RDKit::MolBlockToMol(block, true, true));
      if (mol) {
        r.smiles = RDKit::MolToSmiles(*mol);
      } else {
        why = "RDKit could not parse the molblock";
      }
    } catch (const std::exception& e) {
      why = std::string("RDKit could not read the molblock: ") + e.what();
    }
    if (why.empty()) {
      ++n;
      on_record(std::move(r));
    } else {
      on_reject({path, first_line, why});
    }
    block.clear();
    title.clear();
    wanted_value.clear();
    in_block = in_props = capture_next = false;
  };
  while (in.next_line(line)) {
    if (!in_block) {
      in_block = true;
      first_line = in.line_number();
      title = line;
    }
    if (line.rfind("$$$$", 0) == 0) {
      finish();
      continue;
    }
    if (line.rfind("M  END", 0) == 0) in_props = true;
    if (in_props) {
      if (capture_next) {
        wanted_value = line;
        capture_next = false;
      } else if (!options.id_field.empty() && line.rfind(">", 0) == 0 &&
                 line.find("<" + options.id_field + ">") != std::string::npos) {
        capture_next = true;
      }
    }
    block += line;
    block += '\n';
  }
  if (in_block && block.find_first_not_of(" \t\n") != std::string::npos) {
    if (block.find("M  END") == std::string::npos) {
      on_reject({path, first_line, "truncated record at end of file (no 'M  END')"});
    } else {
      finish();  // last record without a closing "$$$$"
    }
  }
  return n;
}

}  // namespace hpcscreen::chem
