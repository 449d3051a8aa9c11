#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace hpcscreen::pack {

// Lines of a text file, plain or gzip-compressed (zlib detects which). Strips "\n" and a
// trailing "\r" so Windows line endings read the same. A gzip error throws with the file
// name and line number.
class text_source {
 public:
  explicit text_source(const std::string& path);
  ~text_source();
  text_source(const text_source&) = delete;
  text_source& operator=(const text_source&) = delete;

  bool next_line(std::string& line);
  std::uint64_t line_number() const { return line_number_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* gz_ = nullptr;
  std::uint64_t line_number_ = 0;
};

}  // namespace hpcscreen::pack
