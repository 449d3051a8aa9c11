#pragma once
// Feature caches: a featurizer's output for every record of a library, computed once
// (`hpcscreen featurize`) and kept beside the shards, so that screen after screen skips RDKit.
//
//   LIB/features/<featurizer name>-<key checksum>/cache.json     identity, shards, counts
//   LIB/features/<...>/shard-<library shard>.h5                  one per library shard
//
// A cache shard is an HDF5 shard (data_schemas/shard.md: packed bytes, deflate, Fletcher-32)
// with the fields `reason`, `detail` (empty for an accepted record), `features`
// (chem::encode_features) and `smiles_crc32` (the CRC-32 of the SMILES the record was made from,
// 4 bytes big-endian: compared with the SMILES a screen reads). Its identity is the featurizer's
// (name, version, parameters), the screen's --max-atoms (it decides rejects) and the RDKit version;
// a screen uses a cache only when all three equal its own, and a cache shard only when the library
// shard it was made from (its checksum in the library manifest) is the one the library holds now.
// Each cache shard also carries the cache's identity and its library shard's file name and checksum
// as attributes, checked when it is opened: a shard copied in from another cache or library is
// treated as damaged (featurized from SMILES). Shards written before these attributes have
// none and are used as the cache.json lists them; shards written before `smiles_crc32` are read
// without the SMILES checks (the screen warns).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hpcscreen/chem/featurizer.hpp"
#include "hpcscreen/core/record.hpp"
#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/io/manifest.hpp"

namespace hpcscreen::screen {

inline constexpr const char* cache_schema = "hpcscreen.features/1";

// What a cache is keyed by.
std::string cache_identity(const chem::featurizer& f, const chem::featurize_options& options);
// LIB/features/<name>-<checksum of the identity>
std::string cache_dir(const std::string& library_dir, const chem::featurizer& f,
                      const chem::featurize_options& options);

// One featurizer's cache as a screen finds it: which library shards it can serve.
class feature_cache {
 public:
  // Looks for the cache; `why_not` says why none is usable (absent, other identity, ...).
  feature_cache(const std::string& library_dir, const io::manifest& library,
                const chem::featurizer& f, const chem::featurize_options& options);
  bool usable() const { return !shards_.empty(); }
  const std::string& why_not() const { return why_not_; }
  const std::string& dir() const { return dir_; }
  // True when the library shard has a cache shard that was made from it.
  bool covers(const std::string& shard_file) const;
  // Rows [begin, end) of a library shard, whose SMILES are `smiles`: reason, detail and
  // features columns. Throws shard_error on a damaged cache shard, or one made from other SMILES
  // (the caller featurizes from SMILES instead). Main thread only (HDF5).
  std::vector<string_column> read(const std::string& shard_file, std::uint64_t begin,
                                  std::uint64_t end, const string_column& smiles);
  // A cache shard found damaged: not used again in this run.
  void drop(const std::string& shard_file) { shards_.erase(shard_file); }
  std::size_t n_shards() const { return shards_.size(); }
  // Shards cache.json lists that were made from other library shards, or are missing.
  std::size_t n_stale() const { return n_stale_; }
  // Opens every usable shard as read() would and drops those that fail (covers() then says no).
  void check_shards();
  // cache.json was read and names this featurizer (the cache may still cover no shard).
  bool index_read() const { return index_read_; }
  // cache.json says every shard carries its records' SMILES checks (a cache built, in part, by
  // a version before them says not: those shards are read unchecked).
  bool smiles_checked() const { return smiles_checks_; }

 private:
  std::string dir_, why_not_, identity_;
  std::map<std::string, std::string> checksums_;  // library shard file -> its checksum
  std::size_t n_stale_ = 0;
  bool checked_shards_ = false;  // cache.json says every shard carries its identity
  bool smiles_checks_ = false;   // ... and its records' SMILES checks
  bool index_read_ = false;
  std::map<std::string, std::string> shards_;  // library shard file -> cache shard path
  std::string open_shard_;
  struct reader;
  std::shared_ptr<reader> reader_;
  std::shared_ptr<reader> open(const std::string& shard_file) const;
};

struct featurize_settings {
  std::string library_dir;
  std::vector<std::string> featurizer_specs;  // JSON objects as in hpcscreen.json
  chem::featurize_options featurize;
  int threads = 1;  // per rank (featurize's --threads, or the scheduler's: threads_per_rank)
  bool resume = false;
};

struct featurize_summary {
  std::uint64_t n_records = 0, n_accepted = 0, n_rejected = 0, n_shards_done = 0,
                n_shards_kept = 0, bytes = 0;
  std::vector<std::string> dirs;
  std::vector<bool> kept;  // per dir: complete already for this library, left as it was
};

// Builds the caches of every featurizer over the library: ranks take library shards from a
// shared counter; each shard's cache is written whole (temporary file, then renamed), so a
// cut-off build resumes (with `resume`) by redoing only the shards without one; rank 0 writes
// cache.json last. A featurizer whose cache is complete for the library as it is now is kept as
// it is (featurize run again with one more --model builds only the new one). Collective.
// Throws usage_error / error, agreed by every rank.
featurize_summary build_feature_caches(dist::context& ctx, const featurize_settings& s);

}  // namespace hpcscreen::screen
