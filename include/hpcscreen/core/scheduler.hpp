#pragma once
#include <string>

namespace hpcscreen {

// What the batch scheduler tells a job through its environment.
struct scheduler_info {
  std::string name = "none";  // "slurm", "pbs" or "none"
  std::string job_id;
  int n_nodes = 0;
  std::string cpus_variable;  // SLURM_CPUS_PER_TASK or NCPUS; empty outside a job
  int cpus_per_task = 0;      // 0: not given, or not a whole positive number (for run.json)
};

scheduler_info detect_scheduler();

// Threads per rank when --threads is not given: the scheduler's CPUs per task, then
// OMP_NUM_THREADS, then the cores this process may run on. A variable that is set but is not
// a whole positive number is a usage_error naming it.
int default_threads(const scheduler_info& s);

// Under an address-space limit (ulimit -v, as some clusters set per job): empty when the room
// left above what the process maps now is enough for `threads` worker threads, else a message
// saying how much is left, how much is needed and what to change. OpenBLAS maps each thread's
// GEMM buffer lazily and spins, rather than failing, when the map is refused: a run that
// starts without the room hangs instead of erring.
std::string address_space_shortfall(int threads);

}  // namespace hpcscreen
