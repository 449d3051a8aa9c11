#include "hpcscreen/core/cli.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"

namespace hpcscreen::cli {

long long integer_in_range(const std::string& text, const char* name, long long lo, long long hi) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || v < lo || v > hi) {
    throw usage_error("--" + std::string(name) + " must be an integer from " + std::to_string(lo) +
                      " to " + std::to_string(hi) + " (got '" + text + "')");
  }
  return v;
}

po::typed_value<std::string>* non_negative_seconds(double& target, const char* name) {
  char shown[32];
  std::snprintf(shown, sizeof shown, "%g", target);
  return po::value<std::string>()->default_value(shown)->notifier(
      [&target, name](const std::string& text) {
        std::size_t used = 0;
        double v = -1;
        try {
          v = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != text.size() || !(v >= 0) || v > 1e9) {
          throw usage_error("--" + std::string(name) +
                            " must be a number of seconds, 0 or more (got '" + text + "')");
        }
        target = v;
      });
}

bool parse(const std::vector<std::string>& args, const po::options_description& desc,
           po::variables_map& vm, const std::string& usage) {
  // The command line and the paths in it are kept in JSON files (run_config.json, manifests),
  // which hold UTF-8 text only.
  for (const auto& a : args) {
    if (valid_utf8(a)) continue;
    throw usage_error("the argument '" + shown_text(a) +
                      "' is not valid UTF-8: hpcscreen keeps its command line and paths in JSON "
                      "files, which hold UTF-8 text; rename the file or folder (or link to it "
                      "under a UTF-8 name)");
  }
  const po::positional_options_description none;
  po::store(po::command_line_parser(args).options(desc).positional(none).run(), vm);
  if (vm.count("help")) {
    std::cout << usage << "\n\n" << desc << '\n';
    return false;
  }
  po::notify(vm);
  return true;
}

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(v)) return true;
  }
  return false;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t begin = 0; !text.empty() && begin <= text.size();) {
    auto end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return out;
}

}  // namespace hpcscreen::cli
