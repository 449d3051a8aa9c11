#include "hpcscreen/ranking/topk.hpp"

#include <algorithm>

namespace hpcscreen::ranking {

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

}  // namespace hpcscreen::ranking
