#pragma once
// Readers take paths: write the input to a per-process temporary file.
#include <unistd.h>

#include <cstdio>
#include <string>

inline std::string fuzz_input_file(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string path = "/tmp/hpcscreen_fuzz_" + std::to_string(::getpid()) + suffix;
  if (data) {
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  return path;
}
