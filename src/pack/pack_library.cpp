#include "hpcscreen/pack/pack_library.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "hpcscreen/chem/sdf_reader.hpp"
#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pack/fasta_reader.hpp"
#include "hpcscreen/pack/text_source.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace hpcscreen::pack {

std::string shard_file_name(std::size_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05zu.h5", index);
  return buf;
}

std::string derived_id(const std::string& shard_file, std::uint64_t row) {
  return fs::path(shard_file).stem().string() + ":" + std::to_string(row);
}

std::string format_from_name(const std::string& path) {
  auto p = fs::path(path);
  for (const char* c : {".gz", ".bz2", ".xz", ".zst", ".zstd"}) {
    if (p.extension() == c) {
      p = p.stem();
      break;
    }
  }
  const auto ext = p.extension().string();
  if (ext == ".smi" || ext == ".smiles" || ext == ".txt") return "smi";
  if (ext == ".csv") return "csv";
  if (ext == ".tsv") return "tsv";
  if (ext == ".cxsmiles") return "cxsmiles";
  if (ext == ".sdf" || ext == ".sd" || ext == ".mol") return "sdf";
  throw usage_error("cannot tell the format of '" + path +
                    "' from its name (.smi, .csv, .tsv, .cxsmiles, .sdf, optionally followed by "
                    ".gz, .bz2, .xz or .zst); use --format");
}

namespace {

constexpr const char* journal_file = "pack_journal.jsonl";
constexpr const char* rejects_file = "pack_rejects.csv";
constexpr const char* rejects_header = "file,line,reason\n";

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Appends one line and makes it durable before returning: a line in the journal means what it
// describes is on disk.
void append_durably(const std::string& path, const std::string& line) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) throw error("cannot append to '" + path + "'");
  const bool ok = std::fputs(line.c_str(), f) >= 0 && std::fputc('\n', f) != EOF &&
                  std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  std::fclose(f);
  if (!ok) throw error("cannot append to '" + path + "'");
}

void write_durably(const std::string& path, const std::string& content) {
  const auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) throw error("cannot write '" + tmp + "'");
  }
  fsync_path(tmp);
  fs::rename(tmp, path);
}

json input_identity(const std::string& path) {
  const auto abs = fs::absolute(path).string();
  const auto mtime = fs::last_write_time(path).time_since_epoch().count();
  return {{"file", abs}, {"size", fs::file_size(path)}, {"mtime", static_cast<long long>(mtime)}};
}

// Everything that decides what the library holds: a resumed pack must be started with the same.
json pack_config(const pack_options& o, const char* kind, const std::vector<std::string>& fields) {
  json inputs = json::array();
  for (const auto& in : o.inputs) inputs.push_back(input_identity(in));
  return {{"kind", kind},
          {"fields", fields},
          {"inputs", inputs},
          {"format", o.format},
          {"shard_records", o.shard_records},
          {"smiles_column", o.csv.smiles_column},
          {"id_column", o.csv.id_column},
          {"keep_columns", o.csv.keep_columns},
          {"max_line_bytes", o.csv.max_line_bytes},
          {"sdf_id_field", o.sdf_id_field}};
}

std::string first_difference(const json& was, const json& now) {
  for (auto it = now.begin(); it != now.end(); ++it) {
    if (!was.contains(it.key()) || was[it.key()] != it.value()) {
      if (it.key() == "inputs") return "the inputs (names, sizes or modification times)";
      return "'" + it.key() + "'";
    }
  }
  return "the options";
}

struct journal_shard {
  io::shard_entry entry;
  std::size_t input = 0;
};

// Buffers one shard of records (field 0 is the id) and writes it when full. A shard holds
// records of one input only, so an input's shards are the same whatever came before it.
class shard_builder {
 public:
  using commit_fn = std::function<void(const io::shard_entry&, std::size_t index, bool kept)>;
  shard_builder(const pack_options& o, io::manifest& m, commit_fn on_commit)
      : options_(o), manifest_(m), columns_(m.fields.size()), on_commit_(std::move(on_commit)) {}

  // Shards an earlier attempt committed for the input being read: kept, not written again.
  void reuse(std::map<std::size_t, io::shard_entry> shards) { reusable_ = std::move(shards); }
  // Shards the earlier attempt committed that this reading of the input did not reach.
  const std::map<std::size_t, io::shard_entry>& unreached() const { return reusable_; }

  void add(std::string id, std::initializer_list<std::string_view> rest,
           const std::vector<std::string>& kept = {}) {
    const auto row = columns_[0].size();
    if (id.empty()) id = derived_id(shard_file_name(manifest_.shards.size()), row);
    columns_[0].push_back(id);
    std::size_t f = 1;
    for (const auto v : rest) columns_[f++].push_back(v);
    for (const auto& v : kept) columns_[f++].push_back(v);
    HPCSCREEN_ASSERT(f == columns_.size());
    if (columns_[0].size() >= options_.shard_records) flush();
  }

  // Hands a full shard to the writer thread (one shard is written while the next is read) and
  // commits the one written before it.
  void flush() {
    if (columns_[0].size() == 0) return;
    wait_for_writer();
    const auto index = manifest_.shards.size();
    const auto name = shard_file_name(index);
    const auto path = (fs::path(options_.out_dir) / name).string();
    const auto n = columns_[0].size();
    const auto earlier = reusable_.find(index);
    if (earlier != reusable_.end()) {
      if (earlier->second.n_records != n) {
        throw error("pack --resume: shard '" + path + "' held " +
                    std::to_string(earlier->second.n_records) + " records, the input now gives " +
                    std::to_string(n) + "; has an input changed? Pack into a new folder");
      }
      manifest_.shards.push_back(earlier->second);
      reusable_.erase(earlier);
      on_commit_(manifest_.shards.back(), index, true);
      for (auto& c : columns_) c.clear();
      return;
    }
    manifest_.shards.push_back({name, n, ""});
    writing_index_ = index;
    // HDF5 is called from this one writer at a time, never from two threads at once.
    writing_ = std::async(std::launch::async,
                          [columns = std::move(columns_), path, schema = manifest_.shard_schema,
                           fields = manifest_.fields] {
                            const auto tmp = path + ".tmp";
                            io::write_shard(tmp, schema, fields, columns);
                            fsync_path(tmp);
                            fs::rename(tmp, path);
                            return file_checksum(path);
                          });
    columns_.assign(manifest_.fields.size(), string_column());
  }

  // Flushes the last shard and waits until every shard is written and committed.
  void drain() {
    flush();
    wait_for_writer();
  }

 private:
  void wait_for_writer() {
    if (!writing_.valid()) return;
    auto& entry = manifest_.shards[writing_index_];
    entry.checksum = writing_.get();  // rethrows the writer's error
    on_commit_(entry, writing_index_, false);
  }

  const pack_options& options_;
  io::manifest& manifest_;
  std::vector<string_column> columns_;
  commit_fn on_commit_;
  std::future<std::string> writing_;
  std::size_t writing_index_ = 0;
  std::map<std::size_t, io::shard_entry> reusable_;
};

// What every pack run shares: the output folder and its INCOMPLETE marker, the journal,
// pack_rejects.csv, provenance, the accounting and the manifest.
class library_writer {
 public:
  library_writer(const pack_options& o, const char* kind, const char* schema,
                 const std::vector<std::string>& fields)
      : options_(o) {
    if (o.inputs.empty()) throw usage_error("pack: no --input given");
    if (o.shard_records == 0) throw usage_error("pack: --shard-size must be positive");
    for (const auto& in : o.inputs) {
      if (!fs::exists(in)) throw usage_error("pack: input '" + in + "' does not exist");
    }
    manifest_.kind = kind;
    manifest_.shard_schema = schema;
    manifest_.fields = fields;
    const fs::path dir(o.out_dir);
    marker_path_ = (dir / incomplete_marker).string();
    journal_path_ = (dir / journal_file).string();
    rejects_path_ = (dir / rejects_file).string();
    const auto config = pack_config(o, kind, fields);

    const bool unfinished = fs::exists(marker_path_);
    if (unfinished && o.resume) {
      resume_from(config);
    } else {
      if (fs::exists(dir)) {
        if (!fs::is_directory(dir) || !fs::is_empty(dir)) {
          if (unfinished) {
            throw usage_error("output folder '" + o.out_dir +
                              "' holds a pack that did not complete; continue it with --resume "
                              "(same inputs and options) or choose another folder");
          }
          throw usage_error("output folder '" + o.out_dir + "' already exists and is not empty" +
                            (o.resume && fs::exists(dir / io::manifest_file_name)
                                 ? std::string(": its pack completed, there is nothing to resume")
                                 : std::string("; pack never overwrites a library")));
        }
      } else {
        fs::create_directories(dir);
      }
      write_durably(marker_path_, config.dump(2) + "\n");
      write_durably(journal_path_, "");
      write_durably(rejects_path_, rejects_header);
    }
    rejects_ = std::fopen(rejects_path_.c_str(), "a");
    if (!rejects_) throw error("cannot append to '" + rejects_path_ + "'");
    builder_.emplace(o, manifest_, [this](const io::shard_entry& e, std::size_t index, bool kept) {
      if (kept) {
        ++summary_.n_shards_kept;
      } else {
        append_durably(journal_path_, json{{"shard", e.file},
                                           {"input", current_input_},
                                           {"n_records", e.n_records},
                                           {"checksum", e.checksum}}
                                          .dump());
      }
      if (options_.after_shard_commit) options_.after_shard_commit(index);
    });
  }

  ~library_writer() {
    if (rejects_) std::fclose(rejects_);
  }

  // Inputs [0, first_input()) were finished by an earlier attempt.
  std::size_t first_input() const { return first_input_; }

  void begin_input(std::size_t index) {
    current_input_ = index;
    if (auto it = partial_.find(index); it != partial_.end())
      builder_->reuse(std::move(it->second));
  }
  shard_builder& shards() { return *builder_; }
  pack_summary& summary() { return summary_; }

  void reject(pack_reject&& r) {
    ++summary_.n_pack_rejects;
    const auto line =
        csv_field(r.source) + ',' + std::to_string(r.line) + ',' + csv_field(r.reason) + '\n';
    if (std::fputs(line.c_str(), rejects_) < 0) throw error("cannot write '" + rejects_path_ + "'");
  }

  // Ends an input: its last shard is written, its rejects are on disk, and the journal says
  // so; a resumed pack starts after it.
  void end_input(const std::string& input, const std::string& format, const read_counts& c,
                 std::uint64_t n_records, std::uint64_t n_rejects) {
    builder_->drain();
    if (!builder_->unreached().empty()) {
      throw error("pack --resume: '" + input +
                  "' now gives fewer shards than the earlier attempt "
                  "committed (" +
                  builder_->unreached().begin()->second.file +
                  " was not reached); has it changed? Pack into a new folder");
    }
    if (std::fflush(rejects_) != 0 || ::fsync(fileno(rejects_)) != 0) {
      throw error("cannot write '" + rejects_path_ + "'");
    }
    json source{{"file", fs::absolute(input).string()},
                {"format", format},
                {"compression", compression_name(probe_content(input, 0).kind)},
                {"n_rows", c.n_rows},
                {"n_records", n_records},
                {"n_pack_rejects", n_rejects},
                {"n_comment_lines", c.n_comments},
                {"n_header_lines", c.n_header_lines}};
    summary_.n_rows_read += c.n_rows;
    summary_.n_comments += c.n_comments;
    sources_.push_back(source);
    append_durably(journal_path_, json{{"input_done", current_input_},
                                       {"n_shards", manifest_.shards.size()},
                                       {"rejects_bytes", std::ftell(rejects_)},
                                       {"n_records_total", summary_.n_records},
                                       {"n_rejects_total", summary_.n_pack_rejects},
                                       {"source", source}}
                                      .dump());
  }

  pack_summary finish() {
    builder_->drain();
    std::fclose(rejects_);
    rejects_ = nullptr;
    summary_.n_shards = manifest_.shards.size();
    if (summary_.n_rows_read != summary_.n_records + summary_.n_pack_rejects ||
        manifest_.n_records() != summary_.n_records) {
      throw error("pack: the accounting does not add up: " + std::to_string(summary_.n_rows_read) +
                  " rows read, " + std::to_string(manifest_.n_records()) + " records in shards, " +
                  std::to_string(summary_.n_pack_rejects) +
                  " pack rejects; the library is left incomplete (no manifest)");
    }
    manifest_.provenance_json = json{
        {"sources", sources_},
        {"n_rows_read", summary_.n_rows_read},
        {"n_pack_rejects", summary_.n_pack_rejects},
        {"pack_rejects",
         rejects_file}}.dump();
    io::write_manifest(options_.out_dir, manifest_);
    fs::remove(journal_path_);
    fs::remove(marker_path_);
    return summary_;
  }

 private:
  // Continues an unfinished pack: keeps what the journal says was committed and still checks
  // out, removes everything else the earlier attempt left.
  void resume_from(const json& config) {
    json was;
    try {
      std::ifstream in(marker_path_);
      was = json::parse(in);
    } catch (const json::exception& e) {
      throw usage_error("pack --resume: cannot read '" + marker_path_ + "': " + e.what());
    }
    if (was != config) {
      throw usage_error("pack --resume: '" + options_.out_dir + "' was started with different " +
                        first_difference(was, config) +
                        "; rerun the same command with --resume, or pack into a new folder");
    }
    std::vector<json> entries;
    {
      std::ifstream in(journal_path_);
      std::string line;
      while (std::getline(in, line)) {
        try {
          entries.push_back(json::parse(line));
        } catch (const json::exception&) {
          break;  // a line cut short by the kill: nothing after it was committed
        }
      }
    }
    // Walk the journal in order; stop at the first shard that is missing or altered.
    std::vector<json> kept_entries;
    std::vector<journal_shard> shards;
    json last_done;
    std::uint64_t rejects_bytes = std::char_traits<char>::length(rejects_header);
    for (const auto& e : entries) {
      if (e.contains("shard")) {
        const auto name = e.at("shard").get<std::string>();
        const auto path = (fs::path(options_.out_dir) / name).string();
        const auto checksum = e.at("checksum").get<std::string>();
        if (name != shard_file_name(shards.size()) || !fs::exists(path) ||
            file_checksum(path) != checksum) {
          break;
        }
        shards.push_back({{name, e.at("n_records").get<std::uint64_t>(), checksum},
                          e.at("input").get<std::size_t>()});
      } else if (e.contains("input_done")) {
        if (e.at("input_done").get<std::size_t>() != first_input_) break;
        last_done = e;
        ++first_input_;
        rejects_bytes = e.at("rejects_bytes").get<std::uint64_t>();
        sources_.push_back(e.at("source"));
      }
      kept_entries.push_back(e);
    }
    if (!fs::exists(rejects_path_) || fs::file_size(rejects_path_) < rejects_bytes) {
      // pack_rejects.csv lost rows the journal counts: redo everything.
      kept_entries.clear();
      shards.clear();
      sources_ = json::array();
      first_input_ = 0;
      last_done = json();
      rejects_bytes = std::char_traits<char>::length(rejects_header);
      write_durably(rejects_path_, rejects_header);
    }
    fs::resize_file(rejects_path_, rejects_bytes);
    const std::size_t n_done_shards =
        last_done.is_null() ? 0 : last_done.at("n_shards").get<std::size_t>();
    std::set<std::string> keep;
    for (std::size_t i = 0; i < shards.size(); ++i) {
      keep.insert(shards[i].entry.file);
      if (i < n_done_shards) {
        manifest_.shards.push_back(shards[i].entry);
      } else {
        partial_[shards[i].input][i] = shards[i].entry;
      }
    }
    if (!last_done.is_null()) {
      summary_.n_records = last_done.at("n_records_total").get<std::uint64_t>();
      summary_.n_pack_rejects = last_done.at("n_rejects_total").get<std::uint64_t>();
      for (const auto& s : sources_) {
        summary_.n_rows_read += s.at("n_rows").get<std::uint64_t>();
        summary_.n_comments += s.at("n_comment_lines").get<std::uint64_t>();
      }
    }
    summary_.n_inputs_skipped = first_input_;
    summary_.n_shards_kept = n_done_shards;
    for (const auto& f : fs::directory_iterator(options_.out_dir)) {
      const auto name = f.path().filename().string();
      if (name == incomplete_marker || name == journal_file || name == rejects_file) continue;
      if (!keep.count(name)) fs::remove_all(f.path());
    }
    std::string journal;
    for (const auto& e : kept_entries) {
      // Only the shards of finished inputs and the kept shards of the next one stay listed.
      if (e.contains("shard") && !keep.count(e.at("shard").get<std::string>())) continue;
      journal += e.dump() + "\n";
    }
    write_durably(journal_path_, journal);
  }

  const pack_options& options_;
  io::manifest manifest_;
  std::optional<shard_builder> builder_;
  pack_summary summary_;
  std::string marker_path_, journal_path_, rejects_path_;
  std::FILE* rejects_ = nullptr;
  json sources_ = json::array();
  std::size_t first_input_ = 0;
  std::size_t current_input_ = 0;
  std::map<std::size_t, std::map<std::size_t, io::shard_entry>> partial_;  // input -> shards
};

void check_keep_columns(const std::vector<std::string>& keep) {
  std::set<std::string> seen;
  for (const auto& k : keep) {
    std::string low = k;
    std::transform(low.begin(), low.end(), low.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (k.empty() || k.find('/') != std::string::npos || k == "." || k.front() == ' ' ||
        low == "id" || low == "smiles") {
      throw usage_error("--keep-columns: '" + k +
                        "' cannot be a shard field (empty, '/', or the id or smiles field itself)");
    }
    if (!seen.insert(low).second) throw usage_error("--keep-columns: '" + k + "' is given twice");
  }
}

bool contains(const std::string& s, const char* what) {
  return s.find(what) != std::string::npos;
}

// Refuses, before anything is written, an input whose content is not what its format needs.
void check_content(const std::string& input, const std::string& format,
                   const reader_options& reader) {
  const auto probe = probe_content(input);
  if (!probe.refusal.empty()) {
    throw usage_error("pack: " + probe.refusal + "; expected " + format + " text");
  }
  const auto& s = probe.sample;
  const bool molblock = contains(s, "M  END") || contains(s, "V2000") || contains(s, "V3000");
  if (format == "sdf" && !s.empty() && !molblock && !contains(s, "$$$$")) {
    throw usage_error("pack: input '" + input + "' (" + compression_name(probe.kind) +
                      ") does not look like an SD file: no molblock ('M  END', 'V2000') or '$$$$' "
                      "in its first " +
                      std::to_string(s.size()) + " bytes");
  }
  if (format != "sdf" && molblock && contains(s, "M  END")) {
    throw usage_error("pack: input '" + input + "' holds molblocks (an SD file), not " + format +
                      " text; use --format sdf");
  }
  if (format != "sdf" && !s.empty()) check_header(input, s, format == "smi", reader);
}

// The reader settings a format implies on top of the command line's.
reader_options reader_for(const std::string& format, reader_options reader) {
  if (format == "tsv" || format == "cxsmiles") reader.delimiter = '\t';
  // Enamine's tab-separated CXSMILES files use no quoting; a '"' there is data.
  if (format == "cxsmiles") reader.quoting = false;
  return reader;
}

}  // namespace

pack_summary pack_compounds(const pack_options& options) {
  check_keep_columns(options.csv.keep_columns);
  std::vector<std::string> formats;
  for (const auto& input : options.inputs) {
    if (!fs::exists(input)) throw usage_error("pack: input '" + input + "' does not exist");
    const auto format = options.format.empty() ? format_from_name(input) : options.format;
    if (format != "smi" && format != "csv" && format != "tsv" && format != "cxsmiles" &&
        format != "sdf") {
      throw usage_error("pack compounds: unknown --format '" + format +
                        "' (smi, csv, tsv, cxsmiles, sdf)");
    }
    if (format == "sdf" && !options.csv.keep_columns.empty()) {
      throw usage_error("pack: --keep-columns needs delimited inputs with a header; '" + input +
                        "' is an SD file");
    }
    check_content(input, format, reader_for(format, options.csv));
    formats.push_back(format);
  }
  auto fields = io::compound_fields;
  fields.insert(fields.end(), options.csv.keep_columns.begin(), options.csv.keep_columns.end());
  library_writer lib(options, "compounds", io::compound_shard_schema, fields);
  auto& summary = lib.summary();
  std::uint64_t n_records = 0, n_rejects = 0;  // of the current input, as the sinks saw them
  auto on_record = [&](compound_record&& r) {
    ++n_records;
    ++summary.n_records;
    lib.shards().add(std::move(r.id), {r.smiles}, r.kept);
  };
  auto on_reject = [&](pack_reject&& r) {
    ++n_rejects;
    lib.reject(std::move(r));
  };
  for (std::size_t i = lib.first_input(); i < options.inputs.size(); ++i) {
    const auto& input = options.inputs[i];
    const auto& format = formats[i];
    lib.begin_input(i);
    n_records = n_rejects = 0;
    read_counts counts;
    const auto reader = reader_for(format, options.csv);
    if (format == "smi") {
      counts = read_smi(input, reader, on_record, on_reject);
    } else if (format == "csv" || format == "tsv" || format == "cxsmiles") {
      counts = read_csv(input, reader, on_record, on_reject);
    } else {
      counts.n_records = chem::read_sdf(input, {options.sdf_id_field}, on_record, on_reject);
      counts.n_rejects = n_rejects;
      counts.n_rows = counts.n_records + counts.n_rejects;
    }
    lib.end_input(input, format, counts, n_records, n_rejects);
  }
  return lib.finish();
}

pack_summary pack_proteins(const pack_options& options) {
  library_writer lib(options, "proteins", io::protein_shard_schema, io::protein_fields);
  auto& summary = lib.summary();
  for (std::size_t i = lib.first_input(); i < options.inputs.size(); ++i) {
    const auto& input = options.inputs[i];
    lib.begin_input(i);
    std::uint64_t n_rejects = 0;
    read_counts counts;
    counts.n_records = read_fasta(
        input,
        [&](protein_record&& r) {
          ++summary.n_records;
          lib.shards().add(std::move(r.id), {r.description, r.sequence});
        },
        [&](pack_reject&& r) {
          ++n_rejects;
          lib.reject(std::move(r));
        });
    counts.n_rejects = n_rejects;
    counts.n_rows = counts.n_records + n_rejects;
    lib.end_input(input, "fasta", counts, counts.n_records, n_rejects);
  }
  return lib.finish();
}

}  // namespace hpcscreen::pack
