#include <cstdint>
#include <cstdlib>

#include "fuzz_common.hpp"
#include "hpcscreen/pack/fasta_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  const auto path = fuzz_input_file(data, size, ".fa");
  try {
    std::uint64_t n = 0;
    hpcscreen::pack::read_fasta(
        path,
        [&](auto&& r) {
          ++n;
          for (const char c : r.sequence)
            if (c == ' ' || c == '\t' || c == '\n') std::abort();  // stripped
        },
        [](auto&&) {});
  } catch (const std::exception&) {
  }
  return 0;
}
