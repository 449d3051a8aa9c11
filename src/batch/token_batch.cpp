#include "hpcscreen/batch/token_batch.hpp"

#include <algorithm>
#include <numeric>

#include "hpcscreen/core/error.hpp"

namespace hpcscreen::batch {

std::vector<std::vector<std::size_t>> plan_length_aware(const std::vector<std::int64_t>& lengths,
                                                        const token_budget& budget) {
  HPCSCREEN_ASSERT(budget.max_tokens > 0 && budget.max_sequences > 0);
  std::vector<std::size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return lengths[a] > lengths[b]; });
  std::vector<std::vector<std::size_t>> batches;
  std::int64_t longest = 0;
  for (const auto i : order) {
    if (!batches.empty()) {
      const auto count = static_cast<std::int64_t>(batches.back().size());
      if (count + 1 <= budget.max_sequences && (count + 1) * longest <= budget.max_tokens) {
        batches.back().push_back(i);
        continue;
      }
    }
    batches.push_back({i});
    longest = lengths[i];
  }
  return batches;
}

std::vector<std::vector<std::size_t>> plan_fixed(std::size_t n_items, std::size_t batch_size) {
  HPCSCREEN_ASSERT(batch_size > 0);
  std::vector<std::vector<std::size_t>> batches;
  for (std::size_t i = 0; i < n_items; ++i) {
    if (i % batch_size == 0) batches.emplace_back();
    batches.back().push_back(i);
  }
  return batches;
}

padding_stats padding_of(const std::vector<std::vector<std::size_t>>& batches,
                         const std::vector<std::int64_t>& lengths) {
  padding_stats s;
  for (const auto& b : batches) {
    std::int64_t longest = 0;
    for (const auto i : b) {
      longest = std::max(longest, lengths[i]);
      s.real_tokens += static_cast<std::uint64_t>(lengths[i]);
    }
    s.padded_tokens += static_cast<std::uint64_t>(longest) * b.size();
  }
  return s;
}

}  // namespace hpcscreen::batch
