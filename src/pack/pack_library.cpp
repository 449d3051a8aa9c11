#include "hpcscreen/pack/pack_library.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "hpcscreen/chem/sdf_reader.hpp"
#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pack/fasta_reader.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::pack {

std::string shard_file_name(std::size_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05zu.h5", index);
  return buf;
}

std::string derived_id(const std::string& shard_file, std::uint64_t row) {
  return fs::path(shard_file).stem().string() + ":" + std::to_string(row);
}

namespace {

std::string detect_format(const std::string& path) {
  auto p = fs::path(path);
  if (p.extension() == ".gz") p = p.stem();
  const auto ext = p.extension().string();
  if (ext == ".smi" || ext == ".smiles" || ext == ".txt") return "smi";
  if (ext == ".csv") return "csv";
  if (ext == ".tsv") return "tsv";
  if (ext == ".sdf" || ext == ".sd" || ext == ".mol") return "sdf";
  throw usage_error("cannot tell the format of '" + path +
                    "' from its extension (.smi, .csv, .tsv, .sdf, optionally .gz); use --format");
}

void prepare_out_dir(const std::string& dir) {
  if (fs::exists(dir)) {
    if (!fs::is_directory(dir) || !fs::is_empty(dir)) {
      throw usage_error("output folder '" + dir +
                        "' already exists and is not empty; pack never overwrites a library");
    }
  } else {
    fs::create_directories(dir);
  }
}

// Buffers one shard of records (field 0 is the id) and writes it when full.
class shard_builder {
 public:
  shard_builder(const pack_options& o, io::manifest& m)
      : options_(o), manifest_(m), columns_(m.fields.size()) {}

  void add(std::string id, std::initializer_list<std::string_view> rest) {
    const auto row = columns_[0].size();
    if (id.empty()) id = derived_id(shard_file_name(manifest_.shards.size()), row);
    columns_[0].push_back(id);
    std::size_t f = 1;
    for (const auto v : rest) columns_[f++].push_back(v);
    HPCSCREEN_ASSERT(f == columns_.size());
    if (columns_[0].size() >= options_.shard_records) flush();
  }

  void flush() {
    if (columns_[0].size() == 0) return;
    const auto name = shard_file_name(manifest_.shards.size());
    const auto path = (fs::path(options_.out_dir) / name).string();
    const auto tmp = path + ".tmp";
    io::write_shard(tmp, manifest_.shard_schema, manifest_.fields, columns_);
    fs::rename(tmp, path);
    manifest_.shards.push_back({name, columns_[0].size(), file_checksum(path)});
    for (auto& c : columns_) c.clear();
  }

 private:
  const pack_options& options_;
  io::manifest& manifest_;
  std::vector<string_column> columns_;
};

// What every pack run shares: the output folder, pack_rejects.csv, provenance, manifest.
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
    prepare_out_dir(o.out_dir);
    manifest_.kind = kind;
    manifest_.shard_schema = schema;
    manifest_.fields = fields;
    builder_.emplace(o, manifest_);
    rejects_path_ = (fs::path(o.out_dir) / "pack_rejects.csv").string();
    rejects_.open(rejects_path_);
    rejects_ << "file,line,reason\n";
  }

  shard_builder& shards() { return *builder_; }
  pack_summary& summary() { return summary_; }
  void reject(pack_reject&& r) {
    ++summary_.n_pack_rejects;
    rejects_ << csv_field(r.source) << ',' << r.line << ',' << csv_field(r.reason) << '\n';
  }
  void source_done(const std::string& input, const std::string& format, std::uint64_t n_records,
                   std::uint64_t n_rejects, std::uint64_t n_comments) {
    sources_.push_back({{"file", fs::absolute(input).string()},
                        {"format", format},
                        {"n_records", n_records},
                        {"n_pack_rejects", n_rejects},
                        {"n_comment_lines", n_comments}});
  }

  pack_summary finish() {
    builder_->flush();
    rejects_.close();
    if (!rejects_) throw error("cannot write '" + rejects_path_ + "'");
    manifest_.provenance_json = nlohmann::json{
        {"sources", sources_},
        {"n_pack_rejects", summary_.n_pack_rejects},
        {"pack_rejects",
         "pack_rejects.csv"}}.dump();
    io::write_manifest(options_.out_dir, manifest_);
    summary_.n_shards = manifest_.shards.size();
    if (manifest_.n_records() != summary_.n_records) {
      throw error("pack: internal accounting mismatch: " + std::to_string(summary_.n_records) +
                  " records read, " + std::to_string(manifest_.n_records()) + " in shards");
    }
    return summary_;
  }

 private:
  const pack_options& options_;
  io::manifest manifest_;
  std::optional<shard_builder> builder_;
  pack_summary summary_;
  std::string rejects_path_;
  std::ofstream rejects_;
  nlohmann::json sources_ = nlohmann::json::array();
};

}  // namespace

pack_summary pack_compounds(const pack_options& options) {
  library_writer lib(options, "compounds", io::compound_shard_schema, io::compound_fields);
  auto& summary = lib.summary();
  auto on_record = [&](compound_record&& r) {
    ++summary.n_records;
    lib.shards().add(std::move(r.id), {r.smiles});
  };
  auto on_reject = [&](pack_reject&& r) { lib.reject(std::move(r)); };
  for (const auto& input : options.inputs) {
    const auto format = options.format.empty() ? detect_format(input) : options.format;
    const auto before = summary.n_records;
    const auto rejects_before = summary.n_pack_rejects;
    std::uint64_t comments = 0;
    if (format == "smi") {
      comments = read_smi(input, on_record).n_comments;
    } else if (format == "csv" || format == "tsv") {
      auto csv = options.csv;
      if (format == "tsv") csv.delimiter = '\t';
      read_csv(input, csv, on_record, on_reject);
    } else if (format == "sdf") {
      chem::read_sdf(input, {options.sdf_id_field}, on_record, on_reject);
    } else {
      throw usage_error("pack compounds: unknown --format '" + format + "' (smi, csv, tsv, sdf)");
    }
    summary.n_comments += comments;
    lib.source_done(input, format, summary.n_records - before,
                    summary.n_pack_rejects - rejects_before, comments);
  }
  return lib.finish();
}

pack_summary pack_proteins(const pack_options& options) {
  library_writer lib(options, "proteins", io::protein_shard_schema, io::protein_fields);
  auto& summary = lib.summary();
  for (const auto& input : options.inputs) {
    const auto before = summary.n_records;
    const auto rejects_before = summary.n_pack_rejects;
    read_fasta(
        input,
        [&](protein_record&& r) {
          ++summary.n_records;
          lib.shards().add(std::move(r.id), {r.description, r.sequence});
        },
        [&](pack_reject&& r) { lib.reject(std::move(r)); });
    lib.source_done(input, "fasta", summary.n_records - before,
                    summary.n_pack_rejects - rejects_before, 0);
  }
  return lib.finish();
}

}  // namespace hpcscreen::pack
