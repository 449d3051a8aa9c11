#pragma once
// Bounded top-K of scored records (a ranking, not an MPI rank). Ties are broken by the
// record key (shard, row), so the ranking is the same for any rank count and chunk order.
#include <cstddef>
#include <string>
#include <vector>

#include "hpcscreen/core/record.hpp"

namespace hpcscreen::ranking {

struct hit {
  float score = 0;  // the value it is ranked by
  record_key key;
  std::string id;
  std::vector<std::string> fields;  // library fields shown in hits.csv (a compound's SMILES)
  std::vector<float> scores;        // the record's whole score vector, score among them
};

struct order {
  bool higher_is_better = true;
  // True when a ranks before b.
  bool operator()(const hit& a, const hit& b) const {
    if (a.score != b.score) return higher_is_better ? a.score > b.score : a.score < b.score;
    return a.key < b.key;
  }
};

class topk {
 public:
  topk(std::size_t k, bool higher_is_better) : k_(k), order_{higher_is_better} {}
  // Keeps h if it is among the best k seen so far. O(log k).
  void offer(hit h);
  // Best first.
  std::vector<hit> sorted() const;
  std::size_t size() const { return heap_.size(); }

 private:
  std::size_t k_;
  order order_;
  std::vector<hit> heap_;  // a heap whose front is the worst kept hit
};

}  // namespace hpcscreen::ranking
