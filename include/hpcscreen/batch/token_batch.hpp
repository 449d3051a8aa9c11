#pragma once
// Token sequences → batches. Length-aware: sort by length and fill each batch up to a token
// budget (padded tokens = sequences × longest), so padding stays small. Fixed: input order,
// a fixed number per batch (what a simple script does; kept for the benchmark).
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hpcscreen::batch {

struct token_budget {
  std::int64_t max_tokens = 16384;  // padded tokens per batch
  std::int64_t max_sequences = 1024;
};

// lengths[i]: tokens of item i (special tokens included). Returns batches of item indices,
// longest first within a batch; ties keep input order. An item longer than max_tokens
// gets a batch of its own.
std::vector<std::vector<std::size_t>> plan_length_aware(const std::vector<std::int64_t>& lengths,
                                                        const token_budget& budget);
std::vector<std::vector<std::size_t>> plan_fixed(std::size_t n_items, std::size_t batch_size);

struct padding_stats {
  std::uint64_t real_tokens = 0;
  std::uint64_t padded_tokens = 0;  // batch size × longest, summed over batches
  double fraction() const {
    return padded_tokens
               ? 1.0 - static_cast<double>(real_tokens) / static_cast<double>(padded_tokens)
               : 0.0;
  }
};
padding_stats padding_of(const std::vector<std::vector<std::size_t>>& batches,
                         const std::vector<std::int64_t>& lengths);

}  // namespace hpcscreen::batch
