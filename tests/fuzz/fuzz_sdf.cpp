#include <cstdint>

#include "fuzz_common.hpp"
#include "hpcscreen/chem/sdf_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  const auto path = fuzz_input_file(data, size, ".sdf");
  try {
    hpcscreen::chem::read_sdf(
        path, {"name"}, [](auto&&) {}, [](auto&&) {});
  } catch (const std::exception&) {  // a typed error (e.g. gzip) is a valid outcome
  }
  return 0;
}
