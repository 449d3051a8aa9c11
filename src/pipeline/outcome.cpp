#include "hpcscreen/pipeline/chunk_ledger.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/pipeline/workload.hpp"
#include "hpcscreen/ranking/topk.hpp"

namespace hpcscreen::pipeline {

bool output_file_present(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) && std::filesystem::file_size(path, ec) > 0 &&
         !ec;
}

const std::vector<std::string>& hit_list_columns() {
  static const std::vector<std::string> columns = {"rank", "id", "score", "shard", "row"};
  return columns;
}

bool is_hit_list_column(const std::string& name) {
  const auto& c = hit_list_columns();
  return std::find(c.begin(), c.end(), name) != c.end();
}

void name_hit_files(std::vector<rank_key>& keys, const std::vector<std::string>& names) {
  for (std::size_t k = 0; k < keys.size(); ++k) {
    if (k == 0) {
      keys[k].hits_file = "hits.csv";
      continue;
    }
    std::string name = names.at(keys[k].index);
    for (auto& ch : name) {
      const bool plain =
          std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-';
      if (!plain) ch = '-';
    }
    keys[k].hits_file = "hits-" + name + ".csv";
  }
}

void score_layout::check_hit_files() const {
  std::map<std::string, std::string> by_file;  // hit-list file -> the key's name
  std::set<std::string> seen;
  for (const auto& k : keys) {
    const auto& name = names.at(k.index);
    if (!seen.insert(name).second)
      throw usage_error("--rank-by " + name + " is given twice; give each ranking once");
    HPCSCREEN_ASSERT_MSG(!k.hits_file.empty(), "the ranking by " + name + " names no hit list");
    // 255 bytes is a file name's limit on Linux file systems; the atomic write adds ".tmp".
    if (k.hits_file.size() + 4 > 255) {
      throw usage_error("--rank-by " + name + " would write a hit list whose file name has " +
                        std::to_string(k.hits_file.size()) +
                        " bytes, more than a file system allows (251); give the model or task a "
                        "shorter name");
    }
    const auto [it, fresh] = by_file.emplace(k.hits_file, name);
    if (!fresh) {
      throw usage_error("--rank-by " + name + " and --rank-by " + it->second +
                        " would both write " + it->first +
                        "; rename a model or task so that the file names differ");
    }
  }
}

const string_column& chunk_input::operator[](const std::string& name) const {
  for (std::size_t k = 0; k < names.size(); ++k)
    if (names[k] == name) return columns[k];
  throw shard_error("the chunk has no field '" + name + "'");
}

chunk_outcomes::chunk_outcomes(std::size_t n_rows, std::size_t n_scores)
    : n_scores_(n_scores), state_(n_rows, state::pending), scores_(n_rows * n_scores, 0.0f) {}

void chunk_outcomes::score(std::size_t i, const float* scores, const float* checked,
                           std::size_t n_checked) {
  HPCSCREEN_ASSERT_MSG(i < state_.size() && state_[i] == state::pending,
                       "row " + std::to_string(i) + " given a second outcome");
  for (std::size_t k = 0; k < n_scores_; ++k) {
    if (!std::isfinite(scores[k])) {
      reject(i, "infer", "non_finite_score", "the model returned " + format_score(scores[k]));
      return;
    }
  }
  for (std::size_t k = 0; k < n_checked; ++k) {
    if (!std::isfinite(checked[k])) {
      reject(i, "infer", "non_finite_output", "the model returned NaN or inf");
      return;
    }
  }
  std::copy(scores, scores + n_scores_, scores_.begin() + static_cast<std::ptrdiff_t>(i * n_scores_));
  state_[i] = state::scored;
}

void chunk_outcomes::reject(std::size_t i, std::string stage, std::string reason,
                            std::string detail) {
  HPCSCREEN_ASSERT_MSG(i < state_.size() && state_[i] == state::pending,
                       "row " + std::to_string(i) + " given a second outcome");
  state_[i] = state::rejected;
  rejects_[i] = {std::move(stage), std::move(reason), std::move(detail)};
}

std::size_t chunk_outcomes::count(state s) const {
  std::size_t n = 0;
  for (const auto x : state_) n += x == s;
  return n;
}

run::chunk_record open_record(const plan::chunk& c) {
  run::chunk_record rec;
  rec.chunk_id = c.id;
  rec.shard = c.shard;
  rec.row_begin = c.row_begin;
  rec.row_end = c.row_end;
  rec.counts.n_read = c.n_rows();
  return rec;
}

run::chunk_record close_chunk(const chunk_input& input, const chunk_outcomes& outcomes,
                              const score_layout& layout,
                              const std::vector<std::string>& hit_fields) {
  const auto& c = input.chunk;
  HPCSCREEN_ASSERT_MSG(outcomes.n_rows() == c.n_rows(),
                       std::to_string(outcomes.n_rows()) + " outcomes for " +
                           std::to_string(c.n_rows()) + " rows");
  HPCSCREEN_ASSERT_MSG(outcomes.count(chunk_outcomes::state::pending) == 0,
                       "chunk " + std::to_string(c.id) + " has rows without an outcome");
  auto rec = open_record(c);
  const auto& ids = input["id"];
  for (const auto& [i, r] : outcomes.rejections())
    rec.rejects.push_back({c.row_begin + i, std::string(ids[i]), r.stage, r.reason, r.detail});
  rec.counts.n_rejected = rec.rejects.size();
  rec.counts.n_scored = outcomes.count(chunk_outcomes::state::scored);

  const bool has_scores = outcomes.n_scores() > 0 && !layout.keys.empty();
  for (const auto& k : layout.keys) HPCSCREEN_ASSERT(k.index < outcomes.n_scores());
  for (const auto& f : layout.filters) HPCSCREEN_ASSERT(f.index < outcomes.n_scores());
  std::vector<const string_column*> shown;
  for (const auto& f : hit_fields) shown.push_back(&input[f]);
  std::vector<ranking::topk> tops;
  for (const auto& k : layout.keys)
    tops.emplace_back(layout.ranked && has_scores ? layout.top_k : 0, k.higher_is_better);
  for (std::size_t i = 0; i < outcomes.n_rows(); ++i) {
    if (outcomes.at(i) != chunk_outcomes::state::scored || !has_scores) continue;
    const float* v = outcomes.scores(i);
    const auto row = c.row_begin + i;
    if (row % run::chunk_record::sample_every == 0 && layout.sampled < outcomes.n_scores())
      rec.score_sample.push_back(v[layout.sampled]);
    if (!layout.ranked) continue;
    bool passes = true;
    for (const auto& f : layout.filters) passes = passes && f.passes(v[f.index]);
    if (!passes) {
      ++rec.counts.n_filtered;
      continue;
    }
    ranking::hit h{0, {c.shard, row}, std::string(ids[i]), {}, {v, v + outcomes.n_scores()}};
    for (const auto* col : shown) h.fields.emplace_back((*col)[i]);
    for (std::size_t k = 0; k < tops.size(); ++k) {
      h.score = v[layout.keys[k].index];
      tops[k].offer(h);
    }
  }
  for (const auto& t : tops) rec.hit_lists.push_back(t.sorted());
  return rec;
}

}  // namespace hpcscreen::pipeline
