#include "hpcscreen/report/report.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"
#include "hpcscreen/pack/compound_readers.hpp"
#include "hpcscreen/pipeline/registry.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hpcscreen::report {
namespace {

// HTML text of s, shown_text's bytes (the page is UTF-8: a Latin-1 id or a NUL is \xNN).
std::string escape(const std::string& s) {
  std::string out;
  for (const char c : shown_text(s)) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string fmt(double v, const char* f = "%.4g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string number(const json& j) {
  if (j.is_number_unsigned() || j.is_number_integer()) {
    auto s = std::to_string(j.get<long long>());
    for (int i = static_cast<int>(s.size()) - 3; i > (s[0] == '-' ? 1 : 0); i -= 3)
      s.insert(static_cast<std::size_t>(i), ",");
    return s;
  }
  if (j.is_number()) return fmt(j.get<double>());
  if (j.is_string()) return escape(j.get<std::string>());
  return escape(j.dump());
}

const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                         "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

std::string histogram_svg(std::vector<float> values, std::size_t bins) {
  if (values.empty()) return "<p>No scores were sampled.</p>";
  const auto [lo_it, hi_it] = std::minmax_element(values.begin(), values.end());
  double lo = *lo_it, hi = *hi_it;
  if (hi <= lo) hi = lo + 1;
  std::vector<std::size_t> count(bins, 0);
  for (const auto v : values) {
    auto b = static_cast<std::size_t>((v - lo) / (hi - lo) * static_cast<double>(bins));
    ++count[std::min(b, bins - 1)];
  }
  const auto top = *std::max_element(count.begin(), count.end());
  const double w = 640, h = 200, bw = w / static_cast<double>(bins);
  std::ostringstream s;
  s << "<svg id=\"histogram-svg\" width=\"" << w + 60 << "\" height=\"" << h + 40
    << "\" xmlns=\"http://www.w3.org/2000/svg\">";
  for (std::size_t i = 0; i < bins; ++i) {
    const double bh = top ? h * static_cast<double>(count[i]) / static_cast<double>(top) : 0;
    s << "<rect class=\"bar\" x=\"" << 50 + static_cast<double>(i) * bw << "\" y=\"" << h - bh
      << "\" width=\"" << bw - 1 << "\" height=\"" << bh << "\" fill=\"#1f77b4\"><title>"
      << count[i] << "</title></rect>";
  }
  s << "<text x=\"50\" y=\"" << h + 18 << "\" font-size=\"12\">" << fmt(lo) << "</text>";
  s << "<text x=\"" << 50 + w << "\" y=\"" << h + 18 << "\" font-size=\"12\" text-anchor=\"end\">"
    << fmt(hi) << "</text>";
  s << "<text x=\"0\" y=\"12\" font-size=\"12\">" << top << "</text></svg>";
  s << "<p class=\"note\">" << values.size() << " scores sampled (every "
    << run::chunk_record::sample_every << "th row) from the committed chunks.</p>";
  return s.str();
}

// Cumulative records per rank against time since the first commit.
std::string throughput_svg(const std::vector<run::chunk_record>& recs) {
  std::map<std::pair<int, int>, std::vector<std::pair<double, double>>> series;  // (attempt, rank)
  double t0 = 1e300, t1 = 0, top = 0;
  for (const auto& r : recs) {
    if (r.end_time_s <= 0) continue;
    t0 = std::min(t0, r.end_time_s - r.elapsed_s);
    t1 = std::max(t1, r.end_time_s);
  }
  if (t1 <= 0) return "<p>No chunk was committed.</p>";
  std::vector<const run::chunk_record*> sorted;
  for (const auto& r : recs) sorted.push_back(&r);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return a->end_time_s < b->end_time_s; });
  std::map<std::pair<int, int>, double> total;
  for (const auto* r : sorted) {
    auto& pts = series[{r->attempt, r->rank}];
    auto& n = total[{r->attempt, r->rank}];
    if (pts.empty()) pts.emplace_back(r->end_time_s - r->elapsed_s - t0, 0);
    n += static_cast<double>(r->counts.n_read);
    pts.emplace_back(r->end_time_s - t0, n);
    top = std::max(top, n);
  }
  const double w = 640, h = 220, span = std::max(t1 - t0, 1e-3);
  std::ostringstream s;
  s << "<svg id=\"throughput-svg\" width=\"" << w + 180 << "\" height=\"" << h + 40
    << "\" xmlns=\"http://www.w3.org/2000/svg\">";
  s << "<line x1=\"50\" y1=\"" << h << "\" x2=\"" << 50 + w << "\" y2=\"" << h
    << "\" stroke=\"#888\"/>";
  int k = 0;
  for (const auto& [key, pts] : series) {
    s << "<polyline class=\"rank-line\" fill=\"none\" stroke-width=\"2\" stroke=\""
      << palette[k % 8] << "\" points=\"";
    for (const auto& [t, n] : pts)
      s << 50 + w * t / span << ',' << h - h * n / std::max(top, 1.0) << ' ';
    s << "\"/><text x=\"" << w + 60 << "\" y=\"" << 16 + 16 * k << "\" font-size=\"12\" fill=\""
      << palette[k % 8] << "\">attempt " << key.first << ", rank " << key.second << "</text>";
    ++k;
  }
  s << "<text x=\"50\" y=\"" << h + 18 << "\" font-size=\"12\">0 s</text><text x=\"" << 50 + w
    << "\" y=\"" << h + 18 << "\" font-size=\"12\" text-anchor=\"end\">" << fmt(span, "%.1f")
    << " s</text><text x=\"0\" y=\"12\" font-size=\"12\">" << static_cast<long long>(top)
    << "</text></svg>";
  return s.str();
}

std::vector<std::vector<std::string>> read_csv_rows(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  if (!fs::exists(path)) return rows;
  // The run's own CSV, read as bytes: an id may hold any byte, NUL included (the input
  // readers' checks for binary data are for libraries, not for hpcscreen's outputs).
  if (is_special_file(path)) throw run_error("'" + path + "' is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw run_error("cannot read '" + path + "'");
  std::string line, record;
  std::vector<std::string> fields;
  auto next_line = [&](std::string& l) {
    if (!std::getline(in, l)) return false;
    if (!l.empty() && l.back() == '\r') l.pop_back();
    return true;
  };
  while (next_line(line)) {
    record = line;
    while (!pack::split_csv_record(record, ',', fields) && next_line(line))
      record += "\n" + line;
    rows.push_back(fields);
  }
  return rows;
}

// A run cut off hard (SIGKILL, node failure) has committed chunks but no run.json: its summary
// comes from run_config.json and the chunk records alone.
json summary_from_records(const std::string& run_dir, const std::vector<run::chunk_record>& recs,
                          const std::map<std::string, std::uint64_t>& reasons) {
  const auto config_path = fs::path(run_dir) / "run_config.json";
  if (is_special_file(config_path.string()))
    throw run_error("'" + config_path.string() + "' is not a regular file");
  std::ifstream in(config_path);
  if (!in) {
    throw run_error("'" + run_dir +
                    "' has neither run.json nor run_config.json: it is not an hpcscreen run "
                    "folder");
  }
  const auto config = json::parse(in);
  const auto& id = config.at("identity");
  json r;
  r["workload"] = id.value("workload", "");
  std::uint64_t read = 0, scored = 0, rejected = 0, failed = 0;
  for (const auto& c : recs) {
    read += c.counts.n_read;
    scored += c.counts.n_scored;
    rejected += c.counts.n_rejected;
    failed += c.counts.n_failed;
  }
  const auto total = id.value("n_records", std::uint64_t{0});
  r["complete"] = false;
  r["accounting_ok"] = read == scored + rejected + failed;
  r["records_total"] = total;
  r["records_read"] = read;
  r["records_scored"] = scored;
  r["records_rejected"] = rejected;
  r["records_failed"] = failed;
  r["records_pending"] = total - std::min(total, read);
  r["chunks_committed"] = recs.size();
  r["chunks_total"] = id.value("n_chunks", std::uint64_t{0});
  const auto attempts = config.value("attempts", json::array());
  r["attempt"] = attempts.size();
  if (!attempts.empty()) {  // what the last attempt started with
    r["ranks"] = attempts.back().value("ranks", 0);
    r["threads_per_rank"] = attempts.back().value("threads_per_rank", 0);
  }
  r["reject_reasons"] = reasons;
  r["failed_shards"] = json::object();
  r["library"] = {{"path", id.value("library", "")}};
  r["versions"] = json::object();
  r["rebuilt_from_chunk_records"] = true;
  return r;
}

}  // namespace

namespace {

// A run still going: it holds the folder's lock and has not yet written this attempt's run.json
// (a run.json there is an earlier attempt's). Once it has, its outputs are final, lock or not.
bool run_in_progress(const std::string& run_dir) {
  if (!run::run_folder_in_use(run_dir)) return false;
  try {
    const auto config = run::read_json_file((fs::path(run_dir) / "run_config.json").string());
    const auto r = run::read_json_file((fs::path(run_dir) / "run.json").string());
    return r.value("attempt", std::size_t{0}) != config.at("attempts").size();
  } catch (const std::exception&) {
    return true;  // no run.json of any attempt yet
  }
}

// The page, drawn in memory.
std::string draw_report(const std::string& run_dir, const report_options& options, bool running) {
  if (!fs::is_directory(run_dir)) {
    throw run_error("'" + run_dir + "' " + (fs::exists(run_dir) ? "is not a folder" : "does not exist") +
                    ": give a run folder (one with run.json or run_config.json)");
  }
  std::vector<run::chunk_record> recs;
  std::vector<float> sample;
  std::map<std::string, std::uint64_t> reasons_by_code;  // for a run without run.json
  for (const auto id : run::committed_chunks(run_dir)) {
    try {
      auto rec = run::read_chunk_record(run_dir, id);
      for (const auto& x : rec.rejects) ++reasons_by_code[x.reason];
      sample.insert(sample.end(), rec.score_sample.begin(), rec.score_sample.end());
      rec.hit_lists.clear();  // the page needs counts and times of each chunk, not its lists
      rec.rejects.clear();
      rec.score_sample.clear();
      recs.push_back(std::move(rec));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hpcscreen: warning: chunk record '%s' cannot be read (%s); left out\n",
                   run::chunk_record_path(run_dir, id).c_str(), e.what());
    }
  }
  // A run still going: its run.json, if any, is an earlier attempt's; the records say more.
  json r;
  try {
    if (const auto path = fs::path(run_dir) / "run.json"; !running && fs::exists(path)) {
      r = run::read_json_file(path.string());
      if (!r.is_object()) throw run_error("'" + run_dir + "/run.json' is not a JSON object");
    } else {
      r = summary_from_records(run_dir, recs, reasons_by_code);
    }
  } catch (const nlohmann::json::exception& e) {
    throw run_error("'" + run_dir + "': run.json or run_config.json is malformed: " + e.what());
  }

  std::ostringstream h;
  h << "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hpcscreen "
    << escape(r.value("workload", ""))
    << " report</"
       "title><style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:"
       "collapse}"
       "td,th{border:1px solid #ccc;padding:3px "
       "8px;text-align:left;vertical-align:middle}th{background:#eee}"
       ".bad{color:#b00;font-weight:bold}.good{color:#070;font-weight:bold}.note{color:#666;font-"
       "size:90%}"
       "td.mol "
       "svg{display:block}td:last-child{word-break:break-all;max-width:380px}</style></"
       "head><body>\n";
  h << "<h1>hpcscreen " << escape(r.value("workload", "")) << " report</h1>\n";
  const bool complete = r.value("complete", false);
  const bool accounting_ok = r.value("accounting_ok", false);
  if (running) {
    h << "<p id=\"status\" class=\"note\">In progress: an hpcscreen run is writing this folder "
         "now (it holds its lock). This page shows the chunks committed so far; run hpcscreen "
         "report again when the run has ended.</p>\n";
  } else {
    h << "<p id=\"status\" class=\"" << (complete && accounting_ok ? "good" : "bad") << "\">"
      << (complete ? "Complete." : "Not complete: resume the run with --resume.") << ' '
      << (r.value("rebuilt_from_chunk_records", false)
              ? "The run ended without run.json (cut off hard); this summary comes from its "
                "committed chunks. "
              : "")
      << (accounting_ok ? "Every record is accounted for." : "ACCOUNTING PROBLEM: see run.json.")
      << "</p>\n";
  }

  h << "<h2>Summary</h2><table id=\"summary\">";
  auto row = [&](const std::string& k, const std::string& v) {
    h << "<tr><th>" << k << "</th><td>" << v << "</td></tr>";
  };
  for (const char* k : {"records_total", "records_read", "records_scored", "records_rejected",
                        "records_failed", "records_pending"}) {
    if (r.contains(k)) row(k, number(r[k]));
  }
  row("wall time (this attempt)", format_duration(r.value("wall_time_s", 0.0)));
  row("throughput (this attempt)",
      fmt(r.value("throughput_records_per_s", 0.0), "%.0f") + " records/s");
  row("ranks × threads",
      std::to_string(r.value("ranks", 0)) + " × " + std::to_string(r.value("threads_per_rank", 0)));
  row("attempts", std::to_string(r.value("attempt", 0)));
  if (r.contains("load_balance")) {
    row("load balance (this attempt)",
        "chunks per rank " + escape(r["load_balance"]["chunks_per_rank"].dump()) +
            ", records max/mean " +
            fmt(r["load_balance"]["records_max_over_mean"].get<double>(), "%.3f"));
  }
  if (r.contains("coordination")) {
    row("coordination cost",
        fmt(100 * r["coordination"]["fraction_of_wall"].get<double>(), "%.3f") + "% of wall time");
  }
  row("chunks committed", number(r["chunks_committed"]) + " of " + number(r["chunks_total"]));
  // The workload's own section of run.json (data_schemas/run_folder.md).
  const auto section = r.value(r.value("workload", ""), json::object());
  if (section.contains("padding_fraction"))
    row("padding fraction", fmt(section["padding_fraction"].get<double>(), "%.3f"));
  // Every model: name, file and checksum (the checksums fix the run, run_config.json).
  json checksums = json::array();
  if (std::ifstream cfg(fs::path(run_dir) / "run_config.json"); cfg) {
    try {
      checksums = json::parse(cfg).at("identity").value("model_checksums", json::array());
    } catch (const std::exception&) {  // the page shows what it can
    }
  }
  json paths = r.contains("model") ? r["model"].value("paths", json::array()) : json::array();
  if (paths.empty() && r.contains("model") && r["model"].value("path", "") != "")
    paths.push_back(r["model"]["path"]);
  json names = json::array();
  for (const auto& m : section.value("model_list", json::array())) names.push_back(m.value("name", ""));
  if (names.empty() && section.contains("model")) names.push_back(section["model"].value("name", ""));
  for (std::size_t i = 0; i < paths.size(); ++i) {
    std::string text = (i < names.size() && names[i].is_string() && !names[i].get<std::string>().empty()
                            ? "<b>" + escape(names[i].get<std::string>()) + "</b> "
                            : std::string()) +
                       escape(paths[i].is_string() ? paths[i].get<std::string>() : paths[i].dump());
    if (i < checksums.size() && checksums[i].is_string())
      text += " <small>checksum " + escape(checksums[i].get<std::string>()) + "</small>";
    row(paths.size() > 1 ? "model " + std::to_string(i + 1) : std::string("model"), text);
  }
  if (section.contains("precision") && section["precision"].is_object()) {
    const auto& p = section["precision"];
    std::string text = escape(p.value("used", "?")) + " (requested " +
                       escape(p.value("requested", "?")) + ")";
    if (p.contains("reason") && p["reason"].is_string()) text += ": " + escape(p["reason"].get<std::string>());
    if (p.contains("isa_found")) text += " <small>ISA " + number(p["isa_found"]) + "</small>";
    row("precision", text);
  }
  if (section.contains("config") && section["config"].contains("embeddings")) {
    std::string text = number(section["config"]["embeddings"]);
    if (section.contains("embeddings")) text += " <small>" + number(section["embeddings"]) + "</small>";
    row("embeddings", text);
  }
  row("library", escape(r["library"].value("path", "")));
  if (r.contains("scheduler") && r["scheduler"].value("name", "none") != "none") {
    row("scheduler", escape(r["scheduler"]["name"].get<std::string>()) + " job " +
                         escape(r["scheduler"]["job_id"].get<std::string>()));
  }
  for (const auto& [k, v] : r["versions"].items()) row(escape(k), number(v));
  // (bound first: iterating items() of the temporary value() returns would read freed memory)
  const auto workload_versions = section.value("versions", json::object());
  for (const auto& [k, v] : workload_versions.items()) row(escape(k), number(v));
  h << "</table>\n";

  // The first hit list run.json names, a file of the run folder (hits.csv for every workload so
  // far, and for runs from before run.json named them).
  std::string first_hit_list = "hits.csv", ranked_by;
  if (const auto files = r.value("hit_files", json::array());
      files.is_array() && !files.empty() && files[0].is_object()) {
    const auto& f = files[0];
    if (f.contains("file") && f["file"].is_string()) {
      const auto name = fs::path(f["file"].get<std::string>()).filename().string();
      if (!name.empty() && name != "." && name != "..") first_hit_list = name;
    }
    if (f.contains("rank_by") && f["rank_by"].is_string()) ranked_by = f["rank_by"];
  }
  const auto hits = read_csv_rows((fs::path(run_dir) / first_hit_list).string());
  // Each hit is drawn by its library kind (a structure, a thumbnail), when the kind can.
  const pipeline::library_kind* kind = nullptr;
  for (const auto& k : pipeline::library_kinds()) {
    if (k.name == r.value("library_kind", std::string()) && k.depict) kind = &k;
  }
  // Runs from before library kinds drew their hits: a SMILES column means compounds.
  if (!kind && !hits.empty() &&
      std::find(hits[0].begin(), hits[0].end(), "smiles") != hits[0].end()) {
    for (const auto& k : pipeline::library_kinds()) {
      if (k.name == "compounds" && k.depict) kind = &k;
    }
  }
  const auto library_dir =
      r.contains("library") ? r["library"].value("path", std::string()) : std::string();
  if (!hits.empty()) {
    h << "<h2>Top hits</h2>";
    if (!ranked_by.empty())
      h << "<p class=\"note\">" << escape(first_hit_list) << ", ranked by " << escape(ranked_by)
        << "</p>";
    h << "<table id=\"hits\"><tr>";
    if (kind) h << "<th>" << (kind->name == "compounds" ? "structure" : "picture") << "</th>";
    for (const auto& c : hits[0]) h << "<th>" << escape(c) << "</th>";
    h << "</tr>\n";
    for (std::size_t i = 1; i < hits.size() && i <= options.max_hits; ++i) {
      h << "<tr class=\"hit\">";
      if (kind) {
        std::map<std::string, std::string> hit;
        for (std::size_t k = 0; k < hits[0].size() && k < hits[i].size(); ++k)
          hit[hits[0][k]] = hits[i][k];
        std::string picture;
        try {
          picture = kind->depict(hit, library_dir);
        } catch (const std::exception& e) {
          picture = "<span class=\"note\">" + escape(e.what()) + "</span>";
        }
        h << "<td class=\"mol\">" << picture << "</td>";
      }
      for (const auto& c : hits[i]) h << "<td>" << escape(c) << "</td>";
      h << "</tr>\n";
    }
    h << "</table>\n";
  }

  h << "<h2>Score distribution</h2>";
  if (r.contains("sampled_score") && r["sampled_score"].is_string())
    h << "<p class=\"note\">" << escape(r["sampled_score"].get<std::string>()) << "</p>";
  h << "<div id=\"histogram\">" << histogram_svg(sample, options.histogram_bins) << "</div>\n";
  h << "<h2>Throughput over time</h2><div id=\"throughput\">" << throughput_svg(recs)
    << "<p class=\"note\">Records done by each rank against time since the first chunk "
       "started.</p></div>\n";

  h << "<h2>Rejected records</h2><table id=\"rejects\"><tr><th>reason</th><th>records</th></tr>";
  std::vector<std::pair<std::uint64_t, std::string>> reasons;
  for (const auto& [k, v] : r["reject_reasons"].items())
    reasons.emplace_back(v.get<std::uint64_t>(), k);
  std::sort(reasons.rbegin(), reasons.rend());
  for (const auto& [n, k] : reasons)
    h << "<tr><td>" << escape(k) << "</td><td>" << n << "</td></tr>";
  h << "</table><p class=\"note\">Every rejected record is listed in rejects.csv with its shard, "
       "row and reason.</p>\n";
  if (!r["failed_shards"].empty()) {
    h << "<h2>Failed shards</h2><table "
         "id=\"failed\"><tr><th>shard</th><th>rows</th><th>error</th></tr>";
    for (const auto& [k, v] : r["failed_shards"].items()) {
      h << "<tr><td>" << escape(k) << "</td><td>" << number(v["rows_failed"]) << "</td><td>"
        << escape(v["error"].get<std::string>()) << "</td></tr>";
    }
    h << "</table>\n";
  }
  h << "</body></html>\n";
  return h.str();
}

}  // namespace

std::string write_report(const std::string& run_dir, const report_options& options) {
  try {
    // A run that ended while its page was drawn has written its own outputs since: drawn again.
    const bool running = run_in_progress(run_dir);
    auto html = draw_report(run_dir, options, running);
    if (running && !run_in_progress(run_dir)) html = draw_report(run_dir, options, false);
    // A temporary of this process's own: the run may be writing its page at the same moment.
    const auto path = (fs::path(run_dir) / "report.html").string();
    run::write_file_atomically(path, html, ".tmp." + std::to_string(::getpid()));
    return path;
  } catch (const nlohmann::json::exception& e) {
    // A run.json (or run_config.json) edited or damaged: a key of the wrong type.
    throw run_error("'" + run_dir +
                    "': run.json or run_config.json holds a value of the wrong "
                    "type (" +
                    e.what() +
                    "); run the same command with --resume to write run.json "
                    "again, or move it away to draw the report from the chunk records");
  }
}

}  // namespace hpcscreen::report
