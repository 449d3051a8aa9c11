#include "hpcscreen/pipeline/stage_pool.hpp"

#include <algorithm>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/timing.hpp"

namespace hpcscreen::pipeline {

struct stage_pool::slot {
  std::uint64_t tag = 0;
  std::unique_ptr<chunk_job> job;
  stage current;
  std::size_t next_task = 0, done = 0;
  int running = 0;
  bool advancing = false;  // next_stage() is running outside the lock
  std::exception_ptr error;
};

stage_pool::stage_pool(int n_threads, std::function<void()> on_thread_start) {
  HPCSCREEN_ASSERT(n_threads >= 1);
  for (int i = 0; i < n_threads; ++i)
    threads_.emplace_back([this, on_thread_start] { work(on_thread_start); });
}

stage_pool::~stage_pool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& t : threads_) t.join();
}

bool stage_pool::stop(double grace_s) {
  std::unique_lock<std::mutex> lock(mutex_);
  stopping_ = true;
  work_ready_.notify_all();
  const bool all_ended = exited_.wait_for(lock, std::chrono::duration<double>(grace_s),
                                          [&] { return n_exited_ == threads_.size(); });
  lock.unlock();
  for (auto& t : threads_) {
    if (all_ended) {
      t.join();
    } else {
      t.detach();
    }
  }
  threads_.clear();
  return all_ended;
}

void stage_pool::submit(std::uint64_t tag, std::unique_ptr<chunk_job> job) {
  auto s = std::make_unique<slot>();
  s->tag = tag;
  s->job = std::move(job);
  try {
    s->current = s->job->next_stage();
  } catch (...) {
    s->error = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (s->error || s->current.n_tasks == 0) {
    finished_.push_back({s->tag, std::move(s->job), s->error});
    job_finished_.notify_all();
    return;
  }
  jobs_.push_back(std::move(s));
  work_ready_.notify_all();
}

std::size_t stage_pool::in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return jobs_.size() + finished_.size();
}

std::optional<finished_job> stage_pool::wait_finished(double timeout_s) {
  std::unique_lock<std::mutex> lock(mutex_);
  job_finished_.wait_for(lock, std::chrono::duration<double>(timeout_s),
                         [&] { return !finished_.empty(); });
  if (finished_.empty()) return std::nullopt;
  auto f = std::move(finished_.front());
  finished_.pop_front();
  return f;
}

void stage_pool::set_cap(const std::string& stage_name, int max_parallel) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    caps_[stage_name] = max_parallel;
  }
  work_ready_.notify_all();
}

std::map<std::string, stage_time> stage_pool::stage_times() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return times_;
}

double stage_pool::idle_thread_s() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return idle_s_;
}

bool stage_pool::may_run(const stage& s) const {
  int cap = s.max_parallel;
  const auto c = caps_.find(s.name);
  if (c != caps_.end() && c->second > 0) cap = cap > 0 ? std::min(cap, c->second) : c->second;
  if (cap <= 0) return true;
  const auto r = running_.find(s.name);
  return r == running_.end() || r->second < cap;
}

// Called with the lock held once a job's current stage has no task running and either all its
// tasks are done or one failed: moves the job to its next stage, or to the finished queue.
void stage_pool::advance(slot& j, std::unique_lock<std::mutex>& lock) {
  if (!j.error) {
    j.advancing = true;
    lock.unlock();
    stage next;
    try {
      next = j.job->next_stage();
    } catch (...) {
      j.error = std::current_exception();
    }
    lock.lock();
    j.advancing = false;
    j.current = next;
    j.next_task = j.done = 0;
    if (!j.error && next.n_tasks > 0) return;
  }
  const auto it =
      std::find_if(jobs_.begin(), jobs_.end(), [&](const auto& p) { return p.get() == &j; });
  HPCSCREEN_ASSERT(it != jobs_.end());
  finished_.push_back({j.tag, std::move(j.job), j.error});
  jobs_.erase(it);
  job_finished_.notify_all();
}

void stage_pool::work(std::function<void()> on_thread_start) {
  if (on_thread_start) on_thread_start();
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    slot* job = nullptr;
    std::size_t task = 0;
    const auto waiting_since = clock_type::now();
    while (job == nullptr) {
      if (stopping_) {
        idle_s_ += seconds_since(waiting_since);
        ++n_exited_;
        exited_.notify_all();
        return;
      }
      for (auto& s : jobs_) {  // oldest first
        if (!s->advancing && !s->error && s->next_task < s->current.n_tasks &&
            may_run(s->current)) {
          job = s.get();
          task = job->next_task++;
          break;
        }
      }
      if (job == nullptr) work_ready_.wait(lock);
    }
    idle_s_ += seconds_since(waiting_since);
    const std::string name = job->current.name;
    ++running_[name];
    ++job->running;
    lock.unlock();

    std::exception_ptr error;
    const auto t = clock_type::now();
    try {
      job->job->run_task(task);
    } catch (...) {
      error = std::current_exception();
    }
    const double dt = seconds_since(t);

    lock.lock();
    --running_[name];
    --job->running;
    ++job->done;
    auto& time = times_[name];
    ++time.tasks;
    time.thread_s += dt;
    if (error && !job->error) job->error = error;
    if (job->running == 0 && !job->advancing && (job->error || job->done == job->current.n_tasks)) {
      advance(*job, lock);
    }
    work_ready_.notify_all();  // a capped stage has room again, or a new stage has tasks
  }
}

}  // namespace hpcscreen::pipeline
