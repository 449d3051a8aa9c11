#include "hpcscreen/pack/compound_readers.hpp"

#include <algorithm>
#include <cctype>
#include <deque>
#include <optional>

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

std::string trimmed(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// A column named on the command line: an exact match first, else a case-insensitive one.
int find_named(const std::vector<std::string>& header, const std::string& wanted) {
  for (std::size_t i = 0; i < header.size(); ++i)
    if (trimmed(header[i]) == wanted) return static_cast<int>(i);
  const auto w = lower(wanted);
  for (std::size_t i = 0; i < header.size(); ++i)
    if (lower(trimmed(header[i])) == w) return static_cast<int>(i);
  return -1;
}

int find_default(const std::vector<std::string>& header, const std::vector<std::string>& names) {
  for (const auto& name : names)
    for (std::size_t i = 0; i < header.size(); ++i)
      if (lower(trimmed(header[i])) == name) return static_cast<int>(i);
  return -1;
}

std::string header_list(const std::vector<std::string>& header) {
  std::string s;
  for (std::size_t i = 0; i < header.size() && i < 30; ++i) {
    if (i) s += ", ";
    s += "'" + header[i] + "'";
  }
  if (header.size() > 30) s += ", ...";
  return s;
}

struct column_map {
  int smiles = -1;
  int id = -1;
  std::vector<int> kept;
};

column_map map_columns(const std::string& path, const std::vector<std::string>& header,
                       const reader_options& o) {
  column_map m;
  m.smiles = o.smiles_column.empty() ? find_default(header, default_smiles_columns())
                                     : find_named(header, o.smiles_column);
  if (m.smiles < 0) {
    throw usage_error("input '" + path + "': no SMILES column " +
                      (o.smiles_column.empty()
                           ? std::string("(looked for 'smiles', 'cxsmiles', ...)")
                           : "named '" + o.smiles_column + "'") +
                      " in the header (" + header_list(header) + "); use --smiles-column");
  }
  if (!o.id_column.empty()) {
    m.id = find_named(header, o.id_column);
    if (m.id < 0) {
      throw usage_error("input '" + path + "': no id column named '" + o.id_column +
                        "' in the header (" + header_list(header) + ")");
    }
  } else {
    m.id = find_default(header, default_id_columns());
  }
  for (const auto& k : o.keep_columns) {
    const int i = find_named(header, k);
    if (i < 0) {
      throw usage_error("input '" + path + "': no column named '" + k +
                        "' for --keep-columns in the header (" + header_list(header) + ")");
    }
    m.kept.push_back(i);
  }
  return m;
}

void split_whitespace(const std::string& line, std::vector<std::string>& tokens) {
  tokens.clear();
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    if (i == line.size()) break;
    std::size_t end = i;
    while (end < line.size() && !is_space(line[end])) ++end;
    tokens.emplace_back(line, i, end - i);
    i = end;
  }
}

// "C[C@H](N)C(=O)O |&1:1| name": the extension is the word(s) after the SMILES from one
// starting with '|' to one ending with '|'. It joins the SMILES, separated by one space (the
// CXSMILES form RDKit parses).
void join_cxsmiles_extension(std::vector<std::string>& tokens, std::size_t at) {
  if (at + 1 >= tokens.size() || tokens[at + 1].empty() || tokens[at + 1][0] != '|') return;
  std::size_t last = at + 1;
  auto closes = [&](std::size_t k) {
    const auto& t = tokens[k];
    return t.back() == '|' && (k > at + 1 || t.size() > 1);
  };
  while (last < tokens.size() && !closes(last)) ++last;
  if (last == tokens.size()) return;  // no closing '|': not an extension, leave the words alone
  for (std::size_t k = at + 1; k <= last; ++k) {
    tokens[at] += ' ';
    tokens[at] += tokens[k];
  }
  tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(at + 1),
               tokens.begin() + static_cast<std::ptrdiff_t>(last + 1));
}

void split_literal(const std::string& record, char delimiter, std::vector<std::string>& fields) {
  fields.clear();
  std::size_t begin = 0;
  for (;;) {
    const auto end = record.find(delimiter, begin);
    if (end == std::string::npos) {
      fields.emplace_back(record, begin);
      return;
    }
    fields.emplace_back(record, begin, end - begin);
    begin = end + 1;
  }
}

std::string too_long_reason(std::uint64_t max_line_bytes) {
  return "line is longer than --max-line-bytes (" + std::to_string(max_line_bytes) + " bytes)";
}

compound_record make_record(std::vector<std::string>& fields, const column_map& m,
                            std::uint64_t line) {
  compound_record r;
  r.line = line;
  auto field = [&](int i) -> std::string {
    return i >= 0 && static_cast<std::size_t>(i) < fields.size()
               ? std::move(fields[static_cast<std::size_t>(i)])
               : std::string();
  };
  // The same column may be kept and also be the id or SMILES: copy kept values first.
  for (const int k : m.kept)
    r.kept.push_back(k >= 0 && static_cast<std::size_t>(k) < fields.size()
                         ? fields[static_cast<std::size_t>(k)]
                         : std::string());
  r.smiles = field(m.smiles);
  if (m.id >= 0 && m.id != m.smiles) r.id = field(m.id);
  return r;
}

// The columns of a .smi header line, or nothing when `line` is a data line. A header names
// the SMILES column (--smiles-column, or a usual name). Where only the usual names say so, an id
// can be such a word ("CCO mol", "CCO mol name"): the line is a header when the name stands
// first or alone, or when the line begins with a usual id column name ("ID SMILES").
std::optional<column_map> smi_header(const std::string& path, const std::string& line,
                                     const reader_options& o) {
  std::vector<std::string> tokens;
  split_whitespace(line, tokens);
  const auto is_one_of = [](const std::string& t, const std::vector<std::string>& names) {
    return std::find(names.begin(), names.end(), lower(t)) != names.end();
  };
  bool header = false;
  for (std::size_t i = 0; i < tokens.size() && !header; ++i) {
    if (!o.smiles_column.empty()) {
      header = lower(tokens[i]) == lower(o.smiles_column);
    } else if (is_one_of(tokens[i], default_smiles_columns())) {
      header = i == 0 || tokens.size() == 1 || is_one_of(tokens[0], default_id_columns());
    }
  }
  if (header) return map_columns(path, tokens, o);
  if (!o.smiles_column.empty() || !o.id_column.empty() || !o.keep_columns.empty()) {
    throw usage_error("input '" + path +
                      "': --smiles-column, --id-column and --keep-columns need a header line "
                      "naming the columns ('smiles id ...'); the first line is not one");
  }
  return std::nullopt;
}

struct physical_line {
  std::string text;
  std::uint64_t number = 0;
  bool too_long = false;
};

// Lines of a text_source, with lines read ahead and given back: after an unterminated quote
// the lines it would have swallowed are read again as rows of their own.
class line_queue {
 public:
  explicit line_queue(text_source& in) : in_(in) {}
  bool next(physical_line& l) {
    if (!returned_.empty()) {
      l = std::move(returned_.front());
      returned_.pop_front();
      return true;
    }
    if (!in_.next_line(l.text)) return false;
    l.number = in_.line_number();
    l.too_long = in_.line_too_long();
    return true;
  }
  void give_back(std::vector<physical_line>& lines) {
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) returned_.push_front(std::move(*it));
    lines.clear();
  }

 private:
  text_source& in_;
  std::deque<physical_line> returned_;
};

}  // namespace

const std::vector<std::string>& default_smiles_columns() {
  static const std::vector<std::string> names{
      "smiles", "cxsmiles", "canonical_smiles", "isomeric_smiles", "smiles_string", "mol"};
  return names;
}

const std::vector<std::string>& default_id_columns() {
  static const std::vector<std::string> names{"id",          "idnumber", "zinc_id",   "compound_id",
                                              "molecule_id", "mol_id",   "chembl_id", "catalog_id",
                                              "name",        "title",    "identifier"};
  return names;
}

read_counts read_smi(const std::string& path, const reader_options& o, const record_sink& on_record,
                     const reject_sink& on_reject) {
  text_source in(path, {o.max_line_bytes});
  read_counts counts;
  std::string line;
  std::vector<std::string> tokens;
  bool first = true;
  bool has_header = false;
  column_map columns;
  while (in.next_line(line)) {
    if (!in.line_too_long() && !line.empty() && line[0] == '#') {
      ++counts.n_comments;
      continue;
    }
    if (first && !in.line_too_long()) {
      if (auto header = smi_header(path, line, o)) {
        has_header = true;
        columns = std::move(*header);
        ++counts.n_header_lines;
        first = false;
        continue;
      }
    }
    first = false;
    ++counts.n_rows;
    if (in.line_too_long()) {
      ++counts.n_rejects;
      on_reject({path, in.line_number(), too_long_reason(o.max_line_bytes)});
      continue;
    }
    compound_record r;
    r.line = in.line_number();
    split_whitespace(line, tokens);
    if (tokens.empty()) {
      r.smiles = line;  // blank or whitespace-only: the screen rejects it with a reason
      r.kept.resize(columns.kept.size());
    } else if (has_header) {
      join_cxsmiles_extension(tokens, static_cast<std::size_t>(columns.smiles));
      r = make_record(tokens, columns, in.line_number());
    } else {
      join_cxsmiles_extension(tokens, 0);
      r.smiles = std::move(tokens[0]);
      if (tokens.size() > 1) r.id = std::move(tokens[1]);
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

read_counts read_csv(const std::string& path, const reader_options& o, const record_sink& on_record,
                     const reject_sink& on_reject) {
  text_source in(path, {o.max_line_bytes});
  line_queue lines(in);
  read_counts counts;
  std::vector<std::string> fields;
  auto split = [&](const std::string& text) {
    if (o.quoting) return split_csv_record(text, o.delimiter, fields);
    split_literal(text, o.delimiter, fields);
    return true;
  };

  physical_line head;
  if (!lines.next(head)) throw usage_error("input '" + path + "' is empty (expected a header row)");
  if (head.too_long)
    throw usage_error("input '" + path + "': the header " + too_long_reason(o.max_line_bytes));
  if (!split(head.text)) {
    throw usage_error("input '" + path + "': the header row has an unterminated quote");
  }
  ++counts.n_header_lines;
  const std::vector<std::string> header = fields;
  const column_map columns = map_columns(path, header, o);
  const std::uint64_t max_bytes = o.max_line_bytes == 0 ? UINT64_MAX : o.max_line_bytes;

  auto quotes_in = [](const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '"'));
  };
  physical_line first;
  std::vector<physical_line> ahead;
  std::string joined;
  while (lines.next(first)) {
    ++counts.n_rows;
    auto reject = [&](std::string why) {
      ++counts.n_rejects;
      on_reject({path, first.number, std::move(why)});
    };
    if (first.too_long) {
      reject(too_long_reason(o.max_line_bytes));
      continue;
    }
    // Quote state is the parity of the quote characters so far ("" inside a quoted field
    // counts twice), so a record spanning lines is found without re-splitting each time.
    std::size_t quotes = o.quoting ? quotes_in(first.text) : 0;
    if (quotes % 2 == 0) {
      split(first.text);
    } else {
      joined = first.text;
      bool over_limit = false;
      physical_line more;
      while (quotes % 2 == 1 && lines.next(more)) {
        if (more.too_long || joined.size() + 1 + more.text.size() > max_bytes) {
          ahead.push_back(std::move(more));
          over_limit = true;
          break;
        }
        quotes += quotes_in(more.text);
        joined += '\n';
        joined += more.text;
        ahead.push_back(std::move(more));
      }
      if (quotes % 2 == 1) {
        reject(over_limit ? "unterminated quote: no closing quote within --max-line-bytes (" +
                                std::to_string(o.max_line_bytes) + " bytes)"
                          : std::string(
                                "unterminated quote: no closing quote before the end of the file"));
        lines.give_back(ahead);
        continue;
      }
      split_csv_record(joined, o.delimiter, fields);
      if (fields.size() != header.size()) {
        reject("a quoted field joins lines " + std::to_string(first.number) + "-" +
               std::to_string(ahead.back().number) + " into a row of " +
               std::to_string(fields.size()) + " fields, header has " +
               std::to_string(header.size()) + " (an unterminated quote?)");
        lines.give_back(ahead);
        continue;
      }
      ahead.clear();
    }
    if (fields.size() != header.size()) {
      const bool blank = first.text.find_first_not_of(" \t") == std::string::npos;
      reject(blank ? std::string("a blank line (the header has ") + std::to_string(header.size()) +
                         " fields)"
                   : "row has " + std::to_string(fields.size()) + " fields, header has " +
                         std::to_string(header.size()));
      continue;
    }
    ++counts.n_records;
    on_record(make_record(fields, columns, first.number));
  }
  return counts;
}

void check_header(const std::string& path, const std::string& text, bool smi,
                  const reader_options& o) {
  std::size_t begin = 0;
  std::string line;
  do {
    const auto end = std::min(text.find_first_of("\r\n", begin), text.size());
    line = text.substr(begin, end - begin);
    begin = end + 1;
  } while (smi && !line.empty() && line[0] == '#' && begin < text.size());
  if (smi) {
    if (smi_header(path, line, o)) return;
    // A CSV file named .smi ("smiles,id"): read as whitespace-separated, every row would be one
    // SMILES that RDKit cannot parse.
    std::vector<std::string> fields;
    split_literal(line, ',', fields);
    if (fields.size() > 1 && find_default(fields, default_smiles_columns()) >= 0) {
      throw usage_error("input '" + path + "' is read as .smi (whitespace-separated), but its " +
                        "first line is a comma-separated header ('" + line.substr(0, 80) +
                        "'): give --format csv, or name it .csv");
    }
    return;
  }
  std::vector<std::string> header;
  if (o.quoting) {
    if (!split_csv_record(line, o.delimiter, header)) return;  // read_csv names this one
  } else {
    split_literal(line, o.delimiter, header);
  }
  map_columns(path, header, o);
}

}  // namespace hpcscreen::pack
