#include "hpcscreen/pack/pack_library.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
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
#include "hpcscreen/dist/agreement.hpp"
#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pack/fasta_reader.hpp"
#include "hpcscreen/pack/text_source.hpp"
#include "hpcscreen/pipeline/outcome.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace hpcscreen::pack {

std::string shard_file_name(std::size_t input, std::size_t index) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "shard-%05zu-%05zu.h5", input, index);
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

constexpr const char* journal_file = "pack_journal.jsonl";  // written by earlier versions
constexpr const char* rejects_file = "pack_rejects.csv";

// The first row of a pack_rejects.csv (after its header), shortened for a message.
std::string first_reject(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!std::getline(in, line) || !std::getline(in, line)) return "(none found)";
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}
constexpr const char* rejects_header = "file,line,reason\n";

json input_identity(const std::string& path) {
  // "./a.smi", "a.smi" and "dir/../a.smi" are one input (a resume may spell it either way).
  const auto abs = fs::absolute(path).lexically_normal().string();
  const auto mtime = fs::last_write_time(path).time_since_epoch().count();
  const std::uintmax_t size = fs::is_directory(path) ? 0 : fs::file_size(path);  // a folder: 0
  return {{"file", abs}, {"size", size}, {"mtime", static_cast<long long>(mtime)}};
}

[[noreturn]] void throw_stopped(const pack_options& o) {
  throw stopped_error("pack stopped by a signal; inputs finished so far are kept: run the same "
                      "command with --resume to finish '" + o.out_dir + "'");
}

void check_unchanged(const std::string& path, const json& before) {
  std::error_code gone;
  if (!fs::exists(path, gone)) {
    throw error("input '" + path + "' disappeared while it was read; nothing of it is " +
                "kept: restore it and run the same command with --resume");
  }
  const auto now = input_identity(path);
  if (now == before) return;
  throw error("input '" + path + "' changed while it was read (size " + before.at("size").dump() +
              " bytes when reading began, " + now.at("size").dump() + " now" +
              (before.at("mtime") != now.at("mtime") ? ", modified meanwhile" : "") +
              "); nothing of it is kept: wait until the file is complete, then run the same "
              "command with --resume");
}

// Everything that decides what the library holds: a resumed pack must be started with the same.
json pack_config(const pack_options& o, const std::string& kind, const std::vector<std::string>& fields) {
  json inputs = json::array();
  for (const auto& in : o.inputs) inputs.push_back(input_identity(in));
  json config = {{"kind", kind},
                 {"fields", fields},
                 {"inputs", inputs},
                 {"format", o.format},
                 {"shard_records", o.shard_records},
                 {"smiles_column", o.csv.smiles_column},
                 {"id_column", o.csv.id_column},
                 {"keep_columns", o.csv.keep_columns},
                 {"max_line_bytes", o.csv.max_line_bytes},
                 {"sdf_id_field", o.sdf_id_field},
                 {"kind_config", o.kind_config}};
  if (o.shard_bytes > 0) config["shard_bytes"] = o.shard_bytes;  // absent: packs made before it
  return config;
}

// What differs first between the pack's recorded configuration and this command's: an input
// (named, with what changed) or an option.
std::string first_difference(const json& was, const json& now) {
  for (auto it = now.begin(); it != now.end(); ++it) {
    if (was.contains(it.key()) && was[it.key()] == it.value()) continue;
    if (it.key() == "inputs" && was.contains("inputs") && was["inputs"].is_array() &&
        was["inputs"].size() == it->size()) {
      for (std::size_t i = 0; i < it->size(); ++i) {
        const auto &before = was["inputs"][i], &input = (*it)[i];
        if (before == input) continue;
        if (!before.is_object() || !input.is_object())
          return "input " + std::to_string(i + 1) + " is recorded otherwise";
        std::string what;
        for (const auto* key : {"file", "size", "mtime"}) {
          if (before.value(key, json()) != input.value(key, json()))
            what += std::string(what.empty() ? "" : " and ") +
                    (key == std::string("mtime") ? "modification time" : key);
        }
        return "input " + std::to_string(i + 1) + " ('" + input.value("file", std::string()) +
               "') is not the one packed (its " + (what.empty() ? std::string("record") : what) +
               (what.find(" and ") == std::string::npos ? " differs)" : " differ)");
      }
    }
    if (it.key() == "inputs") return "the list of inputs differs (other names or another number)";
    return "the setting recorded as '" + it.key() + "' differs";
  }
  return "the options differ";
}

constexpr const char* parts_dir = "pack_parts";

std::string input_tag(std::size_t input) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%05zu", input);
  return buf;
}

// pack_parts/input-<i>.json: input i is finished; its shards and rejects are on disk.
fs::path done_record_path(const std::string& out_dir, std::size_t input) {
  return fs::path(out_dir) / parts_dir / ("input-" + input_tag(input) + ".json");
}

// pack_parts/rejects-<i>.csv: input i's rows of pack_rejects.csv, without the header.
fs::path rejects_part_path(const std::string& out_dir, std::size_t input) {
  return fs::path(out_dir) / parts_dir / ("rejects-" + input_tag(input) + ".csv");
}

// Buffers one shard of one input's records (field 0 is the id) and writes it when full, on a
// writer thread: one shard is written while the next is read. An input's shards are
// shard-<input>-<k>.h5 whatever rank packs it and whatever came before it.
class shard_builder {
 public:
  shard_builder(const pack_options& o, const io::manifest& layout, std::size_t input)
      : options_(o), layout_(layout), input_(input), columns_(layout.fields.size()) {}

  void add(std::string id, std::initializer_list<std::string_view> rest,
           const std::vector<std::string>& kept = {}) {
    const auto row = columns_[0].size();
    if (id.empty()) id = derived_id(shard_file_name(input_, shards_.size()), row);
    columns_[0].push_back(id);
    std::size_t f = 1;
    for (const auto v : rest) columns_[f++].push_back(v);
    for (const auto& v : kept) columns_[f++].push_back(v);
    HPCSCREEN_ASSERT(f == columns_.size());
    if (columns_[0].size() >= options_.shard_records || shard_full_of_bytes()) flush();
  }

  bool shard_full_of_bytes() const {
    if (options_.shard_bytes == 0) return false;
    std::uint64_t held = 0;
    for (const auto& c : columns_) held += c.bytes.size();
    return held >= options_.shard_bytes;
  }

  // Writes the last shard and waits until every shard of the input is on disk.
  const std::vector<io::shard_entry>& drain() {
    flush();
    wait_for_writer();
    return shards_;
  }

 private:
  // Hands a full shard to the writer thread and commits the one written before it.
  void flush() {
    if (columns_[0].size() == 0) return;
    wait_for_writer();
    const auto name = shard_file_name(input_, shards_.size());
    const auto path = (fs::path(options_.out_dir) / name).string();
    shards_.push_back({name, columns_[0].size(), ""});
    // HDF5 is called from this one writer at a time, never from two threads at once.
    writing_ = std::async(std::launch::async,
                          [columns = std::move(columns_), path, schema = layout_.shard_schema,
                           fields = layout_.fields, writing = options_.shard_writing] {
                            const auto tmp = path + ".tmp";
                            io::write_shard(tmp, schema, fields, columns, writing);
                            run::publish_file(tmp, path);
                            return file_checksum(path);
                          });
    columns_.assign(layout_.fields.size(), string_column());
  }

  void wait_for_writer() {
    if (!writing_.valid()) return;
    shards_.back().checksum = writing_.get();  // rethrows the writer's error
    if (options_.after_shard_commit) options_.after_shard_commit(input_, shards_.size() - 1);
  }

  const pack_options& options_;
  const io::manifest& layout_;
  std::size_t input_;
  std::vector<string_column> columns_;
  std::vector<io::shard_entry> shards_;
  std::future<std::string> writing_;
};

// One input packed by one rank: its shards, its part of pack_rejects.csv and, once both are
// on disk, its completion record.
class input_packer : public shard_sink {
 public:
  input_packer(const pack_options& o, const io::manifest& layout, std::size_t input)
      : options_(o),
        input_(input),
        builder_(o, layout, input),
        rejects_path_(rejects_part_path(o.out_dir, input).string()) {
    rejects_ = std::fopen(run::fresh_temporary(rejects_path_).c_str(), "w");
    if (!rejects_) throw error("cannot write '" + rejects_path_ + ".tmp': " + std::strerror(errno));
  }
  ~input_packer() {
    if (rejects_) std::fclose(rejects_);
  }
  input_packer(const input_packer&) = delete;
  input_packer& operator=(const input_packer&) = delete;

  void add(std::string id, std::initializer_list<std::string_view> rest,
           const std::vector<std::string>& kept = {}) override {
    ++n_records_;
    poll_stop();
    builder_.add(std::move(id), rest, kept);
  }

  void reject(pack_reject&& r) override {
    ++n_rejects_;
    poll_stop();
    const auto line =
        csv_field(r.source) + ',' + std::to_string(r.line) + ',' + csv_field(r.reason) + '\n';
    if (std::fputs(line.c_str(), rejects_) < 0) throw error("cannot write '" + rejects_path_ + "'");
  }
  std::uint64_t n_rejects() const override { return n_rejects_; }

  // Every row (a flag set by the signal handler: cheap; an image row can take a second to
  // decode, so a count of rows between checks could outlast a scheduler's grace period): a stop
  // request abandons this input (redone by --resume).
  void poll_stop() const {
    if (options_.stop_requested && options_.stop_requested()) throw_stopped(options_);
  }

  // The input is read: its last shard and its rejects go to disk, then the completion record
  // (written atomically) says so.
  void finish(const std::string& input, const std::string& format, const read_counts& c) {
    const auto& shards = builder_.drain();
    const bool ok = std::fflush(rejects_) == 0;  // (publish_file syncs it)
    const long rejects_bytes = std::ftell(rejects_);
    std::fclose(rejects_);
    rejects_ = nullptr;
    if (!ok || rejects_bytes < 0)
      throw error("cannot write '" + rejects_path_ + "': " + std::strerror(errno));
    run::publish_file(rejects_path_ + ".tmp", rejects_path_);
    json shard_list = json::array();
    for (const auto& s : shards) {
      shard_list.push_back({{"file", s.file},
                            {"n_records", s.n_records},
                            {"checksum", s.checksum},
                            {"bytes", fs::file_size(fs::path(options_.out_dir) / s.file)}});
    }
    const json source{{"file", fs::absolute(input).string()},
                      {"format", format},
                      {"compression", fs::is_directory(input)
                                          ? std::string("folder")
                                          : compression_name(probe_content(input, 0).kind)},
                      {"n_rows", c.n_rows},
                      {"n_records", n_records_},
                      {"n_pack_rejects", n_rejects_},
                      {"n_comment_lines", c.n_comments},
                      {"n_header_lines", c.n_header_lines}};
    run::write_file_atomically(done_record_path(options_.out_dir, input_).string(),
                               json{{"input", input_},
                                    {"shards", shard_list},
                                    {"rejects_bytes", rejects_bytes},
                                    {"source", source}}
                                       .dump() +
                                   "\n");
  }

 private:
  const pack_options& options_;
  std::size_t input_;
  shard_builder builder_;
  std::string rejects_path_;
  std::FILE* rejects_ = nullptr;
  std::uint64_t n_records_ = 0, n_rejects_ = 0;
};

// The completion record of input i if it is there and everything it lists is on disk as it
// was written; null otherwise.
json finished_input(const std::string& out_dir, std::size_t input) {
  const auto path = done_record_path(out_dir, input);
  if (!fs::exists(path)) return nullptr;
  json r;
  try {
    std::ifstream in(path);
    r = json::parse(in);
    if (r.at("input").get<std::size_t>() != input) return nullptr;
    const auto rejects = rejects_part_path(out_dir, input);
    if (!fs::exists(rejects) || fs::file_size(rejects) != r.at("rejects_bytes").get<std::uint64_t>())
      return nullptr;
    for (const auto& s : r.at("shards")) {
      const auto shard = fs::path(out_dir) / s.at("file").get<std::string>();
      if (!fs::exists(shard) || fs::file_size(shard) != s.at("bytes").get<std::uint64_t>())
        return nullptr;
    }
  } catch (const std::exception&) {
    return nullptr;  // cut short or damaged: the input is packed again
  }
  return r;
}

// Rank 0, for the rest of the pack: OUT/pack_parts/lock, so that a second pack (a --resume
// started while the first still runs) is refused instead of both writing one folder.
void lock_pack_folder(const pack_options& o) {
  const auto parts = (fs::path(o.out_dir) / parts_dir).string();
  fs::create_directories(parts);
  run::lock_folder(parts, "output folder '" + o.out_dir + "' is in use by another pack (it holds " +
                              (fs::path(parts) / "lock").string() + "); wait for it to end");
}

// A folder that holds no pack: empty, or left by a pack cut off before it wrote its INCOMPLETE
// marker (pack_parts/ with its lock alone, the marker's temporary file).
bool holds_no_pack(const fs::path& dir) {
  if (!fs::is_directory(dir)) return false;
  const auto marker_tmp = std::string(incomplete_marker) + ".tmp";
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    const auto status = e.symlink_status();
    if (name == marker_tmp && fs::is_regular_file(status)) continue;
    if (name != parts_dir || !fs::is_directory(status)) return false;
    for (const auto& p : fs::directory_iterator(e.path())) {
      if (p.path().filename() != "lock" || !fs::is_regular_file(p.symlink_status())) return false;
    }
  }
  return true;
}

// Rank 0: the output folder, fresh or continued. Returns the inputs still to pack.
std::vector<std::size_t> prepare_folder(const pack_options& o, const json& config,
                                        pack_summary& summary) {
  const fs::path dir(o.out_dir);
  const auto marker = dir / incomplete_marker;
  const bool unfinished = fs::exists(marker);
  std::vector<std::size_t> todo;
  if (!(unfinished && o.resume)) {
    if (fs::exists(dir)) {
      if (!holds_no_pack(dir)) {
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
    lock_pack_folder(o);
    run::write_file_atomically(marker.string(), config.dump(2) + "\n");
    for (std::size_t i = 0; i < o.inputs.size(); ++i) todo.push_back(i);
    return todo;
  }
  lock_pack_folder(o);

  json was;
  try {
    std::ifstream in(marker);
    was = json::parse(in);
  } catch (const json::exception& e) {
    throw usage_error("pack --resume: cannot read '" + marker.string() + "': " + e.what());
  }
  // An input without a completion record is packed again from scratch, so its size and time
  // may have changed (a download finished, a file that changed while read was replaced).
  auto comparable = [&](json c) {
    if (!c.contains("inputs") || !c["inputs"].is_array()) return c;
    for (std::size_t i = 0; i < c["inputs"].size() && i < o.inputs.size(); ++i) {
      if (!finished_input(o.out_dir, i).is_null() || !c["inputs"][i].is_object()) continue;
      c["inputs"][i].erase("size");
      c["inputs"][i].erase("mtime");
    }
    return c;
  };
  if (comparable(was) != comparable(config)) {
    throw usage_error("pack --resume: '" + o.out_dir + "' cannot be continued: " +
                      first_difference(comparable(was), comparable(config)) +
                      "; resume with the inputs and options the pack started with, or pack into "
                      "a new folder");
  }
  if (was != config) run::write_file_atomically(marker.string(), config.dump(2) + "\n");
  // Inputs with a completion record are kept; everything else is removed and redone.
  std::set<std::string> keep_top{incomplete_marker, parts_dir}, keep_parts{"lock"};
  for (std::size_t i = 0; i < o.inputs.size(); ++i) {
    const auto r = finished_input(o.out_dir, i);
    if (r.is_null()) {
      todo.push_back(i);
      continue;
    }
    ++summary.n_inputs_skipped;
    for (const auto& s : r.at("shards")) {
      keep_top.insert(s.at("file").get<std::string>());
      ++summary.n_shards_kept;
    }
    keep_parts.insert(done_record_path(o.out_dir, i).filename().string());
    keep_parts.insert(rejects_part_path(o.out_dir, i).filename().string());
  }
  fs::create_directories(dir / parts_dir);
  for (const auto& f : fs::directory_iterator(dir)) {
    if (!keep_top.count(f.path().filename().string())) fs::remove_all(f.path());
  }
  for (const auto& f : fs::directory_iterator(dir / parts_dir)) {
    if (!keep_parts.count(f.path().filename().string())) fs::remove_all(f.path());
  }
  return todo;
}

// Rank 0, once every input is finished: pack_rejects.csv in input order, the accounting, and
// the manifest, last.
void assemble(const pack_options& o, io::manifest manifest, pack_summary& summary) {
  const fs::path dir(o.out_dir);
  json sources = json::array();
  std::map<std::string, std::pair<std::string, std::size_t>> by_checksum;  // → shard, input
  const auto rejects_path = (dir / rejects_file).string();
  {
    std::ofstream out(run::fresh_temporary(rejects_path), std::ios::binary | std::ios::trunc);
    out << rejects_header;
    for (std::size_t i = 0; i < o.inputs.size(); ++i) {
      const auto r = finished_input(o.out_dir, i);
      if (r.is_null()) {
        throw error("input '" + o.inputs[i] +
                    "' has no complete record of its shards; rerun with --resume");
      }
      for (const auto& s : r.at("shards")) {
        manifest.shards.push_back({s.at("file").get<std::string>(),
                                   s.at("n_records").get<std::uint64_t>(),
                                   s.at("checksum").get<std::string>()});
        // The same rows twice (one file given under two names, or as .smi and .smi.gz): kept,
        // as any duplicate rows are, and said.
        const auto& shard = manifest.shards.back();
        const auto [same, fresh] = by_checksum.emplace(shard.checksum, std::pair{shard.file, i});
        if (!fresh && shard.n_records > 0) {
          std::fprintf(stderr,
                       "hpcscreen pack: warning: shard %s (from '%s') holds the same %llu rows as "
                       "%s (from '%s'): they are packed, and screened, twice\n",
                       shard.file.c_str(), o.inputs[i].c_str(),
                       static_cast<unsigned long long>(shard.n_records), same->second.first.c_str(),
                       o.inputs[same->second.second].c_str());
        }
      }
      const auto& source = r.at("source");
      summary.n_rows_read += source.at("n_rows").get<std::uint64_t>();
      summary.n_records += source.at("n_records").get<std::uint64_t>();
      summary.n_pack_rejects += source.at("n_pack_rejects").get<std::uint64_t>();
      summary.n_comments += source.at("n_comment_lines").get<std::uint64_t>();
      sources.push_back(source);
      if (r.at("rejects_bytes").get<std::uint64_t>() > 0) {  // (<< of an empty rdbuf fails)
        std::ifstream part(rejects_part_path(o.out_dir, i), std::ios::binary);
        out << part.rdbuf();
      }
    }
    out.flush();
    if (!out) throw error("cannot write '" + rejects_path + ".tmp': " + std::strerror(errno));
  }
  run::publish_file(rejects_path + ".tmp", rejects_path);
  summary.n_shards = manifest.shards.size();
  if (summary.n_rows_read != summary.n_records + summary.n_pack_rejects ||
      manifest.n_records() != summary.n_records) {
    throw error("the accounting does not add up: " + std::to_string(summary.n_rows_read) +
                " rows read, " + std::to_string(manifest.n_records()) + " records in shards, " +
                std::to_string(summary.n_pack_rejects) +
                " pack rejects; the library is left incomplete (no manifest)");
  }
  manifest.provenance_json = json{{"sources", sources},
                                  {"n_rows_read", summary.n_rows_read},
                                  {"n_pack_rejects", summary.n_pack_rejects},
                                  {"pack_rejects", rejects_file}}
                                 .dump();
  // Last, and durably: a library is usable once its manifest is there.
  run::write_file_atomically((dir / io::manifest_file_name).string(), io::manifest_text(manifest));
  fs::remove_all(dir / parts_dir);
  fs::remove(dir / journal_file);  // left by a pack of an earlier version
  fs::remove(dir / incomplete_marker);
}

json summary_json(const pack_summary& s) {
  return {{"n_rows_read", s.n_rows_read},       {"n_records", s.n_records},
          {"n_pack_rejects", s.n_pack_rejects}, {"n_comments", s.n_comments},
          {"n_shards", s.n_shards},             {"n_shards_kept", s.n_shards_kept},
          {"n_inputs_skipped", s.n_inputs_skipped}};
}

pack_summary summary_from(const json& j) {
  pack_summary s;
  s.n_rows_read = j.at("n_rows_read").get<std::uint64_t>();
  s.n_records = j.at("n_records").get<std::uint64_t>();
  s.n_pack_rejects = j.at("n_pack_rejects").get<std::uint64_t>();
  s.n_comments = j.at("n_comments").get<std::uint64_t>();
  s.n_shards = j.at("n_shards").get<std::size_t>();
  s.n_shards_kept = j.at("n_shards_kept").get<std::size_t>();
  s.n_inputs_skipped = j.at("n_inputs_skipped").get<std::size_t>();
  return s;
}

// Every rank: rank 0 prepares the folder, the ranks pack the inputs they take from a shared
// counter, rank 0 assembles the library. Ranks agree after each step.
}  // namespace

pack_summary pack_library(dist::context& ctx, const pack_options& o, const pack_reader& k) {
  io::manifest layout;
  layout.kind = k.kind;
  layout.shard_schema = k.schema;
  layout.fields = k.fields;
  pack_summary summary;

  json plan;
  dist::failure prepared;
  if (ctx.rank() == 0) {
    prepared = dist::capture_failure([&] {
      if (o.inputs.empty()) throw usage_error("no --input given");
      if (o.shard_records == 0) throw usage_error("--shard-size must be positive");
      std::map<std::string, std::string> seen;  // canonical path → as given
      for (const auto& in : o.inputs) {
        if (!fs::exists(in)) throw usage_error("input '" + in + "' does not exist");
        if (!fs::is_regular_file(in) && !(k.folders && fs::is_directory(in))) {
          throw usage_error("input '" + in +
                            "' is not a regular file (a pipe or device cannot be read twice, "
                            "which packing needs); write it to a file first");
        }
        // The same file twice would put every record in the library twice.
        const auto canonical = fs::weakly_canonical(in).string();
        if (const auto [it, fresh] = seen.emplace(canonical, in); !fresh) {
          throw usage_error("input '" + in + "' is given twice (also as '" + it->second +
                            "'): its records would be packed twice");
        }
      }
      // The input folder (as given) that is `p` or holds it; nullptr when none is.
      const auto input_holding = [&seen](fs::path p) -> const std::string* {
        for (; p.has_relative_path(); p = p.parent_path()) {
          const auto it = seen.find(p.string());
          if (it != seen.end() && fs::is_directory(it->first)) return &it->second;
        }
        return nullptr;
      };
      // Nor the library itself inside an input folder: the pack would read its own files.
      if (const auto* folder = input_holding(fs::weakly_canonical(o.out_dir))) {
        throw usage_error("--out '" + o.out_dir + "' lies inside input folder '" + *folder +
                          "': the pack would read its own files; write the library elsewhere");
      }
      // Nor a file or folder that lies inside an input folder (every file below it is read).
      for (const auto& [canonical, in] : seen) {
        if (const auto* folder = input_holding(fs::path(canonical).parent_path())) {
          throw usage_error("input '" + in + "' lies inside input folder '" + *folder +
                            "': its records would be packed twice");
        }
      }
      const auto formats = k.check_inputs();
      const auto todo = prepare_folder(o, pack_config(o, k.kind, k.fields), summary);
      plan = {{"formats", formats}, {"todo", todo}};
    });
  }
  dist::agree_or_throw(ctx, prepared, false);  // rank 0's alone
  plan = json::parse(ctx.broadcast(plan.dump()));
  const auto formats = plan.at("formats").get<std::vector<std::string>>();
  const auto todo = plan.at("todo").get<std::vector<std::size_t>>();

  // Inputs are handed out in input order as ranks become free; a rank that fails stops taking
  // more, the others go on (what they finish is kept for --resume).
  dist::failure packed;
  {
    auto counter = ctx.make_counter();
    while (packed.ok()) {
      if (o.stop_requested && o.stop_requested()) {
        packed = dist::capture_failure([&] { throw_stopped(o); });
        break;
      }
      const auto t = counter->next();
      if (t >= todo.size()) break;
      const auto i = todo[t];
      packed = dist::capture_failure([&] {
        // A file that changes while it is read (still being downloaded, truncated, rewritten)
        // yields rows that are neither the old nor the new file: the input fails instead.
        const auto before = input_identity(o.inputs[i]);
        input_packer p(o, layout, i);
        const auto counts = k.read_input(i, formats[i], p);
        check_unchanged(o.inputs[i], before);
        p.finish(o.inputs[i], formats[i], counts);
      });
    }
  }  // every rank drops the counter here (collective)
  dist::agree_or_throw(ctx, packed);

  dist::failure assembled;
  if (ctx.rank() == 0) assembled = dist::capture_failure([&] { assemble(o, layout, summary); });
  dist::agree_or_throw(ctx, assembled, false);
  auto packed_summary = summary_from(json::parse(ctx.broadcast(summary_json(summary).dump())));
  // A library of nothing, or of nothing but rejects (every row is accounted for in
  // pack_rejects.csv), is written, but it is almost always a wrong column, format or folder: it
  // fails.
  if (packed_summary.n_records == 0 && packed_summary.n_pack_rejects == 0)
    throw error(
        "nothing was packed: the inputs hold no rows (an empty file, a header alone, or a "
        "folder without images)");
  if (packed_summary.n_records == 0) {
    const auto rejects = (fs::path(o.out_dir) / rejects_file).string();
    throw error("nothing was packed: all " + std::to_string(packed_summary.n_pack_rejects) +
                " input rows are pack rejects; the first: " + first_reject(rejects) +
                " (every reason is in '" + rejects + "')");
  }
  return packed_summary;
}

namespace {

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
    if (pipeline::is_hit_list_column(k)) {  // shown in the hit lists beside these
      throw usage_error("--keep-columns: '" + k +
                        "' is a column of the hit lists too (rank, id, score, shard, row); keep "
                        "the others and rename it in the input if it is needed");
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
    throw usage_error("" + probe.refusal + "; expected " + format + " text");
  }
  const auto& s = probe.sample;
  const bool molblock = contains(s, "M  END") || contains(s, "V2000") || contains(s, "V3000");
  if (format == "sdf" && !s.empty() && !molblock && !contains(s, "$$$$")) {
    throw usage_error("input '" + input + "' (" + compression_name(probe.kind) +
                      ") does not look like an SD file: no molblock ('M  END', 'V2000') or '$$$$' "
                      "in its first " +
                      std::to_string(s.size()) + " bytes");
  }
  if (format != "sdf" && molblock && contains(s, "M  END")) {
    throw usage_error("input '" + input + "' holds molblocks (an SD file), not " + format +
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

pack_summary pack_compounds(dist::context& ctx, const pack_options& options) {
  pack_reader k;
  k.kind = "compounds";
  k.schema = io::compound_shard_schema;
  k.fields = io::compound_fields;
  k.fields.insert(k.fields.end(), options.csv.keep_columns.begin(), options.csv.keep_columns.end());
  k.check_inputs = [&] {
    check_keep_columns(options.csv.keep_columns);
    std::vector<std::string> formats;
    for (const auto& input : options.inputs) {
      const auto format = options.format.empty() ? format_from_name(input) : options.format;
      if (format != "smi" && format != "csv" && format != "tsv" && format != "cxsmiles" &&
          format != "sdf") {
        throw usage_error("pack compounds: unknown --format '" + format +
                          "' (smi, csv, tsv, cxsmiles, sdf)");
      }
      if (format == "sdf" && !options.csv.keep_columns.empty()) {
        throw usage_error("--keep-columns needs delimited inputs with a header; '" + input +
                          "' is an SD file");
      }
      check_content(input, format, reader_for(format, options.csv));
      formats.push_back(format);
    }
    return formats;
  };
  k.read_input = [&](std::size_t i, const std::string& format, shard_sink& p) {
    const auto& input = options.inputs[i];
    auto on_record = [&](compound_record&& r) { p.add(std::move(r.id), {r.smiles}, r.kept); };
    auto on_reject = [&](pack_reject&& r) { p.reject(std::move(r)); };
    const auto reader = reader_for(format, options.csv);
    read_counts counts;
    if (format == "smi") {
      counts = read_smi(input, reader, on_record, on_reject);
    } else if (format == "csv" || format == "tsv" || format == "cxsmiles") {
      counts = read_csv(input, reader, on_record, on_reject);
    } else {
      counts.n_records = chem::read_sdf(input, {options.sdf_id_field}, on_record, on_reject);
      counts.n_rejects = p.n_rejects();
      counts.n_rows = counts.n_records + counts.n_rejects;
    }
    return counts;
  };
  return pack_library(ctx, options, k);
}

pack_summary pack_compounds(const pack_options& options) {
  const auto ctx = dist::make_local_context();
  return pack_compounds(*ctx, options);
}

pack_summary pack_proteins(dist::context& ctx, const pack_options& options) {
  pack_reader k;
  k.kind = "proteins";
  k.schema = io::protein_shard_schema;
  k.fields = io::protein_fields;
  k.check_inputs = [&] {
    for (const auto& in : options.inputs) {  // a FASTA file has a '>' header near its start
      const auto probe = probe_content(in);
      if (!probe.refusal.empty()) throw usage_error("" + probe.refusal + "; expected FASTA text");
      if (!probe.sample.empty() && probe.sample.find('>') == std::string::npos) {
        throw usage_error("pack proteins: input '" + in + "' (" + compression_name(probe.kind) +
                          ") is not FASTA: no '>' header line in its first " +
                          std::to_string(probe.sample.size()) + " bytes");
      }
    }
    return std::vector<std::string>(options.inputs.size(), "fasta");
  };
  k.read_input = [&](std::size_t i, const std::string&, shard_sink& p) {
    read_counts counts;
    counts.n_records = read_fasta(
        options.inputs[i],
        [&](protein_record&& r) { p.add(std::move(r.id), {r.description, r.sequence}); },
        [&](pack_reject&& r) { p.reject(std::move(r)); });
    counts.n_rejects = p.n_rejects();
    counts.n_rows = counts.n_records + counts.n_rejects;
    return counts;
  };
  return pack_library(ctx, options, k);
}

pack_summary pack_proteins(const pack_options& options) {
  const auto ctx = dist::make_local_context();
  return pack_proteins(*ctx, options);
}

}  // namespace hpcscreen::pack
