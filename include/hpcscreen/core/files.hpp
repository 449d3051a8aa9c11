#pragma once
// Whole files read and written so that a crash or a full disk never leaves half of one under
// its name: every file a run, a pack or a cache publishes goes through here. Failures throw
// hpcscreen::error naming the file and the system's reason.
#include <string>

namespace hpcscreen {

// A whole file's bytes. A FIFO or other special file is refused at once (a read would wait
// for a writer).
std::string read_file(const std::string& path);

// Durable write: a temporary file (path + tmp_suffix), fsync, rename, fsync of the folder. A
// failed write removes its temporary.
void write_file_atomically(const std::string& path, const std::string& content,
                           const std::string& tmp_suffix = ".tmp");

// The same for a file already written to `tmp` by someone else (a stream, HDF5): fsync,
// rename, fsync of the folder.
void publish_file(const std::string& tmp, const std::string& path);

// path + tmp_suffix created anew and empty, for a writer that opens it by name: what was there
// before, a link to a file elsewhere included, is removed, not written through. Returns its
// name.
std::string fresh_temporary(const std::string& path, const std::string& tmp_suffix = ".tmp");

// All of data written to an open descriptor (writes cut short and EINTR continued).
void write_all(int fd, const std::string& data, const std::string& path);

// fsync of a folder, so that a file created or renamed in it stays after a crash.
void sync_folder(const std::string& dir);

}  // namespace hpcscreen
