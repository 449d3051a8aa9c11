#pragma once
// A job for the stage pool (stage_pool.hpp): a sequence of stages, each a set of independent
// tasks. A workload's chunk is such a job; this is all of the pool a workload sees.
#include <cstddef>
#include <string>

namespace hpcscreen::pipeline {

struct stage {
  std::string name;         // "featurize", "infer", ...: tasks are timed per name
  std::size_t n_tasks = 0;  // 0: the job is done
  int max_parallel = 0;     // at most this many tasks of this name at once, in all jobs; 0: any
};

class chunk_job {
 public:
  virtual ~chunk_job() = default;
  // The first stage, and then the next one each time all tasks of the current one are done.
  // Called by one thread at a time, never concurrently with run_task of the same job.
  virtual stage next_stage() = 0;
  // Task i of the current stage; tasks of one stage run concurrently on different threads.
  virtual void run_task(std::size_t i) = 0;
};

}  // namespace hpcscreen::pipeline
