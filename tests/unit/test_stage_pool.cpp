// The rank's stage pool: every task runs once, stages in order, caps hold, the oldest job is
// served first, a failing task fails only its job, and stages of different chunks overlap.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "hpcscreen/pipeline/stage_pool.hpp"

using namespace hpcscreen::pipeline;

namespace {

// A job of two stages ("a" with n_a tasks, "b" with n_b), recording what ran.
struct log_t {
  std::mutex m;
  std::vector<std::string> events;  // "tag:stage:task"
  std::map<std::string, int> running, max_running;
  void start(const std::string& stage_name, const std::string& event) {
    std::lock_guard<std::mutex> lock(m);
    events.push_back(event);
    auto& r = ++running[stage_name];
    max_running[stage_name] = std::max(max_running[stage_name], r);
  }
  void end(const std::string& stage_name) {
    std::lock_guard<std::mutex> lock(m);
    --running[stage_name];
  }
};

class two_stage_job : public chunk_job {
 public:
  two_stage_job(log_t& log, int tag, std::size_t n_a, std::size_t n_b, int cap_b = 0)
      : log_(log), tag_(tag), n_a_(n_a), n_b_(n_b), cap_b_(cap_b) {}
  stage next_stage() override {
    ++phase_;
    if (phase_ == 1) return {"a", n_a_, 0};
    if (phase_ == 2) {
      EXPECT_EQ(done_a_.load(), n_a_) << "stage b planned before all of stage a ran";
      return {"b", n_b_, cap_b_};
    }
    return {"done", 0, 0};
  }
  void run_task(std::size_t i) override {
    const std::string name = phase_ == 1 ? "a" : "b";
    log_.start(name, std::to_string(tag_) + ":" + name + ":" + std::to_string(i));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (throw_at_ == static_cast<int>(i) && phase_ == 2) {
      log_.end(name);
      throw std::runtime_error("task failed");
    }
    if (phase_ == 1) ++done_a_;
    log_.end(name);
  }
  int throw_at_ = -1;

 private:
  log_t& log_;
  int tag_;
  std::size_t n_a_, n_b_;
  int cap_b_;
  int phase_ = 0;
  std::atomic<std::size_t> done_a_{0};
};

std::vector<finished_job> drain(stage_pool& pool, std::size_t n) {
  std::vector<finished_job> out;
  while (out.size() < n) {
    auto f = pool.wait_finished(30);
    if (!f) {
      ADD_FAILURE() << "a job did not finish";
      break;
    }
    out.push_back(std::move(*f));
  }
  return out;
}

}  // namespace

TEST(StagePool, EveryTaskOnceAndStagesInOrder) {
  log_t log;
  stage_pool pool(3);
  for (int t = 0; t < 5; ++t) pool.submit(t, std::make_unique<two_stage_job>(log, t, 7, 4));
  const auto done = drain(pool, 5);
  std::set<std::string> seen(log.events.begin(), log.events.end());
  EXPECT_EQ(log.events.size(), 5u * 11u);
  EXPECT_EQ(seen.size(), 5u * 11u);  // no task twice
  for (const auto& f : done) EXPECT_FALSE(f.error);
  EXPECT_EQ(pool.in_flight(), 0u);
  const auto times = pool.stage_times();
  EXPECT_EQ(times.at("a").tasks, 35u);
  EXPECT_EQ(times.at("b").tasks, 20u);
}

TEST(StagePool, CapsHoldAcrossJobs) {
  log_t log;
  stage_pool pool(4);
  pool.set_cap("a", 2);
  for (int t = 0; t < 4; ++t) pool.submit(t, std::make_unique<two_stage_job>(log, t, 16, 16, 1));
  drain(pool, 4);
  EXPECT_LE(log.max_running["a"], 2);
  EXPECT_EQ(log.max_running["b"], 1);  // the stage's own max_parallel, over all jobs
}

TEST(StagePool, OneThreadServesTheOldestJobFirst) {
  log_t log;
  stage_pool pool(1);
  pool.submit(0, std::make_unique<two_stage_job>(log, 0, 3, 2));
  pool.submit(1, std::make_unique<two_stage_job>(log, 1, 3, 2));
  const auto done = drain(pool, 2);
  const std::vector<std::string> want = {"0:a:0", "0:a:1", "0:a:2", "0:b:0", "0:b:1",
                                         "1:a:0", "1:a:1", "1:a:2", "1:b:0", "1:b:1"};
  EXPECT_EQ(log.events, want);
  EXPECT_EQ(done[0].tag, 0u);
  EXPECT_EQ(done[1].tag, 1u);
}

TEST(StagePool, AFailingTaskFailsOnlyItsJob) {
  log_t log;
  stage_pool pool(2);
  auto bad = std::make_unique<two_stage_job>(log, 0, 4, 50);
  bad->throw_at_ = 0;
  pool.submit(0, std::move(bad));
  pool.submit(1, std::make_unique<two_stage_job>(log, 1, 4, 4));
  auto done = drain(pool, 2);
  for (auto& f : done) {
    if (f.tag == 0) {
      ASSERT_TRUE(f.error);
      EXPECT_THROW(std::rethrow_exception(f.error), std::runtime_error);
    } else {
      EXPECT_FALSE(f.error);
    }
  }
  std::size_t b_of_bad = 0;
  for (const auto& e : log.events) b_of_bad += e.rfind("0:b:", 0) == 0;
  EXPECT_LT(b_of_bad, 50u);  // the rest of the failed job's tasks were skipped
}

// The point of the pool: one chunk's inference and the next chunk's featurization at once. Job
// 0's only "b" task waits until job 1's "a" task has started: that can only happen if the two
// stages overlap (with a deadline, so a pool that serialized them fails instead of hanging).
TEST(StagePool, StagesOfDifferentChunksOverlap) {
  struct gate {
    std::mutex m;
    std::condition_variable cv;
    bool second_started = false;
  } g;
  struct waiting_job : chunk_job {
    gate& g;
    bool first;
    int phase = 0;
    bool overlapped = false;
    waiting_job(gate& g, bool first) : g(g), first(first) {}
    stage next_stage() override {
      ++phase;
      if (phase == 1) return {"featurize", 1, 0};
      if (phase == 2 && first) return {"infer", 1, 0};
      return {"done", 0, 0};
    }
    void run_task(std::size_t) override {
      std::unique_lock<std::mutex> lock(g.m);
      if (!first) {
        g.second_started = true;
        g.cv.notify_all();
      } else if (phase == 2) {
        overlapped =
            g.cv.wait_for(lock, std::chrono::seconds(20), [&] { return g.second_started; });
      }
    }
  };
  stage_pool pool(2);
  auto first = std::make_unique<waiting_job>(g, true);
  auto* first_ptr = first.get();
  pool.submit(0, std::move(first));
  pool.submit(1, std::make_unique<waiting_job>(g, false));
  drain(pool, 2);
  EXPECT_TRUE(first_ptr->overlapped);
}

TEST(StagePool, StopsWithJobsInFlight) {
  log_t log;
  {
    stage_pool pool(2);
    for (int t = 0; t < 3; ++t) pool.submit(t, std::make_unique<two_stage_job>(log, t, 200, 200));
  }  // must not hang: running tasks end, no new ones start
  EXPECT_LT(log.events.size(), 3u * 400u);
}
