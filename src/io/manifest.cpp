#include "hpcscreen/io/manifest.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>

#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"

namespace hpcscreen::io {

std::uint64_t manifest::n_records() const {
  std::uint64_t n = 0;
  for (const auto& s : shards) n += s.n_records;
  return n;
}

namespace {
// A shard listed twice (under the same name, or under a second name for the same file: a link)
// would be screened twice and its records counted twice. Two files with the same content are
// allowed: a library may hold the same rows twice (an input given under two names; pack warns).
void refuse_duplicate_shards(const std::string& library_dir, const manifest& m) {
  std::map<std::string, std::size_t> by_name;
  std::map<std::pair<dev_t, ino_t>, std::size_t> by_file;
  for (std::size_t i = 0; i < m.shards.size(); ++i) {
    const auto& s = m.shards[i];
    const auto name = std::filesystem::path(s.file).lexically_normal().string();
    if (const auto [it, fresh] = by_name.emplace(name, i); !fresh) {
      throw shard_error("shard '" + s.file + "' is listed twice (entries " +
                        std::to_string(it->second) + " and " + std::to_string(i) +
                        "): its records would be screened twice");
    }
    struct stat st {};
    if (::stat((std::filesystem::path(library_dir) / s.file).c_str(), &st) != 0) continue;
    if (const auto [it, fresh] = by_file.emplace(std::pair{st.st_dev, st.st_ino}, i); !fresh) {
      throw shard_error("shards '" + m.shards[it->second].file + "' and '" + s.file +
                        "' are one file under two names: its records would be screened twice");
    }
  }
}
}  // namespace

manifest read_manifest(const std::string& library_dir) {
  const auto path = (std::filesystem::path(library_dir) / manifest_file_name).string();
  // pack keeps this marker (pack::incomplete_marker) in the folder until the library is whole;
  // it is checked before the manifest, which a pack killed while finishing may have written.
  if (std::filesystem::exists(std::filesystem::path(library_dir) / "INCOMPLETE")) {
    throw shard_error("library '" + library_dir +
                      "': this library's pack did not complete; rerun pack with --resume");
  }
  if (is_special_file(path))  // a FIFO would block the read
    throw shard_error("library manifest '" + path + "' is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw shard_error("cannot open library manifest '" + path +
                      "': is --library a folder written by 'hpcscreen pack'?");
  }
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw shard_error("cannot read library manifest '" + path + "'");
  try {
    const auto j = nlohmann::json::parse(text);
    const auto schema = j.at("schema").get<std::string>();
    if (schema != manifest_schema) {
      throw shard_error("schema is '" + schema + "', expected '" + manifest_schema + "'");
    }
    manifest m;
    m.checksum = bytes_checksum(text);
    m.kind = j.at("kind").get<std::string>();
    m.shard_schema = j.at("shard_schema").get<std::string>();
    m.fields = j.at("fields").get<std::vector<std::string>>();
    for (const auto& s : j.at("shards")) {
      shard_entry e;
      e.file = s.at("file").get<std::string>();
      e.n_records = s.at("n_records").get<std::uint64_t>();
      e.checksum = s.value("checksum", "");
      if (!is_plain_relative_path(e.file)) {
        throw shard_error("shard file name '" + e.file + "' must be a plain relative name");
      }
      m.shards.push_back(std::move(e));
    }
    refuse_duplicate_shards(library_dir, m);
    if (j.contains("provenance")) m.provenance_json = j["provenance"].dump();
    const auto declared = j.value("n_records", m.n_records());
    if (declared != m.n_records()) {
      throw shard_error("n_records is " + std::to_string(declared) + " but the shards add up to " +
                        std::to_string(m.n_records()));
    }
    return m;
  } catch (const shard_error& e) {
    throw shard_error("manifest '" + path + "': " + e.what());
  } catch (const nlohmann::json::exception& e) {
    throw shard_error("manifest '" + path + "' is malformed: " + e.what());
  }
}

std::string manifest_text(const manifest& m) {
  nlohmann::json j;
  j["schema"] = manifest_schema;
  j["kind"] = m.kind;
  j["shard_schema"] = m.shard_schema;
  j["fields"] = m.fields;
  j["n_records"] = m.n_records();
  j["shards"] = nlohmann::json::array();
  for (const auto& s : m.shards) {
    j["shards"].push_back({{"file", s.file}, {"n_records", s.n_records}, {"checksum", s.checksum}});
  }
  j["provenance"] = nlohmann::json::parse(m.provenance_json);
  return j.dump(2) + "\n";
}

}  // namespace hpcscreen::io
