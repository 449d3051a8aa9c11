#include "hpcscreen/tokenize/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include "hpcscreen/core/error.hpp"

namespace hpcscreen::tokenize {

tokenizer_config parse_tokenizer_config(const std::string& json_text,
                                        const std::string& model_path) {
  const std::string where = "model '" + model_path + "': hpcscreen.json: tokenizer: ";
  tokenizer_config c;
  try {
    const auto j = nlohmann::json::parse(json_text).at("tokenizer");
    c.tokens = j.at("tokens").get<std::vector<std::string>>();
    c.pad = j.value("pad_token", c.pad);
    c.unk = j.value("unk_token", c.unk);
    c.cls = j.value("cls_token", c.cls);
    c.sep = j.value("sep_token", c.sep);
    c.add_special_tokens = j.value("add_special_tokens", true);
    c.max_length = j.at("max_length").get<std::int64_t>();
    c.uppercase = j.value("uppercase", true);
    const auto unknown = j.value("unknown", std::string("unk"));
    if (unknown != "unk" && unknown != "reject") {
      throw model_error(where + "'unknown' is '" + unknown + "', expected 'unk' or 'reject'");
    }
    c.reject_unknown = unknown == "reject";
    const auto map = j.value("map", nlohmann::json::object());  // items() must not outlive it
    for (const auto& [from, to] : map.items()) {
      const auto target = to.get<std::string>();
      if (from.size() != 1 || target.size() != 1) {
        throw model_error(where + "map entries must map one letter to one letter ('" + from +
                          "' → '" + target + "')");
      }
      c.map.emplace_back(from[0], target[0]);
    }
  } catch (const nlohmann::json::exception& e) {
    throw model_error(where + "malformed or missing field: " + e.what());
  }
  if (c.max_length <= (c.add_special_tokens ? 2 : 0)) {
    throw model_error(where + "max_length " + std::to_string(c.max_length) +
                      " leaves no room for residues");
  }
  return c;
}

tokenizer::tokenizer(tokenizer_config c) : config_(std::move(c)) {
  by_char_.fill(-1);
  auto find = [&](const std::string& t, bool required) -> std::int64_t {
    for (std::size_t i = 0; i < config_.tokens.size(); ++i)
      if (config_.tokens[i] == t) return static_cast<std::int64_t>(i);
    if (required)
      throw model_error("tokenizer: special token '" + t + "' is not in the token list");
    return -1;
  };
  pad_id_ = find(config_.pad, true);
  unk_id_ = find(config_.unk, !config_.reject_unknown);
  if (config_.add_special_tokens) {
    cls_id_ = find(config_.cls, true);
    sep_id_ = find(config_.sep, true);
  }
  for (std::size_t i = 0; i < config_.tokens.size(); ++i) {
    const auto& t = config_.tokens[i];
    if (t.size() == 1) by_char_[static_cast<unsigned char>(t[0])] = static_cast<std::int64_t>(i);
  }
}

encoded tokenizer::encode(std::string_view s) const {
  encoded e;
  auto fail = [&](std::string reason, std::string detail) {
    e.ok = false;
    e.ids.clear();
    e.reason = std::move(reason);
    e.detail = std::move(detail);
    return e;
  };
  if (!s.empty() && s.back() == '*') {
    s.remove_suffix(1);
    e.stop_removed = true;
  }
  if (s.empty())
    return fail("empty_sequence",
                e.stop_removed ? "the sequence is only a stop '*'" : "the sequence is empty");
  e.ids.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    const bool letter = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (!letter) {
      std::string what = c >= '0' && c <= '9' ? std::string("digit '") + static_cast<char>(c) + "'"
                         : c == '*'           ? std::string("'*' (stop) inside the sequence")
                         : c >= 0x21 && c < 0x7f ? std::string("'") + static_cast<char>(c) + "'"
                                                 : "byte " + std::to_string(static_cast<int>(c));
      return fail("invalid_character", what + " at residue " + std::to_string(i + 1));
    }
    if (config_.uppercase && c >= 'a' && c <= 'z') c = static_cast<unsigned char>(c - 'a' + 'A');
    for (const auto& [from, to] : config_.map) {
      if (c == static_cast<unsigned char>(from)) {
        c = static_cast<unsigned char>(to);
        ++e.n_mapped;
        break;
      }
    }
    const auto id = by_char_[c];
    if (id < 0) {
      if (config_.reject_unknown) {
        return fail("unknown_residue", std::string("'") + static_cast<char>(c) + "' at residue " +
                                           std::to_string(i + 1) +
                                           " is not in the model's vocabulary");
      }
      ++e.n_unknown;
      e.ids.push_back(unk_id_);
    } else {
      e.ids.push_back(id);
    }
  }
  if (e.n_unknown == e.ids.size()) {
    return fail("all_unknown", "none of the " + std::to_string(e.ids.size()) +
                                   " residues is in the model's vocabulary");
  }
  e.ok = true;
  return e;
}

std::vector<window> plan_windows(std::int64_t length, std::int64_t window_size,
                                 std::int64_t overlap) {
  HPCSCREEN_ASSERT(window_size > 0 && overlap >= 0 && overlap < window_size);
  if (length <= window_size) return {{0, length, 0, length}};
  std::vector<window> w;
  const auto stride = window_size - overlap;
  for (std::int64_t begin = 0;; begin += stride) {
    if (begin + window_size >= length) {
      w.push_back({length - window_size, length, 0, 0});
      break;
    }
    w.push_back({begin, begin + window_size, 0, 0});
  }
  w.front().keep_begin = 0;
  for (std::size_t k = 0; k + 1 < w.size(); ++k) {
    const auto overlap_begin = w[k + 1].begin, overlap_end = w[k].end;
    const auto split = overlap_begin + (overlap_end - overlap_begin) / 2;
    w[k].keep_end = split;
    w[k + 1].keep_begin = split;
  }
  w.back().keep_end = length;
  return w;
}

}  // namespace hpcscreen::tokenize
