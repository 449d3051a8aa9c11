#pragma once
// Command-line helpers every command shares (Boost.Program_options). Integer and duration
// options are read as text and checked where they are parsed: a bad value is a usage error that
// names the option and the accepted range, never a wrapped-around unsigned or a silent default.
#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace hpcscreen::cli {

namespace po = boost::program_options;

inline constexpr long long int32_max = 2147483647LL;
inline constexpr long long rows_max = 1LL << 40;

// Parses text as an integer in [lo, hi]; throws usage_error naming --name.
long long integer_in_range(const std::string& text, const char* name, long long lo, long long hi);

// An integer option stored into target, shown with target's current value as its default.
template <class T>
po::typed_value<std::string>* in_range(T& target, const char* name, long long lo, long long hi) {
  return po::value<std::string>()
      ->default_value(std::to_string(target))
      ->notifier([&target, name, lo, hi](const std::string& text) {
        target = static_cast<T>(integer_in_range(text, name, lo, hi));
      });
}

// A number of seconds, 0 or more.
po::typed_value<std::string>* non_negative_seconds(double& target, const char* name);

// Parses args (no positional arguments: a stray word is an error, not silently dropped). Prints
// usage and the options and returns false when --help was given.
bool parse(const std::vector<std::string>& args, const po::options_description& desc,
           po::variables_map& vm, const std::string& usage);

// Started by mpirun, srun (PMI/PMIx) or another MPI launcher.
bool launched_by_mpi();

// "a,b,c" → {"a", "b", "c"}; empty text → {}.
std::vector<std::string> split_commas(const std::string& text);

}  // namespace hpcscreen::cli
