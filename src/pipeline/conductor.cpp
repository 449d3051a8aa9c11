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

class rank_books {
 public:
  rank_books(const run_options& o, run_setup& s, int rank, int attempt)
      : o_(o), s_(s), rank_(rank), attempt_(attempt), journal_(o.out_dir, attempt, rank) {}

  // The chunk's fields; nullopt when its shard cannot be read (rec then counts every row failed).
  std::optional<chunk_input> read(const plan::chunk& c, run::chunk_record& rec) {
    const auto t0 = clock_type::now();
    chunk_input in{c, s_.manifest.shards[c.shard].file, s_.read_fields, {}};
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
      for (const auto& f : in.names) in.columns.push_back(reader_->read(f, c.row_begin, c.row_end));
    } catch (const shard_error& e) {
      reader_.reset();
      rec = open_record(c);
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
    return in;
  }

  // The chunk's outcomes, its books and its outputs; throws model_error for a broken model.
  run::chunk_record close(const chunk_input& in, chunk_work& work) {
    chunk_outcomes outcomes(in.n_rows(), s_.layout.names.size());
    work.collect(outcomes);
    auto rec = close_chunk(in, outcomes, s_.layout, s_.hit_fields);
    refuse_broken_model(in, outcomes);
    work.write_outputs(o_.out_dir, in.chunk.id, outcomes);
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
    run::write_chunk_record(o_.out_dir, rec);
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
      throw model_error("the model failed on every one of the " + std::to_string(n_model_errors) +
                        " records of " + plan::describe(in.chunk, s_.manifest) +
                        ", so it is broken rather than the records; the first failure: " +
                        first->detail);
    }
  }

  const run_options& o_;
  run_setup& s_;
  int rank_, attempt_;
  run::journal journal_;
  std::unique_ptr<io::shard_reader> reader_;
  std::uint32_t reader_shard_ = 0;
  run::chunk_counts totals_;
  std::uint64_t n_chunks_ = 0;
  double read_s_ = 0, commit_s_ = 0;
  std::set<std::uint32_t> reported_failures_;
};

struct in_flight {
  plan::chunk chunk;
  clock_type::time_point started;
};

}  // namespace

rank_result conduct(dist::context& ctx, const run_options& o, run_setup& s, const attempt_plan& a,
                    clock_type::time_point run_start) {
  rank_result result;
  std::optional<rank_books> books;
  try {
    books.emplace(o, s, ctx.rank(), a.attempt);
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  auto timed = [&](auto&& f) {
    const auto t = clock_type::now();
    f();
    result.coordination_s += seconds_since(t);
  };

  auto counter = ctx.make_counter();
  auto board = ctx.make_progress_board();
  std::optional<progress_reporter> progress;
  if (ctx.rank() == 0) progress.emplace(s.manifest.n_records(), a.n_done_before, o.progress_interval_s);
  std::uint64_t mine[dist::progress_board::n_slots] = {0, 0, 0, 1};
  board->publish(mine);
  auto tick = [&] {
    if (progress) timed([&] { progress->maybe_report(*board, ctx.size()); });
  };
  auto publish = [&] {
    const auto& t = books->totals();
    mine[0] = t.n_read;
    mine[1] = t.n_rejected;
    mine[2] = t.n_failed;
    timed([&] { board->publish(mine); });
    tick();
  };
  auto chunk_error = [&](const plan::chunk& c, const std::exception& e) {
    return "rank " + std::to_string(ctx.rank()) + ", " + plan::describe(c, s.manifest) + ": " +
           e.what();
  };

  std::unique_ptr<stage_pool> pool;
  if (result.error.empty()) {
    try {
      pool = std::make_unique<stage_pool>(s.threads, [w = s.work.get()] { w->on_thread_start(); });
      if (o.featurize_threads > 0) {
        for (const auto& [stage_name, cap] : s.work->stage_split(o.featurize_threads, s.threads))
          pool->set_cap(stage_name, cap);
      }
    } catch (const std::exception& e) {
      result.error = "rank " + std::to_string(ctx.rank()) + ": cannot start " +
                     std::to_string(s.threads) + " threads: " + e.what();
    }
  }
  std::map<std::uint64_t, in_flight> flight;
  std::uint64_t taken = 0;
  bool no_more = false, stop_taking = false;
  auto quota_reached = [&] { return o.max_chunks_per_rank > 0 && taken >= o.max_chunks_per_rank; };

  // A signal on this rank is raised on the shared flag; one raised elsewhere becomes this
  // rank's own stop request, so in-flight work is abandoned alike on every rank.
  bool stop_shared = false;
  auto stop_anywhere = [&] {
    try {
      if (stop_requested() && !stop_shared) {
        timed([&] { counter->raise_stop(stop_signal()); });
        stop_shared = true;
      } else if (!stop_requested()) {
        int raised = 0;
        timed([&] { raised = counter->stop_raised(); });
        if (raised != 0) request_stop(raised);
      }
    } catch (const std::exception& e) {
      if (result.error.empty()) result.error = "rank " + std::to_string(ctx.rank()) + ": " + e.what();
    }
    return stop_requested();
  };

  while (result.error.empty()) {
    if (stop_anywhere()) {  // a signal: in-flight chunks are abandoned, not committed
      result.interrupted = true;
      break;
    }
    const bool deadline = o.stop_after_s > 0 && seconds_since(run_start) >= o.stop_after_s;
    if (deadline || quota_reached()) {  // no new chunks; the ones in flight are finished
      stop_taking = true;
      result.interrupted = true;
    }
    while (!stop_taking && !no_more && !quota_reached() &&
           pool->in_flight() < static_cast<std::size_t>(o.chunks_in_flight)) {
      std::uint64_t next = 0;
      timed([&] { next = counter->next(); });
      if (next >= a.remaining.size()) {
        no_more = true;
        break;
      }
      ++taken;
      const auto& c = s.plan.chunks[a.remaining[next]];
      try {
        run::chunk_record failed;
        auto input = books->read(c, failed);
        if (!input) {
          books->commit(failed, 0.0);
          publish();
          continue;
        }
        flight.emplace(c.id, in_flight{c, clock_type::now()});
        pool->submit(c.id, s.work->start(std::move(*input)));
      } catch (const std::exception& e) {
        result.error = chunk_error(c, e);
        break;
      }
    }
    if (!result.error.empty() || pool->in_flight() == 0) break;
    auto done = pool->wait_finished(0.2);
    tick();
    if (!done) continue;
    auto f = std::move(flight.at(done->tag));
    flight.erase(done->tag);
    if (stop_anywhere()) {  // its tasks may have returned early: never commit it
      result.interrupted = true;
      break;
    }
    try {
      if (done->error) std::rethrow_exception(done->error);
      auto& work = static_cast<chunk_work&>(*done->job);
      auto rec = books->close(work.input(), work);
      books->commit(rec, seconds_since(f.started));
      work.on_committed();
      publish();
    } catch (const std::exception& e) {
      result.error = chunk_error(f.chunk, e);
      break;
    }
  }
  if (pool) {
    for (const auto& [stage_name, t] : pool->stage_times())
      result.stages[stage_name] = {{"tasks", t.tasks}, {"thread_s", t.thread_s}};
    result.pool_threads = pool->n_threads();
    result.pool_idle_thread_s = pool->idle_thread_s();
  }
  // Abandoned tasks end at their next check; nothing new starts. After a stop request a thread
  // stuck inside one record (RDKit, a user's model) is not waited for beyond the grace period.
  if (pool && !pool->stop(result.interrupted || stop_requested() ? stop_grace_s : 1e9)) {
    std::fprintf(stderr,
                 "hpcscreen: rank %d: a thread is still inside a record after %.0f s; leaving it "
                 "behind (its chunk is not committed)\n",
                 ctx.rank(), stop_grace_s);
    result.threads_abandoned = true;
    (void)pool.release();  // its detached threads still use it
  }
  pool.reset();
  mine[3] = 0;
  board->publish(mine);
  ctx.barrier();
  if (progress) progress->maybe_report(*board, ctx.size(), true);
  if (books) {
    result.totals = books->totals();
    result.n_chunks = books->n_chunks();
    result.read_s = books->read_s();
    result.commit_s = books->commit_s();
  }
  return result;
}

}  // namespace hpcscreen::pipeline
