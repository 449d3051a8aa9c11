#pragma once
// The run's outputs, made by rank 0 at the end of every attempt from the committed chunk records
// alone (this attempt's and earlier ones'): rejects.csv, hits.csv and run.json.
#include <string>
#include <vector>

#include "hpcscreen/pipeline/conductor.hpp"

namespace hpcscreen::pipeline {

struct attempt_summary {
  int attempt = 1;
  bool interrupted = false;
  double wall_s = 0;
  double gather_s = 0;
  int n_ranks = 1;
  std::string mpi_description;
};

// This rank's figures for run.json's per_rank list (the workload's under "workload").
json rank_report_json(const rank_result& r, const run_context& c, int rank, double busy_s);

// Rank 0. Writes every output it can even when one fails (each is written atomically), and
// returns the run's exit status.
int write_run_outputs(const run_context& c, const attempt_summary& a,
                      const std::vector<json>& rank_reports);

}  // namespace hpcscreen::pipeline
