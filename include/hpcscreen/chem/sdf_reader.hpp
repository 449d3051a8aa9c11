#pragma once
#include <string>

#include "hpcscreen/pack/compound_readers.hpp"

namespace hpcscreen::chem {

struct sdf_options {
  std::string id_field;  // SD property holding the id; empty: the molblock's title line
};

// Streams an SD file (plain or gzip) record by record; each molblock is parsed by RDKit and
// packed as its canonical isomeric SMILES. A record RDKit cannot read becomes a pack reject.
std::uint64_t read_sdf(const std::string& path, const sdf_options& options,
                       const pack::record_sink& on_record, const pack::reject_sink& on_reject);

}  // namespace hpcscreen::chem
