#include "hpcscreen/pack/pack_library.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hpcscreen/chem/sdf_reader.hpp"
#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/io/shard.hpp"

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

class shard_builder {
 public:
  shard_builder(const pack_options& o, io::manifest& m) : options_(o), manifest_(m) {}

  void add(compound_record&& r) {
    const auto row = ids_.size();
    if (r.id.empty()) r.id = derived_id(shard_file_name(manifest_.shards.size()), row);
    ids_.push_back(r.id);
    smiles_.push_back(r.smiles);
    if (ids_.size() >= options_.shard_records) flush();
  }

  void flush() {
    if (ids_.size() == 0) return;
    const auto name = shard_file_name(manifest_.shards.size());
    const auto path = (fs::path(options_.out_dir) / name).string();
    const auto tmp = path + ".tmp";
    io::write_shard(tmp, io::compound_shard_schema, io::compound_fields, {ids_, smiles_});
    fs::rename(tmp, path);
    manifest_.shards.push_back({name, ids_.size(), file_checksum(path)});
    ids_.clear();
    smiles_.clear();
  }

 private:
  const pack_options& options_;
  io::manifest& manifest_;
  string_column ids_, smiles_;
};

}  // namespace

pack_summary pack_compounds(const pack_options& options) {
  if (options.inputs.empty()) throw usage_error("pack: no --input given");
  if (options.shard_records == 0) throw usage_error("pack: --shard-size must be positive");
  for (const auto& in : options.inputs) {
    if (!fs::exists(in)) throw usage_error("pack: input '" + in + "' does not exist");
  }
  prepare_out_dir(options.out_dir);

  io::manifest m;
  m.kind = "compounds";
  m.shard_schema = io::compound_shard_schema;
  m.fields = io::compound_fields;
  shard_builder builder(options, m);
  pack_summary summary;

  const auto rejects_path = (fs::path(options.out_dir) / "pack_rejects.csv").string();
  std::ofstream rejects(rejects_path);
  rejects << "file,line,reason\n";
  auto on_record = [&](compound_record&& r) {
    ++summary.n_records;
    builder.add(std::move(r));
  };
  auto on_reject = [&](pack_reject&& r) {
    ++summary.n_pack_rejects;
    rejects << csv_field(r.source) << ',' << r.line << ',' << csv_field(r.reason) << '\n';
  };

  nlohmann::json sources = nlohmann::json::array();
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
      throw usage_error("pack: unknown --format '" + format + "' (smi, csv, tsv, sdf)");
    }
    summary.n_comments += comments;
    sources.push_back({{"file", fs::absolute(input).string()},
                       {"format", format},
                       {"n_records", summary.n_records - before},
                       {"n_pack_rejects", summary.n_pack_rejects - rejects_before},
                       {"n_comment_lines", comments}});
  }
  builder.flush();
  rejects.close();
  if (!rejects) throw error("cannot write '" + rejects_path + "'");

  m.provenance_json = nlohmann::json{{"sources", sources},
                                     {"n_pack_rejects", summary.n_pack_rejects},
                                     {"pack_rejects", "pack_rejects.csv"}}
                          .dump();
  io::write_manifest(options.out_dir, m);
  summary.n_shards = m.shards.size();
  if (m.n_records() != summary.n_records) {
    throw error("pack: internal accounting mismatch: " + std::to_string(summary.n_records) +
                " records read, " + std::to_string(m.n_records()) + " in shards");
  }
  return summary;
}

}  // namespace hpcscreen::pack
