// Feature caches: built by `hpcscreen featurize`, read by `screen` (feature_cache.hpp).
#include "hpcscreen/screen/feature_cache.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/dist/agreement.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hpcscreen::screen {
namespace {

const std::vector<std::string> cache_fields{"reason", "detail", "features"};
// Each record's SMILES as featurize read it, as its CRC-32 (4 bytes, big-endian): a library
// shard replaced after featurize (its manifest left as it was) is not paired with these
// features. Shards built before this field have none and are read unchecked.
constexpr const char* smiles_check_field = "smiles_crc32";
constexpr const char* cache_index = "cache.json";

std::string smiles_crc(std::string_view smiles) {
  const auto c = bytes_crc32(smiles);
  return {static_cast<char>(c >> 24), static_cast<char>(c >> 16), static_cast<char>(c >> 8),
          static_cast<char>(c)};
}

std::vector<std::string> shard_fields(bool smiles_checks) {
  auto fields = cache_fields;
  if (smiles_checks) fields.push_back(smiles_check_field);
  return fields;
}

// A cache shard's record, written after its .h5: both present means the shard is done.
fs::path sidecar(const fs::path& dir, const std::string& shard_file) {
  return dir / (shard_file + ".json");
}

// Whether a shard of an unfinished build was made from this library shard as it is now (its
// record names its checksum): one made before the library was packed again is built again.
bool built_from(const fs::path& dir, const io::shard_entry& shard) {
  const auto side = sidecar(dir, shard.file);
  if (!fs::exists(side)) return false;
  try {
    const auto j = json::parse(run::read_file(side.string()));
    return j.at("library_shard") == shard.file && j.at("library_checksum") == shard.checksum &&
           fs::exists(dir / shard.file);
  } catch (const std::exception&) {
    return false;  // cut short: built again
  }
}

}  // namespace

std::string cache_identity(const chem::featurizer& f, const chem::featurize_options& options) {
  return f.identity() + " max_atoms=" + std::to_string(options.max_atoms) + " " +
         chem::rdkit_version();
}

std::string cache_dir(const std::string& library_dir, const chem::featurizer& f,
                      const chem::featurize_options& options) {
  auto key = bytes_checksum(cache_identity(f, options));
  std::replace(key.begin(), key.end(), ':', '-');
  return (fs::path(library_dir) / "features" / (f.name() + "-" + key)).string();
}

// A cache shard: its SMILES checks are read whenever it has them, and required when cache.json
// says every shard of the cache has them.
struct feature_cache::reader {
  reader(const std::string& path, bool smiles_checks)
      : r(path, cache_schema, shard_fields(smiles_checks),
          smiles_checks ? std::vector<std::string>{}
                        : std::vector<std::string>{smiles_check_field}) {}
  io::shard_reader r;
};

feature_cache::feature_cache(const std::string& library_dir, const io::manifest& library,
                             const chem::featurizer& f, const chem::featurize_options& options)
    : dir_(cache_dir(library_dir, f, options)), identity_(cache_identity(f, options)) {
  const auto index = fs::path(dir_) / cache_index;
  if (!fs::exists(index)) {
    why_not_ = fs::exists(dir_)
                   ? "the cache of " + f.identity() + " with --max-atoms " +
                         std::to_string(options.max_atoms) +
                         " is a build that did not complete (finish it with 'hpcscreen "
                         "featurize ... --resume')"
                   : "no cache of " + f.identity() + " with --max-atoms " +
                         std::to_string(options.max_atoms) +
                         " (build one with 'hpcscreen featurize')";
    return;
  }
  json j;
  try {
    j = json::parse(run::read_file(index.string()));
    if (j.at("schema") != cache_schema) throw std::invalid_argument("another schema");
    if (j.value("identity", "") != identity_) {
      why_not_ = "the cache in '" + dir_ + "' was made by " + j.value("identity", "?") +
                 ", this screen needs " + identity_;
      return;
    }
    checked_shards_ = j.contains("shard_attributes") && j["shard_attributes"] == true;
    smiles_checks_ = j.contains("smiles_checks") && j["smiles_checks"] == true;
    std::map<std::string, const io::shard_entry*> now;
    for (const auto& s : library.shards) now[s.file] = &s;
    for (const auto& s : j.value("shards", json::array())) {
      const auto file = s.value("library_shard", "");
      const auto it = now.find(file);
      const auto path = fs::path(dir_) / file;
      if (it == now.end() || it->second->checksum != s.value("library_checksum", "") ||
          it->second->n_records != s.value("n_records", std::uint64_t{0}) || !fs::exists(path)) {
        ++n_stale_;
        continue;
      }
      shards_[file] = path.string();
      checksums_[file] = it->second->checksum;
    }
  } catch (const std::exception& e) {  // a value of another type than cache.json's own
    shards_.clear();
    n_stale_ = 0;
    why_not_ = "'" + index.string() + "' cannot be read (" + e.what() + ")";
    return;
  }
  index_read_ = true;
  if (shards_.empty()) why_not_ = "the cache in '" + dir_ + "' covers none of the library's shards";
}

bool feature_cache::covers(const std::string& shard_file) const {
  return shards_.count(shard_file) != 0;
}

std::shared_ptr<feature_cache::reader> feature_cache::open(const std::string& shard_file) const {
  const auto& path = shards_.at(shard_file);
  auto r = std::make_shared<reader>(path, smiles_checks_);
  // Made by this cache's featurizer, from this library shard. A cache whose cache.json does not
  // say its shards carry these was built before they did: its shards have none.
  const std::pair<const char*, std::string> expected[] = {
      {"cache_identity", identity_},
      {"library_shard", shard_file},
      {"library_checksum", checksums_.at(shard_file)}};
  for (const auto& [name, want] : expected) {
    const auto got = r->r.attribute(name);
    if (!got && checked_shards_) {
      throw shard_error("cache shard '" + path + "' has no " + name +
                        " attribute, which every shard of this cache carries (copied from "
                        "another cache?)");
    }
    if (got && *got != want) {
      throw shard_error("cache shard '" + path + "' has " + name + " '" + *got +
                        "', this cache needs '" + want + "' (copied from another cache?)");
    }
  }
  return r;
}

void feature_cache::check_shards() {
  std::vector<std::string> bad;
  for (const auto& [file, path] : shards_) {
    try {
      (void)open(file);
    } catch (const std::exception&) {
      bad.push_back(file);
    }
  }
  for (const auto& file : bad) drop(file);
}

std::vector<string_column> feature_cache::read(const std::string& shard_file, std::uint64_t begin,
                                               std::uint64_t end, const string_column& smiles) {
  const auto& path = shards_.at(shard_file);
  if (open_shard_ != shard_file) {
    reader_.reset();
    open_shard_.clear();
    reader_ = open(shard_file);
    open_shard_ = shard_file;
  }
  if (reader_->r.n_records() < end) {
    throw shard_error("cache shard '" + path + "' holds " + std::to_string(reader_->r.n_records()) +
                      " records, fewer than its library shard");
  }
  std::vector<string_column> out;
  for (const auto& f : cache_fields) out.push_back(reader_->r.read(f, begin, end));
  if (reader_->r.has(smiles_check_field)) {
    const auto made_from = reader_->r.read(smiles_check_field, begin, end);
    for (std::size_t i = 0; i < smiles.size(); ++i) {
      if (made_from[i] != smiles_crc(smiles[i])) {
        throw shard_error("cache shard '" + path +
                          "' was made from another SMILES than library shard " + shard_file +
                          " holds at row " + std::to_string(begin + i) +
                          " (the library shard was replaced after featurize with its manifest "
                          "left as it was, or the cache shard was changed): pack the library "
                          "again and featurize; or, if the library shard is the right one, "
                          "remove this cache shard and its .json and run featurize --resume");
      }
    }
  }
  return out;
}

namespace {


// Featurizes rows [0, n) of one library shard with `threads` threads, every featurizer at once.
std::vector<chem::record_features> featurize_rows(const string_column& smiles,
                                                  const featurize_settings& s,
                                                  const std::vector<const chem::featurizer*>& set) {
  std::vector<chem::record_features> out(smiles.size());
  const int n_threads = std::max(1, s.threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < n_threads; ++t) {
    pool.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); i < out.size(); i += static_cast<std::size_t>(n_threads))
        out[i] = chem::featurize_record(smiles[i], s.featurize, set);
    });
  }
  for (auto& th : pool) th.join();
  return out;
}

}  // namespace

featurize_summary build_feature_caches(dist::context& ctx, const featurize_settings& s) {
  featurize_summary summary;
  std::vector<std::unique_ptr<chem::featurizer>> featurizers;
  std::vector<const chem::featurizer*> set;
  std::vector<std::string> dirs;
  io::manifest library;
  dist::agree_or_throw(ctx, dist::capture_failure([&] {
    if (s.featurizer_specs.empty()) throw usage_error("featurize needs --featurizer or --model");
    for (const auto& spec : s.featurizer_specs) {
      try {
        featurizers.push_back(chem::make_featurizer(spec));
      } catch (const std::invalid_argument& e) {
        throw usage_error(std::string("--featurizer: ") + e.what());
      }
      for (std::size_t k = 0; k + 1 < featurizers.size(); ++k) {
        if (featurizers[k]->identity() == featurizers.back()->identity()) {
          featurizers.pop_back();  // two models with one featurizer: one cache
          break;
        }
      }
    }
    for (const auto& f : featurizers) {
      set.push_back(f.get());
      dirs.push_back(cache_dir(s.library_dir, *f, s.featurize));
    }
    library = io::read_manifest(s.library_dir);
    if (library.kind != "compounds")
      throw usage_error("library '" + s.library_dir + "' holds " + library.kind + ", not compounds");
  }));
  // Rank 0 prepares the folders: a finished cache of the library as it is now is kept (the
  // others are built beside it), one of other library shards is never rebuilt over, a partial
  // one is finished only with --resume.
  dist::failure prepared;
  std::vector<bool> kept(dirs.size(), false);
  if (ctx.rank() == 0) {
    prepared = dist::capture_failure([&] {
      // Two builds in one library would write the same shards at once.
      const auto features = fs::path(s.library_dir) / "features";
      fs::create_directories(features);
      run::lock_folder(features.string(),
                       "the feature caches of '" + s.library_dir +
                           "' are being built by another 'hpcscreen featurize' (it holds " +
                           (features / "lock").string() + "); wait for it to end");
      for (std::size_t k = 0; k < dirs.size(); ++k) {
        const fs::path dir(dirs[k]);
        if (fs::exists(dir / cache_index)) {
          feature_cache found(s.library_dir, library, *set[k], s.featurize);
          if (!found.index_read()) {
            throw run_error(found.why_not() + "; remove that folder to build the cache again");
          }
          found.check_shards();
          std::vector<std::string> redo;  // made from other library shards, missing, or failing
          for (const auto& shard : library.shards)
            if (!found.covers(shard.file)) redo.push_back(shard.file);
          if (redo.empty()) {
            kept[k] = true;
            continue;
          }
          std::string which;
          for (std::size_t i = 0; i < redo.size() && i < 3; ++i) which += (i ? ", " : "") + redo[i];
          if (!s.resume) {
            throw run_error("the cache of " + set[k]->identity() + " in '" + dirs[k] +
                            "' is complete but " + std::to_string(redo.size()) + " of its " +
                            std::to_string(library.shards.size()) +
                            " shards do not serve the library as it is now (made from other "
                            "library shards, missing, or failing their check: " +
                            which + (redo.size() > 3 ? ", ..." : "") +
                            "); run the same command with --resume to build those again");
          }
          fs::remove(dir / cache_index);  // the cache is unusable until they are built again
          for (const auto& file : redo) {
            fs::remove(dir / file);
            fs::remove(sidecar(dir, file));
          }
        }
        if (fs::exists(dir) && !s.resume) {
          throw run_error("'" + dirs[k] + "' holds a cache build that did not complete; run the "
                          "same command with --resume to finish it");
        }
        fs::create_directories(dir);
        json id = {{"schema", cache_schema},
                   {"identity", cache_identity(*set[k], s.featurize)},
                   {"featurizer", set[k]->identity()},
                   {"max_atoms", s.featurize.max_atoms},
                   {"rdkit", chem::rdkit_version()}};
        run::write_file_atomically((dir / "identity.json").string(), id.dump(2) + "\n");
        for (const auto& e : fs::directory_iterator(dir)) {  // what a killed build left half-written
          if (e.path().extension() == ".tmp") fs::remove(e.path());
        }
      }
    });
  }
  dist::agree_or_throw(ctx, prepared);

  dist::failure built;
  {
    auto counter = ctx.make_counter();
    std::unique_ptr<io::shard_reader> reader;
    while (built.ok()) {
      if (pipeline::stop_requested()) {
        built = {dist::failure::stopped, "featurize stopped by a signal; finished shards are kept: run the same "
                    "command with --resume to finish"};
        break;
      }
      const auto t = counter->next();
      if (t >= library.shards.size()) break;
      built = dist::capture_failure([&] {
        const auto& shard = library.shards[t];
        std::vector<std::size_t> todo;
        for (std::size_t k = 0; k < dirs.size(); ++k) {
          if (built_from(dirs[k], shard)) {
            ++summary.n_shards_kept;
          } else {
            todo.push_back(k);
          }
        }
        if (todo.empty()) return;
        const auto smiles = [&] {
          try {
            io::shard_reader r((fs::path(s.library_dir) / shard.file).string(),
                               library.shard_schema, {"smiles"});
            return r.read("smiles", 0, r.n_records());
          } catch (const shard_error& e) {
            throw shard_error("library shard " + shard.file + " cannot be read (" + e.what() +
                              "): a cache is built from every shard of the library; restore the "
                              "shard (or pack the library again), then run featurize --resume");
          }
        }();
        const auto features = featurize_rows(smiles, s, set);
        for (const auto k : todo) {
          std::vector<string_column> columns(4);
          std::uint64_t rejected = 0;
          for (std::size_t i = 0; i < features.size(); ++i) {
            columns[3].push_back(smiles_crc(smiles[i]));
            // Another featurizer that failed on the parsed molecule failed the record for the
            // whole set; this cache holds what its own featurizer gives (redone alone: rare).
            const auto other = features[i].failed_featurizer;
            const auto alone = other != std::string::npos && other != k
                                   ? std::optional(chem::featurize_record(smiles[i], s.featurize, {set[k]}))
                                   : std::nullopt;
            const auto& f = alone ? *alone : features[i];
            if (f.ok) {
              columns[0].push_back("");
              columns[1].push_back("");
              columns[2].push_back(chem::encode_features(f, alone ? 0 : k, set[k]->tensors()));
            } else {
              ++rejected;
              columns[0].push_back(f.reason);
              columns[1].push_back(f.detail);
              columns[2].push_back("");
            }
          }
          const auto path = fs::path(dirs[k]) / shard.file;
          io::shard_write_options options;
          options.attributes = {{"cache_identity", cache_identity(*set[k], s.featurize)},
                                {"library_shard", shard.file},
                                {"library_checksum", shard.checksum}};
          io::write_shard(path.string() + ".tmp", cache_schema, shard_fields(true), columns,
                          options);
          run::publish_file(path.string() + ".tmp", path.string());
          const json side = {{"library_shard", shard.file},  {"library_checksum", shard.checksum},
                             {"n_records", smiles.size()},   {"n_rejected", rejected},
                             {"bytes", fs::file_size(path)}, {"smiles_checks", true}};
          run::write_file_atomically(sidecar(dirs[k], shard.file).string(), side.dump() + "\n");
        }
        ++summary.n_shards_done;
      });
    }
  }  // every rank drops the counter here (collective)
  dist::agree_or_throw(ctx, built);

  // Rank 0: every shard has its record; cache.json, last, makes the cache usable.
  dist::failure indexed;
  if (ctx.rank() == 0) {
    indexed = dist::capture_failure([&] {
      for (std::size_t k = 0; k < dirs.size(); ++k) {
        // A kept cache's shard records are those its cache.json lists for the library's shards
        // (it may list others, made from shards since packed again); the others' sidecars.
        json shards = json::array();
        if (kept[k]) {
          std::set<std::string> current;
          for (const auto& shard : library.shards) current.insert(shard.file);
          const auto listed =
              json::parse(run::read_file((fs::path(dirs[k]) / cache_index).string())).at("shards");
          for (const auto& j : listed)
            if (current.count(j.value("library_shard", ""))) shards.push_back(j);
        } else {
          for (const auto& shard : library.shards) {
            const auto side = sidecar(dirs[k], shard.file);
            if (!fs::exists(side))
              throw error("cache shard of '" + shard.file + "' is missing in '" + dirs[k] + "'");
            shards.push_back(json::parse(run::read_file(side.string())));
          }
        }
        std::uint64_t records = 0, rejected = 0, bytes = 0;
        bool smiles_checks = true;  // every shard carries its records' SMILES checks
        for (const auto& j : shards) {
          smiles_checks =
              smiles_checks && j.contains("smiles_checks") && j["smiles_checks"] == true;
          records += j.at("n_records").get<std::uint64_t>();
          rejected += j.at("n_rejected").get<std::uint64_t>();
          bytes += j.at("bytes").get<std::uint64_t>();
        }
        if (records != library.n_records()) {
          throw error("the cache in '" + dirs[k] + "' holds " + std::to_string(records) +
                      " records, the library " + std::to_string(library.n_records()));
        }
        if (!kept[k]) {  // a kept cache's cache.json stands
          const json index = {
              {"schema", cache_schema},
              {"identity", cache_identity(*set[k], s.featurize)},
              {"shard_attributes", true},
              {"smiles_checks", smiles_checks},
              {"featurizer", set[k]->identity()},
              {"max_atoms", s.featurize.max_atoms},
              {"rdkit", chem::rdkit_version()},
              {"n_records", records},
              {"n_rejected", rejected},
              {"bytes", bytes},
              {"bytes_per_record",
               records ? static_cast<double>(bytes) / static_cast<double>(records) : 0.0},
              {"shards", shards}};
          run::write_file_atomically((fs::path(dirs[k]) / cache_index).string(),
                                     index.dump(2) + "\n");
        }
        if (k == 0) {
          summary.n_records = records;
          summary.n_rejected = rejected;
          summary.n_accepted = records - rejected;
        }
        summary.bytes += bytes;
      }
    });
  }
  dist::agree_or_throw(ctx, indexed);
  summary.dirs = dirs;
  summary.kept = kept;
  return summary;
}

}  // namespace hpcscreen::screen
