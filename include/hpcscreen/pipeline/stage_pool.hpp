#pragma once
// Pipelining inside a rank. A chunk in flight is a chunk_job: a sequence of stages (featurize,
// then infer), each a set of independent tasks. The stage_pool's worker threads take tasks from
// every job in flight, oldest job first, so while one chunk's batches are inferred the next
// chunk is featurized on whatever threads the first leaves idle: the split of threads between
// stages follows each stage's measured cost task by task instead of being fixed in advance. A
// stage can be capped (at most N of its tasks at once, across all jobs): a model that uses all
// intra-op threads per batch caps inference at 1, and --featurize-threads fixes a split by hand.
//
// The pool never calls MPI or HDF5: the conductor (the rank's main thread) reads chunks, submits
// jobs, and finishes and commits them, so MPI_THREAD_FUNNELED and a non-thread-safe HDF5 hold.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hpcscreen/pipeline/stage.hpp"

namespace hpcscreen::pipeline {

struct finished_job {
  std::uint64_t tag = 0;
  std::unique_ptr<chunk_job> job;
  std::exception_ptr error;  // the first task that threw; the job's other tasks were skipped
};

struct stage_time {
  std::uint64_t tasks = 0;
  double thread_s = 0;  // summed over threads
};

class stage_pool {
 public:
  // on_thread_start runs first on every worker thread (e.g. to set its intra-op threads).
  stage_pool(int n_threads, std::function<void()> on_thread_start = {});
  ~stage_pool();  // lets running tasks end, runs no new ones, joins the threads
  // Runs no new tasks and waits up to grace_s for running ones to end. Returns false when some
  // thread is still inside a task (a record stuck in RDKit or a model): its threads are then
  // detached, and the pool (and the jobs it holds) must be left alive, never destroyed.
  bool stop(double grace_s);
  stage_pool(const stage_pool&) = delete;
  stage_pool& operator=(const stage_pool&) = delete;

  void submit(std::uint64_t tag, std::unique_ptr<chunk_job> job);
  std::size_t in_flight() const;  // submitted and not yet taken back by wait_finished
  // A finished job (completion order), or nullopt after timeout_s with none finished.
  std::optional<finished_job> wait_finished(double timeout_s);
  // Caps a stage by name, on top of each stage's own max_parallel (0: no extra cap).
  void set_cap(const std::string& stage_name, int max_parallel);

  std::map<std::string, stage_time> stage_times() const;
  double idle_thread_s() const;  // time workers waited for a task, summed over threads
  int n_threads() const { return static_cast<int>(threads_.size()); }

 private:
  struct slot;
  void work(std::function<void()> on_thread_start);
  bool may_run(const stage& s) const;
  void advance(slot& j, std::unique_lock<std::mutex>& lock);

  mutable std::mutex mutex_;
  std::condition_variable work_ready_, job_finished_;
  std::deque<std::unique_ptr<slot>> jobs_;  // in submission order: the oldest is served first
  std::deque<finished_job> finished_;
  std::map<std::string, int> running_, caps_;
  std::map<std::string, stage_time> times_;
  double idle_s_ = 0;
  bool stopping_ = false;
  std::size_t n_exited_ = 0;  // worker threads that have returned
  std::condition_variable exited_;
  std::vector<std::thread> threads_;
};

}  // namespace hpcscreen::pipeline
