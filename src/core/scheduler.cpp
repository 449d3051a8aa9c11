#include "hpcscreen/core/scheduler.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <utility>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"

namespace hpcscreen {
namespace {
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// A count from the environment: whole decimal digits only, at least 1. Anything else (`abc`,
// `0`, `-4`, `1e3`, `2x`) is a usage error naming the variable, never read by prefix.
int env_count(const char* name) {
  const auto v = env(name);
  if (v.empty()) return 0;
  const auto bad = [&](const std::string& why) {
    return usage_error("environment variable " + std::string(name) + "='" + v + "' " + why +
                       "; fix it or give --threads");
  };
  if (!std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw bad("is not a whole positive number");
  if (v.size() > 9) throw bad("is out of range");
  const int n = std::stoi(v);
  if (n < 1) throw bad("is not a whole positive number");
  return n;
}

// Informational counts (nodes): a malformed value is shown as 0, never fatal.
int env_int_or_zero(const char* name) {
  try {
    return env_count(name);
  } catch (const usage_error&) {
    return 0;
  }
}

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// The count and where it came from (for messages).
std::pair<int, std::string> threads_from_environment(const scheduler_info& s) {
  if (!s.cpus_variable.empty()) {  // strict here: the value is about to be used
    if (const int n = env_count(s.cpus_variable.c_str()); n > 0) return {n, s.cpus_variable};
  }
  if (const int omp = env_count("OMP_NUM_THREADS"); omp > 0) return {omp, "OMP_NUM_THREADS"};
  return {usable_cpus(), "the CPUs this process may use"};
}
}  // namespace

scheduler_info detect_scheduler() {
  scheduler_info s;
  if (!env("SLURM_JOB_ID").empty()) {
    s.name = "slurm";
    s.job_id = shown_text(env("SLURM_JOB_ID"));  // informational, kept in run.json as text
    s.n_nodes = env_int_or_zero("SLURM_JOB_NUM_NODES");
    s.cpus_variable = "SLURM_CPUS_PER_TASK";
    s.cpus_per_task = env_int_or_zero("SLURM_CPUS_PER_TASK");
  } else if (!env("PBS_JOBID").empty()) {
    s.name = "pbs";
    s.job_id = shown_text(env("PBS_JOBID"));
    s.cpus_variable = "NCPUS";
    s.cpus_per_task = env_int_or_zero("NCPUS");
    const auto nodefile = env("PBS_NODEFILE");
    if (!nodefile.empty() && !is_special_file(nodefile)) {  // (a FIFO would block the count)
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

int threads_per_rank(const scheduler_info& s, int requested) {
  const auto [threads, source] = requested > 0 ? std::pair<int, std::string>{requested, "--threads"}
                                               : threads_from_environment(s);
  if (threads < 1 || threads > max_threads_per_rank) {
    const std::string from =
        requested > 0
            ? "--threads " + std::to_string(threads)
            : std::to_string(threads) + " threads per rank from the environment (" + source + ")";
    throw usage_error(from + " is out of range: threads per rank must be between 1 and " +
                      std::to_string(max_threads_per_rank) + "; set --threads");
  }
  return threads;
}

std::string oversubscription_note(int threads) {
  const int cpus = usable_cpus();
  if (threads <= cpus) return "";
  return std::to_string(threads) + " threads per rank, and this rank may use " +
         std::to_string(cpus) +
         " CPU(s): the threads take turns on them (LibTorch's threads "
         "wait by spinning), which can be many times slower than " +
         std::to_string(cpus) + " thread(s); set --threads to the cores each rank has";
}

std::string address_space_shortfall(int threads) {
  rlimit limit{};
  if (getrlimit(RLIMIT_AS, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return "";
  std::uint64_t pages = 0;
  std::ifstream statm("/proc/self/statm");
  if (!(statm >> pages)) return "";
  const std::uint64_t mib = 1 << 20;
  const std::uint64_t mapped = pages * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  const std::uint64_t room = limit.rlim_cur > mapped ? limit.rlim_cur - mapped : 0;
  // Per worker thread: its stack (8 MiB), OpenBLAS's buffer (up to 64 MiB) and an allocator
  // arena's first reservation (64 MiB); plus 512 MiB for batches and the run's own data.
  const std::uint64_t need = (512 + 136 * static_cast<std::uint64_t>(std::max(1, threads))) * mib;
  if (room >= need) return "";
  return "the address-space limit (ulimit -v " + std::to_string(limit.rlim_cur / 1024) +
         " KiB) leaves " + std::to_string(room / mib) + " MiB above the " +
         std::to_string(mapped / mib) + " MiB this process maps after loading; " +
         std::to_string(threads) + " thread(s) need about " + std::to_string(need / mib) +
         " MiB more (OpenBLAS would spin on a refused map instead of failing): raise or remove "
         "ulimit -v (give the job memory with the scheduler's --mem instead), or use fewer "
         "--threads";
}

}  // namespace hpcscreen
