#pragma once
// Reduced-precision inference: which precision a model runs at, what the CPU offers for it
// (read from CPUID, never guessed), and what was chosen, for run.json. Free of LibTorch; the
// conversion itself is in src/infer/graph_passes.cpp.
#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "hpcscreen/core/error.hpp"

namespace hpcscreen::infer {

enum class precision { fp32, bf16, int8 };
enum class model_family { gnn, bert, cnn };

inline constexpr const char* precision_choices = "fp32, bf16, int8 or auto";

const char* precision_name(precision p);
// "fp32", "bf16", "int8" or "auto"; anything else is a usage_error naming the choices.
void check_precision_text(const std::string& text);
// --precision, stored into `precision` and checked where parsed (exit 2); whether the CPU runs
// it is checked at model load.
void add_precision_option(boost::program_options::options_description& desc, std::string& precision);

// The instruction-set extensions that make reduced precision fast, as CPUID reports them and
// as the operating system has enabled their register state (XGETBV).
struct cpu_features {
  bool avx512f = false;
  bool avx512_bf16 = false;  // CPUID.(EAX=7,ECX=1):EAX[5]
  bool avx512_vnni = false;  // CPUID.(EAX=7,ECX=0):ECX[11]
  bool avx_vnni = false;     // CPUID.(EAX=7,ECX=1):EAX[4]
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;  // CPUID.(EAX=7,ECX=0):EDX[24,22,25]
  bool os_avx512 = false;  // XCR0 has opmask and ZMM state
  bool os_amx = false;     // XCR0 has tile configuration and data
  bool faked = false;      // from HPCSCREEN_FAKE_CPU_FEATURES (tests only)
  // The names found (as /proc/cpuinfo spells them), usable ones only.
  std::vector<std::string> names() const;
  bool runs_bf16() const { return (avx512_bf16 && os_avx512) || (amx_bf16 && os_amx); }
  bool runs_int8() const { return (avx512_vnni && os_avx512) || avx_vnni || (amx_int8 && os_amx); }
};

// CPUID and XGETBV of this machine. For tests only: when HPCSCREEN_FAKE_CPU_FEATURES is set,
// the features are exactly those it lists, comma-separated (names as in names(); "" for none),
// so that the refusal of a precision the CPU lacks can be tested on any machine.
cpu_features detect_cpu_features();

// Thrown when the requested precision needs an ISA the CPU lacks (exit status 1, like other
// facts of the node such as a missing DAX KMEM: the command line is right, the machine is not).
class precision_error : public error {
 public:
  using error::error;
};

// What a model runs at, and why; recorded in run.json["<workload>"]["precision"].
struct precision_choice {
  std::string requested = "fp32";  // as given: fp32, bf16, int8, auto
  precision used = precision::fp32;
  std::string reason;            // why auto chose `used`
  cpu_features cpu;
  std::string quantized_engine;  // LibTorch's engine for INT8 (set explicitly at load)
  std::vector<std::string> graph_passes;  // applied at load: freeze, bf16 conversion, ...
  std::size_t n_converted = 0;            // tensors/constants cast (bf16) or linears quantized (int8)
};

// Resolves `requested` for a model of `family` on this CPU: `auto` picks the fastest precision
// measured for the family that the CPU runs (README, "Reduced precision"); an explicit precision
// the CPU lacks throws precision_error naming the missing ISA.
precision_choice choose_precision(const std::string& requested, model_family family,
                                  const cpu_features& cpu);

}  // namespace hpcscreen::infer
