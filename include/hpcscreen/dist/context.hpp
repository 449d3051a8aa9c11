#pragma once
// The communicator behind a small interface (after arbor's distributed_context): an MPI
// implementation for real runs and a single-process one so most tests need no mpirun.
// Only src/dist/mpi_context.cpp includes <mpi.h>.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace hpcscreen::dist {

// Hands out 0, 1, 2, ... across all ranks, each value once (MPI_Fetch_and_op on rank 0).
// Beside it, a stop flag: a rank that receives a signal raises it, every rank polls it, so a
// stop reaches all ranks within a poll interval whichever rank was signalled.
class shared_counter {
 public:
  virtual ~shared_counter() = default;
  virtual std::uint64_t next() = 0;
  virtual void raise_stop(int signal) = 0;
  virtual int stop_raised() = 0;  // the highest signal raised by any rank; 0 if none
};

// Per-rank progress numbers, readable by rank 0 at any time without stalling anyone
// (MPI_Accumulate/MPI_Get on a window at rank 0).
class progress_board {
 public:
  static constexpr int n_slots = 4;  // done, rejected, failed, alive
  virtual ~progress_board() = default;
  virtual void publish(const std::uint64_t (&values)[n_slots]) = 0;
  // Rank 0 only: the values of every rank, [size][n_slots].
  virtual std::vector<std::uint64_t> read_all() = 0;
};

class context {
 public:
  virtual ~context() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string description() const = 0;  // e.g. "Open MPI v4.1.4"
  virtual void barrier() = 0;
  // Collective.
  virtual std::unique_ptr<shared_counter> make_counter() = 0;
  virtual std::unique_ptr<progress_board> make_progress_board() = 0;
  // Every rank's blob at rank 0, in rank order; empty on the other ranks. Collective.
  virtual std::vector<std::string> gather(const std::string& blob) = 0;
  // Rank 0's blob on every rank. Collective.
  virtual std::string broadcast(const std::string& blob) = 0;
  // True on every rank iff ok on every rank. Collective: ranks agree before anyone gives up.
  virtual bool all_ok(bool ok) = 0;
  [[noreturn]] virtual void abort(int status) = 0;
};

std::unique_ptr<context> make_local_context();

// Initialises MPI on construction and finalises it on destruction, except while an
// exception unwinds: MPI_Finalize is collective and would hang with ranks that are gone.
class mpi_session {
 public:
  mpi_session(int& argc, char**& argv);
  ~mpi_session();
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;
  std::unique_ptr<context> world();
};

}  // namespace hpcscreen::dist
