#include "hpcscreen/chem/sdf_reader.hpp"

#include <GraphMol/FileParsers/FileParsers.h>
#include <GraphMol/GraphMol.h>
#include <GraphMol/SmilesParse/SmilesWrite.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/pack/text_source.hpp"

namespace hpcscreen::chem {

std::uint64_t read_sdf(const std::string& path, const sdf_options& options,
                       const pack::record_sink& on_record, const pack::reject_sink& on_reject) {
  silence_rdkit_logs();
  pack::text_source in(path);
  std::string line, block, title, wanted_value;
  std::vector<std::size_t> line_starts;  // where each of the block's lines begins in `block`
  std::uint64_t n = 0, first_line = 0;
  bool in_block = false, in_props = false, in_data = false, capture_next = false;
  auto reset = [&] {
    block.clear();
    line_starts.clear();
    title.clear();
    wanted_value.clear();
    in_block = in_props = in_data = capture_next = false;
  };
  auto finish = [&] {
    pack::compound_record r;
    r.line = first_line;
    r.id = options.id_field.empty() ? title : wanted_value;
    std::string why;
    try {
      std::unique_ptr<RDKit::RWMol> mol(RDKit::MolBlockToMol(block, true, true));
      if (mol && mol->getNumAtoms() == 0) {
        why = "the molblock has no atoms";
      } else if (mol) {
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
    reset();
  };
  // A counts line ("... V2000" / "... V3000") after a record's "M  END", outside a data item,
  // means the record's "$$$$" is missing and the next molecule has begun three lines above.
  // Reading on would merge the two (RDKit parses the first and drops the second), so the
  // unterminated record is rejected and the next one is read from its own header.
  auto is_counts_line = [](const std::string& l) {
    const auto end = l.find_last_not_of(" \t\r");
    return end != std::string::npos && end >= 4 &&
           (l.compare(end - 4, 5, "V2000") == 0 || l.compare(end - 4, 5, "V3000") == 0);
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
    if (in_props && !in_data && is_counts_line(line)) {
      // (At most the three lines before; none when the record is its "M  END" line alone.)
      const std::size_t header = std::min<std::size_t>(3, line_starts.size() - 1);
      const std::size_t split =
          header == 0 ? block.size() : line_starts[line_starts.size() - header];
      const std::uint64_t next_first = in.line_number() - header;
      on_reject({path, first_line,
                 "the record has no '$$$$' terminator: another molecule starts at line " +
                     std::to_string(next_first) + " (the record is left out, not merged)"});
      const std::string next = block.substr(split);
      reset();
      in_block = true;
      first_line = next_first;
      for (std::size_t b = 0; b < next.size();) {
        const auto e = next.find('\n', b);
        line_starts.push_back(block.size());
        block.append(next, b, e - b + 1);
        b = e + 1;
      }
      title = block.substr(0, block.find('\n'));
    }
    if (line.rfind("M  END", 0) == 0) {
      in_props = true;
    } else if (in_props) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        in_data = false;  // a blank line closes a data item
      } else if (line.rfind(">", 0) == 0) {
        in_data = true;
      }
      if (capture_next) {
        wanted_value = line;
        capture_next = false;
      } else if (!options.id_field.empty() && line.rfind(">", 0) == 0 &&
                 line.find("<" + options.id_field + ">") != std::string::npos) {
        capture_next = true;
      }
    }
    line_starts.push_back(block.size());
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
