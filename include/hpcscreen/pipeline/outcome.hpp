#pragma once
// What a workload makes of one chunk: for every row, a score vector or a reject; and how its
// scores are laid out and ranked. The pipeline alone turns outcomes into the chunk's ledger
// (chunk_ledger.hpp). A score that is not finite becomes a reject here, for every workload.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "hpcscreen/core/record.hpp"
#include "hpcscreen/plan/chunk_plan.hpp"

namespace hpcscreen::pipeline {

// A ranking of records by one of their scores, and the hit list it fills.
struct rank_key {
  std::size_t index = 0;  // into score_layout::names
  bool higher_is_better = true;
  std::string hits_file;  // the hit list's file name in the run folder
};

// A condition a record's score must meet to enter the hit lists ("activity > 0.5"). Records that
// fail it were still scored: they are counted as filtered, not rejected.
struct score_filter {
  std::size_t index = 0;
  bool less = true;  // score < value; otherwise score > value
  float value = 0;
  std::string text;  // as the user wrote it
  bool passes(float score) const { return less ? score < value : score > value; }
};

// What each record's score vector holds and how records are ranked by it.
struct score_layout {
  std::vector<std::string> names;  // one per score; empty: the workload keeps its own outputs
  std::vector<rank_key> keys;      // one hit list each; empty: nothing to rank
  std::size_t top_k = 100;  // records in each hit list
  bool ranked = true;  // false: no hit lists (e.g. annotate without --top-k)
  std::vector<score_filter> filters;  // all must pass for a record to enter a hit list
  // The score whose distribution is sampled (every chunk_record::sample_every-th row) for
  // report.html's histogram; none when it is past the scores.
  std::size_t sampled = 0;

  // Throws usage_error when two keys rank the same score or would write the same hit-list file
  // (names that differ only in characters a file name cannot hold, such as a-b:c and a:b-c).
  void check_hit_files() const;
};

// The columns every hit list starts with, before the record's scores and its shown fields:
// rank, id, score, shard, row. A library's kept column may not bear one of these names.
const std::vector<std::string>& hit_list_columns();
bool is_hit_list_column(const std::string& name);

// The hit lists' usual files, as a workload names them: its first ranking's list is hits.csv,
// each further one hits-<score name>.csv with every character but letters, digits, '.', '_' and
// '-' written as '-' (hits-m1-activity.csv for m1:activity).
void name_hit_files(std::vector<rank_key>& keys, const std::vector<std::string>& names);

// A chunk's rows as read from its shard, by field name.
struct chunk_input {
  plan::chunk chunk;
  std::string shard_file;
  std::vector<std::string> names;
  std::vector<string_column> columns;  // columns[k] holds field names[k] for the chunk's rows

  const string_column& operator[](const std::string& name) const;  // throws on an unknown name
  std::size_t n_rows() const { return chunk.n_rows(); }
};

class chunk_outcomes {
 public:
  enum class state : std::uint8_t { pending, scored, rejected };
  struct rejection {
    std::string stage, reason, detail;
  };

  chunk_outcomes(std::size_t n_rows, std::size_t n_scores);

  // Row i (within the chunk) is scored with scores[0, n_scores). `checked` are further outputs of
  // the record (per-residue values, embeddings) that must be finite too. A non-finite value turns
  // the row into a reject (non_finite_score / non_finite_output).
  void score(std::size_t i, const float* scores, const float* checked = nullptr,
             std::size_t n_checked = 0);
  void reject(std::size_t i, std::string stage, std::string reason, std::string detail);

  std::size_t n_rows() const { return state_.size(); }
  std::size_t n_scores() const { return n_scores_; }
  state at(std::size_t i) const { return state_[i]; }
  const float* scores(std::size_t i) const { return &scores_[i * n_scores_]; }
  const std::map<std::size_t, rejection>& rejections() const { return rejects_; }
  std::size_t count(state s) const;

 private:
  std::size_t n_scores_;
  std::vector<state> state_;
  std::vector<float> scores_;  // [n_rows, n_scores]
  std::map<std::size_t, rejection> rejects_;
};

}  // namespace hpcscreen::pipeline
