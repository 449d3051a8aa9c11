#include "hpcscreen/pack/compound_readers.hpp"

#include <algorithm>
#include <cctype>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/pack/text_source.hpp"

namespace hpcscreen::pack {
namespace {
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

int find_column(const std::vector<std::string>& header, const std::string& wanted,
                const std::vector<std::string>& defaults) {
  if (!wanted.empty()) {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (header[i] == wanted) return static_cast<int>(i);
    return -2;
  }
  for (const auto& d : defaults)
    for (std::size_t i = 0; i < header.size(); ++i)
      if (lower(header[i]) == d) return static_cast<int>(i);
  return -1;
}
}  // namespace

smi_counts read_smi(const std::string& path, const record_sink& on_record) {
  text_source in(path);
  smi_counts counts;
  std::string line;
  while (in.next_line(line)) {
    if (!line.empty() && line[0] == '#') {
      ++counts.n_comments;
      continue;
    }
    compound_record r;
    r.line = in.line_number();
    std::size_t i = 0;
    while (i < line.size() && is_space(line[i])) ++i;
    if (i == line.size()) {
      r.smiles = line;  // blank or whitespace-only: the screen rejects it with a reason
    } else {
      std::size_t end = i;
      while (end < line.size() && !is_space(line[end])) ++end;
      r.smiles = line.substr(i, end - i);
      std::size_t id_begin = end;
      while (id_begin < line.size() && is_space(line[id_begin])) ++id_begin;
      std::size_t id_end = id_begin;
      while (id_end < line.size() && !is_space(line[id_end])) ++id_end;
      r.id = line.substr(id_begin, id_end - id_begin);
    }
    ++counts.n_records;
    on_record(std::move(r));
  }
  return counts;
}

bool split_csv_record(const std::string& record, char delimiter, std::vector<std::string>& fields) {
  fields.assign(1, std::string());
  bool quoted = false;
  for (std::size_t i = 0; i < record.size(); ++i) {
    const char c = record[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < record.size() && record[i + 1] == '"') {
          fields.back() += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == delimiter) {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return !quoted;
}

std::uint64_t read_csv(const std::string& path, const csv_options& options,
                       const record_sink& on_record, const reject_sink& on_reject) {
  text_source in(path);
  std::vector<std::string> fields;
  std::string line, record;
  // Reads one logical record, joining lines while a quoted field is open.
  auto next_record = [&](std::uint64_t& first_line) -> bool {
    if (!in.next_line(line)) return false;
    first_line = in.line_number();
    record = line;
    while (!split_csv_record(record, options.delimiter, fields)) {
      if (!in.next_line(line)) return true;  // unterminated quote at end of file
      record += '\n';
      record += line;
    }
    return true;
  };
  std::uint64_t header_line = 0;
  if (!next_record(header_line)) throw usage_error("CSV input '" + path + "' is empty");
  const std::vector<std::string> header = fields;
  const int smiles_col = find_column(header, options.smiles_column,
                                     {"smiles", "canonical_smiles", "isomeric_smiles", "mol"});
  const int id_col = find_column(header, options.id_column, {"id", "name", "compound_id", "title"});
  if (smiles_col < 0) {
    throw usage_error("CSV input '" + path + "': no SMILES column " +
                      (options.smiles_column.empty() ? std::string("(looked for 'smiles')")
                                                     : "named '" + options.smiles_column + "'") +
                      " in the header; use --smiles-column");
  }
  if (id_col == -2) {
    throw usage_error("CSV input '" + path + "': no id column named '" + options.id_column + "'");
  }
  std::uint64_t n = 0;
  std::uint64_t first_line = 0;
  while (next_record(first_line)) {
    if (!split_csv_record(record, options.delimiter, fields)) {
      on_reject({path, first_line, "unterminated quoted field at end of file"});
      continue;
    }
    if (fields.size() != header.size()) {
      on_reject({path, first_line,
                 "row has " + std::to_string(fields.size()) + " fields, header has " +
                     std::to_string(header.size())});
      continue;
    }
    compound_record r;
    r.line = first_line;
    r.smiles = fields[static_cast<std::size_t>(smiles_col)];
    if (id_col >= 0) r.id = fields[static_cast<std::size_t>(id_col)];
    ++n;
    on_record(std::move(r));
  }
  return n;
}

}  // namespace hpcscreen::pack
