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

// The options that need nothing read first.
void check_options(const run_options& o) {
  if (o.chunk_rows == 0) throw usage_error("--chunk-rows must be at least 1");
  if (o.chunks_in_flight < 1) throw usage_error("--chunks-in-flight must be at least 1");
  if (o.retry_failed && !o.resume) throw usage_error("--retry-failed needs --resume");
}

// Fills the context's set-up from its options, on every rank: the library and its chunks, the
// rank's threads, the workload (its models loaded), then what the workload needs of the library.
void set_up(const workload_kind& kind, const workload_factory& make_workload, run_context& c) {
  c.kind = &kind;
  check_options(c.options);
  c.manifest = io::read_manifest(c.options.library_dir);
  c.plan = plan::make_chunk_plan(c.manifest, c.options.chunk_rows);
  plan::check(c.plan, c.manifest);
  c.scheduler = detect_scheduler();
  c.threads = threads_per_rank(c.scheduler, c.options.threads);
  if (c.options.featurize_threads < 0 ||
      (c.options.featurize_threads > 0 && c.options.featurize_threads >= c.threads)) {
    throw usage_error("--featurize-threads " + std::to_string(c.options.featurize_threads) +
                      " must leave at least one of the rank's " + std::to_string(c.threads) +
                      " threads for inference (accepted: 0 to " + std::to_string(c.threads - 1) +
                      ")");
  }
  c.work = make_workload(c.threads);
  // After the models are loaded: what they mapped counts against an address-space limit.
  if (const auto shortfall = address_space_shortfall(c.threads); !shortfall.empty())
    throw error(shortfall);
  c.library = &find_library_kind(kind.library_kind);
  c.layout = c.work->scores();
  if (c.layout.ranked && c.layout.top_k == 0) throw usage_error("--top-k must be at least 1");
  if (c.layout.ranked) c.layout.check_hit_files();
  if (c.manifest.kind != c.library->name) {
    throw shard_error("library '" + c.options.library_dir + "' holds " + c.manifest.kind + ", '" +
                      kind.name + "' needs " + c.library->name);
  }
  for (const auto& f : c.library->fields) {
    if (std::find(c.manifest.fields.begin(), c.manifest.fields.end(), f) == c.manifest.fields.end())
      throw shard_error("library '" + c.options.library_dir + "' has no field '" + f + "'");
  }
  c.read_fields = c.library->fields;
  c.hit_fields = c.library->hit_fields;
  for (const auto& f : c.manifest.fields) {  // columns kept by pack --keep-columns
    if (std::find(c.read_fields.begin(), c.read_fields.end(), f) != c.read_fields.end()) continue;
    // A kept column shown beside the scores must not pass for one of the outputs' own columns.
    if (is_hit_list_column(f) ||
        std::find(c.layout.names.begin(), c.layout.names.end(), f) != c.layout.names.end()) {
      throw shard_error("library '" + c.options.library_dir + "' keeps a column '" + f +
                        "' that the outputs name too (a score column, rank, score, shard or row); "
                        "pack it again without it in --keep-columns");
    }
    c.read_fields.push_back(f);
    c.hit_fields.push_back(f);
  }
}

json identity_of(const run_context& c) {
  auto id = c.work->identity();
  id["workload"] = c.kind->name;
  id["library"] = fs::weakly_canonical(fs::absolute(c.options.library_dir)).string();
  id["manifest_checksum"] = c.manifest.checksum;
  id["n_records"] = c.manifest.n_records();
  id["chunk_rows"] = c.options.chunk_rows;
  id["n_chunks"] = c.plan.chunks.size();
  return id;
}

// Collective: every rank set up the same run, its library and models as rank 0's (checksums of
// what each loaded): a node's own copy of a model that differs, or a file replaced while the
// ranks loaded it, would otherwise score part of the library with another model.
int agreed_identity(dist::context& ctx, const run_context& c) {
  std::string mine;
  if (const int status = agreed_status(ctx, dist::capture_failure([&] {
                                         // With what steers the ranks together (a rank that only
                                         // checks, or writes another run folder, would leave the
                                         // others waiting in a collective call).
                                         const auto& o = c.options;
                                         auto id = identity_of(c);
                                         id["steering"] = {
                                             o.out_dir,          o.resume,
                                             o.retry_failed,     o.check_only,
                                             o.stop_after_s,     o.max_chunks_per_rank,
                                             o.chunks_in_flight, o.allow_failed_shards};
                                         mine = id.dump();
                                       }));
      status != exit_ok)
    return status;
  const auto first = ctx.broadcast(mine);
  dist::failure differs;
  if (first != mine) {
    differs = {dist::failure::error,
               "rank " + std::to_string(ctx.rank()) +
                   " set up another run than rank 0: its library or model files, its options, "
                   "or a setting chosen on its node (--precision auto on another CPU), differ (" +
                   mine + " where rank 0 has " + first +
                   "); give every node the same files and CPU features, or wait until a copy is "
                   "complete"};
  }
  return agreed_status(ctx, differs);
}

// Rank 0: creates the run folder, or checks that a resume continues the same run; the chunks
// this attempt does (with --retry-failed, also those whose shard could not be read before).
// With --check, only what would refuse the attempt, writing nothing, and a line saying what the
// run would do.
json begin_attempt(const run_context& c, int n_ranks) {
  const auto identity = identity_of(c).dump();
  // A library found at another path: its shards must be the files its manifest lists.
  const auto verify_moved = [&c] {
    std::fprintf(stderr,
                 "hpcscreen: checking the %zu shards of the moved library against its "
                 "manifest\n",
                 c.manifest.shards.size());
    for (const auto& s : c.manifest.shards) {
      const auto path = (fs::path(c.options.library_dir) / s.file).string();
      const auto now = s.checksum.empty() ? std::string() : file_checksum(path);
      if (now.empty() || now != s.checksum) {
        throw run_error("cannot resume '" + c.options.out_dir + "' with the library at '" +
                        c.options.library_dir + "': shard " + s.file +
                        (now.empty() ? " has no checksum in the manifest"
                                     : " is not the file its manifest lists (checksum " + now +
                                           ", the manifest says " + s.checksum + ")") +
                        "; resume with the run's own library");
      }
    }
  };
  if (c.options.check_only) {
    run::check_attempt(c.options.out_dir, c.options.resume, identity, verify_moved);
    std::fprintf(stderr,
                 "hpcscreen: check: the run can start: %s %s, %llu records in %zu shards (%zu "
                 "chunks), %d rank%s x %d thread%s; it would %s '%s'\n",
                 c.kind->name.c_str(), c.options.library_dir.c_str(),
                 static_cast<unsigned long long>(c.manifest.n_records()), c.manifest.shards.size(),
                 c.plan.chunks.size(), n_ranks, n_ranks == 1 ? "" : "s", c.threads,
                 c.threads == 1 ? "" : "s", c.options.resume ? "continue" : "start",
                 c.options.out_dir.c_str());
    return {{"attempt", 0}, {"done", json::array()}};
  }
  const json attempt = {{"ranks", n_ranks},
                        {"threads_per_rank", c.threads},
                        {"command_line", c.options.command_line},
                        {"scheduler", c.scheduler.name},
                        {"job_id", c.scheduler.job_id}};
  auto started = run::start_attempt(c.options.out_dir, c.options.resume, identity, attempt.dump(),
                                    c.record_shape(), verify_moved);
  const int number = started.number;
  auto& done = started.done;
  const std::size_t n_retried = c.options.retry_failed ? started.failed.size() : 0;
  if (c.options.retry_failed) {
    for (const auto id : started.failed) done.erase(id);
  }
  c.work->prepare_run_folder(c.options.out_dir);
  // A committed chunk whose own files are not as written (deleted, cut short, replaced) would
  // be wrong or missing in the outputs: it is done again. Its record lists the files with their
  // sizes and checksums, and the workload says which files it must have (the check of records
  // written before the list, and of a list emptied by hand). (A chunk whose shard failed has
  // none.)
  auto lost = started.damaged;
  for (const auto id : done) {
    if (!started.failed.count(id) && !c.work->has_chunk_outputs(c.options.out_dir, id))
      lost.emplace(id, "missing or empty");
  }
  if (!lost.empty()) {
    const auto& [first, why] = *lost.begin();
    std::fprintf(stderr,
                 "hpcscreen: warning: the outputs of %zu committed chunks are missing or not as "
                 "written in '%s' (chunk %llu: %s%s); they are done again\n",
                 lost.size(), c.options.out_dir.c_str(), static_cast<unsigned long long>(first),
                 why.c_str(), lost.size() > 1 ? "; and others" : "");
    for (const auto& [id, _] : lost) done.erase(id);
  }
  if (c.options.resume && number > 1) {
    std::fprintf(
        stderr, "hpcscreen: resuming '%s' (attempt %d): %zu of %zu chunks already committed%s\n",
        c.options.out_dir.c_str(), number, done.size(), c.plan.chunks.size(),
        n_retried ? (", " + std::to_string(n_retried) + " failed ones to retry").c_str() : "");
  }
  return {{"attempt", number}, {"done", done}};
}

}  // namespace

int run(dist::context& ctx, const run_options& o, const workload_kind& kind,
        const workload_factory& make_workload) {
  const auto t_start = clock_type::now();
  install_stop_handlers();

  run_context c;
  c.options = o;
  if (const int status =
          agreed_status(ctx, dist::capture_failure([&] { set_up(kind, make_workload, c); }));
      status != exit_ok)
    return status;
  if (const auto note = oversubscription_note(c.threads); !note.empty() && ctx.rank() == 0)
    std::fprintf(stderr, "hpcscreen: warning: %s\n", note.c_str());
  if (const int status = agreed_identity(ctx, c); status != exit_ok) return status;

  json start;
  dist::failure started;
  if (ctx.rank() == 0)
    started = dist::capture_failure([&] { start = begin_attempt(c, ctx.size()); });
  if (const int status = agreed_status(ctx, started); status != exit_ok) return status;
  if (c.options.check_only) return exit_ok;  // set up and checked: nothing more
  start = json::parse(ctx.broadcast(start.dump()));

  attempt_plan a;
  a.attempt = start["attempt"].get<int>();
  const auto done = start["done"].get<std::set<std::uint64_t>>();
  for (const auto& chunk : c.plan.chunks) {
    if (done.count(chunk.id)) {
      a.n_done_before += chunk.n_rows();
    } else {
      a.remaining.push_back(chunk.id);
    }
  }

  const auto r = conduct(ctx, c, a, t_start);
  // Threads left inside a record still use the workload: it must never be destroyed.
  struct keep_alive {
    run_context& c;
    bool abandoned;
    ~keep_alive() {
      if (abandoned) (void)c.work.release();
    }
  } keep{c, r.threads_abandoned};
  // A stop on any rank counts for the run.
  const bool interrupted = !ctx.all_ok(!r.interrupted && !stop_requested());
  if (const int status = agreed_status(ctx, {r.error.empty() ? dist::failure::none : dist::failure::error, r.error});
      status != exit_ok)
    return status;

  std::string mine;
  const auto built = dist::capture_failure([&] {
    mine = rank_report_json(r, c, ctx.rank(), seconds_since(t_start))
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
          c,
          {a.attempt, interrupted, seconds_since(t_start), gather_s, ctx.size(), ctx.description()},
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
