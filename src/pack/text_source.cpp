#include "hpcscreen/pack/text_source.hpp"

#include <zlib.h>

#include <cstring>

#include "hpcscreen/core/error.hpp"

namespace hpcscreen::pack {

text_source::text_source(const std::string& path) : path_(path) {
  gz_ = gzopen(path.c_str(), "rb");
  if (!gz_) throw usage_error("cannot open input '" + path + "': " + std::strerror(errno));
  gzbuffer(static_cast<gzFile>(gz_), 1 << 18);
}

text_source::~text_source() {
  if (gz_) gzclose(static_cast<gzFile>(gz_));
}

bool text_source::next_line(std::string& line) {
  line.clear();
  auto* gz = static_cast<gzFile>(gz_);
  char buf[1 << 14];
  bool got_any = false;
  while (gzgets(gz, buf, sizeof buf)) {
    got_any = true;
    const std::size_t n = std::strlen(buf);
    line.append(buf, n);
    if (n > 0 && buf[n - 1] == '\n') break;
  }
  int err = Z_OK;
  const char* msg = gzerror(gz, &err);
  if (err != Z_OK && err != Z_STREAM_END) {
    throw error("'" + path_ + "' line " + std::to_string(line_number_ + 1) +
                ": gzip error: " + (msg ? msg : "unknown"));
  }
  if (!got_any) return false;
  ++line_number_;
  if (!line.empty() && line.back() == '\n') line.pop_back();
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

}  // namespace hpcscreen::pack
