#include "hpcscreen/core/options.hpp"

#include <sys/stat.h>

#include <cctype>
#include <cmath>
#include <cstdio>

#include "hpcscreen/core/error.hpp"

namespace hpcscreen {

double parse_duration_s(const std::string& text, const std::string& option) {
  const auto bad = [&] {
    return usage_error("the argument ('" + text + "') for option '--" + option +
                       "' is invalid: expected a duration such as 90s, 15m, 2h or 1h30m");
  };
  if (text.empty()) throw bad();
  double total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t j = i;
    while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.'))
      ++j;
    if (j == i) throw bad();
    const double value = std::stod(text.substr(i, j - i));
    double unit = 1;
    if (j < text.size()) {
      switch (text[j]) {
        case 's':
          unit = 1;
          break;
        case 'm':
          unit = 60;
          break;
        case 'h':
          unit = 3600;
          break;
        case 'd':
          unit = 86400;
          break;
        default:
          throw bad();
      }
      ++j;
    } else if (i != 0) {
      throw bad();  // "1h30" is ambiguous
    }
    total += value * unit;
    i = j;
  }
  if (!(total > 0) || !std::isfinite(total)) {
    throw usage_error("the argument ('" + text + "') for option '--" + option +
                      "' is invalid: a duration above 0 is expected (such as 90s, 15m or 2h)");
  }
  return total;
}

std::uint64_t parse_bytes(const std::string& text, const std::string& option) {
  const auto bad = [&] {
    return usage_error("the argument ('" + text + "') for option '--" + option +
                       "' is invalid: expected a size such as 512M, 64G or 1T");
  };
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  std::string unit = text.substr(used);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (!unit.empty() && unit.back() == 'i') unit.pop_back();
  double scale = 1;
  if (unit == "")
    scale = 1;
  else if (unit == "K" || unit == "k")
    scale = 1024.0;
  else if (unit == "M" || unit == "m")
    scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "g")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "t")
    scale = 1024.0 * 1024 * 1024 * 1024;
  else
    throw bad();
  if (!(value > 0) || !std::isfinite(value)) throw bad();
  // 2^64 and above cannot be held: refuse rather than wrap to 0 (which means "off" to some
  // options). 18446744073709551616.0 is exactly 2^64 as a double.
  const double bytes = value * scale;
  if (!(bytes < 18446744073709551616.0)) {
    throw usage_error("the argument ('" + text + "') for option '--" + option +
                      "' is invalid: the size does not fit in 64 bits (it must be below 2^64 bytes, 16 EiB)");
  }
  if (bytes < 1) throw bad();
  return static_cast<std::uint64_t>(bytes);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<long long>(seconds + 0.5);
  char buf[64];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm%02llds", s / 3600, (s % 3600) / 60, s % 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%llds", s);
  }
  return buf;
}

bool is_plain_relative_path(const std::string& name) {
  return !name.empty() && name.front() != '/' && name.find("..") == std::string::npos;
}

bool is_special_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
}

}  // namespace hpcscreen
