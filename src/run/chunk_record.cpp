#include "hpcscreen/run/chunk_record.hpp"

#include <nlohmann/json.hpp>

namespace hpcscreen::run {
namespace {
nlohmann::json hits_json(const std::vector<rank::hit>& hits) {
  auto a = nlohmann::json::array();
  for (const auto& h : hits) a.push_back({h.score, h.key.shard, h.key.row, h.id, h.text});
  return a;
}
std::vector<rank::hit> hits_parse(const nlohmann::json& a) {
  std::vector<rank::hit> out;
  for (const auto& h : a) {
    out.push_back({h[0].get<float>(),
                   {h[1].get<std::uint32_t>(), h[2].get<std::uint64_t>()},
                   h[3].get<std::string>(),
                   h[4].get<std::string>()});
  }
  return out;
}
}  // namespace

std::string hits_to_json(const std::vector<rank::hit>& hits) {
  return hits_json(hits).dump();
}
std::vector<rank::hit> hits_from_json(const std::string& text) {
  return hits_parse(nlohmann::json::parse(text));
}

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
  j["failure"] = r.failure;
  j["elapsed_s"] = r.elapsed_s;
  j["end_time_s"] = r.end_time_s;
  j["score_sample"] = r.score_sample;
  j["hits"] = hits_json(r.hits);
  auto rejects = nlohmann::json::array();
  for (const auto& x : r.rejects) rejects.push_back({x.row, x.id, x.stage, x.reason, x.detail});
  j["rejects"] = std::move(rejects);
  // Invalid UTF-8 in ids or SMILES must not stop a commit: replace it in the record.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
  r.failure = j.at("failure").get<std::string>();
  r.elapsed_s = j.at("elapsed_s").get<double>();
  r.end_time_s = j.value("end_time_s", 0.0);
  r.score_sample = j.value("score_sample", std::vector<float>{});
  r.hits = hits_parse(j.at("hits"));
  for (const auto& x : j.at("rejects")) {
    r.rejects.push_back({x[0].get<std::uint64_t>(), x[1].get<std::string>(),
                         x[2].get<std::string>(), x[3].get<std::string>(),
                         x[4].get<std::string>()});
  }
  return r;
}

}  // namespace hpcscreen::run
