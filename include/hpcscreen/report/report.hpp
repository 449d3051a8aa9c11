#pragma once
// report.html: one self-contained page about a run, for people (run.json is for programs).
#include <string>

namespace hpcscreen::report {

struct report_options {
  std::size_t max_hits = 50;  // hits shown (with structure drawings for compounds)
  std::size_t histogram_bins = 40;
};

// Builds RUN/report.html from run.json, hits.csv and the chunk records of a finished or
// partial run. Returns the path written. Throws run_error when RUN has no run.json.
std::string write_report(const std::string& run_dir, const report_options& options = {});

}  // namespace hpcscreen::report
