#pragma once
#include <cstdint>
#include <string>

namespace hpcscreen {

// "90", "90s", "15m", "2h", "1h30m" → seconds. Throws usage_error naming the option.
double parse_duration_s(const std::string& text, const std::string& option);

// "512", "64M", "64G", "1.5T" (binary units) → bytes. Throws usage_error naming the option.
std::uint64_t parse_bytes(const std::string& text, const std::string& option);

// "1h02m03s"-style rendering for progress lines.
std::string format_duration(double seconds);

// Whether a file name read from a manifest or a record stays below the folder it is read
// against: not empty, not absolute, no "..".
bool is_plain_relative_path(const std::string& name);

// Whether something that is not a regular file is at path (a FIFO, device, socket or folder,
// links followed): opening a FIFO to read it blocks until a writer comes, so a file the
// program reads is checked first. False for a regular file, or nothing there.
bool is_special_file(const std::string& path);

}  // namespace hpcscreen
