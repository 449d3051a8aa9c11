#include "hpcscreen/run/chunk_record.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"

namespace hpcscreen::run {

namespace fs = std::filesystem;
namespace {

// Ids and SMILES are bytes, not always UTF-8 (a Latin-1 catalogue): a string that is not valid
// UTF-8 is stored as {"hex": "..."} so that hits.csv and rejects.csv get its bytes back exactly.
nlohmann::json text_json(const std::string& s) {
  if (valid_utf8(s)) return s;
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (const unsigned char c : s) {
    hex += digits[c >> 4];
    hex += digits[c & 0xF];
  }
  return {{"hex", hex}};
}

std::string text_parse(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  const auto hex = j.at("hex").get<std::string>();
  auto value = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::string s;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    s += static_cast<char>(value(hex[i]) * 16 + value(hex[i + 1]));
  return s;
}

nlohmann::json hits_json(const std::vector<ranking::hit>& hits) {
  auto a = nlohmann::json::array();
  for (const auto& h : hits) {
    auto fields = nlohmann::json::array();
    for (const auto& f : h.fields) fields.push_back(text_json(f));
    a.push_back({h.score, h.key.shard, h.key.row, text_json(h.id), fields, h.scores});
  }
  return a;
}

std::vector<ranking::hit> hits_parse(const nlohmann::json& a) {
  if (!a.is_array()) throw run_error("a hit list is not a list");
  std::vector<ranking::hit> out;
  for (const auto& h : a) {
    ranking::hit x{h.at(0).get<float>(),
                {h.at(1).get<std::uint32_t>(), h.at(2).get<std::uint64_t>()},
                text_parse(h.at(3)),
                {},
                h.at(5).get<std::vector<float>>()};
    for (const auto& f : h.at(4)) x.fields.push_back(text_parse(f));
    out.push_back(std::move(x));
  }
  return out;
}

}  // namespace

std::string to_json(const chunk_record& r) {
  nlohmann::json j;
  j["chunk"] = r.chunk_id;
  j["shard"] = r.shard;
  j["row_begin"] = r.row_begin;
  j["row_end"] = r.row_end;
  j["rank"] = r.rank;
  j["attempt"] = r.attempt;
  j["n_read"] = r.counts.n_read;
  j["n_scored"] = r.counts.n_scored;
  j["n_rejected"] = r.counts.n_rejected;
  j["n_failed"] = r.counts.n_failed;
  j["n_filtered"] = r.counts.n_filtered;
  j["failure"] = text_json(r.failure);
  j["elapsed_s"] = r.elapsed_s;
  j["end_time_s"] = r.end_time_s;
  j["score_sample"] = r.score_sample;
  auto lists = nlohmann::json::array();
  for (const auto& h : r.hit_lists) lists.push_back(hits_json(h));
  j["hit_lists"] = std::move(lists);
  auto rejects = nlohmann::json::array();
  for (const auto& x : r.rejects) {
    rejects.push_back({x.row, text_json(x.id), x.stage, x.reason, text_json(x.detail)});
  }
  j["rejects"] = std::move(rejects);
  auto outputs = nlohmann::json::array();
  for (const auto& f : r.outputs) outputs.push_back({f.file, f.bytes, f.checksum});
  j["outputs"] = std::move(outputs);
  return j.dump();
}

chunk_record chunk_record_from_json(const std::string& text) {
  const auto j = nlohmann::json::parse(text);
  chunk_record r;
  r.chunk_id = j.at("chunk").get<std::uint64_t>();
  r.shard = j.at("shard").get<std::uint32_t>();
  r.row_begin = j.at("row_begin").get<std::uint64_t>();
  r.row_end = j.at("row_end").get<std::uint64_t>();
  r.rank = j.at("rank").get<int>();
  r.attempt = j.at("attempt").get<int>();
  r.counts.n_read = j.at("n_read").get<std::uint64_t>();
  r.counts.n_scored = j.at("n_scored").get<std::uint64_t>();
  r.counts.n_rejected = j.at("n_rejected").get<std::uint64_t>();
  r.counts.n_failed = j.at("n_failed").get<std::uint64_t>();
  r.counts.n_filtered = j.value("n_filtered", std::uint64_t{0});
  r.failure = text_parse(j.at("failure"));
  r.elapsed_s = j.at("elapsed_s").get<double>();
  r.end_time_s = j.value("end_time_s", 0.0);
  r.score_sample = j.value("score_sample", std::vector<float>{});
  if (j.contains("hit_lists")) {
    if (!j.at("hit_lists").is_array()) throw run_error("hit_lists is not a list");
    for (const auto& h : j.at("hit_lists")) r.hit_lists.push_back(hits_parse(h));
  } else {  // written before 2026-12: the first key's list, then the further keys' lists
    r.hit_lists.push_back(hits_parse(j.at("hits")));
    // Records from before several rankings have no extra_hits.
    const auto extra = j.value("extra_hits", nlohmann::json::array());
    if (!extra.is_array()) throw run_error("extra_hits is not a list");
    for (const auto& h : extra) r.hit_lists.push_back(hits_parse(h));
  }
  for (const auto& x : j.at("rejects")) {
    r.rejects.push_back({x.at(0).get<std::uint64_t>(), text_parse(x.at(1)),
                         x.at(2).get<std::string>(), x.at(3).get<std::string>(),
                         text_parse(x.at(4))});
  }
  const auto outputs = j.value("outputs", nlohmann::json::array());
  if (!outputs.is_array()) throw run_error("outputs is not a list");
  for (const auto& f : outputs) {
    if (!f.is_array() || f.size() != 3) throw run_error("an output is not [file, bytes, checksum]");
    const auto file = f.at(0).get<std::string>();
    if (!is_plain_relative_path(file))
      throw run_error("an output file name '" + file + "' is not a path below the run folder");
    r.outputs.push_back({file, f.at(1).get<std::uint64_t>(), f.at(2).get<std::string>()});
  }
  return r;
}

void check_shape(const chunk_record& r, const record_shape& shape) {
  if (r.chunk_id >= shape.n_chunks || r.shard >= shape.n_shards || r.row_end < r.row_begin)
    throw run_error("it names a chunk or shard the run does not have");
  const auto& n = r.counts;
  if (n.n_read != r.row_end - r.row_begin || !n.balanced() || n.n_rejected != r.rejects.size() ||
      n.n_filtered > n.n_scored)
    throw run_error("its counts do not add up to its rows and rejects");
  for (std::size_t i = 0; i < r.rejects.size(); ++i) {
    const auto row = r.rejects[i].row;
    if (row < r.row_begin || row >= r.row_end || (i > 0 && row <= r.rejects[i - 1].row))
      throw run_error("a reject is not a row of the chunk, or is there twice");
  }
  const auto n_lists = r.hit_lists.size();
  // A chunk whose shard failed has no hits. Lists past the rankings must be empty: records
  // written before December 2026 held one (empty) list for runs without a ranking.
  if (n_lists < shape.n_hit_lists && r.counts.n_failed == 0)
    throw run_error("it holds " + std::to_string(n_lists) + " hit lists for the run's " +
                    std::to_string(shape.n_hit_lists) + " rankings");
  for (std::size_t k = 0; k < n_lists; ++k) {
    if (k >= shape.n_hit_lists && !r.hit_lists[k].empty())
      throw run_error("it holds hits for a ranking the run does not have");
    std::set<std::uint64_t> rows;
    for (const auto& h : r.hit_lists[k]) {
      if (h.key.shard != r.shard || h.key.row < r.row_begin || h.key.row >= r.row_end ||
          !rows.insert(h.key.row).second)
        throw run_error("a hit is not a row of the chunk, or is there twice");
      const auto finite = [](float v) { return std::isfinite(v); };
      if (!finite(h.score) || !std::all_of(h.scores.begin(), h.scores.end(), finite))
        throw run_error("a hit's score is not a finite number");
      if (h.scores.size() != shape.n_scores || h.fields.size() != shape.n_hit_fields)
        throw run_error("a hit has " + std::to_string(h.scores.size()) + " scores and " +
                        std::to_string(h.fields.size()) + " fields, not the run's " +
                        std::to_string(shape.n_scores) + " and " +
                        std::to_string(shape.n_hit_fields));
    }
  }
}

std::vector<output_file> describe_outputs(const std::string& dir,
                                          const std::vector<std::string>& files) {
  std::vector<output_file> out;
  for (const auto& f : files) {
    const auto path = (fs::path(dir) / f).string();
    out.push_back({f, fs::file_size(path), file_checksum(path)});
  }
  return out;
}

std::string damaged_output(const std::string& dir, const chunk_record& r, bool sizes_only) {
  for (const auto& f : r.outputs) {
    const auto path = (fs::path(dir) / f.file).string();
    std::error_code ec;
    const auto bytes = fs::file_size(path, ec);  // (a FIFO or a folder has none)
    if (ec) return f.file + " is missing";
    if (bytes != f.bytes) {
      return f.file + " holds " + std::to_string(bytes) + " bytes, " + std::to_string(f.bytes) +
             " were written";
    }
    if (sizes_only) continue;
    try {
      if (file_checksum(path) != f.checksum) return f.file + " is not the file written (checksum)";
    } catch (const std::exception& e) {
      return f.file + " cannot be read (" + e.what() + ")";
    }
  }
  return "";
}

}  // namespace hpcscreen::run
