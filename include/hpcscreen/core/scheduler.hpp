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

inline constexpr int max_threads_per_rank = 1024;

// Threads per rank: `requested` (--threads) when above 0; else the scheduler's CPUs per task,
// then OMP_NUM_THREADS, then the cores this process may run on. A variable that is set but is
// not a whole positive number, or a count above max_threads_per_rank, is a usage_error naming
// where the count came from.
int threads_per_rank(const scheduler_info& s, int requested);

// Empty when `threads` fit the CPUs this process may run on (its affinity), else a warning:
// more threads than CPUs share them, and spinning threads slow each other down.
std::string oversubscription_note(int threads);

// Under an address-space limit (ulimit -v, as some clusters set per job): empty when the room
// left above what the process maps now is enough for `threads` worker threads, else a message
// saying how much is left, how much is needed and what to change. OpenBLAS maps each thread's
// GEMM buffer lazily and spins, rather than failing, when the map is refused: a run that
// starts without the room hangs instead of erring.
std::string address_space_shortfall(int threads);

}  // namespace hpcscreen
