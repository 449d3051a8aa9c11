#pragma once
// The run folder (data_schemas/run_folder.md):
//   run_config.json   what the run is (library, model, checksums, chunking) and its attempts
//   journal/attempt-A.rank-R.log   committed chunk ids, one per line, fsync'd
//   parts/chunk-NNNNNNNNNN.json     one chunk_record per committed chunk
//   hits.csv, rejects.csv, run.json written by rank 0 at the end of each attempt
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "hpcscreen/run/chunk_record.hpp"

namespace hpcscreen::run {

// Rank 0 only. Creates the folder, or on resume checks that `identity` (a JSON object with
// the library and model checksums and everything that fixes the chunk plan) equals the one
// the run started with. Records the new attempt and returns its number (1 for a fresh run).
// Throws run_error when the folder exists without resume, or the identity differs.
// A resume may find the library at another path with the same manifest checksum: it is
// followed (a warning) once `verify_moved` (when given) has checked the files, throwing if
// they are not the manifest's.
using library_check = std::function<void()>;
int begin_attempt(const std::string& dir, bool resume, const std::string& identity_json,
                  const std::string& attempt_json, const library_check& verify_moved = {});
// What begin_attempt checks, writing nothing (`--check`): throws what it would throw.
void check_attempt(const std::string& dir, bool resume, const std::string& identity_json,
                   const library_check& verify_moved = {});

// begin_attempt, then what the folder already holds: the attempt's number and the chunks
// committed earlier whose records are usable (`failed`: those of them with failed rows). Of
// these, `damaged` says why a chunk's listed outputs are not as written (missing, another size
// or checksum).
struct attempt_start {
  int number = 1;
  std::set<std::uint64_t> done, failed;
  std::map<std::uint64_t, std::string> damaged;
};
attempt_start start_attempt(const std::string& dir, bool resume, const std::string& identity_json,
                            const std::string& attempt_json, const record_shape& shape,
                            const library_check& verify_moved = {});

// Takes an exclusive lock on the run folder for the rest of the process (rank 0), so that two
// runs never write one folder at once. Throws run_error when another process holds it.
void lock_run_folder(const std::string& dir);
// The same lock on any folder (DIR/lock); `in_use` is the error's message when another process
// holds it.
void lock_folder(const std::string& dir, const std::string& in_use);
// True while a run holds the folder's lock (lock_run_folder): the run is still going.
bool run_folder_in_use(const std::string& dir);

// Chunk ids committed in any journal of the folder. A torn last line is not a commit, nor is a
// line that is not a number (warned about).
std::set<std::uint64_t> committed_chunks(const std::string& dir);

// The record of committed chunk `id` if it can be used: an id within [0, n_chunks) whose record
// reads back with the run's shape (check_shape). One that cannot is warned about, naming the
// file, and counts as not done.
// With `outputs_changed`, also says there which of its listed files no longer has the size it
// was written with ("" when none: damaged_output's sizes-only check).
std::optional<chunk_record> read_usable_chunk_record(const std::string& dir, std::uint64_t id,
                                                     const record_shape& shape,
                                                     std::string* outputs_changed = nullptr);

// Appends committed chunk ids to this rank's journal of this attempt, fsync'ing each.
class journal {
 public:
  journal(const std::string& dir, int attempt, int rank);
  ~journal();
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;
  void commit(std::uint64_t chunk_id);

 private:
  std::string path_;
  int fd_ = -1;
};

// Durable write: temporary file (path + tmp_suffix), fsync, rename, fsync of the folder.
void write_file_atomically(const std::string& path, const std::string& content,
                           const std::string& tmp_suffix = ".tmp");
// A whole file's bytes; throws run_error when it cannot be opened or read.
std::string read_file(const std::string& path);
// A JSON file of the run folder (run.json, run_config.json). Nesting deeper than 64 levels, which
// no file hpcscreen writes has, is refused (run_error) before it can exhaust the stack; syntax
// errors are nlohmann's parse_error.
nlohmann::json read_json_file(const std::string& path);
// The same for a file already written to `tmp` by someone else (e.g. HDF5): fsync, rename, fsync.
void publish_file(const std::string& tmp, const std::string& path);
// path + tmp_suffix created anew and empty, for a writer that opens it by name (a stream,
// HDF5): what was there before, a link to a file elsewhere included, is removed, not written
// through. Returns its name.
std::string fresh_temporary(const std::string& path, const std::string& tmp_suffix = ".tmp");

std::string chunk_record_path(const std::string& dir, std::uint64_t chunk_id);
void write_chunk_record(const std::string& dir, const chunk_record& r);
chunk_record read_chunk_record(const std::string& dir, std::uint64_t chunk_id);

}  // namespace hpcscreen::run
