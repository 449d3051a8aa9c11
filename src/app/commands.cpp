#include "hpcscreen/app/commands.hpp"

#include <cstdio>
#include <iostream>

#include "hpcscreen/core/cli.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"
#include "hpcscreen/core/scheduler.hpp"
#include "hpcscreen/dist/agreement.hpp"
#include "hpcscreen/infer/memory_tier.hpp"
#include "hpcscreen/pipeline/pipeline.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/report/report.hpp"

namespace hpcscreen::app {
namespace {

namespace po = boost::program_options;
using cli::in_range;

std::string join_args(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) s += (i ? " " : "") + std::string(argv[i]);
  return s;
}

// Options every run takes, whatever its workload.
struct run_command_line {
  pipeline::run_options o;
  std::string stop_after, budget, pmem_max;
  infer::tier_config tier;

  void add_options(po::options_description& desc) {
    desc.add_options()("help,h", "show this help")("library,l",
                                                   po::value(&o.library_dir)->required(),
                                                   "library folder written by 'hpcscreen pack'")(
        "out,o", po::value(&o.out_dir)->required(),
        "run folder to create (or continue with --resume)")(
        "threads,t", in_range(o.threads, "threads", 0, max_threads_per_rank),
        "threads per rank (0: from Slurm/PBS or the machine)")(
        "chunk-rows", in_range(o.chunk_rows, "chunk-rows", 1, cli::rows_max),
        "rows per unit of work")(
        "featurize-threads",
        in_range(o.featurize_threads, "featurize-threads", 0, max_threads_per_rank - 1),
        "of the rank's threads, this many prepare records (featurize, tokenize, decode) and the "
        "rest infer (0: each thread takes whichever stage has work, oldest chunk first)")(
        "chunks-in-flight", in_range(o.chunks_in_flight, "chunks-in-flight", 1, 64),
        "chunks a rank holds at once (read ahead, preparing, inferring)")(
        "resume", po::bool_switch(&o.resume), "continue an existing run folder")(
        "check", po::bool_switch(&o.check_only),
        "check the options, library, models and run folder as a run would, then stop before "
        "any work, writing nothing (exit 0: the run can start)")(
        "retry-failed", po::bool_switch(&o.retry_failed),
        "with --resume: process again the chunks of shards that could not be read (after "
        "repair)")("stop-after", po::value(&stop_after),
                   "stop cleanly after this long (e.g. 3h50m), resumable")(
        "max-chunks", in_range(o.max_chunks_per_rank, "max-chunks", 0, cli::rows_max),
        "stop cleanly after this many chunks per rank (trial runs; 0: no limit)")(
        "allow-failed-shards", po::bool_switch(&o.allow_failed_shards),
        "exit 0 even if some shards could not be read")(
        "progress-interval", cli::non_negative_seconds(o.progress_interval_s, "progress-interval"),
        "seconds between progress lines (0: off)")(
        "dram-budget", po::value(&budget),
        "DRAM for tensors per rank (e.g. 64G); beyond it, spill to --pmem-dir or --pmem-kmem")(
        "pmem-dir", po::value(&tier.pmem_dir),
        "spill tier: a memkind file-backed kind in this folder (a DAX mount)")(
        "pmem-kmem", po::bool_switch(&tier.pmem_kmem),
        "spill tier: MEMKIND_DAX_KMEM (persistent memory in system-RAM mode)")(
        "pmem-max", po::value(&pmem_max), "cap on the spill tier per rank (default: unlimited)");
  }

  void check(const std::string& command_line) {
    if (o.out_dir.empty()) throw usage_error("--out must name a run folder (it is empty)");
    if (o.library_dir.empty())
      throw usage_error("--library must name a library folder (it is empty)");
    o.command_line = command_line;
    o.version = HPCSCREEN_VERSION;
    if (!stop_after.empty()) o.stop_after_s = parse_duration_s(stop_after, "stop-after");
    if (!budget.empty()) tier.dram_budget_bytes = parse_bytes(budget, "dram-budget");
    if (budget.empty() && !pmem_max.empty())
      throw usage_error("--pmem-max caps the spill tier, which needs --dram-budget and a spill tier");
    if (!pmem_max.empty()) tier.pmem_max_bytes = parse_bytes(pmem_max, "pmem-max");
    if (budget.empty() && (!tier.pmem_dir.empty() || tier.pmem_kmem)) {
      throw usage_error(
          "--pmem-dir and --pmem-kmem need --dram-budget: the DRAM to use before spilling");
    }
  }
};

}  // namespace

namespace {

// Parses the common and the workload's options; false when --help was given.
bool parse_run(const pipeline::workload_kind& kind, const std::vector<std::string>& args,
               run_command_line& common, pipeline::workload_command& command,
               const std::string& command_line) {
  po::options_description desc(kind.name + " options");
  common.add_options(desc);
  command.add_options(desc);
  po::variables_map vm;
  if (!cli::parse(args, desc, vm, kind.usage)) return false;
  common.check(command_line);
  command.check(vm);
  return true;
}

int run_parsed(const pipeline::workload_kind& kind, dist::context& ctx,
               const run_command_line& common, pipeline::workload_command& command) {
  const auto& o = common.o;
  // The memory tier is installed inside the run's set-up, where ranks agree on errors.
  const int status = pipeline::run(ctx, o, kind, [&](int threads) {
    infer::install_memory_tier(common.tier);
    return command.make(threads);
  });
  // The page for people; a failure here never changes the run's outcome.
  if (ctx.rank() == 0 && !o.check_only &&
      (status == exit_ok || status == exit_incomplete || status == exit_interrupted)) {
    try {
      report::write_report(o.out_dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hpcscreen: warning: report.html not written: %s\n", e.what());
    }
  }
  return status;
}

}  // namespace

int run_workload(const pipeline::workload_kind& kind, const std::vector<std::string>& args,
                 int argc, char** argv) {
  run_command_line common;
  common.o.chunk_rows = kind.default_chunk_rows;
  const auto command = kind.command();
  if (!parse_run(kind, args, common, *command, join_args(argc, argv))) return 0;
  // Before MPI and the models start: a scheduler's signal during start-up still ends in a
  // clean, resumable stop (exit 75) rather than the default action.
  pipeline::install_stop_handlers();
  dist::mpi_session mpi(argc, argv);
  auto world = mpi.world();
  return run_parsed(kind, *world, common, *command);
}

int run_workload(const pipeline::workload_kind& kind, const std::vector<std::string>& args,
                 dist::context& ctx, const std::string& command_line) {
  run_command_line common;
  common.o.chunk_rows = kind.default_chunk_rows;
  const auto command = kind.command();
  if (!parse_run(kind, args, common, *command, command_line)) return 0;
  return run_parsed(kind, ctx, common, *command);
}

int pack(const std::vector<std::string>& args, int argc, char** argv) {
  std::string kinds;
  for (const auto& k : pipeline::library_kinds()) kinds += (kinds.empty() ? "" : "|") + k.name;
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "usage: hpcscreen pack " << kinds << " --input FILE... --out DIR\n"
              << "'hpcscreen pack KIND --help' lists a kind's options.\n";
    return 0;
  }
  if (args.empty() || args[0].empty() || args[0][0] == '-')
    throw po::error("'pack' needs a kind: 'hpcscreen pack " + kinds + " --input FILE --out DIR'");
  const auto& kind = pipeline::find_library_kind(args[0]);
  const auto command = kind.pack();
  po::options_description desc("pack " + kind.name + " options");
  desc.add_options()("help,h", "show this help");
  command->add_options(desc);
  po::variables_map vm;
  if (!cli::parse({args.begin() + 1, args.end()}, desc, vm, kind.pack_usage)) return 0;
  command->check(vm);
  // SIGTERM, SIGINT, SIGUSR1, SIGUSR2 and SIGHUP stop the pack cleanly (exit 75, --resume finishes
  // it).
  pipeline::install_stop_handlers();
  return dist::run_collective_command(argc, argv, "pack", [&](dist::context& ctx) {
    const auto summary = command->run(ctx, [] { return pipeline::stop_requested(); });
    if (ctx.rank() == 0) std::fputs(summary.c_str(), stdout);
  });
}

}  // namespace hpcscreen::app
