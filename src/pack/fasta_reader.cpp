#include "hpcscreen/pack/fasta_reader.hpp"

#include <optional>

#include "hpcscreen/pack/text_source.hpp"

namespace hpcscreen::pack {

std::uint64_t read_fasta(const std::string& path, const protein_sink& on_record,
                         const reject_sink& on_reject) {
  text_source in(path);
  std::optional<protein_record> current;
  bool current_has_sequence_line = false;
  std::uint64_t n = 0;
  std::uint64_t orphan_line = 0;  // first sequence line before any header
  auto emit = [&] {
    if (current) {
      ++n;
      on_record(std::move(*current));
      current.reset();
    }
  };
  std::string line;
  while (in.next_line(line)) {
    if (!line.empty() && line[0] == '>') {
      emit();
      current.emplace();
      current->line = in.line_number();
      current_has_sequence_line = false;
      std::size_t i = 1;
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      std::size_t end = i;
      while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
      current->id = line.substr(i, end - i);
      while (end < line.size() && (line[end] == ' ' || line[end] == '\t')) ++end;
      current->description = line.substr(end);
      continue;
    }
    bool blank = true;
    for (const char c : line) {
      if (c != ' ' && c != '\t') {
        blank = false;
        break;
      }
    }
    // A ';' line is a comment (Pearson's original FASTA): no residue is ';'.
    if (blank || line[0] == ';') continue;
    if (!current) {
      if (orphan_line == 0) orphan_line = in.line_number();
      continue;
    }
    current_has_sequence_line = true;
    for (const char c : line) {
      if (c != ' ' && c != '\t') current->sequence += c;
    }
  }
  if (orphan_line) {
    on_reject({path, orphan_line,
               "sequence text before the first '>' header (lines from here to the first header are "
               "not packed)"});
  }
  if (current && !current_has_sequence_line) {
    on_reject({path, current->line,
               "truncated record at end of file: header '" + current->id + "' has no sequence"});
    current.reset();
  }
  emit();
  return n;
}

}  // namespace hpcscreen::pack
