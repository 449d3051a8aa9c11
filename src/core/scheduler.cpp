#include "hpcscreen/core/scheduler.hpp"

#include <sched.h>

#include <cstdlib>
#include <fstream>
#include <thread>

namespace hpcscreen {
namespace {
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}
int env_int(const char* name) {
  const auto v = env(name);
  try {
    return v.empty() ? 0 : std::stoi(v);
  } catch (const std::exception&) {
    return 0;
  }
}
}  // namespace

scheduler_info detect_scheduler() {
  scheduler_info s;
  if (!env("SLURM_JOB_ID").empty()) {
    s.name = "slurm";
    s.job_id = env("SLURM_JOB_ID");
    s.n_nodes = env_int("SLURM_JOB_NUM_NODES");
    s.cpus_per_task = env_int("SLURM_CPUS_PER_TASK");
  } else if (!env("PBS_JOBID").empty()) {
    s.name = "pbs";
    s.job_id = env("PBS_JOBID");
    s.cpus_per_task = env_int("NCPUS");
    const auto nodefile = env("PBS_NODEFILE");
    if (!nodefile.empty()) {
      std::ifstream in(nodefile);
      std::string line, last;
      int distinct = 0;
      // PBS lists a host once per MPI process; hosts come grouped.
      while (std::getline(in, line)) {
        if (!line.empty() && line != last) ++distinct;
        last = line;
      }
      s.n_nodes = distinct;
    }
  }
  return s;
}

int default_threads(const scheduler_info& s) {
  if (s.cpus_per_task > 0) return s.cpus_per_task;
  if (const int omp = env_int("OMP_NUM_THREADS"); omp > 0) return omp;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace hpcscreen
