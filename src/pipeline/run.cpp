// pipeline::run: set-up checked on every rank, the run folder's attempt, the conductor on every
// rank, and the outputs at rank 0 (run_report). Ranks agree on every failure before anyone gives up.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/dist/agreement.hpp"
#include "hpcscreen/pipeline/conductor.hpp"
#include "hpcscreen/pipeline/pipeline.hpp"
#include "hpcscreen/pipeline/run_report.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::pipeline {
namespace {

// Collective: every rank's failure agreed (dist/agreement.hpp), printed once by rank 0, as the
// exit status it calls for; exit_ok on every rank when all are fine.
int agreed_status(dist::context& ctx, const dist::failure& mine) {
  const auto agreed = dist::agree(ctx, mine);
  if (agreed.ok()) return exit_ok;
  if (ctx.rank() == 0) {
    std::size_t begin = 0;
    while (begin <= agreed.message.size()) {
      auto end = agreed.message.find('\n', begin);
      if (end == std::string::npos) end = agreed.message.size();
      std::fprintf(stderr, "hpcscreen: error: %s\n",
                   agreed.message.substr(begin, end - begin).c_str());
      begin = end + 1;
    }
  }
  return dist::exit_status_of(agreed);
}

void check_options(const run_options& o, int threads, const scheduler_info& scheduler) {
  if (o.chunk_rows == 0) throw usage_error("--chunk-rows must be at least 1");
  if (o.chunks_in_flight < 1) throw usage_error("--chunks-in-flight must be at least 1");
  if (threads < 1 || threads > max_threads_per_rank) {
    const std::string from =
        o.threads > 0 ? "--threads " + std::to_string(threads)
                      : std::to_string(threads) + " threads per rank from the environment (" +
                            scheduler.name + ": SLURM_CPUS_PER_TASK, NCPUS or OMP_NUM_THREADS)";
    throw usage_error(from + " is out of range: threads per rank must be between 1 and " +
                      std::to_string(max_threads_per_rank) + "; set --threads");
  }
  if (o.featurize_threads < 0 || (o.featurize_threads > 0 && o.featurize_threads >= threads)) {
    throw usage_error("--featurize-threads " + std::to_string(o.featurize_threads) +
                      " must leave at least one of the rank's " + std::to_string(threads) +
                      " threads for inference (accepted: 0 to " + std::to_string(threads - 1) +
                      ")");
  }
}

void set_up(const run_options& o, const workload_kind& kind, const workload_factory& make_workload,
            run_setup& s) {
  s.kind = &kind;
  s.scheduler = detect_scheduler();
  s.threads = o.threads > 0 ? o.threads : default_threads(s.scheduler);
  check_options(o, s.threads, s.scheduler);
  s.manifest = io::read_manifest(o.library_dir);
  s.work = make_workload(s.threads);
  // After the models are loaded: what they mapped counts against an address-space limit.
  if (const auto shortfall = address_space_shortfall(s.threads); !shortfall.empty())
    throw error(shortfall);
  s.library = &find_library_kind(kind.library_kind);
  s.layout = s.work->scores();
  if (s.layout.ranked && s.layout.top_k == 0) throw usage_error("--top-k must be at least 1");
  if (s.layout.ranked) s.layout.check_hit_files();
  if (s.manifest.kind != s.library->name) {
    throw shard_error("library '" + o.library_dir + "' holds " + s.manifest.kind + ", '" +
                      kind.name + "' needs " + s.library->name);
  }
  for (const auto& f : s.library->fields) {
    if (std::find(s.manifest.fields.begin(), s.manifest.fields.end(), f) == s.manifest.fields.end())
      throw shard_error("library '" + o.library_dir + "' has no field '" + f + "'");
  }
  s.read_fields = s.library->fields;
  s.hit_fields = s.library->hit_fields;
  for (const auto& f : s.manifest.fields) {  // columns kept by pack --keep-columns
    if (std::find(s.read_fields.begin(), s.read_fields.end(), f) != s.read_fields.end()) continue;
    // A kept column shown beside the scores must not pass for one of the outputs' own columns.
    if (f == "rank" || f == "score" || f == "shard" || f == "row" ||
        std::find(s.layout.names.begin(), s.layout.names.end(), f) != s.layout.names.end()) {
      throw usage_error("library '" + o.library_dir + "' keeps a column '" + f +
                        "' that the outputs name too (a score column, rank, score, shard or row); "
                        "pack it again without it in --keep-columns");
    }
    s.read_fields.push_back(f);
    s.hit_fields.push_back(f);
  }
  s.plan = plan::make_chunk_plan(s.manifest, o.chunk_rows);
  plan::check(s.plan, s.manifest);
}

json identity_of(const run_options& o, const run_setup& s) {
  auto id = s.work->identity();
  id["workload"] = s.kind->name;
  id["library"] = fs::weakly_canonical(fs::absolute(o.library_dir)).string();
  id["manifest_checksum"] =
      file_checksum((fs::path(o.library_dir) / io::manifest_file_name).string());
  id["n_records"] = s.manifest.n_records();
  id["chunk_rows"] = o.chunk_rows;
  id["n_chunks"] = s.plan.chunks.size();
  return id;
}

// Rank 0: creates the run folder, or checks that a resume continues the same run; the chunks
// this attempt does (with --retry-failed, also those whose shard could not be read before).
json begin_attempt(const run_options& o, const run_setup& s, int n_ranks) {
  if (o.retry_failed && !o.resume) throw usage_error("--retry-failed needs --resume");
  const json attempt = {{"ranks", n_ranks},
                        {"threads_per_rank", s.threads},
                        {"command_line", o.command_line},
                        {"scheduler", s.scheduler.name},
                        {"job_id", s.scheduler.job_id}};
  const auto identity = identity_of(o, s).dump();
  auto started = run::start_attempt(o.out_dir, o.resume, identity, attempt.dump(), s.plan.chunks.size());
  const int number = started.number;
  auto& done = started.done;
  const std::size_t n_retried = o.retry_failed ? started.failed.size() : 0;
  if (o.retry_failed) {
    for (const auto id : started.failed) done.erase(id);
  }
  s.work->prepare_run_folder(o.out_dir);
  if (o.resume && number > 1) {
    std::fprintf(stderr,
                 "hpcscreen: resuming '%s' (attempt %d): %zu of %zu chunks already committed%s\n",
                 o.out_dir.c_str(), number, done.size(), s.plan.chunks.size(),
                 n_retried ? (", " + std::to_string(n_retried) + " failed ones to retry").c_str()
                           : "");
  }
  return {{"attempt", number}, {"done", done}};
}

}  // namespace

int run(dist::context& ctx, const run_options& o, const workload_kind& kind,
        const workload_factory& make_workload) {
  const auto t_start = clock_type::now();
  install_stop_handlers();

  run_setup s;
  if (const int status = agreed_status(ctx, dist::capture_failure([&] { set_up(o, kind, make_workload, s); })); status != exit_ok)
    return status;

  json start;
  dist::failure started;
  if (ctx.rank() == 0) started = dist::capture_failure([&] { start = begin_attempt(o, s, ctx.size()); });
  if (const int status = agreed_status(ctx, started); status != exit_ok) return status;
  start = json::parse(ctx.broadcast(start.dump()));

  attempt_plan a;
  a.attempt = start["attempt"].get<int>();
  const auto done = start["done"].get<std::set<std::uint64_t>>();
  for (const auto& c : s.plan.chunks) {
    if (done.count(c.id)) {
      a.n_done_before += c.n_rows();
    } else {
      a.remaining.push_back(c.id);
    }
  }

  const auto r = conduct(ctx, o, s, a, t_start);
  // Threads left inside a record still use the workload: it must never be destroyed.
  struct keep_alive {
    run_setup& s;
    bool abandoned;
    ~keep_alive() {
      if (abandoned) (void)s.work.release();
    }
  } keep{s, r.threads_abandoned};
  // A stop on any rank counts for the run.
  const bool interrupted = !ctx.all_ok(!r.interrupted && !stop_requested());
  if (const int status = agreed_status(ctx, {r.error.empty() ? dist::failure::none : dist::failure::error, r.error});
      status != exit_ok)
    return status;

  std::string mine;
  const auto built = dist::capture_failure([&] {
    mine = rank_report_json(r, s, ctx.rank(), seconds_since(t_start))
               .dump(-1, ' ', false, json::error_handler_t::replace);
  });
  if (!built.ok()) mine = json{{"rank", ctx.rank()}, {"error", built.message}}.dump();
  const auto t_gather = clock_type::now();
  const auto blobs = ctx.gather(mine);
  const double gather_s = seconds_since(t_gather);

  int status = exit_ok;
  if (ctx.rank() == 0) {
    const auto finished = dist::capture_failure([&] {
      std::vector<json> reports;
      for (const auto& b : blobs) reports.push_back(json::parse(b));
      status = write_run_outputs(
          o, s, {a.attempt, interrupted, seconds_since(t_start), gather_s, ctx.size(), ctx.description()},
          reports);
    });
    if (!finished.ok()) {
      std::fprintf(stderr, "hpcscreen: error while writing the results: %s\n",
                   finished.message.c_str());
      status = exit_error;
    }
  }
  return std::stoi(ctx.broadcast(std::to_string(status)));
}

}  // namespace hpcscreen::pipeline
