#pragma once
// Rank 0's progress lines: records done of total, rate, ETA, rejects, failures, and how many
// ranks are still working (the last line: how many finished).
// Plain lines when stderr is a file (a Slurm output file), a live line on a terminal.
#include <cstdint>
#include <string>

#include "hpcscreen/core/timing.hpp"
#include "hpcscreen/dist/context.hpp"

namespace hpcscreen::pipeline {

class progress_reporter {
 public:
  progress_reporter(std::uint64_t n_total, std::uint64_t n_done_before, double interval_s);
  // Prints a line when interval_s has passed since the last one (always for the final line).
  void maybe_report(dist::progress_board& board, int n_ranks, bool final_line = false);

 private:
  std::uint64_t n_total_, n_before_;
  double interval_s_;
  bool tty_;
  clock_type::time_point start_ = clock_type::now();
  double last_s_ = 0;
};

std::string with_commas(std::uint64_t n);

}  // namespace hpcscreen::pipeline
