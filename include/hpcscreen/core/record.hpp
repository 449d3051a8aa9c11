#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hpcscreen {

// A record is named by where it lives: the shard's index in the manifest and its row there.
// This key orders ties in every ranking, so results never depend on rank count or chunk order.
struct record_key {
  std::uint32_t shard = 0;
  std::uint64_t row = 0;
  friend bool operator<(const record_key& a, const record_key& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.row < b.row;
  }
  friend bool operator==(const record_key& a, const record_key& b) {
    return a.shard == b.shard && a.row == b.row;
  }
};

// A record that could not be scored. `reason` is a stable code (e.g. "smiles_syntax"),
// `detail` the human-readable explanation.
struct reject {
  std::uint64_t row = 0;
  std::string id;
  std::string stage;
  std::string reason;
  std::string detail;
};

// Packed strings: all bytes back to back, offsets[i]..offsets[i+1] is string i.
// offsets has n+1 entries and starts at 0. This is also the on-disk layout of a shard field.
struct string_column {
  std::string bytes;
  std::vector<std::uint64_t> offsets{0};

  std::size_t size() const { return offsets.size() - 1; }
  std::string_view operator[](std::size_t i) const {
    return std::string_view(bytes).substr(offsets[i], offsets[i + 1] - offsets[i]);
  }
  void push_back(std::string_view s) {
    bytes.append(s.data(), s.size());
    offsets.push_back(bytes.size());
  }
  void clear() {
    bytes.clear();
    offsets.assign(1, 0);
  }
};

}  // namespace hpcscreen
