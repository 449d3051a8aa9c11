// Structure-aware: the input becomes a shard's n_records attribute, offsets and bytes, written
// with plain HDF5 calls (bypassing write_shard's checks), then read back through shard_reader.
// Inconsistent offsets or counts must give a shard_error, never a crash or an out-of-range read.
#include <hdf5.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_common.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/io/shard.hpp"

namespace {
void put(hid_t file, const char* name, hid_t type, const void* v, hsize_t n) {
  hsize_t dims[1] = {n}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {n ? (n < 64 ? n : 64) : 1};
  hid_t space = H5Screate_simple(1, dims, maxdims);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, chunk);
  H5Pset_fletcher32(dcpl);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t d = H5Dcreate2(file, name, type, space, lcpl, dcpl, H5P_DEFAULT);
  if (n) H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(d);
  H5Pclose(lcpl);
  H5Pclose(dcpl);
  H5Sclose(space);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > 4096) return 0;
  const std::uint64_t n_records = data[0] % 16;
  const std::size_t n_offsets = data[1] % 20;
  std::vector<std::uint64_t> offsets;
  std::size_t p = 2;
  for (std::size_t i = 0; i < n_offsets && p < size; ++i) offsets.push_back(data[p++] % 64);
  std::vector<std::uint8_t> bytes(data + p, data + size);
  const std::string path = fuzz_input_file(nullptr, 0, ".h5");
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t scalar = H5Screate(H5S_SCALAR);
  hid_t str = H5Tcopy(H5T_C_S1);
  const char* schema = hpcscreen::io::compound_shard_schema;
  H5Tset_size(str, std::strlen(schema));
  hid_t a = H5Acreate2(file, "schema", str, scalar, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, str, schema);
  H5Aclose(a);
  a = H5Acreate2(file, "n_records", H5T_STD_U64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_UINT64, &n_records);
  H5Aclose(a);
  for (const char* field : {"id", "smiles"}) {
    put(file, (std::string(field) + "/bytes").c_str(), H5T_NATIVE_UINT8, bytes.data(),
        bytes.size());
    put(file, (std::string(field) + "/offsets").c_str(), H5T_NATIVE_UINT64, offsets.data(),
        offsets.size());
  }
  H5Tclose(str);
  H5Sclose(scalar);
  H5Fclose(file);
  try {
    hpcscreen::io::shard_reader r(path, schema, hpcscreen::io::compound_fields);
    for (std::uint64_t b = 0; b < r.n_records(); ++b) {
      const auto col = r.read("smiles", b, r.n_records());
      for (std::size_t i = 0; i < col.size(); ++i) (void)col[i];
    }
  } catch (const hpcscreen::shard_error&) {
  }
  return 0;
}
