#include "hpcscreen/run/run_folder.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::run {

std::string read_file(const std::string& path) {
  if (is_special_file(path))  // a FIFO would block the read
    throw run_error("cannot read '" + path + "': it is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw run_error("cannot read '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw run_error("cannot read '" + path + "'");
  return std::move(s).str();
}

namespace {

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

void write_all(int fd, const std::string& data, const std::string& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    const auto n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw run_error("cannot write '" + path + "': " + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

namespace {
int create_fresh(const std::string& tmp) {
  // A new file: whatever a crash or a hand left under the temporary name (a link to a file
  // elsewhere included) is removed, not written through.
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw run_error("cannot create '" + tmp + "': " + std::strerror(errno));
  return fd;
}
}  // namespace

std::string fresh_temporary(const std::string& path, const std::string& tmp_suffix) {
  const auto tmp = path + tmp_suffix;
  ::close(create_fresh(tmp));
  return tmp;
}

void write_file_atomically(const std::string& path, const std::string& content,
                           const std::string& tmp_suffix) {
  const auto tmp = path + tmp_suffix;
  const int fd = create_fresh(tmp);
  try {
    write_all(fd, content, tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());  // a failed write leaves nothing behind (a full disk: a part)
    throw;
  }
  try {
    if (::close(fd) != 0) throw run_error("cannot close '" + tmp + "': " + std::strerror(errno));
    publish_file(tmp, path);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

void publish_file(const std::string& tmp, const std::string& path) {
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    throw run_error("cannot sync '" + tmp + "': " + std::strerror(errno));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    throw run_error("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  }
  fsync_dir(fs::path(path).parent_path().string());
}

namespace {
int held_fd = -1;       // the run folder lock this process holds, until it ends
std::string held_path;  // that lock file
}  // namespace

namespace {
run_error unusable_lock(const std::string& path, const std::string& why) {
  return run_error("cannot use '" + path + "' as the folder's lock: " + why +
                   " (remove it; hpcscreen makes it anew)");
}
}  // namespace

void lock_folder(const std::string& dir, const std::string& in_use) {
  if (held_fd >= 0) return;
  const auto path = (fs::path(dir) / "lock").string();
  // Only a regular file is a lock: a link is not followed, and a FIFO put there neither blocks
  // the open (O_NONBLOCK) nor passes for one.
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const auto why = fd < 0 ? std::string(std::strerror(errno)) : std::string("not a regular file");
    if (fd >= 0) ::close(fd);
    throw unusable_lock(path, why);
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    throw run_error(in_use);
  }
  held_fd = fd;
  held_path = path;
}

namespace {
std::string in_use_by_another_run(const std::string& dir) {
  return "run folder '" + dir + "' is in use by another hpcscreen run (it holds " +
         (fs::path(dir) / "lock").string() + "); wait for it to end, or choose another --out";
}
}  // namespace

void lock_run_folder(const std::string& dir) {
  lock_folder(dir, in_use_by_another_run(dir));
}

bool run_folder_in_use(const std::string& dir) {
  const auto path = (fs::path(dir) / "lock").string();
  std::error_code ec;
  if (held_fd >= 0 && fs::equivalent(held_path, path, ec)) return false;  // this run's own
  if (is_special_file(path)) return false;  // a FIFO there would block the open; no lock
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;  // no run ever held it
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // drops a shared lock taken here
  return held;
}

nlohmann::json read_json_file(const std::string& path) {
  return nlohmann::json::parse(
      read_file(path), [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
        if (depth > 64) throw run_error("'" + path + "' is nested more than 64 levels deep");
        return true;
      });
}

namespace {

// run_config.json as a run wrote it: an object with the run's identity and at least one attempt.
// Anything else (damaged, edited) is named, and the run cannot be resumed from it.
nlohmann::json read_run_config(const std::string& path) {
  const auto damaged = [&](const std::string& why) {
    return run_error("'" + path + "' is damaged (" + why +
                     "), so the run cannot be resumed from it; start a new --out");
  };
  nlohmann::json config;
  try {
    config = read_json_file(path);
  } catch (const nlohmann::json::exception& e) {
    throw damaged(e.what());
  } catch (const run_error& e) {  // nested too deep
    throw damaged(e.what());
  }
  if (!config.is_object() || !config.contains("identity") || !config["identity"].is_object() ||
      !config.contains("attempts") || !config["attempts"].is_array() || config["attempts"].empty())
    throw damaged("it must hold the run's identity and its attempts");
  return config;
}

// A library moved to another path between attempts (a scratch space purged, a copy to project
// space) is the run's library still when its manifest is the one the run started with: the
// manifest names every shard with its record count and checksum. The run goes on reading it at
// its new path, which the run's identity then holds, once `verify_moved` has checked that its
// files are the ones the manifest lists (a copy whose shards were replaced is another library).
void follow_moved_library(const std::string& dir, nlohmann::json& before, const nlohmann::json& now,
                          const library_check& verify_moved) {
  const auto same = [&](const char* key) {
    return before.contains(key) && now.contains(key) && before[key] == now[key];
  };
  if (same("library") || !before.contains("library") || !now.contains("library")) return;
  if (!same("manifest_checksum")) {
    throw run_error("cannot resume '" + dir + "': the run started with the library at " +
                    before["library"].dump() + ", and " + now["library"].dump() +
                    " holds another (its manifest differs); resume with the run's library, or "
                    "start a new --out");
  }
  std::fprintf(stderr,
               "hpcscreen: warning: resuming '%s' with the library at %s; the run started with it "
               "at %s (its manifest is the same)\n",
               dir.c_str(), now["library"].dump().c_str(), before["library"].dump().c_str());
  if (verify_moved) verify_moved();
  before["library"] = now["library"];
}

}  // namespace

namespace {

// A folder that holds no run: empty (made beforehand, a job script's mkdir -p), or left by a
// run cut off before it wrote its run_config.json (begin_attempt's empty journal/ and parts/,
// the lock, the config's temporary file).
bool holds_no_run(const fs::path& dir) {
  if (!fs::is_directory(dir) || fs::exists(dir / "run_config.json")) return false;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    const auto status = e.symlink_status();
    const bool leftover =
        ((name == "journal" || name == "parts") && fs::is_directory(status) &&
         fs::is_empty(e.path())) ||
        ((name == "lock" || name == "run_config.json.tmp") && fs::is_regular_file(status));
    if (!leftover) return false;
  }
  return true;
}

// The run in `dir` that this attempt continues (its run_config.json), or null for a new run;
// throws run_error when the folder cannot take this attempt. Writes nothing.
nlohmann::json run_to_continue(const std::string& dir, bool resume, const nlohmann::json& identity,
                               const library_check& verify_moved) {
  const auto config_path = (fs::path(dir) / "run_config.json").string();
  if (fs::is_symlink(fs::symlink_status(dir)) && !fs::exists(dir)) {
    throw run_error("run folder '" + dir + "' is a link to '" + fs::read_symlink(dir).string() +
                    "', which does not exist; make that folder, or choose another --out");
  }
  // A folder that holds no run takes a new one.
  const bool made_empty = holds_no_run(dir);
  if (made_empty && resume) {
    if (run_folder_in_use(dir)) throw run_error(in_use_by_another_run(dir));  // starting now
    throw run_error("cannot resume '" + dir +
                    "': no run has started in it (it is empty, or a run was cut off before it "
                    "wrote run_config.json); drop --resume to start one");
  }
  if (!fs::exists(dir) || made_empty) {
    if (resume) {
      throw run_error("cannot resume '" + dir +
                      "': the folder does not exist; check --out, or drop --resume to start a "
                      "new run");
    }
    // The folder is made below its nearest existing parent: a folder this process may write.
    auto parent = fs::absolute(dir);
    while (!fs::exists(parent) && parent.has_parent_path() && parent != parent.parent_path())
      parent = parent.parent_path();
    if (!made_empty && (!fs::is_directory(parent) || ::access(parent.c_str(), W_OK) != 0)) {
      throw run_error("cannot make run folder '" + dir + "': '" + parent.string() + "' is " +
                      (fs::is_directory(parent) ? "a folder this process cannot write (" +
                                                      std::string(std::strerror(errno)) + ")"
                                                : std::string("not a folder")) +
                      "; choose another --out");
    }
    return nullptr;
  }
  if (!fs::exists(config_path)) {
    throw run_error("'" + dir + "' already exists and holds no run (no run_config.json)" +
                    std::string(resume ? ", so it cannot be resumed" : "") +
                    "; choose another --out (a folder that holds no run is written into only "
                    "when it is empty)");
  }
  if (!resume) {
    throw run_error("run folder '" + dir +
                    "' already exists; add --resume to continue it, or "
                    "choose another --out (a run folder is never overwritten)");
  }
  auto config = read_run_config(config_path);
  follow_moved_library(dir, config.at("identity"), identity, verify_moved);
  const auto& before = config.at("identity");
  const std::string what_to_do =
      "; resume with the settings the run started with (its run_config.json lists them), or "
      "start a new --out";
  for (const auto& [key, value] : identity.items()) {
    if (!before.contains(key)) {  // a setting left at a default that adds no key (fp32)
      throw run_error("cannot resume '" + dir + "': the run started with " + key +
                      " at its default and this command sets it to " + value.dump() + what_to_do);
    }
    if (before[key] != value) {
      throw run_error("cannot resume '" + dir + "': " + key + " was " + before[key].dump() +
                      " when the run started and is " + value.dump() + " now" + what_to_do);
    }
  }
  for (const auto& [key, value] : before.items()) {
    if (!identity.contains(key)) {
      throw run_error("cannot resume '" + dir + "': the run started with " + key + " " +
                      value.dump() + " and this command runs with " + key +
                      " at its default (given, or chosen here)" + what_to_do);
    }
  }
  return config;
}

}  // namespace

void check_attempt(const std::string& dir, bool resume, const std::string& identity_json,
                   const library_check& verify_moved) {
  (void)run_to_continue(dir, resume, nlohmann::json::parse(identity_json), verify_moved);
  // What lock_run_folder would refuse, without taking the lock.
  const auto lock = fs::path(dir) / "lock";
  if (fs::is_symlink(fs::symlink_status(lock)) || is_special_file(lock.string()))
    throw unusable_lock(lock.string(), "not a regular file");
  if (run_folder_in_use(dir)) throw run_error(in_use_by_another_run(dir));
}

int begin_attempt(const std::string& dir, bool resume, const std::string& identity_json,
                  const std::string& attempt_json, const library_check& verify_moved) {
  const auto config_path = (fs::path(dir) / "run_config.json").string();
  const auto identity = nlohmann::json::parse(identity_json);
  auto config = run_to_continue(dir, resume, identity, verify_moved);
  if (config.is_null()) {
    fs::create_directories(fs::path(dir) / "journal");
    fs::create_directories(fs::path(dir) / "parts");
    config["schema"] = "hpcscreen.run/1";
    config["identity"] = identity;
    config["attempts"] = nlohmann::json::array();
  }
  lock_run_folder(dir);
  config["attempts"].push_back(nlohmann::json::parse(attempt_json));
  write_file_atomically(config_path, config.dump(2) + "\n");
  return static_cast<int>(config["attempts"].size());
}

attempt_start start_attempt(const std::string& dir, bool resume, const std::string& identity_json,
                            const std::string& attempt_json, const record_shape& shape,
                            const library_check& verify_moved) {
  attempt_start a;
  a.number = begin_attempt(dir, resume, identity_json, attempt_json, verify_moved);
  for (const auto id : committed_chunks(dir)) {
    const auto rec = read_usable_chunk_record(dir, id, shape);
    if (!rec) continue;
    a.done.insert(id);
    if (rec->counts.n_failed > 0) a.failed.insert(id);
    if (auto why = damaged_output(dir, *rec); !why.empty()) a.damaged.emplace(id, std::move(why));
  }
  return a;
}

std::set<std::uint64_t> committed_chunks(const std::string& dir) {
  std::set<std::uint64_t> out;
  const auto journal_dir = fs::path(dir) / "journal";
  if (!fs::exists(journal_dir)) return out;
  for (const auto& entry : fs::directory_iterator(journal_dir)) {
    if (entry.path().extension() != ".log") continue;
    const auto text = read_file(entry.path().string());
    std::size_t begin = 0;
    while (true) {
      const auto end = text.find('\n', begin);
      if (end == std::string::npos) break;  // a torn last line was never committed
      const auto line = text.substr(begin, end - begin);
      begin = end + 1;
      if (line.empty()) continue;
      // A line that is not a chunk id (a disk that lost power can leave NUL bytes) commits
      // nothing: its chunk is done again.
      const bool digits = line.size() <= 19 && line.find_first_not_of("0123456789") == std::string::npos;
      if (!digits) {
        std::fprintf(stderr,
                     "hpcscreen: warning: journal '%s' has a line that is not a chunk id; ignored "
                     "(that chunk, if any, is done again)\n",
                     entry.path().string().c_str());
        continue;
      }
      out.insert(std::stoull(line));
    }
  }
  return out;
}

std::optional<chunk_record> read_usable_chunk_record(const std::string& dir, std::uint64_t id,
                                                     const record_shape& shape,
                                                     std::string* outputs_changed) {
  if (id >= shape.n_chunks) {
    std::fprintf(stderr,
                 "hpcscreen: warning: a journal of '%s' names chunk %llu, but the run has %llu "
                 "chunks; ignored\n",
                 dir.c_str(), static_cast<unsigned long long>(id),
                 static_cast<unsigned long long>(shape.n_chunks));
    return std::nullopt;
  }
  const auto path = chunk_record_path(dir, id);
  try {
    auto rec = read_chunk_record(dir, id);
    if (rec.chunk_id != id) throw run_error("it holds chunk " + std::to_string(rec.chunk_id));
    check_shape(rec, shape);
    if (outputs_changed) *outputs_changed = damaged_output(dir, rec, true);
    return rec;
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "hpcscreen: warning: the record of committed chunk %llu ('%s') cannot be read "
                 "(%s); the chunk counts as not done and is done again\n",
                 static_cast<unsigned long long>(id), path.c_str(), e.what());
    return std::nullopt;
  }
}

journal::journal(const std::string& dir, int attempt, int rank) {
  path_ = (fs::path(dir) / "journal" /
           ("attempt-" + std::to_string(attempt) + ".rank-" + std::to_string(rank) + ".log"))
              .string();
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw run_error("cannot open journal '" + path_ + "': " + std::strerror(errno));
  fsync_dir(fs::path(path_).parent_path().string());
}

journal::~journal() {
  if (fd_ >= 0) ::close(fd_);
}

void journal::commit(std::uint64_t chunk_id) {
  write_all(fd_, std::to_string(chunk_id) + "\n", path_);
  if (::fdatasync(fd_) != 0) {
    throw run_error("cannot sync journal '" + path_ + "': " + std::strerror(errno));
  }
}

std::string chunk_record_path(const std::string& dir, std::uint64_t chunk_id) {
  char name[40];
  std::snprintf(name, sizeof name, "chunk-%010llu.json", static_cast<unsigned long long>(chunk_id));
  return (fs::path(dir) / "parts" / name).string();
}

void write_chunk_record(const std::string& dir, const chunk_record& r) {
  write_file_atomically(chunk_record_path(dir, r.chunk_id), to_json(r));
}

chunk_record read_chunk_record(const std::string& dir, std::uint64_t chunk_id) {
  const auto path = chunk_record_path(dir, chunk_id);
  try {
    return chunk_record_from_json(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw run_error("committed chunk record '" + path + "' is unreadable: " + e.what());
  }
}

}  // namespace hpcscreen::run
