#include "hpcscreen/pipeline/pipeline.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"
#include "hpcscreen/core/scheduler.hpp"
#include "hpcscreen/core/timing.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::pipeline {
namespace {

std::string with_commas(std::uint64_t n) {
  auto s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3)
    s.insert(static_cast<std::size_t>(i), ",");
  return s;
}

std::uint64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<std::uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string host_name() {
  char h[256] = {};
  gethostname(h, sizeof h - 1);
  return h;
}

// Everything every rank needs before the first chunk, checked on every rank.
struct setup {
  io::manifest manifest;
  std::unique_ptr<workload> work;
  plan::chunk_plan plan;
  scheduler_info scheduler;
  int threads = 1;
};

// Rank 0's progress lines: records done of total, rate, ETA, rejects, failures, ranks alive.
// Plain lines when stderr is a file (a Slurm output file), a live line on a terminal.
class progress_reporter {
 public:
  progress_reporter(std::uint64_t n_total, std::uint64_t n_done_before, double interval_s)
      : n_total_(n_total),
        n_before_(n_done_before),
        interval_s_(interval_s),
        tty_(isatty(fileno(stderr)) != 0) {}

  void maybe_report(dist::progress_board& board, int n_ranks, bool final_line = false) {
    const double t = seconds_since(start_);
    if (!final_line && (interval_s_ <= 0 || t - last_s_ < interval_s_)) return;
    if (final_line && interval_s_ <= 0 && !tty_) return;
    last_s_ = t;
    const auto v = board.read_all();
    std::uint64_t sum[dist::progress_board::n_slots] = {};
    for (int r = 0; r < n_ranks; ++r)
      for (int k = 0; k < dist::progress_board::n_slots; ++k)
        sum[k] += v[static_cast<std::size_t>(r) * dist::progress_board::n_slots +
                    static_cast<std::size_t>(k)];
    const auto done = n_before_ + sum[0];
    const double rate = t > 0 ? static_cast<double>(sum[0]) / t : 0;
    const double eta =
        rate > 0 ? static_cast<double>(n_total_ - std::min(n_total_, done)) / rate : NAN;
    const double pct =
        n_total_ ? 100.0 * static_cast<double>(done) / static_cast<double>(n_total_) : 100.0;
    char line[512];
    std::snprintf(line, sizeof line,
                  "[hpcscreen] %s/%s records (%.1f%%) | %.0f rec/s | ETA %s | rejects %s | "
                  "failed %s | ranks alive %llu/%d",
                  with_commas(done).c_str(), with_commas(n_total_).c_str(), pct, rate,
                  format_duration(eta).c_str(), with_commas(sum[1]).c_str(),
                  with_commas(sum[2]).c_str(), static_cast<unsigned long long>(sum[3]), n_ranks);
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s%s", line, final_line ? "\n" : "");
    } else {
      std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }

 private:
  std::uint64_t n_total_, n_before_;
  double interval_s_;
  bool tty_;
  clock_type::time_point start_ = clock_type::now();
  double last_s_ = 0;
};

// One rank's share: chunks from the shared counter, each read, handed to the workload and
// committed.
class chunk_worker {
 public:
  chunk_worker(const run_options& o, setup& s, int rank, int attempt)
      : o_(o),
        s_(s),
        rank_(rank),
        attempt_(attempt),
        rank_top_(o.top_k, s.work->higher_is_better()),
        journal_(o.out_dir, attempt, rank) {}

  run::chunk_record new_record(const plan::chunk& c) const {
    run::chunk_record rec;
    rec.chunk_id = c.id;
    rec.shard = c.shard;
    rec.row_begin = c.row_begin;
    rec.row_end = c.row_end;
    rec.rank = rank_;
    rec.attempt = attempt_;
    rec.counts.n_read = c.n_rows();
    return rec;
  }

  // The chunk's columns; nullopt when its shard cannot be read, rec then counting every row as
  // failed (and ready to commit).
  std::optional<std::vector<string_column>> read(const plan::chunk& c, run::chunk_record& rec) {
    const auto t0 = clock_type::now();
    std::vector<string_column> columns;
    try {
      const auto& entry = s_.manifest.shards[c.shard];
      if (!reader_ || reader_shard_ != c.shard) {
        reader_.reset();
        reader_ =
            std::make_unique<io::shard_reader>((fs::path(o_.library_dir) / entry.file).string(),
                                               s_.manifest.shard_schema, s_.manifest.fields);
        reader_shard_ = c.shard;
      }
      if (reader_->n_records() != entry.n_records) {
        throw shard_error("shard '" + entry.file + "' holds " +
                          std::to_string(reader_->n_records()) + " records, the manifest says " +
                          std::to_string(entry.n_records));
      }
      for (const auto& f : s_.work->fields())
        columns.push_back(reader_->read(f, c.row_begin, c.row_end));
    } catch (const shard_error& e) {
      reader_.reset();
      rec.counts.n_failed = c.n_rows();
      rec.failure = e.what();
      // One line per shard and rank: a broken shard of a million rows is not a thousand lines.
      if (reported_failures_.insert(c.shard).second) {
        std::fprintf(stderr, "hpcscreen: rank %d: %s: %s; its rows are counted as failed\n", rank_,
                     plan::describe(c, s_.manifest).c_str(), e.what());
      }
      read_s_ += seconds_since(t0);
      return std::nullopt;
    }
    read_s_ += seconds_since(t0);
    return columns;
  }

  // Once the chunk's job has run all its stages.
  void finish(run::chunk_record& rec, chunk_work& work) {
    rank::topk chunk_top(o_.top_k, s_.work->higher_is_better());
    work.finish(rec, chunk_top);
    std::sort(rec.rejects.begin(), rec.rejects.end(),
              [](const reject& a, const reject& b) { return a.row < b.row; });
    rec.counts.n_rejected = rec.rejects.size();
    rec.hits = chunk_top.sorted();
    for (const auto& h : rec.hits) rank_top_.offer(h);
  }

  void commit(run::chunk_record& rec, chunk_work* work) {  // work: null for an unreadable shard
    HPCSCREEN_ASSERT_MSG(rec.counts.balanced(), "chunk " + std::to_string(rec.chunk_id));
    const auto t = clock_type::now();
    if (work != nullptr) work->write_outputs(o_.out_dir, rec);
    rec.end_time_s =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    run::write_chunk_record(o_.out_dir, rec);
    journal_.commit(rec.chunk_id);
    totals_ += rec.counts;
    ++n_chunks_;
    commit_s_ += seconds_since(t);
  }

  const run::chunk_counts& totals() const { return totals_; }
  std::uint64_t n_chunks() const { return n_chunks_; }
  std::vector<rank::hit> hits() const { return rank_top_.sorted(); }
  double read_s() const { return read_s_; }
  double commit_s() const { return commit_s_; }

 private:
  const run_options& o_;
  setup& s_;
  int rank_, attempt_;
  rank::topk rank_top_;
  run::journal journal_;
  std::unique_ptr<io::shard_reader> reader_;
  std::uint32_t reader_shard_ = 0;
  run::chunk_counts totals_;
  std::uint64_t n_chunks_ = 0;
  double read_s_ = 0, commit_s_ = 0;
  std::set<std::uint32_t> reported_failures_;
};

// Collective: every rank's error, printed once by rank 0. Returns true when all are fine.
bool agree(dist::context& ctx, const std::string& local_error) {
  if (ctx.all_ok(local_error.empty())) return true;
  const auto errors = ctx.gather(local_error);
  if (ctx.rank() == 0) {
    std::map<std::string, std::vector<int>> by_message;
    for (std::size_t r = 0; r < errors.size(); ++r) {
      if (!errors[r].empty()) by_message[errors[r]].push_back(static_cast<int>(r));
    }
    for (const auto& [message, ranks] : by_message) {
      const std::string who = ranks.size() == errors.size()
                                  ? ""
                                  : " (rank " + std::to_string(ranks.front()) +
                                        (ranks.size() > 1 ? " and others" : "") + ")";
      std::fprintf(stderr, "hpcscreen: error%s: %s\n", who.c_str(), message.c_str());
    }
  }
  return false;
}

json identity_of(const run_options& o, const setup& s) {
  auto id = s.work->identity();
  id["workload"] = s.work->name();
  id["library"] = fs::absolute(o.library_dir).string();
  id["manifest_checksum"] =
      file_checksum((fs::path(o.library_dir) / io::manifest_file_name).string());
  id["model_checksum"] = file_checksum(o.model_path);
  id["n_records"] = s.manifest.n_records();
  id["chunk_rows"] = o.chunk_rows;
  id["n_chunks"] = s.plan.chunks.size();
  id["top_k"] = o.top_k;
  return id;
}

// Rank 0, after the gather: hits.csv, rejects.csv and run.json from the committed chunks.
int finish_run(const run_options& o, const setup& s, dist::context& ctx, int attempt,
               const std::set<std::uint64_t>& committed_before,
               const std::vector<std::string>& rank_blobs, double wall_s, bool interrupted,
               double gather_s) {
  const auto committed = run::committed_chunks(o.out_dir);

  std::vector<std::vector<rank::hit>> lists;
  std::vector<json> rank_reports;
  run::chunk_counts live_totals;
  for (const auto& blob : rank_blobs) {
    auto r = json::parse(blob);
    lists.push_back(run::hits_from_json(r["hits"].dump()));
    r.erase("hits");
    live_totals.n_read += r["n_read"].get<std::uint64_t>();
    live_totals.n_scored += r["n_scored"].get<std::uint64_t>();
    live_totals.n_rejected += r["n_rejected"].get<std::uint64_t>();
    live_totals.n_failed += r["n_failed"].get<std::uint64_t>();
    rank_reports.push_back(std::move(r));
  }

  // Counts come from every committed chunk record, this attempt's and earlier ones'; this
  // attempt's must agree with what the ranks themselves counted.
  run::chunk_counts totals, this_attempt;
  std::map<std::string, std::uint64_t> reject_reasons;
  json failed_shards = json::object();
  const auto rejects_tmp = (fs::path(o.out_dir) / "rejects.csv.tmp").string();
  {
    std::ofstream rejects(rejects_tmp);
    rejects << "shard,row,id,stage,reason\n";
    for (const auto id : committed) {
      const auto rec = run::read_chunk_record(o.out_dir, id);
      totals += rec.counts;
      if (committed_before.count(id)) {
        lists.push_back(rec.hits);
      } else {
        this_attempt += rec.counts;
      }
      const auto& shard_file = s.manifest.shards[rec.shard].file;
      for (const auto& x : rec.rejects) {
        rejects << csv_field(shard_file) << ',' << x.row << ',' << csv_field(x.id) << ',' << x.stage
                << ',' << csv_field(x.reason + ": " + x.detail) << '\n';
        ++reject_reasons[x.reason];
      }
      if (rec.counts.n_failed > 0) {
        auto& f = failed_shards[shard_file];
        f["error"] = rec.failure;
        f["rows_failed"] = f.value("rows_failed", std::uint64_t{0}) + rec.counts.n_failed;
      }
    }
    rejects.flush();
    if (!rejects) throw run_error("cannot write '" + rejects_tmp + "'");
  }
  fs::rename(rejects_tmp, fs::path(o.out_dir) / "rejects.csv");

  const auto hits = rank::merge(lists, o.top_k, s.work->higher_is_better());
  if (s.work->produces_hits()) {
    std::string csv = "rank,id,score,shard,row," + s.work->hit_text_column() + "\n";
    for (std::size_t i = 0; i < hits.size(); ++i) {
      const auto& h = hits[i];
      csv += std::to_string(i + 1) + ',' + csv_field(h.id) + ',' + format_score(h.score) + ',' +
             csv_field(s.manifest.shards[h.key.shard].file) + ',' + std::to_string(h.key.row) +
             ',' + csv_field(h.text) + '\n';
    }
    run::write_file_atomically((fs::path(o.out_dir) / "hits.csv").string(), csv);
  }

  const bool complete = committed.size() == s.plan.chunks.size();
  std::vector<std::string> problems;
  if (!totals.balanced()) {
    problems.push_back("records_read " + std::to_string(totals.n_read) + " != scored " +
                       std::to_string(totals.n_scored) + " + rejected " +
                       std::to_string(totals.n_rejected) + " + failed " +
                       std::to_string(totals.n_failed));
  }
  if (!(this_attempt.n_read == live_totals.n_read &&
        this_attempt.n_scored == live_totals.n_scored &&
        this_attempt.n_rejected == live_totals.n_rejected &&
        this_attempt.n_failed == live_totals.n_failed)) {
    problems.push_back("the chunk records of this attempt disagree with the ranks' own counts");
  }
  if (complete && totals.n_read != s.manifest.n_records()) {
    problems.push_back("records_read " + std::to_string(totals.n_read) +
                       " differs from the manifest's " + std::to_string(s.manifest.n_records()));
  }

  json report;
  report["schema"] = "hpcscreen.run_report/1";
  report["workload"] = s.work->name();
  report["complete"] = complete;
  report["interrupted"] = interrupted;
  if (interrupted) report["stop_signal"] = stop_signal();
  report["attempt"] = attempt;
  report["records_total"] = s.manifest.n_records();
  report["records_read"] = totals.n_read;
  report["records_scored"] = totals.n_scored;
  report["records_rejected"] = totals.n_rejected;
  report["records_failed"] = totals.n_failed;
  report["records_pending"] =
      s.manifest.n_records() - std::min(s.manifest.n_records(), totals.n_read);
  report["accounting_ok"] = problems.empty();
  report["accounting_problems"] = problems;
  report["chunks_total"] = s.plan.chunks.size();
  report["chunks_committed"] = committed.size();
  report["chunks_this_attempt"] = committed.size() - committed_before.size();
  report["wall_time_s"] = wall_s;
  report["throughput_records_per_s"] =
      wall_s > 0 ? static_cast<double>(live_totals.n_read) / wall_s : 0.0;
  double coordination_max_s = 0;
  std::uint64_t rss_max = 0;
  for (const auto& r : rank_reports) {
    coordination_max_s = std::max(coordination_max_s, r.value("coordination_s", 0.0));
    rss_max = std::max(rss_max, r.value("peak_rss_bytes", std::uint64_t{0}));
  }
  report["coordination"] = {
      {"max_rank_s", coordination_max_s + gather_s},
      {"gather_s", gather_s},
      {"fraction_of_wall", wall_s > 0 ? (coordination_max_s + gather_s) / wall_s : 0.0}};
  report["peak_rss_bytes_max"] = rss_max;
  // Load balance of this attempt: how evenly the shared counter spread the work.
  double records_max = 0, records_sum = 0;
  json chunks_per_rank = json::array();
  for (const auto& r : rank_reports) {
    const auto n = static_cast<double>(r.value("n_read", std::uint64_t{0}));
    records_max = std::max(records_max, n);
    records_sum += n;
    chunks_per_rank.push_back(r.value("n_chunks", std::uint64_t{0}));
  }
  const double records_mean =
      rank_reports.empty() ? 0 : records_sum / static_cast<double>(rank_reports.size());
  report["load_balance"] = {
      {"chunks_per_rank", chunks_per_rank},
      {"records_max_over_mean", records_mean > 0 ? records_max / records_mean : 1.0}};
  report["ranks"] = ctx.size();
  report["threads_per_rank"] = s.threads;
  report["top_k"] = o.top_k;
  report["hits"] = s.work->produces_hits() ? hits.size() : 0;
  report["reject_reasons"] = reject_reasons;
  report["failed_shards"] = failed_shards;
  report["per_rank"] = rank_reports;
  report["model"] = s.work->model_report();
  report["model"]["path"] = fs::absolute(o.model_path).string();
  report["library"] = {{"path", fs::absolute(o.library_dir).string()},
                       {"shards", s.manifest.shards.size()}};
  report["config"] = {{"chunk_rows", o.chunk_rows},
                      {"stop_after_s", o.stop_after_s},
                      {"max_chunks_per_rank", o.max_chunks_per_rank},
                      {"allow_failed_shards", o.allow_failed_shards},
                      {"command_line", o.command_line}};
  report["versions"] = {{"hpcscreen", o.version}, {"mpi", ctx.description()}};
  report["scheduler"] = {{"name", s.scheduler.name},
                         {"job_id", s.scheduler.job_id},
                         {"nodes", s.scheduler.n_nodes},
                         {"cpus_per_task", s.scheduler.cpus_per_task}};
  s.work->finish(o.out_dir, s.manifest, s.plan, committed, rank_reports, report);
  run::write_file_atomically((fs::path(o.out_dir) / "run.json").string(), report.dump(2) + "\n");

  std::string hits_note;
  if (s.work->produces_hits()) {
    hits_note = "; " + std::to_string(hits.size()) + " hits in " +
                (fs::path(o.out_dir) / "hits.csv").string();
  }
  std::fprintf(
      stderr,
      "hpcscreen: %s records: %s %s, %s rejected, %s failed%s%s (%.1f s, %d ranks x %d threads)\n",
      with_commas(totals.n_read).c_str(), with_commas(totals.n_scored).c_str(),
      s.work->name() == "annotate" ? "annotated" : "scored", with_commas(totals.n_rejected).c_str(),
      with_commas(totals.n_failed).c_str(),
      complete ? ""
               : (", " + with_commas(s.manifest.n_records() - totals.n_read) + " pending").c_str(),
      hits_note.c_str(), wall_s, ctx.size(), s.threads);
  for (const auto& p : problems)
    std::fprintf(stderr, "hpcscreen: ACCOUNTING ERROR: %s\n", p.c_str());
  if (!problems.empty()) return exit_incomplete;
  if (!complete) {
    std::fprintf(
        stderr,
        "hpcscreen: run stopped before the end; %zu of %zu chunks are committed. Run the same "
        "command with --resume to finish it.\n",
        committed.size(), s.plan.chunks.size());
    return exit_interrupted;
  }
  if (totals.n_failed > 0) {
    for (const auto& [file, f] : failed_shards.items()) {
      std::fprintf(stderr, "hpcscreen: failed shard %s: %s rows: %s\n", file.c_str(),
                   with_commas(f["rows_failed"].get<std::uint64_t>()).c_str(),
                   f["error"].get<std::string>().c_str());
    }
    if (!o.allow_failed_shards) {
      std::fprintf(
          stderr,
          "hpcscreen: %s records are in shards that could not be read; the run is not complete "
          "(pass --allow-failed-shards to accept this)\n",
          with_commas(totals.n_failed).c_str());
      return exit_incomplete;
    }
  }
  return exit_ok;
}

}  // namespace

int run(dist::context& ctx, const run_options& o, const workload_factory& make_workload) {
  const auto t_start = clock_type::now();
  install_stop_handlers();

  setup s;
  std::string err;
  try {
    s.scheduler = detect_scheduler();
    s.threads = o.threads > 0 ? o.threads : default_threads(s.scheduler);
    s.manifest = io::read_manifest(o.library_dir);
    if (o.top_k == 0) throw usage_error("--top-k must be at least 1");
    if (o.chunks_in_flight < 1) throw usage_error("--chunks-in-flight must be at least 1");
    if (o.featurize_threads < 0 || (o.featurize_threads > 0 && o.featurize_threads >= s.threads)) {
      throw usage_error("--featurize-threads " + std::to_string(o.featurize_threads) +
                        " must leave at least one of the rank's " + std::to_string(s.threads) +
                        " threads for inference");
    }
    s.work = make_workload(s.threads);
    if (s.manifest.kind != s.work->library_kind()) {
      throw usage_error("library '" + o.library_dir + "' holds " + s.manifest.kind + ", '" +
                        s.work->name() + "' needs " + s.work->library_kind());
    }
    for (const auto& f : s.work->fields()) {
      if (std::find(s.manifest.fields.begin(), s.manifest.fields.end(), f) ==
          s.manifest.fields.end()) {
        throw shard_error("library '" + o.library_dir + "' has no field '" + f + "'");
      }
    }
    s.plan = plan::make_chunk_plan(s.manifest, o.chunk_rows);
    plan::check(s.plan, s.manifest);
  } catch (const std::exception& e) {
    err = e.what();
  }
  if (!agree(ctx, err)) return exit_error;

  // Rank 0 owns the run folder: create it, or check that a resume continues the same run.
  json start;
  if (ctx.rank() == 0) {
    try {
      const json attempt = {{"ranks", ctx.size()},
                            {"threads_per_rank", s.threads},
                            {"command_line", o.command_line},
                            {"scheduler", s.scheduler.name},
                            {"job_id", s.scheduler.job_id}};
      const auto before = run::committed_chunks(o.out_dir);
      const int number =
          run::begin_attempt(o.out_dir, o.resume, identity_of(o, s).dump(), attempt.dump());
      s.work->prepare_run_folder(o.out_dir);
      start = {{"attempt", number}, {"committed", before}};
      if (o.resume && number > 1) {
        std::fprintf(stderr,
                     "hpcscreen: resuming '%s' (attempt %d): %zu of %zu chunks already committed\n",
                     o.out_dir.c_str(), number, before.size(), s.plan.chunks.size());
      }
    } catch (const std::exception& e) {
      start = {{"error", e.what()}};
    }
  }
  start = json::parse(ctx.broadcast(start.dump()));
  if (start.contains("error")) {
    if (ctx.rank() == 0)
      std::fprintf(stderr, "hpcscreen: error: %s\n", start["error"].get<std::string>().c_str());
    return exit_error;
  }
  const int attempt = start["attempt"].get<int>();
  const auto committed_before = start["committed"].get<std::set<std::uint64_t>>();
  std::vector<std::uint64_t> remaining;
  std::uint64_t n_done_before = 0;
  for (const auto& c : s.plan.chunks) {
    if (committed_before.count(c.id)) {
      n_done_before += c.n_rows();
    } else {
      remaining.push_back(c.id);
    }
  }

  std::string work_error;
  std::optional<chunk_worker> worker;
  try {
    worker.emplace(o, s, ctx.rank(), attempt);
  } catch (const std::exception& e) {
    work_error = e.what();
  }
  bool interrupted = false;
  json stage_report = json::object();
  int pool_threads = 0;
  double pool_idle_s = 0;
  double coordination_s = 0;  // shared counter, progress board, gather: the price of distribution
  auto timed = [&](auto&& f) {
    const auto t = clock_type::now();
    f();
    coordination_s += seconds_since(t);
  };
  {
    auto counter = ctx.make_counter();
    auto board = ctx.make_progress_board();
    std::optional<progress_reporter> progress;
    if (ctx.rank() == 0)
      progress.emplace(s.manifest.n_records(), n_done_before, o.progress_interval_s);
    std::uint64_t mine[dist::progress_board::n_slots] = {0, 0, 0, 1};
    board->publish(mine);
    auto tick = [&] {
      if (progress) timed([&] { progress->maybe_report(*board, ctx.size()); });
    };
    auto publish = [&] {
      const auto& t = worker->totals();
      mine[0] = t.n_read;
      mine[1] = t.n_rejected;
      mine[2] = t.n_failed;
      timed([&] { board->publish(mine); });
      tick();
    };
    // The conductor: this thread alone calls MPI and HDF5. It keeps up to chunks_in_flight
    // chunks in the stage pool (read ahead, featurizing, inferring), and finishes and commits
    // each as its last stage ends, while the pool's threads go on with the others.
    std::optional<stage_pool> pool;
    if (work_error.empty()) {
      pool.emplace(s.threads, [w = s.work.get()] { w->on_thread_start(); });
      if (o.featurize_threads > 0) {
        for (const auto& [stage_name, cap] : s.work->stage_split(o.featurize_threads, s.threads))
          pool->set_cap(stage_name, cap);
      }
    }
    struct in_flight {
      plan::chunk chunk;
      run::chunk_record rec;
      clock_type::time_point started;
    };
    std::map<std::uint64_t, in_flight> flight;
    std::uint64_t taken = 0;
    bool no_more = false, stop_taking = false;
    auto quota_reached = [&] {
      return o.max_chunks_per_rank > 0 && taken >= o.max_chunks_per_rank;
    };
    auto chunk_error = [&](const plan::chunk& c, const std::exception& e) {
      return "rank " + std::to_string(ctx.rank()) + ", " + plan::describe(c, s.manifest) + ": " +
             e.what();
    };
    // work is null for a chunk whose shard could not be read.
    auto commit = [&](in_flight& f, chunk_work* work) {
      f.rec.elapsed_s = seconds_since(f.started);
      worker->commit(f.rec, work);
      publish();
    };
    while (work_error.empty()) {
      if (stop_requested()) {  // a signal: in-flight chunks are abandoned, not committed
        interrupted = true;
        break;
      }
      const bool deadline = o.stop_after_s > 0 && seconds_since(t_start) >= o.stop_after_s;
      if (deadline || quota_reached()) {  // no new chunks; the ones in flight are finished
        stop_taking = true;
        interrupted = true;
      }
      while (!stop_taking && !no_more &&
             pool->in_flight() < static_cast<std::size_t>(o.chunks_in_flight) && !quota_reached()) {
        std::uint64_t next = 0;
        timed([&] { next = counter->next(); });
        if (next >= remaining.size()) {
          no_more = true;
          break;
        }
        ++taken;
        const auto& c = s.plan.chunks[remaining[next]];
        try {
          in_flight f{c, worker->new_record(c), clock_type::now()};
          auto columns = worker->read(c, f.rec);
          if (!columns) {
            commit(f, nullptr);
            continue;
          }
          auto job = s.work->start(c, s.manifest.shards[c.shard].file, std::move(*columns));
          flight.emplace(c.id, std::move(f));
          pool->submit(c.id, std::move(job));
        } catch (const std::exception& e) {
          work_error = chunk_error(c, e);
          break;
        }
      }
      if (!work_error.empty() || pool->in_flight() == 0) break;
      auto done = pool->wait_finished(0.2);
      tick();
      if (!done) continue;
      auto f = std::move(flight.at(done->tag));
      flight.erase(done->tag);
      if (stop_requested()) {  // its tasks may have returned early: never commit it
        interrupted = true;
        break;
      }
      try {
        if (done->error) std::rethrow_exception(done->error);
        auto& work = static_cast<chunk_work&>(*done->job);
        worker->finish(f.rec, work);
        commit(f, &work);
      } catch (const std::exception& e) {
        work_error = chunk_error(f.chunk, e);
        break;
      }
    }
    if (pool) {
      for (const auto& [stage_name, t] : pool->stage_times())
        stage_report[stage_name] = {{"tasks", t.tasks}, {"thread_s", t.thread_s}};
      pool_threads = pool->n_threads();
      pool_idle_s = pool->idle_thread_s();
    }
    pool.reset();  // abandoned tasks end at their next check; nothing new starts
    mine[3] = 0;
    board->publish(mine);
    ctx.barrier();
    if (progress) progress->maybe_report(*board, ctx.size(), true);
  }  // counter and board are freed collectively here

  // A stop on any rank counts for the run.
  interrupted = !ctx.all_ok(!interrupted && !stop_requested());
  if (!agree(ctx, work_error)) return exit_error;

  const auto& t = worker->totals();
  json mine = s.work->rank_report();
  mine["rank"] = ctx.rank();
  mine["host"] = host_name();
  mine["n_chunks"] = worker->n_chunks();
  mine["n_read"] = t.n_read;
  mine["n_scored"] = t.n_scored;
  mine["n_rejected"] = t.n_rejected;
  mine["n_failed"] = t.n_failed;
  mine["read_s"] = worker->read_s();
  mine["commit_s"] = worker->commit_s();
  mine["busy_s"] = seconds_since(t_start);
  mine["stages"] = stage_report;  // thread-seconds per stage in the rank's stage pool
  mine["pool_threads"] = pool_threads;
  mine["pool_idle_thread_s"] = pool_idle_s;
  mine["peak_rss_bytes"] = peak_rss_bytes();
  mine["hits"] = json::parse(run::hits_to_json(worker->hits()));
  std::vector<std::string> blobs;
  const auto t_gather = clock_type::now();
  mine["coordination_s"] = coordination_s;  // the gather's own cost is added by rank 0 below
  blobs = ctx.gather(mine.dump(-1, ' ', false, json::error_handler_t::replace));
  const double gather_s = seconds_since(t_gather);

  int status = exit_ok;
  if (ctx.rank() == 0) {
    try {
      status = finish_run(o, s, ctx, attempt, committed_before, blobs, seconds_since(t_start),
                          interrupted, gather_s);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hpcscreen: error while writing the results: %s\n", e.what());
      status = exit_error;
    }
  }
  return std::stoi(ctx.broadcast(std::to_string(status)));
}

}  // namespace hpcscreen::pipeline
