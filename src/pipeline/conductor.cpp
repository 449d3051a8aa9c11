#include "hpcscreen/pipeline/conductor.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pipeline/chunk_ledger.hpp"
#include "hpcscreen/pipeline/progress.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/pipeline/stage_pool.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::pipeline {
namespace {

// A model that fails on every record of a chunk (two or more) is broken, not the records.
constexpr std::size_t min_rows_for_broken_model = 2;

// What this rank reads and keeps of its chunks: reading them from their shards, closing each
// chunk's ledger from its outcomes, committing it to the run folder and the journal.
class rank_ledger {
 public:
  rank_ledger(run_context& c, int rank, int attempt)
      : c_(c), rank_(rank), attempt_(attempt), journal_(c.options.out_dir, attempt, rank) {}

  // The chunk's fields; nullopt when its shard cannot be read (rec then counts every row failed).
  std::optional<chunk_input> read(const plan::chunk& c, run::chunk_record& rec) {
    const auto t0 = clock_type::now();
    chunk_input in{c, c_.manifest.shards[c.shard].file, c_.read_fields, {}};
    try {
      const auto& entry = c_.manifest.shards[c.shard];
      if (!reader_ || reader_shard_ != c.shard) {
        reader_.reset();
        reader_ = std::make_unique<io::shard_reader>(
            (fs::path(c_.options.library_dir) / entry.file).string(), c_.manifest.shard_schema,
            c_.manifest.fields);
        reader_shard_ = c.shard;
      }
      if (reader_->n_records() != entry.n_records) {
        throw shard_error("shard '" + entry.file + "' holds " +
                          std::to_string(reader_->n_records()) + " records, the manifest says " +
                          std::to_string(entry.n_records));
      }
      for (const auto& f : in.names) in.columns.push_back(reader_->read(f, c.row_begin, c.row_end));
    } catch (const shard_error& e) {
      reader_.reset();
      rec = open_record(c);
      rec.counts.n_failed = c.n_rows();
      rec.failure = e.what();
      // One line per shard and rank: a broken shard of a million rows is not a thousand lines.
      if (reported_failures_.insert(c.shard).second) {
        std::fprintf(stderr, "hpcscreen: rank %d: %s: %s; its rows are counted as failed\n", rank_,
                     plan::describe(c, c_.manifest).c_str(), e.what());
      }
      read_s_ += seconds_since(t0);
      return std::nullopt;
    }
    read_s_ += seconds_since(t0);
    return in;
  }

  // The chunk's outcomes, its ledger and its outputs; throws model_error for a broken model.
  run::chunk_record close(const chunk_input& in, chunk_work& work) {
    chunk_outcomes outcomes(in.n_rows(), c_.layout.names.size());
    work.collect(outcomes);
    auto rec = close_chunk(in, outcomes, c_.layout, c_.hit_fields);
    refuse_broken_model(in, outcomes);
    rec.outputs = run::describe_outputs(
        c_.options.out_dir, work.write_outputs(c_.options.out_dir, in.chunk.id, outcomes));
    return rec;
  }

  void commit(run::chunk_record& rec, double elapsed_s) {
    HPCSCREEN_ASSERT_MSG(rec.counts.balanced(), "chunk " + std::to_string(rec.chunk_id));
    const auto t = clock_type::now();
    rec.rank = rank_;
    rec.attempt = attempt_;
    rec.elapsed_s = elapsed_s;
    rec.end_time_s =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    run::write_chunk_record(c_.options.out_dir, rec);
    journal_.commit(rec.chunk_id);
    totals_ += rec.counts;
    ++n_chunks_;
    commit_s_ += seconds_since(t);
  }

  const run::chunk_counts& totals() const { return totals_; }
  std::uint64_t n_chunks() const { return n_chunks_; }
  double read_s() const { return read_s_; }
  double commit_s() const { return commit_s_; }

 private:
  void refuse_broken_model(const chunk_input& in, const chunk_outcomes& outcomes) const {
    std::size_t n_model_errors = 0;
    const chunk_outcomes::rejection* first = nullptr;
    for (const auto& [i, r] : outcomes.rejections()) {
      if (r.reason != "model_error") continue;
      ++n_model_errors;
      if (!first) first = &r;
    }
    if (n_model_errors >= min_rows_for_broken_model &&
        outcomes.count(chunk_outcomes::state::scored) == 0 &&
        n_model_errors == outcomes.count(chunk_outcomes::state::rejected)) {
      throw model_error(
          "the model failed on every one of the " + std::to_string(n_model_errors) +
          " records of " + plan::describe(in.chunk, c_.manifest) +
          ", so it is broken rather than the records; the first failure: " + first->detail);
    }
  }

  run_context& c_;
  int rank_, attempt_;
  run::journal journal_;
  std::unique_ptr<io::shard_reader> reader_;
  std::uint32_t reader_shard_ = 0;
  run::chunk_counts totals_;
  std::uint64_t n_chunks_ = 0;
  double read_s_ = 0, commit_s_ = 0;
  std::set<std::uint32_t> reported_failures_;
};

// A chunk in the pool, as the conductor knows it: the pool owns its work until it hands it back
// finished, under the chunk's id.
struct in_flight {
  plan::chunk chunk;
  clock_type::time_point started;
  chunk_work* work;
};

// One rank's loop, step by step: keep the pool fed with chunks from the shared counter, close
// and commit each chunk its pool finishes, share stop requests, report progress, wind down.
class rank_loop {
 public:
  rank_loop(dist::context& ctx, run_context& c, const attempt_plan& a,
            clock_type::time_point run_start)
      : ctx_(ctx), c_(c), a_(a), run_start_(run_start) {
    try {
      ledger_.emplace(c, ctx.rank(), a.attempt);
    } catch (const std::exception& e) {
      result_.error = e.what();
    }
    counter_ = ctx.make_counter();
    board_ = ctx.make_progress_board();
    if (ctx.rank() == 0)
      progress_.emplace(c.manifest.n_records(), a.n_done_before, c.options.progress_interval_s);
    board_->publish(mine_);
  }

  rank_result run() {
    start_pool();
    while (result_.error.empty()) {
      if (stop_anywhere()) {  // a signal: in-flight chunks are abandoned, not committed
        result_.interrupted = true;
        break;
      }
      const bool deadline =
          c_.options.stop_after_s > 0 && seconds_since(run_start_) >= c_.options.stop_after_s;
      if (deadline || quota_reached()) {  // no new chunks; the ones in flight are finished
        stop_taking_ = true;
        result_.interrupted = true;
      }
      take_chunks();
      if (!result_.error.empty() || pool_->in_flight() == 0) break;
      auto done = pool_->wait_finished(0.2);
      tick();
      if (done && !finish(*done)) break;
    }
    wind_down();
    return result_;
  }

 private:
  // The pool of the rank's threads, with a fixed split when --featurize-threads asks for one.
  void start_pool() {
    if (!result_.error.empty()) return;
    try {
      pool_ =
          std::make_unique<stage_pool>(c_.threads, [w = c_.work.get()] { w->on_thread_start(); });
      if (c_.options.featurize_threads > 0) {
        for (const auto& [stage_name, cap] :
             c_.work->stage_split(c_.options.featurize_threads, c_.threads))
          pool_->set_cap(stage_name, cap);
      }
    } catch (const std::exception& e) {
      result_.error = "rank " + std::to_string(ctx_.rank()) + ": cannot start " +
                      std::to_string(c_.threads) + " threads: " + e.what();
    }
  }

  // Takes chunks from the shared counter until chunks_in_flight are in the pool; a chunk whose
  // shard cannot be read is committed at once with its rows failed.
  void take_chunks() {
    while (!stop_taking_ && !no_more_ && !quota_reached() &&
           pool_->in_flight() < static_cast<std::size_t>(c_.options.chunks_in_flight)) {
      std::uint64_t next = 0;
      timed([&] { next = counter_->next(); });
      if (next >= a_.remaining.size()) {
        no_more_ = true;
        return;
      }
      ++taken_;
      const auto& c = c_.plan.chunks[a_.remaining[next]];
      try {
        run::chunk_record failed;
        auto input = ledger_->read(c, failed);
        if (!input) {
          ledger_->commit(failed, 0.0);
          publish();
          continue;
        }
        auto work = c_.work->start(std::move(*input));
        flight_.emplace(c.id, in_flight{c, clock_type::now(), work.get()});
        pool_->submit(c.id, std::move(work));
      } catch (const std::exception& e) {
        result_.error = chunk_error(c, e);
        return;
      }
    }
  }

  // A chunk the pool finished: its ledger closed, its outputs written, committed. False when the
  // loop must end (a stop request, an error).
  bool finish(finished_job& done) {
    auto f = std::move(flight_.at(done.tag));
    flight_.erase(done.tag);
    if (stop_anywhere()) {  // its tasks may have returned early: never commit it
      result_.interrupted = true;
      return false;
    }
    try {
      if (done.error) std::rethrow_exception(done.error);
      auto& work = *f.work;  // alive while `done` holds the job
      auto rec = ledger_->close(work.input(), work);
      ledger_->commit(rec, seconds_since(f.started));
      work.on_committed();
      publish();
      return true;
    } catch (const std::exception& e) {
      result_.error = chunk_error(f.chunk, e);
      return false;
    }
  }

  // A signal on this rank is raised on the shared flag; one raised elsewhere becomes this
  // rank's own stop request, so in-flight work is abandoned alike on every rank.
  bool stop_anywhere() {
    try {
      if (stop_requested() && !stop_shared_) {
        timed([&] { counter_->raise_stop(stop_signal()); });
        stop_shared_ = true;
      } else if (!stop_requested()) {
        int raised = 0;
        timed([&] { raised = counter_->stop_raised(); });
        if (raised != 0) request_stop(raised);
      }
    } catch (const std::exception& e) {
      if (result_.error.empty()) result_.error = "rank " + std::to_string(ctx_.rank()) + ": " + e.what();
    }
    return stop_requested();
  }

  // The pool's figures; the pool stopped (a thread stuck inside one record after a stop request
  // is not waited for beyond the grace period); the ranks' last progress; this rank's totals.
  void wind_down() {
    if (pool_) {
      for (const auto& [stage_name, t] : pool_->stage_times())
        result_.stages[stage_name] = {{"tasks", t.tasks}, {"thread_s", t.thread_s}};
      result_.pool_threads = pool_->n_threads();
      result_.pool_idle_thread_s = pool_->idle_thread_s();
    }
    if (pool_ && !pool_->stop(result_.interrupted || stop_requested() ? stop_grace_s : 1e9)) {
      std::fprintf(stderr,
                   "hpcscreen: rank %d: a thread is still inside a record after %.0f s; leaving it "
                   "behind (its chunk is not committed)\n",
                   ctx_.rank(), stop_grace_s);
      result_.threads_abandoned = true;
      (void)pool_.release();  // its detached threads still use it
    }
    pool_.reset();
    mine_[3] = 0;
    board_->publish(mine_);
    ctx_.barrier();
    if (progress_) progress_->maybe_report(*board_, ctx_.size(), true);
    if (ledger_) {
      result_.totals = ledger_->totals();
      result_.n_chunks = ledger_->n_chunks();
      result_.read_s = ledger_->read_s();
      result_.commit_s = ledger_->commit_s();
    }
  }

  template <class F>
  void timed(F&& f) {
    const auto t = clock_type::now();
    f();
    result_.coordination_s += seconds_since(t);
  }
  void tick() {
    if (progress_) timed([&] { progress_->maybe_report(*board_, ctx_.size()); });
  }
  void publish() {
    const auto& t = ledger_->totals();
    mine_[0] = t.n_read;
    mine_[1] = t.n_rejected;
    mine_[2] = t.n_failed;
    timed([&] { board_->publish(mine_); });
    tick();
  }
  bool quota_reached() const {
    return c_.options.max_chunks_per_rank > 0 && taken_ >= c_.options.max_chunks_per_rank;
  }
  std::string chunk_error(const plan::chunk& c, const std::exception& e) const {
    return "rank " + std::to_string(ctx_.rank()) + ", " + plan::describe(c, c_.manifest) + ": " +
           e.what();
  }

  dist::context& ctx_;
  run_context& c_;
  const attempt_plan& a_;
  clock_type::time_point run_start_;
  rank_result result_;
  std::optional<rank_ledger> ledger_;
  std::unique_ptr<dist::shared_counter> counter_;
  std::unique_ptr<dist::progress_board> board_;
  std::optional<progress_reporter> progress_;
  std::uint64_t mine_[dist::progress_board::n_slots] = {0, 0, 0, 1};
  std::unique_ptr<stage_pool> pool_;
  std::map<std::uint64_t, in_flight> flight_;
  std::uint64_t taken_ = 0;
  bool no_more_ = false, stop_taking_ = false, stop_shared_ = false;
};

}  // namespace

rank_result conduct(dist::context& ctx, run_context& c, const attempt_plan& a,
                    clock_type::time_point run_start) {
  return rank_loop(ctx, c, a, run_start).run();
}

}  // namespace hpcscreen::pipeline
