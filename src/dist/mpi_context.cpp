#include <mpi.h>

#include <cstdio>
#include <exception>
#include <string>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/dist/context.hpp"

namespace hpcscreen::dist {
namespace {

void check_mpi(int status, const char* what) {
  if (status != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(status, msg, &len);
    throw error(std::string("MPI: ") + what +
                " failed: " + std::string(msg, static_cast<std::size_t>(len)));
  }
}

// One uint64 on rank 0; every rank fetch-and-adds 1 under a shared lock-all epoch.
class mpi_counter : public shared_counter {
 public:
  explicit mpi_counter(MPI_Comm comm) : comm_(comm) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    const MPI_Aint bytes = rank == 0 ? 2 * sizeof(std::uint64_t) : 0;  // [counter, stop]
    check_mpi(MPI_Win_allocate(bytes, sizeof(std::uint64_t), MPI_INFO_NULL, comm, &base_, &win_),
              "MPI_Win_allocate");
    MPI_Win_set_errhandler(win_, MPI_ERRORS_RETURN);
    if (rank == 0) base_[0] = base_[1] = 0;
    MPI_Barrier(comm);
    check_mpi(MPI_Win_lock_all(0, win_), "MPI_Win_lock_all");
  }
  ~mpi_counter() override {
    MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);  // collective: every rank drops its counter at the same point
  }
  std::uint64_t next() override {
    const std::uint64_t one = 1;
    std::uint64_t previous = 0;
    check_mpi(MPI_Fetch_and_op(&one, &previous, MPI_UINT64_T, 0, 0, MPI_SUM, win_),
              "MPI_Fetch_and_op");
    check_mpi(MPI_Win_flush(0, win_), "MPI_Win_flush");
    return previous;
  }
  void raise_stop(int signal) override {
    const std::uint64_t value = signal > 0 ? static_cast<std::uint64_t>(signal) : 1;
    check_mpi(MPI_Accumulate(&value, 1, MPI_UINT64_T, 0, 1, 1, MPI_UINT64_T, MPI_MAX, win_),
              "MPI_Accumulate");
    check_mpi(MPI_Win_flush(0, win_), "MPI_Win_flush");
  }
  int stop_raised() override {
    std::uint64_t value = 0;
    check_mpi(MPI_Fetch_and_op(nullptr, &value, MPI_UINT64_T, 0, 1, MPI_NO_OP, win_),
              "MPI_Fetch_and_op");
    check_mpi(MPI_Win_flush(0, win_), "MPI_Win_flush");
    return static_cast<int>(value);
  }

 private:
  MPI_Comm comm_;
  std::uint64_t* base_ = nullptr;
  MPI_Win win_ = MPI_WIN_NULL;
};

// [size][n_slots] uint64 on rank 0. Ranks overwrite their own row with MPI_Accumulate
// (MPI_REPLACE, atomic per element); rank 0 reads the whole table with MPI_Get.
class mpi_board : public progress_board {
 public:
  explicit mpi_board(MPI_Comm comm) : comm_(comm) {
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
    const MPI_Aint bytes = rank_ == 0 ? MPI_Aint(sizeof(std::uint64_t)) * size_ * n_slots : 0;
    check_mpi(MPI_Win_allocate(bytes, sizeof(std::uint64_t), MPI_INFO_NULL, comm, &base_, &win_),
              "MPI_Win_allocate");
    MPI_Win_set_errhandler(win_, MPI_ERRORS_RETURN);
    if (rank_ == 0) std::fill(base_, base_ + size_ * n_slots, 0);
    MPI_Barrier(comm);
    check_mpi(MPI_Win_lock_all(0, win_), "MPI_Win_lock_all");
  }
  ~mpi_board() override {
    MPI_Win_unlock_all(win_);
    MPI_Win_free(&win_);
  }
  void publish(const std::uint64_t (&values)[n_slots]) override {
    check_mpi(MPI_Accumulate(values, n_slots, MPI_UINT64_T, 0, MPI_Aint(rank_) * n_slots, n_slots,
                             MPI_UINT64_T, MPI_REPLACE, win_),
              "MPI_Accumulate");
    check_mpi(MPI_Win_flush(0, win_), "MPI_Win_flush");
  }
  std::vector<std::uint64_t> read_all() override {
    std::vector<std::uint64_t> out(static_cast<std::size_t>(size_) * n_slots);
    check_mpi(MPI_Get_accumulate(nullptr, 0, MPI_UINT64_T, out.data(), static_cast<int>(out.size()),
                                 MPI_UINT64_T, 0, 0, static_cast<int>(out.size()), MPI_UINT64_T,
                                 MPI_NO_OP, win_),
              "MPI_Get_accumulate");
    check_mpi(MPI_Win_flush(0, win_), "MPI_Win_flush");
    return out;
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::uint64_t* base_ = nullptr;
  MPI_Win win_ = MPI_WIN_NULL;
};

class mpi_context : public context {
 public:
  mpi_context() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string description() const override {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<std::size_t>(len));
    const auto comma = v.find(',');
    return comma == std::string::npos ? v : v.substr(0, comma);
  }
  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
  std::unique_ptr<shared_counter> make_counter() override {
    return std::make_unique<mpi_counter>(MPI_COMM_WORLD);
  }
  std::unique_ptr<progress_board> make_progress_board() override {
    return std::make_unique<mpi_board>(MPI_COMM_WORLD);
  }
  std::vector<std::string> gather(const std::string& blob) override {
    int n = static_cast<int>(blob.size());
    std::vector<int> sizes(static_cast<std::size_t>(size_));
    check_mpi(MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, MPI_COMM_WORLD),
              "MPI_Gather");
    std::vector<int> displs(static_cast<std::size_t>(size_), 0);
    std::string all;
    if (rank_ == 0) {
      for (int r = 1; r < size_; ++r) displs[r] = displs[r - 1] + sizes[r - 1];
      all.resize(static_cast<std::size_t>(displs.back() + sizes.back()));
    }
    check_mpi(MPI_Gatherv(blob.data(), n, MPI_CHAR, all.data(), sizes.data(), displs.data(),
                          MPI_CHAR, 0, MPI_COMM_WORLD),
              "MPI_Gatherv");
    std::vector<std::string> out;
    if (rank_ == 0) {
      for (int r = 0; r < size_; ++r) out.push_back(all.substr(displs[r], sizes[r]));
    }
    return out;
  }
  std::string broadcast(const std::string& blob) override {
    std::uint64_t n = blob.size();
    check_mpi(MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
    std::string out = rank_ == 0 ? blob : std::string(n, '\0');
    check_mpi(MPI_Bcast(out.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
    return out;
  }
  bool all_ok(bool ok) override {
    int local = ok ? 1 : 0, global = 0;
    check_mpi(MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
    return global == 1;
  }
  [[noreturn]] void abort(int status) override {
    MPI_Abort(MPI_COMM_WORLD, status);
    std::_Exit(status);
  }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace

mpi_session::mpi_session(int& argc, char**& argv) {
  int provided = 0;
  const int status = MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  if (status != MPI_SUCCESS) throw error("MPI: MPI_Init_thread failed (status " + std::to_string(status) + ")");
  // Errors come back as status codes, so check_mpi can name the call that failed; under the
  // default MPI_ERRORS_ARE_FATAL they would abort the job before any message.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (provided < MPI_THREAD_FUNNELED) {
    // Only the conductor thread calls MPI, but the pool's threads exist beside it: an MPI
    // library that promises less than FUNNELED may not tolerate them.
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0)
      std::fprintf(stderr,
                   "hpcscreen: error: the MPI library provides thread level %d, below "
                   "MPI_THREAD_FUNNELED (%d) that hpcscreen needs\n",
                   provided, MPI_THREAD_FUNNELED);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
}

mpi_session::~mpi_session() {
  if (std::uncaught_exceptions() == 0) MPI_Finalize();
}

std::unique_ptr<context> mpi_session::world() {
  return std::make_unique<mpi_context>();
}

}  // namespace hpcscreen::dist
