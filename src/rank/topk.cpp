#include "hpcscreen/rank/topk.hpp"

#include <algorithm>

namespace hpcscreen::rank {

void topk::offer(hit h) {
  if (k_ == 0) return;
  if (heap_.size() < k_) {
    heap_.push_back(std::move(h));
    std::push_heap(heap_.begin(), heap_.end(), order_);
  } else if (order_(h, heap_.front())) {
    std::pop_heap(heap_.begin(), heap_.end(), order_);
    heap_.back() = std::move(h);
    std::push_heap(heap_.begin(), heap_.end(), order_);
  }
}

std::vector<hit> topk::sorted() const {
  auto out = heap_;
  std::sort(out.begin(), out.end(), order_);
  return out;
}

std::vector<hit> merge(const std::vector<std::vector<hit>>& lists, std::size_t k,
                       bool higher_is_better) {
  std::vector<hit> all;
  for (const auto& l : lists) all.insert(all.end(), l.begin(), l.end());
  const order o{higher_is_better};
  std::sort(all.begin(), all.end(), o);
  all.erase(std::unique(all.begin(), all.end(),
                        [](const hit& a, const hit& b) { return a.key == b.key; }),
            all.end());
  if (all.size() > k) all.resize(k);
  return all;
}

}  // namespace hpcscreen::rank
