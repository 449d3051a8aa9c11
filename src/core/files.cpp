#include "hpcscreen/core/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"

namespace fs = std::filesystem;

namespace hpcscreen {

std::string read_file(const std::string& path) {
  if (is_special_file(path))  // a FIFO would block the read
    throw error("cannot read '" + path + "': it is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error("cannot read '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw error("cannot read '" + path + "'");
  return std::move(s).str();
}

void sync_folder(const std::string& dir) {
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
      throw error("cannot write '" + path + "': " + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
}

namespace {
int create_fresh(const std::string& tmp) {
  // A new file: whatever a crash or a hand left under the temporary name (a link to a file
  // elsewhere included) is removed, not written through.
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw error("cannot create '" + tmp + "': " + std::strerror(errno));
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
    if (::close(fd) != 0) throw error("cannot close '" + tmp + "': " + std::strerror(errno));
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
    throw error("cannot sync '" + tmp + "': " + std::strerror(errno));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    throw error("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  }
  sync_folder(fs::path(path).parent_path().string());
}

}  // namespace hpcscreen
