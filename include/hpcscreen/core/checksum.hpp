#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace hpcscreen {

// CRC-32 (zlib) of a whole file, as "crc32:xxxxxxxx". Streams the file in blocks.
// Used to recognise the same manifest and model on resume and to verify shards on request;
// damage inside shards is caught on every read by HDF5's Fletcher-32 filter.
std::string file_checksum(const std::string& path);
std::string bytes_checksum(std::string_view bytes);
// The same CRC-32 as a number (for checks stored per record, where the text would cost more).
std::uint32_t bytes_crc32(std::string_view bytes);

}  // namespace hpcscreen
