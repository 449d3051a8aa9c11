#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace hpcscreen::pack {

// How a file is compressed, told from its first bytes (never from its name).
enum class compression { none, gzip, bzip2, xz, zstd };
const char* compression_name(compression c);

// What the start of a file holds: its compression and, once decompressed (a UTF-8 byte-order
// mark removed), up to `sample_bytes` of its text. `refusal` is non-empty when the content is
// not text a reader can use (an archive, an HDF5 file, binary data, UTF-16, data compressed
// twice); it says what was found.
struct content_probe {
  compression kind = compression::none;
  std::string sample;
  std::string refusal;
};
content_probe probe_content(const std::string& path, std::size_t sample_bytes = 1 << 16);

struct text_source_options {
  // A line longer than this is cut here and flagged (line_too_long); its remaining bytes are
  // read and dropped, so one runaway line cannot fill memory. 0: no limit.
  std::uint64_t max_line_bytes = 0;
};

// Lines of a text file, plain or compressed with gzip, bzip2, xz or zstd (detected from the
// first bytes; concatenated streams read as one). LF, CRLF and CR-only line ends all end a
// line; a UTF-8 byte-order mark at the start is skipped. Content that is not text (see
// content_probe) throws usage_error naming the file and what was found; corrupt or truncated
// compressed data throws error with the file and line.
class text_source {
 public:
  explicit text_source(const std::string& path, const text_source_options& options = {});
  ~text_source();
  text_source(const text_source&) = delete;
  text_source& operator=(const text_source&) = delete;

  bool next_line(std::string& line);
  // The line last returned by next_line was longer than max_line_bytes; `line` holds its
  // first max_line_bytes bytes.
  bool line_too_long() const { return line_too_long_; }
  std::uint64_t line_number() const { return line_number_; }
  const std::string& path() const { return path_; }
  compression kind() const;

 private:
  friend content_probe probe_content(const std::string& path, std::size_t sample_bytes);
  bool fill();
  // Names the last line read whole: decompression fails a block at a time, so the damage lies
  // after it, within the next compressed block.
  std::string damaged_message(const std::string& why) const;

  struct impl;
  std::unique_ptr<impl> impl_;
  std::string path_;
  text_source_options options_;
  std::uint64_t line_number_ = 0;
  bool line_too_long_ = false;
};

}  // namespace hpcscreen::pack
