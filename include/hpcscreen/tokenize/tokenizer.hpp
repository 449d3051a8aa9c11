#pragma once
// Protein sequences → token ids, with the vocabulary and rules taken from the model's
// hpcscreen.json (data_schemas/bert_contract.md), never from the code.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hpcscreen::tokenize {

struct tokenizer_config {
  std::vector<std::string> tokens;  // token id = index
  std::string pad = "[PAD]", unk = "[UNK]", cls = "[CLS]", sep = "[SEP]";
  bool add_special_tokens = true;          // [CLS] residues [SEP]
  std::int64_t max_length = 1024;          // model positions, special tokens included
  std::vector<std::pair<char, char>> map;  // applied after upper-casing, e.g. U→X
  bool uppercase = true;
  bool reject_unknown = false;  // false: unknown residues become [UNK] and are counted
};

// Parses the "tokenizer" object of hpcscreen.json. Throws model_error naming what is wrong.
tokenizer_config parse_tokenizer_config(const std::string& json_text,
                                        const std::string& model_path);

struct encoded {
  bool ok = false;
  std::vector<std::int64_t> ids;  // one per residue, no special tokens
  std::uint64_t n_unknown = 0;    // residues mapped to [UNK]
  std::uint64_t n_mapped = 0;     // residues rewritten by the map (e.g. U→X)
  bool stop_removed = false;      // a terminal '*' (stop codon) was dropped
  std::string reason, detail;     // when !ok
};

class tokenizer {
 public:
  explicit tokenizer(tokenizer_config c);
  encoded encode(std::string_view sequence) const;
  const tokenizer_config& config() const { return config_; }
  std::int64_t pad_id() const { return pad_id_; }
  std::int64_t cls_id() const { return cls_id_; }
  std::int64_t sep_id() const { return sep_id_; }
  std::int64_t n_special() const { return config_.add_special_tokens ? 2 : 0; }
  std::int64_t max_residues() const { return config_.max_length - n_special(); }

 private:
  tokenizer_config config_;
  std::array<std::int64_t, 256> by_char_{};  // -1: not a single-letter token
  std::int64_t pad_id_ = 0, unk_id_ = 0, cls_id_ = 0, sep_id_ = 0;
};

// Overlapping windows for a sequence longer than the model takes. Consecutive windows
// overlap by `overlap` residues (the last window is aligned to the end); in an overlap the
// first half of the residues is taken from the earlier window and the rest from the later
// one, so every residue is predicted with context on both sides where possible.
struct window {
  std::int64_t begin = 0, end = 0;            // residues fed to the model
  std::int64_t keep_begin = 0, keep_end = 0;  // residues whose prediction is kept from it
};
std::vector<window> plan_windows(std::int64_t length, std::int64_t window_size,
                                 std::int64_t overlap);

}  // namespace hpcscreen::tokenize
