#include "hpcscreen/io/shard.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"
#include "hpcscreen/io/annotation_file.hpp"

namespace hpcscreen::io {
namespace {

// The one place where HDF5 status codes become exceptions. HDF5's own error stack is kept
// in the message (its innermost descriptions say e.g. "data error detected by Fletcher32
// checksum").
std::string hdf5_error_stack() {
  std::string out;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
        auto* s = static_cast<std::string*>(data);
        if (e->desc && *e->desc) {
          if (!s->empty()) *s += "; ";
          *s += e->desc;
        }
        return 0;
      },
      &out);
  H5Eclear2(H5E_DEFAULT);
  // A failed read or write of the file itself: the system's reason (e.g. "No space left on
  // device") is what a user can act on, not the chain of HDF5 calls above it.
  const std::string marker = "error message = '";
  if (const auto at = out.find(marker); at != std::string::npos) {
    const auto begin = at + marker.size();
    const auto end = out.find('\'', begin);
    if (end != std::string::npos) return out.substr(begin, end - begin);
  }
  return out.empty() ? "no HDF5 detail" : out;
}

// Also: no HDF5 shutdown at exit. A file HDF5 failed to write (a full disk) can no longer be
// closed, and the shutdown then crashes trying again (h5py issue 914); every file that was
// written is closed by its handle before that. (In an MPI process HDF5 shuts down at
// MPI_Finalize instead: files written there are built in memory, see memory_file.)
void silence_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] {
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

template <class T>
T check(T status, const std::string& what, const std::string& path) {
  if (status < 0) {
    throw shard_error(what + " in '" + path + "': " + hdf5_error_stack());
  }
  return status;
}

// RAII for HDF5 identifiers.
class handle {
 public:
  handle() = default;
  handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  handle(handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  handle& operator=(handle&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(close_, o.close_);
    return *this;
  }
  ~handle() {
    if (id_ >= 0 && close_) close_(id_);
  }
  hid_t get() const { return id_; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// A file HDF5 builds in memory (its core driver, no backing store) and that is then written to
// `path` in one go by write(2). A disk that fills fails that write, with errno, and nothing of
// HDF5: when HDF5 itself cannot write a file, the file can no longer be closed and the library
// crashes when it shuts down (at exit, or at MPI_Finalize). For files of bounded size: one
// shard, one chunk's outputs.
class memory_file {
 public:
  explicit memory_file(const std::string& path) : path_(path) {
    handle fapl(check(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate", path), H5Pclose);
    check(H5Pset_fapl_core(fapl.get(), 1 << 20, false), "H5Pset_fapl_core", path);
    file_ = handle(
        check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), "creating", path),
        H5Fclose);
  }
  hid_t get() const { return file_.get(); }

  // Writes the file's image to its path, which must not exist when `exclusive`.
  void write_to_disk(bool exclusive) {
    check(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), "flushing", path_);
    const auto size = check(H5Fget_file_image(file_.get(), nullptr, 0), "sizing", path_);
    std::vector<char> image(static_cast<std::size_t>(size));
    check(H5Fget_file_image(file_.get(), image.data(), image.size()), "imaging", path_);
    // Replacing means a new file: a link left at the path (to a file elsewhere) is removed, not
    // written through.
    if (!exclusive) ::unlink(path_.c_str());
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) throw error("cannot create '" + path_ + "': " + std::strerror(errno));
    std::size_t done = 0;
    while (done < image.size()) {
      const auto n = ::write(fd, image.data() + done, image.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const std::string why = n < 0 ? std::strerror(errno) : "nothing written";
        ::close(fd);
        ::unlink(path_.c_str());
        throw error("cannot write '" + path_ + "': " + why);
      }
      done += static_cast<std::size_t>(n);
    }
    if (::close(fd) != 0) {
      const std::string why = std::strerror(errno);
      ::unlink(path_.c_str());
      throw error("cannot write '" + path_ + "': " + why);
    }
  }

 private:
  std::string path_;
  handle file_;
};

void write_string_attribute(hid_t obj, const char* name, const std::string& value,
                            const std::string& path) {
  handle type(check(H5Tcopy(H5T_C_S1), "H5Tcopy", path), H5Tclose);
  // An empty value is stored as one NUL (HDF5 has no zero-size strings); readers stop at NUL.
  check(H5Tset_size(type.get(), std::max<std::size_t>(1, value.size())), "H5Tset_size", path);
  handle space(check(H5Screate(H5S_SCALAR), "H5Screate", path), H5Sclose);
  handle attr(check(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                    std::string("creating attribute ") + name, path),
              H5Aclose);
  check(H5Awrite(attr.get(), type.get(), value.data()), "writing attribute", path);
}

// A variable-length string, as h5py writes a Python str (and reads it back as one): its bytes
// live in the file's global heap, so its length is not bound by the object header's 64 KiB.
// Declared UTF-8 when it is; other bytes (a Latin-1 id) are declared ASCII, and h5py gives
// them back with surrogateescape (its bytes, exactly).
void write_text_attribute(hid_t obj, const char* name, const std::string& value,
                          const std::string& path) {
  handle type(check(H5Tcopy(H5T_C_S1), "H5Tcopy", path), H5Tclose);
  check(H5Tset_size(type.get(), H5T_VARIABLE), "H5Tset_size", path);
  check(H5Tset_cset(type.get(), valid_utf8(value) ? H5T_CSET_UTF8 : H5T_CSET_ASCII), "H5Tset_cset",
        path);
  handle space(check(H5Screate(H5S_SCALAR), "H5Screate", path), H5Sclose);
  handle attr(check(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                    std::string("creating attribute ") + name, path),
              H5Aclose);
  const char* bytes = value.c_str();
  check(H5Awrite(attr.get(), type.get(), &bytes), "writing attribute", path);
}

std::string read_string_attribute(hid_t obj, const char* name, const std::string& path) {
  if (check(H5Aexists(obj, name), "H5Aexists", path) <= 0) {
    throw shard_error(std::string("'") + path + "' has no '" + name +
                      "' attribute: not an hpcscreen shard (see data_schemas/shard.md)");
  }
  handle attr(check(H5Aopen(obj, name, H5P_DEFAULT), "opening attribute", path), H5Aclose);
  handle type(check(H5Aget_type(attr.get()), "H5Aget_type", path), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw shard_error(std::string("attribute '") + name + "' of '" + path + "' is not a string");
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    // h5py writes Python str attributes as variable-length strings.
    handle mem(check(H5Tcopy(H5T_C_S1), "H5Tcopy", path), H5Tclose);
    check(H5Tset_size(mem.get(), H5T_VARIABLE), "H5Tset_size", path);
    check(H5Tset_cset(mem.get(), H5Tget_cset(type.get())), "H5Tset_cset", path);  // h5py: UTF-8
    char* value = nullptr;
    check(H5Aread(attr.get(), mem.get(), &value), "reading attribute", path);
    std::string out = value ? value : "";
    H5free_memory(value);
    return out;
  }
  const auto size = H5Tget_size(type.get());
  std::string value(size, '\0');
  check(H5Aread(attr.get(), type.get(), value.data()), "reading attribute", path);
  value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
  return value;
}

void write_u64_attribute(hid_t obj, const char* name, std::uint64_t value,
                         const std::string& path) {
  handle space(check(H5Screate(H5S_SCALAR), "H5Screate", path), H5Sclose);
  handle attr(check(H5Acreate2(obj, name, H5T_STD_U64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                    std::string("creating attribute ") + name, path),
              H5Aclose);
  check(H5Awrite(attr.get(), H5T_NATIVE_UINT64, &value), "writing attribute", path);
}

std::uint64_t read_u64_attribute(hid_t obj, const char* name, const std::string& path) {
  if (check(H5Aexists(obj, name), "H5Aexists", path) <= 0) {
    throw shard_error("'" + path + "' has no '" + name + "' attribute");
  }
  handle attr(check(H5Aopen(obj, name, H5P_DEFAULT), "opening attribute", path), H5Aclose);
  std::uint64_t value = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_UINT64, &value), "reading attribute", path);
  return value;
}

void write_dataset(hid_t group, const char* name, hid_t file_type, hid_t mem_type, const void* data,
                   std::uint64_t n, std::uint64_t chunk, bool shuffle, int deflate_level,
                   const std::string& path) {
  hsize_t dims[1] = {n};
  hsize_t maxdims[1] = {H5S_UNLIMITED};
  handle space(check(H5Screate_simple(1, dims, maxdims), "H5Screate_simple", path), H5Sclose);
  handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", path), H5Pclose);
  hsize_t chunk_dims[1] = {std::max<hsize_t>(1, std::min<hsize_t>(chunk, std::max<hsize_t>(n, 1)))};
  check(H5Pset_chunk(dcpl.get(), 1, chunk_dims), "H5Pset_chunk", path);
  if (shuffle) check(H5Pset_shuffle(dcpl.get()), "H5Pset_shuffle", path);
  if (deflate_level > 0) check(H5Pset_deflate(dcpl.get(), deflate_level), "H5Pset_deflate", path);
  check(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32", path);
  // No modification times: the same records give the same file, byte for byte.
  check(H5Pset_obj_track_times(dcpl.get(), false), "H5Pset_obj_track_times", path);
  handle dset(
      check(H5Dcreate2(group, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
            std::string("creating dataset ") + name, path),
      H5Dclose);
  if (n > 0) {
    check(H5Dwrite(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
          std::string("writing dataset ") + name, path);
  }
}

}  // namespace

void write_shard(const std::string& path, const std::string& schema,
                 const std::vector<std::string>& fields, const std::vector<string_column>& columns,
                 const shard_write_options& options) {
  silence_hdf5();
  HPCSCREEN_ASSERT(fields.size() == columns.size());
  const std::uint64_t n = columns.empty() ? 0 : columns.front().size();
  for (const auto& c : columns) HPCSCREEN_ASSERT(c.size() == n);

  memory_file file(path);
  write_string_attribute(file.get(), "schema", schema, path);
  write_u64_attribute(file.get(), "n_records", n, path);
  for (const auto& [name, value] : options.attributes)
    write_string_attribute(file.get(), name.c_str(), value, path);
  handle gcpl(check(H5Pcreate(H5P_GROUP_CREATE), "H5Pcreate", path), H5Pclose);
  check(H5Pset_obj_track_times(gcpl.get(), false), "H5Pset_obj_track_times", path);
  for (std::size_t f = 0; f < fields.size(); ++f) {
    handle group(
        check(H5Gcreate2(file.get(), fields[f].c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT),
              "creating group " + fields[f], path),
        H5Gclose);
    const auto& c = columns[f];
    write_dataset(group.get(), "bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, c.bytes.data(),
                  c.bytes.size(), options.bytes_chunk, false, options.deflate_level, path);
    write_dataset(group.get(), "offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, c.offsets.data(),
                  c.offsets.size(), options.offsets_chunk, true, options.deflate_level, path);
  }
  file.write_to_disk(true);
}

struct shard_reader::impl {
  std::string path;
  handle file;
  std::uint64_t n_records = 0;
  struct field_sets {
    handle bytes, offsets;
    std::uint64_t n_bytes = 0;
  };
  std::vector<std::pair<std::string, field_sets>> fields;

  field_sets& find(const std::string& name) {
    for (auto& [n, f] : fields)
      if (n == name) return f;
    HPCSCREEN_ASSERT_MSG(false, "unknown field " + name);
  }
};

namespace {
std::uint64_t dataset_length(hid_t dset, const std::string& what, const std::string& path) {
  handle space(check(H5Dget_space(dset), "H5Dget_space", path), H5Sclose);
  if (H5Sget_simple_extent_ndims(space.get()) != 1) {
    throw shard_error("dataset " + what + " in '" + path + "' is not one-dimensional");
  }
  hsize_t dims[1] = {0};
  check(H5Sget_simple_extent_dims(space.get(), dims, nullptr), "H5Sget_simple_extent_dims", path);
  return dims[0];
}

void require_fletcher32(hid_t dset, const std::string& what, const std::string& path) {
  handle dcpl(check(H5Dget_create_plist(dset), "H5Dget_create_plist", path), H5Pclose);
  const int n = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0;
    size_t n_values = 0;
    if (H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &n_values, nullptr, 0, nullptr,
                       nullptr) == H5Z_FILTER_FLETCHER32) {
      return;
    }
  }
  throw shard_error("dataset " + what + " in '" + path +
                    "' has no Fletcher-32 checksum filter; write it with fletcher32=True "
                    "(see data_schemas/shard.md)");
}

void read_range(hid_t dset, hid_t mem_type, std::uint64_t begin, std::uint64_t count, void* out,
                const std::string& what, const std::string& path) {
  if (count == 0) return;
  handle file_space(check(H5Dget_space(dset), "H5Dget_space", path), H5Sclose);
  hsize_t start[1] = {begin};
  hsize_t n[1] = {count};
  check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, n, nullptr),
        "selecting rows", path);
  handle mem_space(check(H5Screate_simple(1, n, nullptr), "H5Screate_simple", path), H5Sclose);
  check(H5Dread(dset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out),
        "reading " + what, path);
}
}  // namespace

shard_reader::shard_reader(const std::string& path, const std::string& expected_schema,
                           const std::vector<std::string>& fields,
                           const std::vector<std::string>& optional)
    : impl_(std::make_unique<impl>()) {
  silence_hdf5();
  impl_->path = path;
  // A FIFO or device would block open() forever (no stop request could end it): only a
  // regular file is a shard.
  if (is_special_file(path)) {
    throw shard_error("shard '" + path + "' is not a regular file (a FIFO, device or folder); " +
                      "restore the shard file");
  }
  impl_->file = handle(
      check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "opening shard", path), H5Fclose);
  const auto schema = read_string_attribute(impl_->file.get(), "schema", path);
  if (schema != expected_schema) {
    throw shard_error("shard '" + path + "' has schema '" + schema + "', expected '" +
                      expected_schema + "'");
  }
  impl_->n_records = read_u64_attribute(impl_->file.get(), "n_records", path);
  auto to_open = fields;
  for (const auto& name : optional) {
    if (H5Lexists(impl_->file.get(), name.c_str(), H5P_DEFAULT) > 0) to_open.push_back(name);
    H5Eclear2(H5E_DEFAULT);
  }
  for (const auto& name : to_open) {
    impl::field_sets f;
    const auto bytes_name = name + "/bytes";
    const auto offsets_name = name + "/offsets";
    for (const auto* ds : {&bytes_name, &offsets_name}) {
      if (H5Lexists(impl_->file.get(), name.c_str(), H5P_DEFAULT) <= 0 ||
          H5Lexists(impl_->file.get(), ds->c_str(), H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        throw shard_error("shard '" + path + "' has no dataset '/" + *ds + "'");
      }
    }
    f.bytes = handle(check(H5Dopen2(impl_->file.get(), bytes_name.c_str(), H5P_DEFAULT),
                           "opening " + bytes_name, path),
                     H5Dclose);
    f.offsets = handle(check(H5Dopen2(impl_->file.get(), offsets_name.c_str(), H5P_DEFAULT),
                             "opening " + offsets_name, path),
                       H5Dclose);
    require_fletcher32(f.bytes.get(), bytes_name, path);
    require_fletcher32(f.offsets.get(), offsets_name, path);
    f.n_bytes = dataset_length(f.bytes.get(), bytes_name, path);
    const auto n_offsets = dataset_length(f.offsets.get(), offsets_name, path);
    if (n_offsets != impl_->n_records + 1) {
      throw shard_error("shard '" + path + "': '/" + offsets_name + "' has " +
                        std::to_string(n_offsets) +
                        " entries, expected n_records+1 = " + std::to_string(impl_->n_records + 1));
    }
    impl_->fields.emplace_back(name, std::move(f));
  }
}

shard_reader::~shard_reader() = default;
std::uint64_t shard_reader::n_records() const {
  return impl_->n_records;
}
const std::string& shard_reader::path() const {
  return impl_->path;
}
bool shard_reader::has(const std::string& field) const {
  for (const auto& [n, f] : impl_->fields)
    if (n == field) return true;
  return false;
}

std::optional<std::string> shard_reader::attribute(const std::string& name) const {
  if (check(H5Aexists(impl_->file.get(), name.c_str()), "H5Aexists", impl_->path) <= 0)
    return std::nullopt;
  return read_string_attribute(impl_->file.get(), name.c_str(), impl_->path);
}

string_column shard_reader::read(const std::string& field, std::uint64_t row_begin,
                                 std::uint64_t row_end) {
  HPCSCREEN_ASSERT(row_begin <= row_end && row_end <= impl_->n_records);
  auto& f = impl_->find(field);
  string_column out;
  out.offsets.resize(row_end - row_begin + 1);
  read_range(f.offsets.get(), H5T_NATIVE_UINT64, row_begin, out.offsets.size(), out.offsets.data(),
             "/" + field + "/offsets", impl_->path);
  const auto base = out.offsets.front();
  for (std::size_t i = 1; i < out.offsets.size(); ++i) {
    if (out.offsets[i] < out.offsets[i - 1] || out.offsets[i] > f.n_bytes) {
      throw shard_error("shard '" + impl_->path + "': '/" + field + "/offsets' is corrupt at row " +
                        std::to_string(row_begin + i - 1) +
                        " (offsets must ascend and stay "
                        "within the " +
                        std::to_string(f.n_bytes) + " bytes)");
    }
  }
  for (auto& o : out.offsets) o -= base;
  out.bytes.resize(out.offsets.back());
  read_range(f.bytes.get(), H5T_NATIVE_UINT8, base, out.bytes.size(), out.bytes.data(),
             "/" + field + "/bytes", impl_->path);
  return out;
}

namespace {
template <class T>
void write_array(hid_t loc, const char* name, hid_t file_type, hid_t mem_type,
                 const std::vector<T>& v, std::uint64_t chunk, const std::string& path,
                 std::uint64_t columns = 1) {
  if (columns == 1) {
    write_dataset(loc, name, file_type, mem_type, v.data(), v.size(), chunk, false, 4, path);
    return;
  }
  hsize_t dims[2] = {v.size() / columns, columns};
  hsize_t maxdims[2] = {H5S_UNLIMITED, columns};
  handle space(check(H5Screate_simple(2, dims, maxdims), "H5Screate_simple", path), H5Sclose);
  handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", path), H5Pclose);
  hsize_t chunk_dims[2] = {
      std::max<hsize_t>(1, std::min<hsize_t>(chunk, std::max<hsize_t>(dims[0], 1))), columns};
  check(H5Pset_chunk(dcpl.get(), 2, chunk_dims), "H5Pset_chunk", path);
  check(H5Pset_deflate(dcpl.get(), 4), "H5Pset_deflate", path);
  check(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32", path);
  // No modification times: the same records give the same file, byte for byte.
  check(H5Pset_obj_track_times(dcpl.get(), false), "H5Pset_obj_track_times", path);
  handle dset(
      check(H5Dcreate2(loc, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
            std::string("creating dataset ") + name, path),
      H5Dclose);
  if (!v.empty())
    check(H5Dwrite(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), "writing", path);
}

// IEEE binary16 as HDF5 1.10 has no predefined type for it; h5py builds the same one and reads
// it as numpy float16.
handle float16_type(const std::string& path) {
  handle t(check(H5Tcopy(H5T_IEEE_F32LE), "H5Tcopy", path), H5Tclose);
  check(H5Tset_fields(t.get(), 15, 10, 5, 0, 10), "H5Tset_fields", path);
  check(H5Tset_size(t.get(), 2), "H5Tset_size", path);
  check(H5Tset_ebias(t.get(), 15), "H5Tset_ebias", path);
  return t;
}

// A [rows, cols] matrix of float16 or float32, chunked by about 1 MiB of rows (whole rows), with
// byte shuffling, deflate and Fletcher-32. Embeddings are noisy floats: shuffle + a low deflate
// level saves what can be saved without making the write the bottleneck.
void write_matrix(hid_t loc, const char* name, bool float16, const void* data, std::uint64_t rows,
                  std::uint64_t cols, const std::string& path) {
  const auto f16 = float16 ? float16_type(path) : handle();
  const hid_t type = float16 ? f16.get() : H5T_IEEE_F32LE;
  const hid_t mem_type = float16 ? f16.get() : H5T_NATIVE_FLOAT;
  const std::uint64_t row_bytes = std::max<std::uint64_t>(1, cols) * (float16 ? 2 : 4);
  hsize_t dims[2] = {rows, cols};
  hsize_t maxdims[2] = {H5S_UNLIMITED, cols};
  handle space(check(H5Screate_simple(2, dims, maxdims), "H5Screate_simple", path), H5Sclose);
  handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", path), H5Pclose);
  hsize_t chunk_dims[2] = {
      std::max<hsize_t>(1, std::min<hsize_t>(std::max<hsize_t>(1, (1u << 20) / row_bytes),
                                             std::max<hsize_t>(rows, 1))),
      std::max<hsize_t>(cols, 1)};
  check(H5Pset_chunk(dcpl.get(), 2, chunk_dims), "H5Pset_chunk", path);
  check(H5Pset_shuffle(dcpl.get()), "H5Pset_shuffle", path);
  check(H5Pset_deflate(dcpl.get(), 1), "H5Pset_deflate", path);
  check(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32", path);
  // No modification times: the same records give the same file, byte for byte.
  check(H5Pset_obj_track_times(dcpl.get(), false), "H5Pset_obj_track_times", path);
  handle dset(check(H5Dcreate2(loc, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                    std::string("creating dataset ") + name, path),
              H5Dclose);
  if (rows > 0 && cols > 0)
    check(H5Dwrite(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
          std::string("writing dataset ") + name, path);
}

// Rows and columns of a 2-D dataset.
std::pair<std::uint64_t, std::uint64_t> matrix_shape(hid_t file, const char* name,
                                                     const std::string& path) {
  handle dset(check(H5Dopen2(file, name, H5P_DEFAULT), std::string("opening ") + name, path),
              H5Dclose);
  handle space(check(H5Dget_space(dset.get()), "H5Dget_space", path), H5Sclose);
  hsize_t dims[2] = {0, 0};
  if (H5Sget_simple_extent_ndims(space.get()) != 2)
    throw shard_error("'" + path + "': /" + name + " is not a matrix");
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  return {dims[0], dims[1]};
}

std::vector<std::uint8_t> read_matrix_bytes(hid_t file, const char* name, bool float16,
                                            const std::string& path) {
  const auto [rows, cols] = matrix_shape(file, name, path);
  std::vector<std::uint8_t> out(rows * cols * (float16 ? 2 : 4));
  if (out.empty()) return out;
  handle dset(check(H5Dopen2(file, name, H5P_DEFAULT), std::string("opening ") + name, path),
              H5Dclose);
  const auto f16 = float16 ? float16_type(path) : handle();
  check(H5Dread(dset.get(), float16 ? f16.get() : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                out.data()),
        std::string("reading ") + name, path);
  return out;
}

bool has_link(hid_t file, const char* name, const std::string& path) {
  return check(H5Lexists(file, name, H5P_DEFAULT), "H5Lexists", path) > 0;
}

template <class T>
std::vector<T> read_array(hid_t file, const char* name, hid_t mem_type, const std::string& path) {
  handle dset(check(H5Dopen2(file, name, H5P_DEFAULT), std::string("opening ") + name, path),
              H5Dclose);
  handle space(check(H5Dget_space(dset.get()), "H5Dget_space", path), H5Sclose);
  const auto n = H5Sget_simple_extent_npoints(space.get());
  std::vector<T> v(static_cast<std::size_t>(n));
  if (n > 0)
    check(H5Dread(dset.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
          std::string("reading ") + name, path);
  return v;
}
}  // namespace

void write_annotation_chunk(const std::string& path, const annotation_chunk& a) {
  silence_hdf5();
  memory_file file(path);
  write_string_attribute(file.get(), "schema", annotation_schema, path);
  write_string_attribute(file.get(), "shard", a.shard_file, path);
  write_string_attribute(file.get(), "output_level",
                         a.embedding ? "embedding" : a.per_residue ? "residue" : "sequence", path);
  std::string labels;
  for (const auto& l : a.labels) labels += (labels.empty() ? "" : "\n") + l;
  write_string_attribute(file.get(), "labels", labels, path);
  write_u64_attribute(file.get(), "row_begin", a.row_begin, path);
  write_u64_attribute(file.get(), "row_end", a.row_end, path);
  write_u64_attribute(file.get(), "n_records", a.rows.size(), path);
  write_array(file.get(), "row", H5T_STD_U64LE, H5T_NATIVE_UINT64, a.rows, 1 << 16, path);
  write_array(file.get(), "length", H5T_STD_U64LE, H5T_NATIVE_UINT64, a.lengths, 1 << 16, path);
  handle group(check(H5Gcreate2(file.get(), "id", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                     "creating group id", path),
               H5Gclose);
  std::vector<std::uint8_t> id_bytes(a.ids.bytes.begin(), a.ids.bytes.end());
  write_array(group.get(), "bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, id_bytes, 1 << 20, path);
  write_array(group.get(), "offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, a.ids.offsets, 1 << 16,
              path);
  const auto n_labels = a.labels.size();
  if (a.embedding) {
    write_string_attribute(file.get(), "embedding_dtype", a.float16 ? "float16" : "float32", path);
    write_u64_attribute(file.get(), "hidden_size", a.hidden_size, path);
    const std::uint64_t value_bytes = a.float16 ? 2 : 4;
    if (a.has_per_sequence) {
      HPCSCREEN_ASSERT(a.per_sequence_bytes.size() == a.rows.size() * a.hidden_size * value_bytes);
      write_matrix(file.get(), "embedding_per_sequence", a.float16, a.per_sequence_bytes.data(),
                   a.rows.size(), a.hidden_size, path);
    }
    if (a.has_per_residue) {
      HPCSCREEN_ASSERT(a.residue_offsets.size() == a.rows.size() + 1 &&
                       a.per_residue_bytes.size() ==
                           a.residue_offsets.back() * a.hidden_size * value_bytes);
      write_matrix(file.get(), "embedding_per_residue", a.float16, a.per_residue_bytes.data(),
                   a.residue_offsets.back(), a.hidden_size, path);
      write_array(file.get(), "residue_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64,
                  a.residue_offsets, 1 << 16, path);
    }
  } else if (a.per_residue) {
    write_array(file.get(), "logits", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, a.values, 1 << 14, path,
                n_labels);
    write_array(file.get(), "residue_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, a.residue_offsets,
                1 << 16, path);
    write_array(file.get(), "prediction", H5T_STD_U8LE, H5T_NATIVE_UINT8, a.prediction, 1 << 20,
                path);
  } else {
    write_array(file.get(), "scores", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, a.values, 1 << 14, path,
                n_labels);
  }
  file.write_to_disk(false);
}

namespace {

// offsets [n+1] from 0, never decreasing, ending at `total`.
bool valid_offsets(const std::vector<std::uint64_t>& o, std::size_t n, std::uint64_t total) {
  if (o.size() != n + 1 || o.front() != 0 || o.back() != total) return false;
  for (std::size_t i = 0; i < n; ++i)
    if (o[i] > o[i + 1]) return false;
  return true;
}

// Every dataset of a chunk file sized as its records say (a damaged or edited file must not be
// read past its ends by export or annotations.tsv).
void check_annotation_shapes(const annotation_chunk& a, const std::string& path) {
  const auto n = a.rows.size();
  const auto bad = [&](const std::string& what) {
    return shard_error("'" + path + "' is damaged: " + what);
  };
  if (a.lengths.size() != n || !valid_offsets(a.ids.offsets, n, a.ids.bytes.size()))
    throw bad("its row, length and id datasets disagree");
  for (std::size_t i = 0; i < n; ++i)
    if (a.rows[i] < a.row_begin || a.rows[i] >= a.row_end || (i > 0 && a.rows[i] <= a.rows[i - 1]))
      throw bad("a row lies outside its chunk or is listed twice");
  const std::uint64_t n_residues = a.residue_offsets.empty() ? 0 : a.residue_offsets.back();
  if (a.embedding) {
    const std::uint64_t width = a.hidden_size * (a.float16 ? 2 : 4);
    if (a.hidden_size == 0 || a.hidden_size > (1u << 20))
      throw bad("hidden_size " + std::to_string(a.hidden_size));
    if (a.has_per_sequence && a.per_sequence_bytes.size() != n * width)
      throw bad("embedding_per_sequence is not [records, hidden_size]");
    if (a.has_per_residue && (!valid_offsets(a.residue_offsets, n, n_residues) ||
                              a.per_residue_bytes.size() != n_residues * width))
      throw bad("embedding_per_residue and residue_offsets disagree");
    return;
  }
  const auto n_labels = a.labels.size();
  if (a.per_residue) {
    if (!valid_offsets(a.residue_offsets, n, n_residues) || a.prediction.size() != n_residues ||
        a.values.size() != n_residues * n_labels)
      throw bad("logits, prediction and residue_offsets disagree");
  } else if (a.values.size() != n * n_labels) {
    throw bad("scores is not [records, labels]");
  }
}

}  // namespace

// An annotation file opened to read; a FIFO or device there is refused before open() blocks.
hid_t open_annotation_file(const std::string& path) {
  if (is_special_file(path))
    throw shard_error("'" + path + "' is not a regular file (a FIFO, device or folder)");
  return check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), "opening annotations", path);
}

annotation_chunk read_annotation_chunk(const std::string& path) {
  silence_hdf5();
  handle file(open_annotation_file(path), H5Fclose);
  annotation_chunk a;
  if (read_string_attribute(file.get(), "schema", path) != annotation_schema) {
    throw shard_error("'" + path + "' is not an hpcscreen annotation file");
  }
  a.shard_file = read_string_attribute(file.get(), "shard", path);
  const auto level = read_string_attribute(file.get(), "output_level", path);
  a.per_residue = level == "residue";
  a.embedding = level == "embedding";
  const auto labels = read_string_attribute(file.get(), "labels", path);
  std::size_t b = 0;
  while (b <= labels.size()) {
    const auto e = std::min(labels.find('\n', b), labels.size());
    a.labels.push_back(labels.substr(b, e - b));
    b = e + 1;
  }
  a.row_begin = read_u64_attribute(file.get(), "row_begin", path);
  a.row_end = read_u64_attribute(file.get(), "row_end", path);
  a.rows = read_array<std::uint64_t>(file.get(), "row", H5T_NATIVE_UINT64, path);
  a.lengths = read_array<std::uint64_t>(file.get(), "length", H5T_NATIVE_UINT64, path);
  const auto id_bytes = read_array<std::uint8_t>(file.get(), "id/bytes", H5T_NATIVE_UINT8, path);
  a.ids.bytes.assign(id_bytes.begin(), id_bytes.end());
  a.ids.offsets = read_array<std::uint64_t>(file.get(), "id/offsets", H5T_NATIVE_UINT64, path);
  if (a.embedding) {
    a.float16 = read_string_attribute(file.get(), "embedding_dtype", path) == "float16";
    a.hidden_size = read_u64_attribute(file.get(), "hidden_size", path);
    a.labels.clear();
    a.has_per_sequence = has_link(file.get(), "embedding_per_sequence", path);
    a.has_per_residue = has_link(file.get(), "embedding_per_residue", path);
    if (a.has_per_sequence)
      a.per_sequence_bytes = read_matrix_bytes(file.get(), "embedding_per_sequence", a.float16, path);
    if (a.has_per_residue) {
      a.per_residue_bytes = read_matrix_bytes(file.get(), "embedding_per_residue", a.float16, path);
      a.residue_offsets =
          read_array<std::uint64_t>(file.get(), "residue_offsets", H5T_NATIVE_UINT64, path);
    }
  } else if (a.per_residue) {
    a.values = read_array<float>(file.get(), "logits", H5T_NATIVE_FLOAT, path);
    a.residue_offsets =
        read_array<std::uint64_t>(file.get(), "residue_offsets", H5T_NATIVE_UINT64, path);
    a.prediction = read_array<std::uint8_t>(file.get(), "prediction", H5T_NATIVE_UINT8, path);
  } else {
    a.values = read_array<float>(file.get(), "scores", H5T_NATIVE_FLOAT, path);
  }
  check_annotation_shapes(a, path);
  return a;
}

embedding_extent read_embedding_extent(const std::string& path) {
  silence_hdf5();
  handle file(open_annotation_file(path), H5Fclose);
  if (read_string_attribute(file.get(), "output_level", path) != "embedding")
    throw shard_error("'" + path + "' holds no embeddings (output_level is not 'embedding')");
  embedding_extent e;
  e.float16 = read_string_attribute(file.get(), "embedding_dtype", path) == "float16";
  e.hidden_size = read_u64_attribute(file.get(), "hidden_size", path);
  e.n_records = read_u64_attribute(file.get(), "n_records", path);
  e.has_per_sequence = has_link(file.get(), "embedding_per_sequence", path);
  e.has_per_residue = has_link(file.get(), "embedding_per_residue", path);
  if (e.has_per_residue) e.n_residues = matrix_shape(file.get(), "embedding_per_residue", path).first;
  // The sizes an export plans with must be the datasets' own.
  const auto rows = read_array<std::uint64_t>(file.get(), "row", H5T_NATIVE_UINT64, path);
  const bool width_ok =
      (!e.has_per_sequence ||
       matrix_shape(file.get(), "embedding_per_sequence", path) ==
           std::pair<std::uint64_t, std::uint64_t>{e.n_records, e.hidden_size}) &&
      (!e.has_per_residue ||
       matrix_shape(file.get(), "embedding_per_residue", path).second == e.hidden_size);
  if (rows.size() != e.n_records || e.hidden_size == 0 || !width_ok)
    throw shard_error("'" + path +
                      "' is damaged: its n_records and hidden_size attributes disagree "
                      "with its datasets");
  return e;
}

named_array_file::named_array_file(const std::string& path) : path_(path) {
  silence_hdf5();
  // A new file: a leftover or a link to a file elsewhere under this name is removed, not
  // written through.
  ::unlink(path.c_str());
  file_ = check(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), "creating", path);
}

named_array_file::~named_array_file() {
  if (file_ >= 0) H5Fclose(file_);
}

void named_array_file::add(const std::string& name, const std::string& original_id,
                           std::uint64_t rows, std::uint64_t cols, bool float16, const void* data) {
  const auto f16 = float16 ? float16_type(path_) : handle();
  const hid_t type = float16 ? f16.get() : H5T_IEEE_F32LE;
  hsize_t dims[2] = {rows ? rows : cols, cols};
  handle space(check(H5Screate_simple(rows ? 2 : 1, dims, nullptr), "H5Screate_simple", path_),
               H5Sclose);
  handle dset(check(H5Dcreate2(file_, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                               H5P_DEFAULT),
                    "creating dataset '" + name + "'", path_),
              H5Dclose);
  if (dims[0] > 0 && cols > 0)
    check(H5Dwrite(dset.get(), float16 ? f16.get() : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                   H5P_DEFAULT, data),
          "writing dataset '" + name + "'", path_);
  write_text_attribute(dset.get(), "original_id", original_id, path_);
}

void named_array_file::close() {
  if (file_ < 0) return;
  const auto f = file_;
  file_ = -1;
  check(H5Fflush(f, H5F_SCOPE_GLOBAL), "flushing", path_);
  check(H5Fclose(f), "closing", path_);
}

}  // namespace hpcscreen::io
