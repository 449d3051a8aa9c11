#include "hpcscreen/core/checksum.hpp"

#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <vector>

#include "hpcscreen/core/error.hpp"

namespace hpcscreen {
namespace {
std::string format_crc(uLong crc) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "crc32:%08lx", crc & 0xffffffffUL);
  return buf;
}
}  // namespace

std::string file_checksum(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error("cannot open '" + path + "' to compute its checksum");
  std::vector<char> block(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const auto n = in.gcount();
    if (n > 0) crc = crc32(crc, reinterpret_cast<const Bytef*>(block.data()), static_cast<uInt>(n));
  }
  if (in.bad()) throw error("read error while computing the checksum of '" + path + "'");
  return format_crc(crc);
}

std::uint32_t bytes_crc32(std::string_view bytes) {
  const uLong crc = crc32(0L, Z_NULL, 0);
  return static_cast<std::uint32_t>(
      crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

std::string bytes_checksum(std::string_view bytes) {
  return format_crc(bytes_crc32(bytes));
}

}  // namespace hpcscreen
