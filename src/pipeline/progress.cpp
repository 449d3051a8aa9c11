#include "hpcscreen/pipeline/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "hpcscreen/core/options.hpp"

namespace hpcscreen::pipeline {

std::string with_commas(std::uint64_t n) {
  auto s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3)
    s.insert(static_cast<std::size_t>(i), ",");
  return s;
}

progress_reporter::progress_reporter(std::uint64_t n_total, std::uint64_t n_done_before,
                                     double interval_s)
    : n_total_(n_total),
      n_before_(n_done_before),
      interval_s_(interval_s),
      tty_(isatty(fileno(stderr)) != 0) {}

void progress_reporter::maybe_report(dist::progress_board& board, int n_ranks, bool final_line) {
  const double t = seconds_since(start_);
  if (!final_line && (interval_s_ <= 0 || t - last_s_ < interval_s_)) return;
  if (final_line && interval_s_ <= 0 && !tty_) return;
  last_s_ = t;
  const auto v = board.read_all();
  std::uint64_t sum[dist::progress_board::n_slots] = {};
  for (int r = 0; r < n_ranks; ++r)
    for (int k = 0; k < dist::progress_board::n_slots; ++k)
      sum[k] += v[static_cast<std::size_t>(r) * dist::progress_board::n_slots +
                  static_cast<std::size_t>(k)];
  const auto done = n_before_ + sum[0];
  const double rate = t > 0 ? static_cast<double>(sum[0]) / t : 0;
  const double eta = rate > 0 ? static_cast<double>(n_total_ - std::min(n_total_, done)) / rate : NAN;
  const double pct =
      n_total_ ? 100.0 * static_cast<double>(done) / static_cast<double>(n_total_) : 100.0;
  char line[512];
  std::snprintf(line, sizeof line,
                "[hpcscreen] %s/%s records (%.1f%%) | %.0f rec/s | ETA %s | rejects%s %s | "
                "failed %s | ranks %s %llu/%d",
                with_commas(done).c_str(), with_commas(n_total_).c_str(), pct, rate,
                // The last line of a run stopped early: no estimate of the rest.
                final_line && done < n_total_ ? "- (stopped)" : format_duration(eta).c_str(),
                // The records count those of earlier attempts; the rejects and failures do not.
                n_before_ > 0 ? " (this attempt)" : "", with_commas(sum[1]).c_str(),
                with_commas(sum[2]).c_str(),
                // Slot 3 is 1 while a rank works: the last line counts those that finished.
                final_line ? "finished" : "alive",
                static_cast<unsigned long long>(
                    final_line ? n_ranks - std::min<std::uint64_t>(sum[3], n_ranks) : sum[3]),
                n_ranks);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line, final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line);
  }
  std::fflush(stderr);
}

}  // namespace hpcscreen::pipeline
