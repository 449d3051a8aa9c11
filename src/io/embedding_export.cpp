#include "hpcscreen/io/embedding_export.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"
#include "hpcscreen/io/annotation_file.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::io {

namespace {

std::string shown_bytes(std::uint64_t n) {
  char s[32];
  if (n >= (1ull << 30))
    std::snprintf(s, sizeof s, "%.1f GiB", double(n) / double(1ull << 30));
  else if (n >= (1ull << 20))
    std::snprintf(s, sizeof s, "%.1f MiB", double(n) / double(1ull << 20));
  else
    std::snprintf(s, sizeof s, "%llu bytes", static_cast<unsigned long long>(n));
  return s;
}

nlohmann::json read_manifest(const std::string& run_dir) {
  const auto path = (fs::path(run_dir) / "annotations.json").string();
  if (is_special_file(path)) throw run_error("'" + path + "' is not a regular file");
  std::ifstream in(path);
  if (!in) {
    throw run_error("'" + run_dir +
                    "' has no annotations.json: not a finished 'hpcscreen annotate' run");
  }
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw run_error("'" + path + "' is not valid JSON: " + e.what());
  }
  const auto damaged = [&](const std::string& why) {
    return run_error(
        "'" + path + "' is damaged (" + why +
        "); run the same 'hpcscreen annotate' command with --resume to write it again");
  };
  if (!m.is_object() || !m.contains("files") || !m["files"].is_array())
    throw damaged("no list of files");
  for (const auto& f : m["files"]) {
    // Every file is a chunk file of this run folder.
    if (!f.is_object() || !f.contains("file") || !f["file"].is_string())
      throw damaged("a file entry has no file name");
    const auto name = f["file"].get<std::string>();
    if (name.rfind("annotations/", 0) != 0 || name.find("..") != std::string::npos)
      throw damaged("'" + name + "' is not a file of the run's annotations/ folder");
  }
  if (m.contains("output_level") && !m["output_level"].is_string()) throw damaged("output_level");
  if (m.contains("complete") && !m["complete"].is_boolean()) throw damaged("complete");
  if (m.contains("embeddings") && !m["embeddings"].is_object()) throw damaged("embeddings");
  return m;
}

// Records annotated by the run, as its run.json counts them.
std::uint64_t records_annotated(const std::string& run_dir) {
  const auto path = (fs::path(run_dir) / "run.json").string();
  if (is_special_file(path)) throw run_error("'" + path + "' is not a regular file");
  std::ifstream in(path);
  try {
    const auto j = nlohmann::json::parse(in);
    return j.at("records_scored").get<std::uint64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw run_error("cannot read the records annotated from '" + path + "': " + e.what());
  }
}

}  // namespace

std::string dataset_name_for_id(const std::string& id) {
  if (id == ".") return "%2E";
  if (id == "..") return "%2E%2E";
  std::string out;
  for (const char c : id) {
    if (c == '/')
      out += "%2F";
    else if (c == '%')
      out += "%25";
    else
      out += c;
  }
  return out;
}

embedding_export_summary export_embeddings(const embedding_export_options& o) {
  const auto manifest = read_manifest(o.run_dir);
  if (manifest.value("output_level", "") != "embedding" || !manifest.contains("embeddings")) {
    throw run_error("run '" + o.run_dir + "' holds no embeddings (its output_level is '" +
                    manifest.value("output_level", "") +
                    "'): annotate with an encoder and --embeddings first");
  }
  if (!manifest.value("complete", false)) {
    throw run_error("run '" + o.run_dir +
                    "' is not complete: finish it with 'hpcscreen annotate ... --resume' first");
  }
  const auto& info = manifest["embeddings"];
  embedding_export_summary sum;
  const bool has_seq = info.value("per_sequence", false),
             has_res = info.value("per_residue", false);
  sum.level = o.level.empty() ? (has_seq ? "per-sequence" : "per-residue") : o.level;
  if (sum.level != "per-sequence" && sum.level != "per-residue")
    throw usage_error("--level must be per-sequence or per-residue (got '" + sum.level + "')");
  const bool per_residue = sum.level == "per-residue";
  if ((per_residue && !has_res) || (!per_residue && !has_seq)) {
    throw run_error("run '" + o.run_dir + "' has no " + sum.level +
                    " embeddings; it was annotated with --embeddings " +
                    (has_seq ? "per-sequence" : "per-residue"));
  }

  // Like every other --out: an existing file is never replaced.
  if (fs::exists(fs::symlink_status(o.out_path))) {
    throw run_error("'" + o.out_path + "' already exists; choose another --out (export never "
                    "overwrites a file)");
  }
  // Sizes first, from the files' shapes alone: refuse before writing anything.
  std::vector<std::string> paths;
  for (const auto& f : manifest.at("files"))
    paths.push_back((fs::path(o.run_dir) / f.at("file").get<std::string>()).string());
  for (const auto& p : paths) {
    const auto e = read_embedding_extent(p);
    sum.hidden_size = e.hidden_size;
    sum.float16 = e.float16;
    sum.n_records += e.n_records;
    sum.payload_bytes +=
        (per_residue ? e.n_residues : e.n_records) * e.hidden_size * (e.float16 ? 2 : 4);
  }
  // Every annotated record is exported, or none: the files listed must hold what run.json counts.
  if (const auto counted = records_annotated(o.run_dir); counted != sum.n_records) {
    throw run_error("the files annotations.json lists hold " + std::to_string(sum.n_records) +
                    " records, but run.json counts " + std::to_string(counted) +
                    " annotated: the run folder is damaged; run the same 'hpcscreen annotate' "
                    "command with --resume to write its outputs again");
  }
  if (sum.payload_bytes > o.max_bytes) {
    throw run_error("the run's " + sum.level + " embeddings are " + shown_bytes(sum.payload_bytes) +
                    " (" + std::to_string(sum.n_records) + " records), above --max-bytes " +
                    shown_bytes(o.max_bytes) +
                    ": one dataset per id does not scale to this; read the run's chunk files "
                    "directly (tools/hpcscreen_py/embeddings.py) or raise --max-bytes");
  }

  const auto tmp = o.out_path + ".tmp";
  std::unordered_map<std::string, std::string> seen;  // dataset name → "shard row"
  try {
    named_array_file out(tmp);
    for (const auto& p : paths) {
      const auto a = read_annotation_chunk(p);
      const std::uint64_t row_bytes = a.hidden_size * (a.float16 ? 2 : 4);
      for (std::size_t i = 0; i < a.rows.size(); ++i) {
        const std::string id(a.ids[i]);
        const auto where = a.shard_file + " row " + std::to_string(a.rows[i]);
        if (id.empty())
          throw run_error("the record at " + where + " has an empty id: it cannot name a dataset");
        const auto name = dataset_name_for_id(id);
        const auto [it, fresh] = seen.emplace(name, where);
        if (!fresh) {
          throw run_error("id '" + id + "' appears twice (" + it->second + " and " + where +
                          "); the bio_embeddings layout names datasets by id, so ids must be "
                          "unique: read the run's chunk files instead");
        }
        if (per_residue) {
          const auto b = a.residue_offsets[i], e = a.residue_offsets[i + 1];
          out.add(name, id, e - b, a.hidden_size, a.float16,
                  a.per_residue_bytes.data() + b * row_bytes);
        } else {
          out.add(name, id, 0, a.hidden_size, a.float16,
                  a.per_sequence_bytes.data() + i * row_bytes);
        }
      }
    }
    out.close();
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
  // A hard link fails if the name appeared meanwhile, where a rename would replace it.
  std::error_code linked;
  fs::create_hard_link(tmp, o.out_path, linked);
  std::error_code ignored;
  fs::remove(tmp, ignored);
  if (linked) {
    throw run_error("cannot write '" + o.out_path + "': " + linked.message() +
                    (linked == std::errc::file_exists ? " (it appeared while exporting)" : ""));
  }
  return sum;
}

}  // namespace hpcscreen::io
