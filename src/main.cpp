// hpcscreen's command-line front: parses options and hands over to a stage.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "hpcscreen/annotate/annotate.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"
#include "hpcscreen/dist/context.hpp"
#include "hpcscreen/infer/memory_tier.hpp"
#include "hpcscreen/io/embedding_export.hpp"
#include "hpcscreen/infer/precision.hpp"
#include "hpcscreen/pipeline/registry.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/pack/pack_library.hpp"
#include "hpcscreen/report/report.hpp"
#include "hpcscreen/screen/feature_cache.hpp"
#include "hpcscreen/screen/screen.hpp"
#include "hpcscreen/core/scheduler.hpp"
#include "hpcscreen/infer/gnn_model.hpp"

namespace po = boost::program_options;
using namespace hpcscreen;

namespace {

// The workloads' names and summaries come from the registry (pipeline/registry.hpp).
std::string top_usage() {
  std::string u =
      "usage: hpcscreen <command> [options]\n"
      "\n"
      "commands:\n"
      "  pack compounds   pack .smi/.csv/.tsv/.cxsmiles/.sdf (plain, gzip, bzip2, xz or zstd)\n"
      "                   into HDF5 shards + manifest\n"
      "  pack proteins    pack FASTA (plain or compressed) into HDF5 shards + manifest\n";
  for (const auto& w : pipeline::workload_kinds()) {
    std::string name = w.name;
    name.resize(std::max<std::size_t>(name.size() + 1, 17), ' ');
    u += "  " + name + w.summary + "\n";
  }
  u += "  featurize        feature caches in a compound library: featurize once, screen often\n"
       "  export embeddings RUN --out FILE.h5\n"
       "                   an annotate run's embeddings, one dataset per id (bio_embeddings)\n"
       "  report RUN       rebuild RUN/report.html from a finished or partial run\n"
       "  version          print versions\n"
       "\n"
       "'hpcscreen <command> --help' lists a command's options.\n";
  return u;
}

// Integer options are read as text and checked where they are parsed: a bad value (negative,
// zero where it makes no sense, out of range) is a usage error that names the option and the
// accepted range, never a wrapped-around unsigned or a silently used default.
template <class T>
po::typed_value<std::string>* in_range(T& target, const char* name, long long lo, long long hi) {
  return po::value<std::string>()
      ->default_value(std::to_string(target))
      ->notifier([&target, name, lo, hi](const std::string& text) {
        std::size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != text.size() || text.empty() || v < lo || v > hi) {
          throw usage_error("--" + std::string(name) + " must be an integer from " +
                            std::to_string(lo) + " to " + std::to_string(hi) + " (got '" + text +
                            "')");
        }
        target = static_cast<T>(v);
      });
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
          throw usage_error("--" + std::string(name) + " must be a number of seconds, 0 or more (got '" +
                            text + "')");
        }
        target = v;
      });
}

constexpr long long int32_max = 2147483647LL;
constexpr long long rows_max = 1LL << 40;

std::string join_args(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    if (i) s += ' ';
    s += argv[i];
  }
  return s;
}

// Parses args; prints help and returns false when --help was given.
bool parse(const std::vector<std::string>& args, const po::options_description& desc,
           po::variables_map& vm, const char* usage_line) {
  // No positional arguments: a stray word (a second model without --model) is an error, not
  // silently dropped.
  const po::positional_options_description none;
  po::store(po::command_line_parser(args).options(desc).positional(none).run(), vm);
  if (vm.count("help")) {
    std::cout << usage_line << "\n\n" << desc << '\n';
    return false;
  }
  po::notify(vm);
  return true;
}

// Started by mpirun, srun (PMI/PMIx) or another MPI launcher: pack with every rank. Without
// one, pack runs as a single process and never initialises MPI.
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(v)) return true;
  }
  return false;
}

void print_pack_summary(const pack::pack_summary& s, const pack::pack_options& o) {
  std::printf("read %llu rows: %llu records packed into %zu shard(s) in %s, %llu pack rejects",
              static_cast<unsigned long long>(s.n_rows_read),
              static_cast<unsigned long long>(s.n_records), s.n_shards, o.out_dir.c_str(),
              static_cast<unsigned long long>(s.n_pack_rejects));
  if (s.n_comments)
    std::printf("; %llu comment lines skipped", static_cast<unsigned long long>(s.n_comments));
  std::printf("\n");
  if (o.resume && (s.n_shards_kept || s.n_inputs_skipped)) {
    std::printf("resumed: %zu input(s) finished earlier, %zu shard(s) kept\n", s.n_inputs_skipped,
                s.n_shards_kept);
  }
  if (s.n_pack_rejects) {
    std::printf("%llu input rows could not be packed; see %s/pack_rejects.csv\n",
                static_cast<unsigned long long>(s.n_pack_rejects), o.out_dir.c_str());
  }
}

// Under MPI every rank packs; a failure is agreed by all ranks inside pack (every rank throws
// the same), so it is caught here, reported once by rank 0, and MPI is finalised normally.
int pack_with_mpi(int argc, char** argv, const pack::pack_options& o, bool proteins) {
  dist::mpi_session mpi(argc, argv);
  auto world = mpi.world();
  const bool report = world->rank() == 0;
  try {
    const auto s = proteins ? pack::pack_proteins(*world, o) : pack::pack_compounds(*world, o);
    if (report) {
      print_pack_summary(s, o);
      std::printf("packed by %d ranks\n", world->size());
    }
    return 0;
  } catch (const usage_error& e) {
    if (report) std::fprintf(stderr, "hpcscreen pack: %s\n", e.what());
    return pipeline::exit_usage;
  } catch (const stopped_error& e) {
    if (report) std::fprintf(stderr, "hpcscreen pack: %s\n", e.what());
    return pipeline::exit_interrupted;
  } catch (const std::exception& e) {
    if (report) std::fprintf(stderr, "hpcscreen pack: error: %s\n", e.what());
    return pipeline::exit_error;
  }
}

int pack_command(const std::vector<std::string>& args, int argc, char** argv) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "usage: hpcscreen pack compounds|proteins --input FILE... --out DIR\n"
                 "'hpcscreen pack compounds --help' and 'hpcscreen pack proteins --help' list "
                 "their options.\n";
    return 0;
  }
  if (args.empty() || (args[0] != "compounds" && args[0] != "proteins")) {
    throw po::error(
        "'pack' needs a kind: 'hpcscreen pack compounds|proteins --input FILE --out DIR'");
  }
  const bool proteins = args[0] == "proteins";
  pack::pack_options o;
  std::string keep_columns;
  po::options_description desc(proteins ? "pack proteins options" : "pack compounds options");
  desc.add_options()("help,h", "show this help")(
      "input,i", po::value(&o.inputs)->required()->multitoken(),
      proteins ? "FASTA file(s), plain or gzip/bzip2/xz/zstd-compressed"
               : "input file(s): .smi, .csv, .tsv, .cxsmiles (Enamine REAL), .sdf; plain or "
                 "gzip/bzip2/xz/zstd-compressed (told from the content)")(
      "out,o", po::value(&o.out_dir)->required(),
      "library folder to create (must not exist or be empty)")(
      "resume", po::bool_switch(&o.resume),
      "continue a pack of the same inputs into --out that did not complete")(
      "shard-size", in_range(o.shard_records, "shard-size", 1, rows_max), "records per shard");
  if (!proteins) {
    desc.add_options()("format", po::value(&o.format),
                       "smi|csv|tsv|cxsmiles|sdf (default: from the name)")(
        "smiles-column", po::value(&o.csv.smiles_column),
        "column holding SMILES, any case (default: 'smiles', 'cxsmiles', ...)")(
        "id-column", po::value(&o.csv.id_column),
        "column holding ids, any case (default: 'id', 'idnumber', 'zinc_id', 'name', ... if "
        "present)")("keep-columns", po::value(&keep_columns),
                    "comma-separated columns to store in the shards as well, e.g. MW,slogP")(
        "max-line-bytes", in_range(o.csv.max_line_bytes, "max-line-bytes", 1, 1LL << 30),
        "longer lines (or quoted records) are pack rejects")(
        "sdf-id-field", po::value(&o.sdf_id_field),
        "SD property holding ids (default: the title line)");
  }
  po::variables_map vm;
  if (!parse({args.begin() + 1, args.end()}, desc, vm,
             proteins ? "usage: hpcscreen pack proteins --input FILE.fasta[.gz]... --out DIR"
                      : "usage: hpcscreen pack compounds --input FILE... --out DIR\n"
                        "       mpirun -np N hpcscreen pack compounds --input FILE... --out DIR\n"
                        "       (under MPI every rank packs whole input files; the library is the\n"
                        "       same for any rank count)")) {
    return 0;
  }
  for (std::size_t begin = 0; !keep_columns.empty() && begin <= keep_columns.size();) {
    auto end = keep_columns.find(',', begin);
    if (end == std::string::npos) end = keep_columns.size();
    o.csv.keep_columns.push_back(keep_columns.substr(begin, end - begin));
    begin = end + 1;
  }
  // SIGTERM, SIGINT, SIGUSR1 and SIGHUP stop the pack cleanly (exit 75, --resume finishes it).
  pipeline::install_stop_handlers();
  o.stop_requested = [] { return pipeline::stop_requested(); };
  if (launched_by_mpi()) return pack_with_mpi(argc, argv, o, proteins);
  try {
    print_pack_summary(proteins ? pack::pack_proteins(o) : pack::pack_compounds(o), o);
  } catch (const stopped_error& e) {
    std::fprintf(stderr, "hpcscreen pack: %s\n", e.what());
    return pipeline::exit_interrupted;
  }
  return 0;
}

// Options every run command shares.
void add_run_options(po::options_description& desc, pipeline::run_options& o,
                     std::string& stop_after, const char* model_help) {
  desc.add_options()("help,h", "show this help")("library,l", po::value(&o.library_dir)->required(),
                                                 "library folder written by 'hpcscreen pack'")(
      "model,m", po::value(&o.model_paths)->required()->composing(), model_help)(
      "out,o", po::value(&o.out_dir)->required(),
      "run folder to create (or continue with --resume)")(
      "top-k,k", in_range(o.top_k, "top-k", 1, int32_max), "hits to keep")(
      "threads,t", in_range(o.threads, "threads", 0, pipeline::max_threads_per_rank),
      "threads per rank (0: from Slurm/PBS or the machine)")(
      "chunk-rows", in_range(o.chunk_rows, "chunk-rows", 1, rows_max), "rows per unit of work")(
      "featurize-threads",
      in_range(o.featurize_threads, "featurize-threads", 0, pipeline::max_threads_per_rank - 1),
      "of the rank's threads, this many featurize (tokenize) and the rest infer (0: each thread "
      "takes whichever stage has work, oldest chunk first)")(
      "chunks-in-flight", in_range(o.chunks_in_flight, "chunks-in-flight", 1, 64),
      "chunks a rank holds at once (read ahead, featurizing, inferring)")(
      "resume", po::bool_switch(&o.resume), "continue an existing run folder")(
      "retry-failed", po::bool_switch(&o.retry_failed),
      "with --resume: process again the chunks of shards that could not be read (after repair)")(
      "stop-after", po::value(&stop_after), "stop cleanly after this long (e.g. 3h50m), resumable")(
      "max-chunks", in_range(o.max_chunks_per_rank, "max-chunks", 0, rows_max),
      "stop cleanly after this many chunks per rank (trial runs; 0: no limit)")(
      "allow-failed-shards", po::bool_switch(&o.allow_failed_shards),
      "exit 0 even if some shards could not be read")(
      "progress-interval", non_negative_seconds(o.progress_interval_s, "progress-interval"),
      "seconds between progress lines (0: off)");
}

// The memory tier's options.
void add_tier_options(po::options_description& desc, std::string& budget, infer::tier_config& tier,
                      std::string& pmem_max) {
  desc.add_options()(
      "dram-budget", po::value(&budget),
      "DRAM for tensors per rank (e.g. 64G); beyond it, spill to --pmem-dir or --pmem-kmem")(
      "pmem-dir", po::value(&tier.pmem_dir),
      "spill tier: a memkind file-backed kind in this folder (a DAX mount)")(
      "pmem-kmem", po::bool_switch(&tier.pmem_kmem),
      "spill tier: MEMKIND_DAX_KMEM (persistent memory in system-RAM mode)")(
      "pmem-max", po::value(&pmem_max), "cap on the spill tier per rank (default: unlimited)");
}

// --precision, checked where parsed (exit 2); whether the CPU runs it is checked at model load.
void add_precision_option(po::options_description& desc, std::string& precision) {
  desc.add_options()("precision", po::value(&precision)->default_value(precision)->notifier(
                                      [](const std::string& v) { infer::check_precision_text(v); }),
                     "fp32, bf16, int8 or auto: the precision the model runs at, converted once "
                     "at load (bf16 needs AVX512_BF16, int8 AVX512_VNNI; auto: the fastest the "
                     "CPU has; outputs stay float32)");
}

infer::tier_config finish_tier(infer::tier_config tier, const std::string& budget,
                               const std::string& pmem_max) {
  if (!budget.empty()) tier.dram_budget_bytes = parse_bytes(budget, "dram-budget");
  if (budget.empty() && !pmem_max.empty())
    throw usage_error("--pmem-max caps the spill tier, which needs --dram-budget and a spill tier");
  if (!pmem_max.empty()) tier.pmem_max_bytes = parse_bytes(pmem_max, "pmem-max");
  if (budget.empty() && (!tier.pmem_dir.empty() || tier.pmem_kmem)) {
    throw usage_error(
        "--pmem-dir and --pmem-kmem need --dram-budget: the DRAM to use before spilling");
  }
  return tier;
}

pipeline::run_options finish_run_options(pipeline::run_options o, const std::string& stop_after,
                                         int argc, char** argv) {
  if (o.out_dir.empty()) throw usage_error("--out must name a run folder (it is empty)");
  if (o.library_dir.empty()) throw usage_error("--library must name a library folder (it is empty)");
  o.command_line = join_args(argc, argv);
  o.version = HPCSCREEN_VERSION;
  if (!stop_after.empty()) o.stop_after_s = parse_duration_s(stop_after, "stop-after");
  return o;
}

// The memory tier is installed inside the run's set-up, where ranks agree on errors.
int run_with_mpi(int argc, char** argv, const pipeline::run_options& o,
                 const infer::tier_config& tier, const pipeline::workload_factory& make) {
  // Before MPI and the models start: a scheduler's signal during start-up still ends in a
  // clean, resumable stop (exit 75) rather than the default action.
  pipeline::install_stop_handlers();
  dist::mpi_session mpi(argc, argv);
  auto world = mpi.world();
  const int status = pipeline::run(*world, o, [&](int threads) {
    infer::install_memory_tier(tier);
    return make(threads);
  });
  // The page for people; a failure here never changes the run's outcome.
  if (world->rank() == 0 && (status == pipeline::exit_ok || status == pipeline::exit_incomplete ||
                             status == pipeline::exit_interrupted)) {
    try {
      report::write_report(o.out_dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hpcscreen: warning: report.html not written: %s\n", e.what());
    }
  }
  return status;
}

// featurize: feature caches for a library, one per featurizer (screen/feature_cache.hpp).
int featurize_command(const std::vector<std::string>& args, int argc, char** argv) {
  screen::featurize_settings s;
  std::vector<std::string> models;
  po::options_description desc("featurize options");
  desc.add_options()("help,h", "show this help")(
      "library", po::value(&s.library_dir)->required(), "compound library folder (from pack)")(
      "featurizer", po::value(&s.featurizer_specs)->composing(),
      "a featurizer as in a model's hpcscreen.json, e.g. '{\"name\": \"morgan\", "
      "\"version\": 1, \"radius\": 2, \"bits\": 2048}' (repeatable)")(
      "model", po::value(&models)->composing(),
      "the featurizer this model's hpcscreen.json names (repeatable)")(
      "max-atoms", in_range(s.featurize.max_atoms, "max-atoms", 1, 100000),
      "as screen's --max-atoms: a cache is used only by screens with the same value")(
      "threads,t", in_range(s.threads, "threads", 0, pipeline::max_threads_per_rank),
      "threads per rank (default: as screen)")(
      "resume", po::bool_switch(&s.resume), "finish a build that was cut off");
  po::variables_map vm;
  if (!parse(args, desc, vm,
             "usage: [mpirun -np N] hpcscreen featurize --library DIR (--model M.pt | "
             "--featurizer JSON)...\n"
             "Computes each featurizer's output for every record once, into DIR/features/, so "
             "that screens skip RDKit."))
    return 0;
  if (s.library_dir.empty()) throw usage_error("--library must name a library folder (it is empty)");
  for (const auto& m : models) {  // the featurizer object of the model's hpcscreen.json
    std::string spec;
    infer::gnn_model model(m, "fp32", [&](const infer::model_metadata& meta) {
      spec = meta.featurizer_json;
      return chem::make_featurizer(spec)->tensors();
    });
    s.featurizer_specs.push_back(spec);
  }
  if (s.threads == 0) {
    auto sched = detect_scheduler();
    s.threads = default_threads(sched);
  }
  pipeline::install_stop_handlers();
  auto run_it = [&](dist::context& ctx) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = screen::build_feature_caches(ctx, s);
    if (ctx.rank() != 0) return;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& d : r.dirs) std::printf("cache: %s\n", d.c_str());
    std::printf("%llu records (%llu accepted, %llu rejected with their reasons), %.1f MB of "
                "caches (%.0f bytes per record), %.1f s on %d rank(s) x %d threads\n",
                static_cast<unsigned long long>(r.n_records), static_cast<unsigned long long>(r.n_accepted),
                static_cast<unsigned long long>(r.n_rejected), static_cast<double>(r.bytes) / 1e6,
                r.n_records ? static_cast<double>(r.bytes) / static_cast<double>(r.n_records) : 0.0,
                wall, ctx.size(), s.threads);
  };
  try {
    if (launched_by_mpi()) {
      dist::mpi_session mpi(argc, argv);
      auto world = mpi.world();
      try {
        run_it(*world);
      } catch (const std::exception& e) {
        if (world->rank() == 0) std::fprintf(stderr, "hpcscreen featurize: %s\n", e.what());
        if (dynamic_cast<const usage_error*>(&e)) return pipeline::exit_usage;
        if (dynamic_cast<const stopped_error*>(&e)) return pipeline::exit_interrupted;
        return pipeline::exit_error;
      }
      return 0;
    }
    auto local = dist::make_local_context();
    run_it(*local);
  } catch (const stopped_error& e) {
    std::fprintf(stderr, "hpcscreen featurize: %s\n", e.what());
    return pipeline::exit_interrupted;
  }
  return 0;
}

int report_command(const std::vector<std::string>& args) {
  std::string run_dir;
  report::report_options ro;
  po::options_description desc("report options");
  desc.add_options()("help,h", "show this help")("run", po::value(&run_dir),
                                                 "run folder (finished or partial)")(
      "max-hits", in_range(ro.max_hits, "max-hits", 0, int32_max), "hits shown");
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

int screen_command(const std::vector<std::string>& args, int argc, char** argv) {
  pipeline::run_options o;
  screen::screen_settings settings;
  std::string stop_after, budget, pmem_max;
  infer::tier_config tier;
  po::options_description desc("screen options");
  add_run_options(desc, o, stop_after,
                  "TorchScript GNN with hpcscreen.json (data_schemas/model_contract.md); give "
                  "--model several times to score each record with several models, featurized "
                  "once");
  add_tier_options(desc, budget, tier, pmem_max);
  add_precision_option(desc, settings.precision);
  desc.add_options()(
      "max-atoms", in_range(settings.featurize.max_atoms, "max-atoms", 1, 100000),
      "reject molecules with more heavy atoms")(
      "batch-molecules", in_range(settings.budget.max_molecules, "batch-molecules", 1, int32_max),
      "molecules per inference batch, at most")(
      "batch-atoms", in_range(settings.budget.max_atoms, "batch-atoms", 1, int32_max),
      "atoms per inference batch, at most")("all-scores", po::bool_switch(&settings.all_scores),
                                            "also keep every score of every task in RUN/scores/")(
      "rank-by", po::value(&settings.rank_by)->composing(),
      "MODEL:TASK to rank hits.csv by (default: the first model's rank_by); each further "
      "--rank-by writes hits-MODEL-TASK.csv; with --ensemble also mean, lcb:K, ucb:K")(
      "where", po::value(&settings.where)->composing(),
      "'MODEL:TASK < VALUE' or '>': only records that pass every --where enter the hit lists")(
      "ensemble", po::bool_switch(&settings.ensemble),
      "the models are members of one ensemble (same tasks): mean and sd per task")(
      "require-cache", po::bool_switch(&settings.require_cache),
      "refuse to run unless every featurizer the models need has a feature cache in the "
      "library ('hpcscreen featurize')")("no-feature-cache",
                                         "featurize from SMILES even where a cache exists");
  po::variables_map vm;
  if (!parse(args, desc, vm,
             "usage: hpcscreen screen --library DIR --model M.pt --out RUN [--top-k K]"))
    return 0;
  o = finish_run_options(o, stop_after, argc, argv);
  tier = finish_tier(tier, budget, pmem_max);
  settings.model_paths = o.model_paths;
  settings.library_dir = o.library_dir;
  settings.use_cache = vm.count("no-feature-cache") == 0;
  if (settings.require_cache && !settings.use_cache)
    throw usage_error("--require-cache and --no-feature-cache contradict each other");
  if (settings.ensemble && o.model_paths.size() < 2)
    throw usage_error("--ensemble needs at least two --model members");
  return run_with_mpi(argc, argv, o, tier,
                      [&](int threads) { return screen::make_screen_workload(settings, threads); });
}

int annotate_command(const std::vector<std::string>& args, int argc, char** argv) {
  pipeline::run_options o;
  annotate::annotate_settings settings;
  std::string stop_after, long_sequences = "reject", batching = "length", budget, pmem_max;
  std::string embeddings, embedding_dtype = "float16";
  infer::tier_config tier;
  po::options_description desc("annotate options");
  add_run_options(desc, o, stop_after,
                  "TorchScript BERT with hpcscreen.json (data_schemas/bert_contract.md)");
  add_tier_options(desc, budget, tier, pmem_max);
  add_precision_option(desc, settings.precision);
  desc.add_options()(
      "max-tokens", in_range(settings.budget.max_tokens, "max-tokens", 1, int32_max),
      "padded tokens per inference batch, at most")(
      "max-sequences", in_range(settings.budget.max_sequences, "max-sequences", 1, int32_max),
      "sequences per batch, at most (the batch size with --batching fixed)")(
      "batching", po::value(&batching)->default_value(batching),
      "length (sort by length, fill to --max-tokens) or fixed (input order)")(
      "long-sequences", po::value(&long_sequences)->default_value(long_sequences),
      "sequences longer than the model takes: reject, truncate or window")(
      "window-overlap", in_range(settings.window_overlap, "window-overlap", -1, int32_max),
      "residues shared by consecutive windows (-1: a quarter of the window)")(
      "tsv", po::bool_switch(&settings.tsv),
      "also write annotations.tsv (id, length, predicted labels) for small runs")(
      "embeddings", po::value(&embeddings),
      "with an encoder (output_level 'embedding'): keep per-sequence (mean over residues), "
      "per-residue or both")(
      "embedding-dtype", po::value(&embedding_dtype)->default_value(embedding_dtype),
      "float16 (2 bytes a value) or float32");
  po::variables_map vm;
  if (!parse(args, desc, vm,
             "usage: hpcscreen annotate --library DIR --model M.pt --out RUN [--top-k K]"))
    return 0;
  settings.long_sequences = annotate::parse_long_policy(long_sequences);
  if (!embeddings.empty()) annotate::parse_embeddings(embeddings, settings);
  if (embeddings.empty() && !vm["embedding-dtype"].defaulted())
    throw usage_error("--embedding-dtype is the precision of --embeddings; give --embeddings too");
  annotate::parse_embedding_dtype(embedding_dtype, settings);
  if (batching != "length" && batching != "fixed") {
    throw usage_error("the argument ('" + batching +
                      "') for option '--batching' is invalid: expected length or fixed");
  }
  settings.length_aware = batching == "length";
  settings.hits = vm.count("top-k") && !vm["top-k"].defaulted();
  o = finish_run_options(o, stop_after, argc, argv);
  tier = finish_tier(tier, budget, pmem_max);
  if (o.model_paths.size() != 1) throw usage_error("annotate takes exactly one --model");
  settings.model_path = o.model_paths.front();
  return run_with_mpi(argc, argv, o, tier, [&](int threads) {
    return annotate::make_annotate_workload(settings, threads);
  });
}

int export_command(const std::vector<std::string>& args) {
  io::embedding_export_options o;
  std::string what, max_bytes = "4G";
  po::options_description desc("export embeddings options");
  desc.add_options()("help,h", "show this help")("what", po::value(&what), "embeddings")(
      "run", po::value(&o.run_dir), "a finished annotate run with --embeddings")(
      "out,o", po::value(&o.out_path), "HDF5 file to write: one dataset per id, named by id")(
      "level", po::value(&o.level),
      "per-sequence ([H] per id) or per-residue ([L, H] per id); default: per-sequence if the "
      "run has it")("max-bytes", po::value(&max_bytes)->default_value(max_bytes),
                    "refuse runs whose embeddings take more (e.g. 500M, 8G)");
  po::positional_options_description pos;
  pos.add("what", 1).add("run", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: hpcscreen export embeddings RUN --out FILE.h5 [--level per-residue]\n\n"
              << desc << '\n';
    return 0;
  }
  po::notify(vm);
  if (what != "embeddings")
    throw usage_error("export needs a kind: 'hpcscreen export embeddings RUN --out FILE.h5'");
  if (o.run_dir.empty() || o.out_path.empty())
    throw usage_error("export embeddings needs a run folder and --out FILE.h5");
  o.max_bytes = parse_bytes(max_bytes, "max-bytes");
  const auto s = io::export_embeddings(o);
  std::printf("wrote %llu %s embeddings of %llu dimensions (%s, %llu bytes of values) to %s\n",
              static_cast<unsigned long long>(s.n_records), s.level.c_str(),
              static_cast<unsigned long long>(s.hidden_size), s.float16 ? "float16" : "float32",
              static_cast<unsigned long long>(s.payload_bytes), o.out_path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(top_usage().c_str(), argc < 2 ? stderr : stdout);
    return argc < 2 ? pipeline::exit_usage : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "pack") return pack_command(args, argc, argv);
    if (command == "screen") return screen_command(args, argc, argv);
    if (command == "annotate") return annotate_command(args, argc, argv);
    if (command == "report") return report_command(args);
    if (command == "featurize") return featurize_command(args, argc, argv);
    if (command == "export") return export_command(args);
    if (command == "version" || command == "--version") {
      std::printf("hpcscreen %s\n", HPCSCREEN_VERSION);
      return 0;
    }
    std::fprintf(stderr, "hpcscreen: unknown command '%s'\n\n%s", command.c_str(),
                 top_usage().c_str());
    return pipeline::exit_usage;
  } catch (const po::error& e) {
    std::fprintf(stderr, "hpcscreen %s: %s\n(see 'hpcscreen %s --help')\n", command.c_str(),
                 e.what(), command.c_str());
    return pipeline::exit_usage;
  } catch (const usage_error& e) {
    std::fprintf(stderr, "hpcscreen %s: %s\n", command.c_str(), e.what());
    return pipeline::exit_usage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hpcscreen %s: error: %s\n", command.c_str(), e.what());
    return pipeline::exit_error;
  }
}
