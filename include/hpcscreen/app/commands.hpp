#pragma once
// The command paths every registered verb shares (pipeline/registry.hpp): one for a workload's
// run, one for packing a library kind. Each parses the common options plus the registration's
// own, then hands over to the pipeline or the pack.
#include <string>
#include <vector>

#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/pipeline/registry.hpp"

namespace hpcscreen::app {

// Registers every library kind, workload and tool (src/app/registrations.cpp, linked into the
// hpcscreen program only).
void register_everything();

// `hpcscreen VERB ...` for a registered workload: the run options, the memory tier, the
// workload's own options; the run on every rank; report.html at the end. Returns the exit status.
int run_workload(const pipeline::workload_kind& kind, const std::vector<std::string>& args,
                 int argc, char** argv);
// The same on ranks that already exist (tests: a local context); `command_line` goes to run.json.
int run_workload(const pipeline::workload_kind& kind, const std::vector<std::string>& args,
                 dist::context& ctx, const std::string& command_line);

// `hpcscreen pack KIND ...` for a registered library kind. Returns the exit status.
int pack(const std::vector<std::string>& args, int argc, char** argv);

}  // namespace hpcscreen::app
