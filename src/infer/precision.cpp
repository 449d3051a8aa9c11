#include "hpcscreen/infer/precision.hpp"

#include <cstdlib>
#include <sstream>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define HPCSCREEN_X86 1
#endif

namespace hpcscreen::infer {

const char* precision_name(precision p) {
  switch (p) {
    case precision::fp32:
      return "fp32";
    case precision::bf16:
      return "bf16";
    case precision::int8:
      return "int8";
  }
  return "?";
}

void check_precision_text(const std::string& text) {
  if (text == "fp32" || text == "bf16" || text == "int8" || text == "auto") return;
  throw usage_error("--precision must be " + std::string(precision_choices) + " (got '" + text +
                    "')");
}

void add_precision_option(boost::program_options::options_description& desc,
                          std::string& precision) {
  desc.add_options()("precision",
                     boost::program_options::value(&precision)
                         ->default_value(precision)
                         ->notifier([](const std::string& v) { check_precision_text(v); }),
                     "fp32, bf16, int8 or auto: the precision the model runs at, converted once "
                     "at load (bf16 needs AVX512_BF16, int8 AVX512_VNNI; auto: the fastest the "
                     "CPU has; outputs stay float32)");
}

std::vector<std::string> cpu_features::names() const {
  std::vector<std::string> n;
  const bool z = os_avx512;
  if (avx512f && z) n.push_back("avx512f");
  if (avx512_bf16 && z) n.push_back("avx512_bf16");
  if (avx512_vnni && z) n.push_back("avx512_vnni");
  if (avx_vnni) n.push_back("avx_vnni");
  if (amx_tile && os_amx) n.push_back("amx_tile");
  if (amx_bf16 && os_amx) n.push_back("amx_bf16");
  if (amx_int8 && os_amx) n.push_back("amx_int8");
  return n;
}

namespace {
cpu_features from_list(const std::string& list) {
  cpu_features f;
  f.faked = true;
  f.os_avx512 = f.os_amx = true;
  std::stringstream in(list);
  for (std::string name; std::getline(in, name, ',');) {
    if (name == "avx512f") f.avx512f = true;
    else if (name == "avx512_bf16") f.avx512_bf16 = true;
    else if (name == "avx512_vnni") f.avx512_vnni = true;
    else if (name == "avx_vnni") f.avx_vnni = true;
    else if (name == "amx_tile") f.amx_tile = true;
    else if (name == "amx_bf16") f.amx_bf16 = true;
    else if (name == "amx_int8") f.amx_int8 = true;
  }
  return f;
}
}  // namespace

cpu_features detect_cpu_features() {
  if (const char* fake = std::getenv("HPCSCREEN_FAKE_CPU_FEATURES")) return from_list(fake);
  cpu_features f;
#ifdef HPCSCREEN_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned leaf7_subleaves = a;
  f.avx512f = b & (1u << 16);
  f.avx512_vnni = c & (1u << 11);
  f.amx_bf16 = d & (1u << 22);
  f.amx_tile = d & (1u << 24);
  f.amx_int8 = d & (1u << 25);
  if (leaf7_subleaves >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    f.avx_vnni = a & (1u << 4);
    f.avx512_bf16 = a & (1u << 5);
  }
  // The instructions are usable only if the kernel saves their registers: XCR0 bits 1-2 (SSE,
  // AVX), 5-7 (opmask, upper ZMM halves, ZMM16-31) for AVX-512, 17-18 for AMX tiles.
  if (osxsave) {
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const unsigned long long xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
    const bool os_avx = (xcr0 & 0x6) == 0x6;
    f.os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
    f.os_amx = (xcr0 & 0x60000) == 0x60000;
    f.avx_vnni = f.avx_vnni && os_avx;
  } else {
    f.avx_vnni = false;
  }
#endif
  return f;
}

namespace {
std::string found_list(const cpu_features& cpu) {
  const auto n = cpu.names();
  if (n.empty()) return "none of avx512_bf16, avx512_vnni, avx_vnni, amx_*";
  std::string s;
  for (const auto& x : n) s += (s.empty() ? "" : ", ") + x;
  return s;
}
}  // namespace

precision_choice choose_precision(const std::string& requested, model_family family,
                                  const cpu_features& cpu) {
  check_precision_text(requested);
  precision_choice c;
  c.requested = requested;
  c.cpu = cpu;
  const std::string found = " (CPUID" + std::string(cpu.faked ? ", faked by HPCSCREEN_FAKE_CPU_FEATURES" : "") +
                            " reports: " + found_list(cpu) + ")";
  if (requested == "fp32") {
    c.used = precision::fp32;
  } else if (requested == "bf16") {
    if (!cpu.runs_bf16()) {
      throw precision_error(
          "--precision bf16 needs AVX512_BF16 (or AMX-BF16), which this CPU lacks" + found +
          "; without it BF16 is emulated and slower than FP32. Use --precision fp32" +
          (cpu.runs_int8() ? " or int8" : "") + ", or run on a node that has it");
    }
    c.used = precision::bf16;
  } else if (requested == "int8") {
    if (!cpu.runs_int8()) {
      throw precision_error(
          "--precision int8 needs AVX512_VNNI (or AVX-VNNI, AMX-INT8), which this CPU lacks" +
          found + "; without it INT8 runs no faster than FP32. Use --precision fp32" +
          (cpu.runs_bf16() ? " or bf16" : "") + ", or run on a node that has it");
    }
    c.used = precision::int8;
  } else {
    // auto: the fastest precision measured on these CPUs for each family that also met the
    // accuracy targets (README, "Reduced precision"). BF16 won for both the BERTs and the GNNs;
    // INT8 was slower than FP32 for the GNN and behind BF16 for the BERTs.
    if (cpu.runs_bf16()) {
      c.used = precision::bf16;
      c.reason = "auto: the CPU has BF16 instructions, the fastest measured precision for " +
                 std::string(family == model_family::gnn    ? "GNNs"
                             : family == model_family::bert ? "BERTs"
                                                            : "CNNs");
    } else if (family == model_family::bert && cpu.runs_int8()) {
      c.used = precision::int8;
      c.reason = "auto: no BF16 instructions; INT8 (VNNI) measured faster than FP32 for BERTs";
    } else {
      c.used = precision::fp32;
      c.reason = "auto: no reduced precision measured faster than FP32 for this model kind on "
                 "this CPU";
    }
  }
  return c;
}

}  // namespace hpcscreen::infer
