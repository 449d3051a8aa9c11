#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "hpcscreen/pack/compound_readers.hpp"

namespace hpcscreen::pack {

struct protein_record {
  std::string id;           // first word of the header; empty: pack derives one
  std::string description;  // rest of the header
  std::string sequence;     // sequence lines joined, spaces and tabs removed, otherwise as written
  std::uint64_t line = 0;   // line of the header
};

using protein_sink = std::function<void(protein_record&&)>;

// FASTA, plain or gzip. Multi-line records, blank lines and Windows line endings are handled.
// Sequence text before the first header, and a header at the very end of the file with no
// sequence after it (a truncated record), are pack rejects. A header followed by another
// header is packed with an empty sequence, which annotate rejects with a reason. Characters
// are kept as written (digits, '*', lowercase): the tokenizer decides what they mean.
std::uint64_t read_fasta(const std::string& path, const protein_sink& on_record,
                         const reject_sink& on_reject);

}  // namespace hpcscreen::pack
