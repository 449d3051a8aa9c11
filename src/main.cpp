// hpcscreen's command-line front: dispatches a verb to what registered it (pipeline/registry.hpp,
// filled by src/app/registrations.cpp). No workload is named here.
#include <algorithm>
#include <boost/program_options.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "hpcscreen/app/commands.hpp"
#include "hpcscreen/core/cli.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/exit_status.hpp"
#include "hpcscreen/pipeline/registry.hpp"
#include "hpcscreen/report/report.hpp"

namespace po = boost::program_options;
using namespace hpcscreen;

namespace {

std::string padded(std::string name) {
  name.resize(std::max<std::size_t>(name.size() + 1, 17), ' ');
  return name;
}

// Lines after the first of a summary are indented under it.
std::string indented(const std::string& text) {
  std::string out;
  for (const char c : text) out += c == '\n' ? std::string("\n") + std::string(19, ' ') : std::string(1, c);
  return out;
}

std::string top_usage() {
  std::string u = "usage: hpcscreen <command> [options]\n\ncommands:\n";
  for (const auto& k : pipeline::library_kinds())
    u += "  " + padded("pack " + k.name) + indented(k.summary) + "\n";
  for (const auto& w : pipeline::workload_kinds()) u += "  " + padded(w.name) + w.summary + "\n";
  for (const auto& t : pipeline::tool_commands())
    u += "  " + padded(t.name) + indented(t.summary) + "\n";
  u += "  report RUN       rebuild RUN/report.html from a finished or partial run\n"
       "  version          print hpcscreen's version\n"
       "\n"
       "'hpcscreen <command> --help' lists a command's options.\n";
  return u;
}

int report_command(const std::vector<std::string>& args) {
  std::string run_dir;
  report::report_options ro;
  po::options_description desc("report options");
  desc.add_options()("help,h", "show this help")("run", po::value(&run_dir),
                                                 "run folder (finished or partial)")(
      "max-hits", cli::in_range(ro.max_hits, "max-hits", 0, cli::int32_max), "hits shown");
  po::positional_options_description pos;
  pos.add("run", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: hpcscreen report RUN\n\n" << desc << '\n';
    return 0;
  }
  po::notify(vm);
  if (run_dir.empty()) throw usage_error("report needs a run folder: hpcscreen report RUN");
  std::printf("%s\n", report::write_report(run_dir, ro).c_str());
  return 0;
}

int dispatch(const std::string& command, const std::vector<std::string>& args, int argc,
             char** argv) {
  if (command == "pack") return app::pack(args, argc, argv);
  if (const auto* w = pipeline::workload_named(command)) return app::run_workload(*w, args, argc, argv);
  if (const auto* t = pipeline::tool_named(command)) return t->main(args, argc, argv);
  if (command == "report") return report_command(args);
  if (command == "version" || command == "--version") {
    std::printf("hpcscreen %s\n", HPCSCREEN_VERSION);
    return 0;
  }
  std::fprintf(stderr, "hpcscreen: unknown command '%s'\n\n%s", command.c_str(),
               top_usage().c_str());
  return exit_usage;
}

}  // namespace

int main(int argc, char** argv) {
  // A closed output pipe (`| head`) makes writes to it fail; it must not end a run half-way.
  std::signal(SIGPIPE, SIG_IGN);
  app::register_everything();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(top_usage().c_str(), argc < 2 ? stderr : stdout);
    return argc < 2 ? exit_usage : 0;
  }
  const std::string command = argv[1];
  try {
    return dispatch(command, {argv + 2, argv + argc}, argc, argv);
  } catch (const po::error& e) {
    std::fprintf(stderr, "hpcscreen %s: %s\n(see 'hpcscreen %s --help')\n", command.c_str(),
                 e.what(), command.c_str());
    return exit_usage;
  } catch (const usage_error& e) {
    std::fprintf(stderr, "hpcscreen %s: %s\n", command.c_str(), e.what());
    return exit_usage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hpcscreen %s: error: %s\n", command.c_str(), e.what());
    return exit_error;
  }
}
