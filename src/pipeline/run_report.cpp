#include "hpcscreen/pipeline/run_report.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/pipeline/progress.hpp"
#include "hpcscreen/pipeline/signals.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;

namespace hpcscreen::pipeline {
namespace {

std::uint64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<std::uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

std::string host_name() {
  char h[256] = {};
  gethostname(h, sizeof h - 1);
  return h;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Peaks and per-rank settings combine by maximum, everything else by sum.
bool is_peak_key(const std::string& k) {
  return k.find("peak") != std::string::npos || ends_with(k, "_max") || ends_with(k, "_per_rank");
}

void combine_into(json& into, const json& from) {
  for (const auto& [k, v] : from.items()) {
    if (!into.contains(k)) {
      into[k] = v;
    } else if (v.is_object() && into[k].is_object()) {
      combine_into(into[k], v);
    } else if (v.is_number_unsigned() && into[k].is_number_unsigned()) {
      const auto a = into[k].get<std::uint64_t>(), b = v.get<std::uint64_t>();
      into[k] = is_peak_key(k) ? std::max(a, b) : a + b;
    } else if (v.is_number() && into[k].is_number()) {
      const auto a = into[k].get<double>(), b = v.get<double>();
      into[k] = is_peak_key(k) ? std::max(a, b) : a + b;
    }
  }
}

// Everything the committed chunk records say.
struct run_ledger {
  std::set<std::uint64_t> committed;
  run::chunk_counts totals, this_attempt;
  std::map<std::string, std::uint64_t> reject_reasons;
  json failed_shards = json::object();
  std::vector<ranking::topk> tops;  // per rank key, over every committed chunk's hits
  std::map<std::uint64_t, std::string> damaged_outputs;  // committed chunks whose files changed
  std::uint64_t failed_before = 0;  // failed records of chunks no later attempt redid
};

// Reads every committed record once, streaming its rejects into rejects.csv. The ledger is read
// whole even when rejects.csv cannot be written (`rejects_error` then says why): the other
// outputs are made from it.
run_ledger read_ledgers(const run_context& c, int attempt, std::string& rejects_error) {
  run_ledger b;
  for (const auto& k : c.layout.keys) b.tops.emplace_back(c.layout.top_k, k.higher_is_better);
  const auto path = (fs::path(c.options.out_dir) / "rejects.csv").string();
  const auto tmp = run::fresh_temporary(path);
  {
    std::ofstream rejects(tmp, std::ios::binary);
    rejects << "shard,row,id,stage,reason\n";
    // One record at a time: memory stays bounded by top-K, whatever the run's size.
    const auto shape = c.record_shape();
    for (const auto id : run::committed_chunks(c.options.out_dir)) {
      // Its files, as they were written? (Their sizes: the checksums are read on --resume.)
      std::string changed;
      const auto usable = run::read_usable_chunk_record(c.options.out_dir, id, shape, &changed);
      if (!usable) continue;
      const auto& rec = *usable;
      b.committed.insert(id);
      if (!changed.empty()) b.damaged_outputs.emplace(id, std::move(changed));
      b.totals += rec.counts;
      if (rec.attempt == attempt) b.this_attempt += rec.counts;
      // A failed chunk's record has no hit lists (check_shape).
      for (std::size_t k = 0; k < b.tops.size() && k < rec.hit_lists.size(); ++k)
        for (const auto& h : rec.hit_lists[k]) b.tops[k].offer(h);
      const auto& shard_file = c.manifest.shards[rec.shard].file;
      for (const auto& x : rec.rejects) {
        rejects << csv_field(shard_file) << ',' << x.row << ',' << csv_field(x.id) << ','
                << x.stage << ',' << csv_field(x.reason + ": " + x.detail) << '\n';
        ++b.reject_reasons[x.reason];
      }
      if (rec.counts.n_failed > 0) {
        if (rec.attempt != attempt) b.failed_before += rec.counts.n_failed;
        auto& f = b.failed_shards[shard_file];
        f["error"] = rec.failure;
        f["rows_failed"] = f.value("rows_failed", std::uint64_t{0}) + rec.counts.n_failed;
      }
    }
    rejects.flush();
    if (!rejects) rejects_error = "cannot write '" + tmp + "': " + std::strerror(errno);
  }
  if (rejects_error.empty()) {
    try {
      run::publish_file(tmp, path);
    } catch (const std::exception& e) {
      rejects_error = e.what();
    }
  }
  if (!rejects_error.empty()) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
  }
  return b;
}

// Every hit list carries every score of its records, then the fields shown (e.g. SMILES).
std::string hits_csv(const run_context& c, const std::vector<ranking::hit>& hits) {
  std::string csv;
  for (const auto& n : hit_list_columns()) csv += (csv.empty() ? "" : ",") + n;
  for (const auto& n : c.layout.names) csv += ',' + csv_field(n);
  for (const auto& f : c.hit_fields) csv += ',' + csv_field(f);
  csv += '\n';
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const auto& h = hits[i];
    csv += std::to_string(i + 1) + ',' + csv_field(h.id) + ',' + format_score(h.score) + ',' +
           csv_field(c.manifest.shards[h.key.shard].file) + ',' + std::to_string(h.key.row);
    for (const auto v : h.scores) csv += ',' + format_score(v);
    for (const auto& f : h.fields) csv += ',' + csv_field(f);
    csv += '\n';
  }
  return csv;
}

// Runs f; a failure is added to `errors` as "what: message" instead of ending the outputs, so
// the other outputs are still written.
template <class F>
void write_or_note(std::vector<std::string>& errors, const std::string& what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    errors.push_back(what + ": " + e.what());
  }
}

// What rank 0 found at the end of an attempt, for run.json and the closing lines.
struct run_state {
  run_ledger ledger;
  run::chunk_counts live;  // what the ranks counted themselves in this attempt
  std::size_t n_hits = 0;  // in each hit list: every ranking keeps the same records' best
  std::uint64_t n_pending = 0;  // the library's records no committed chunk has read
  json hit_files = json::array();
  json workload_outputs = json::object();  // what the workload's run-wide outputs say of themselves
  std::vector<std::string> problems, write_errors;
  bool has_hits = false, all_committed = false, complete = false;
};

// The accounting invariants over the committed chunk records.
void check_accounting(const run_context& c, const std::vector<json>& rank_reports, run_state& st) {
  const auto& b = st.ledger;
  auto& live = st.live;
  for (const auto& r : rank_reports) {
    live.n_read += r.value("n_read", std::uint64_t{0});
    live.n_scored += r.value("n_scored", std::uint64_t{0});
    live.n_rejected += r.value("n_rejected", std::uint64_t{0});
    live.n_failed += r.value("n_failed", std::uint64_t{0});
  }
  const auto& t = b.totals;
  st.all_committed = b.committed.size() == c.plan.chunks.size();
  st.n_pending = c.manifest.n_records() - std::min(c.manifest.n_records(), t.n_read);
  st.complete = st.all_committed && t.n_failed == 0 && st.write_errors.empty();
  auto& problems = st.problems;
  if (!t.balanced()) {
    problems.push_back("records_read " + std::to_string(t.n_read) + " != scored " +
                       std::to_string(t.n_scored) + " + rejected " +
                       std::to_string(t.n_rejected) + " + failed " + std::to_string(t.n_failed));
  }
  const auto& x = b.this_attempt;
  if (st.write_errors.empty() && !(x.n_read == live.n_read && x.n_scored == live.n_scored &&
                                   x.n_rejected == live.n_rejected && x.n_failed == live.n_failed)) {
    problems.push_back("the chunk records of this attempt disagree with the ranks' own counts");
  }
  if (st.all_committed && st.write_errors.empty() && t.n_read != c.manifest.n_records()) {
    problems.push_back("records_read " + std::to_string(t.n_read) +
                       " differs from the manifest's " + std::to_string(c.manifest.n_records()));
  }
}

// The ranks' own figures: coordination cost, memory, load balance, and each rank's report.
void add_rank_figures(json& report, const std::vector<json>& rank_reports, const attempt_summary& a) {
  double coordination_max_s = 0, records_max = 0, records_sum = 0;
  std::uint64_t rss_max = 0;
  json chunks_per_rank = json::array(), per_rank = json::array();
  for (const auto& r : rank_reports) {
    coordination_max_s = std::max(coordination_max_s, r.value("coordination_s", 0.0));
    rss_max = std::max(rss_max, r.value("peak_rss_bytes", std::uint64_t{0}));
    const auto n = static_cast<double>(r.value("n_read", std::uint64_t{0}));
    records_max = std::max(records_max, n);
    records_sum += n;
    chunks_per_rank.push_back(r.value("n_chunks", std::uint64_t{0}));
    per_rank.push_back(r);
  }
  report["coordination"] = {
      {"max_rank_s", coordination_max_s + a.gather_s},
      {"gather_s", a.gather_s},
      {"fraction_of_wall", a.wall_s > 0 ? (coordination_max_s + a.gather_s) / a.wall_s : 0.0}};
  report["peak_rss_bytes_max"] = rss_max;
  const double records_mean =
      rank_reports.empty() ? 0 : records_sum / static_cast<double>(rank_reports.size());
  report["load_balance"] = {
      {"chunks_per_rank", chunks_per_rank},
      {"records_max_over_mean", records_mean > 0 ? records_max / records_mean : 1.0}};
  report["per_rank"] = per_rank;
}

// run.json: the shared keys from the ledger, the ranks' figures, and the workload's own section.
json run_json(const run_context& c, const attempt_summary& a, const std::vector<json>& rank_reports,
              run_state& st) {
  const auto& kind = *c.kind;
  const auto& b = st.ledger;
  const auto& t = b.totals;
  const auto& live = st.live;
  const auto& problems = st.problems;
  auto& write_errors = st.write_errors;
  const bool complete = st.complete;
  const bool has_hits = st.has_hits;
  const auto& hit_files = st.hit_files;
  json report;
  report["schema"] = "hpcscreen.run_report/2";
  report["workload"] = kind.name;
  report["library_kind"] = kind.library_kind;
  report["complete"] = complete;
  report["interrupted"] = a.interrupted;
  if (a.interrupted) report["stop_signal"] = stop_signal();
  report["attempt"] = a.attempt;
  report["records_total"] = c.manifest.n_records();
  report["records_read"] = t.n_read;
  report["records_scored"] = t.n_scored;
  report["records_rejected"] = t.n_rejected;
  report["records_failed"] = t.n_failed;
  report["records_filtered"] = t.n_filtered;
  report["records_pending"] = st.n_pending;
  report["accounting_ok"] = problems.empty();
  report["accounting_problems"] = problems;
  report["output_errors"] = write_errors;
  report["chunks_total"] = c.plan.chunks.size();
  report["chunks_committed"] = b.committed.size();
  std::uint64_t chunks_this_attempt = 0;
  for (const auto& r : rank_reports) chunks_this_attempt += r.value("n_chunks", std::uint64_t{0});
  report["chunks_this_attempt"] = chunks_this_attempt;
  report["wall_time_s"] = a.wall_s;
  report["throughput_records_per_s"] = a.wall_s > 0 ? static_cast<double>(live.n_read) / a.wall_s : 0.0;
  std::vector<json> workload_parts;
  for (const auto& r : rank_reports) workload_parts.push_back(r.value("workload", json::object()));
  add_rank_figures(report, rank_reports, a);
  report["ranks"] = a.n_ranks;
  report["threads_per_rank"] = c.threads;
  report["top_k"] = c.layout.top_k;
  report["hits"] = has_hits ? st.n_hits : 0;
  report["score_columns"] = c.layout.names;
  if (c.layout.sampled < c.layout.names.size())  // the score report.html's histogram shows
    report["sampled_score"] = c.layout.names[c.layout.sampled];
  report["hit_files"] = hit_files;
  json filters = json::array();
  for (const auto& f : c.layout.filters) filters.push_back(f.text);
  report["filters"] = filters;
  report["hit_fields"] = c.hit_fields;
  report["reject_reasons"] = b.reject_reasons;
  report["failed_shards"] = b.failed_shards;
  report.update(c.work->run_keys());
  report["library"] = {{"path", fs::absolute(c.options.library_dir).string()},
                       {"shards", c.manifest.shards.size()}};
  report["config"] = {{"chunk_rows", c.options.chunk_rows},
                      {"chunks_in_flight", c.options.chunks_in_flight},
                      {"stop_after_s", c.options.stop_after_s},
                      {"max_chunks_per_rank", c.options.max_chunks_per_rank},
                      {"allow_failed_shards", c.options.allow_failed_shards},
                      {"retry_failed", c.options.retry_failed},
                      {"command_line", c.options.command_line}};
  report["versions"] = {{"hpcscreen", c.options.version}, {"mpi", a.mpi_description}};
  report["scheduler"] = {{"name", c.scheduler.name},
                         {"job_id", c.scheduler.job_id},
                         {"nodes", c.scheduler.n_nodes},
                         {"cpus_per_task", c.scheduler.cpus_per_task}};
  report[kind.name] = c.work->report(combine_rank_reports(workload_parts));
  report[kind.name].update(st.workload_outputs);
  if (!write_errors.empty()) {
    report["output_errors"] = write_errors;
    report["complete"] = false;
  }
  return report;
}

// The closing lines on stderr and the run's exit status.
int closing_status(const run_context& c, const attempt_summary& a, const run_state& st) {
  const auto& kind = *c.kind;
  const auto& b = st.ledger;
  const auto& t = b.totals;
  const bool has_hits = st.has_hits, all_committed = st.all_committed;
  const auto& write_errors = st.write_errors;
  const auto& problems = st.problems;
  std::string hits_note;
  if (has_hits && write_errors.empty()) {  // otherwise the hit list may not be there
    hits_note = "; " + std::to_string(st.n_hits) + " hits in ";
    for (std::size_t k = 0; k < c.layout.keys.size(); ++k) {
      if (k > 0) hits_note += ", ";
      hits_note += (fs::path(c.options.out_dir) / c.layout.keys[k].hits_file).string();
    }
  }
  std::fprintf(stderr,
               "hpcscreen: %s records: %s %s, %s rejected, %s failed%s%s (%.1f s, %d rank%s x %d "
               "thread%s)\n",
               with_commas(t.n_read).c_str(), with_commas(t.n_scored).c_str(),
               kind.done_verb.c_str(), with_commas(t.n_rejected).c_str(),
               with_commas(t.n_failed).c_str(),
               all_committed ? "" : (", " + with_commas(st.n_pending) + " pending").c_str(),
               hits_note.c_str(), a.wall_s, a.n_ranks, a.n_ranks == 1 ? "" : "s", c.threads,
               c.threads == 1 ? "" : "s");
  for (const auto& e : write_errors)
    std::fprintf(stderr, "hpcscreen: error: could not write %s\n", e.c_str());
  if (!write_errors.empty()) return exit_error;
  for (const auto& p : problems) std::fprintf(stderr, "hpcscreen: ACCOUNTING ERROR: %s\n", p.c_str());
  if (!problems.empty()) return exit_incomplete;
  if (!all_committed) {
    std::fprintf(stderr,
                 "hpcscreen: run stopped before the end; %zu of %zu chunks are committed. Run the "
                 "same command with --resume to finish it.\n",
                 b.committed.size(), c.plan.chunks.size());
    return exit_interrupted;
  }
  // Stopped while retrying failed chunks: those it did not reach keep their earlier records.
  if (c.options.retry_failed && b.failed_before > 0) {
    std::fprintf(stderr,
                 "hpcscreen: run stopped before the end; %s records in failed chunks were not "
                 "retried. Run the same command (--resume --retry-failed) to finish it.\n",
                 with_commas(b.failed_before).c_str());
    return exit_interrupted;
  }
  if (t.n_failed > 0) {
    for (const auto& [file, f] : b.failed_shards.items()) {
      std::fprintf(stderr, "hpcscreen: failed shard %s: %s rows: %s\n", file.c_str(),
                   with_commas(f["rows_failed"].get<std::uint64_t>()).c_str(),
                   f["error"].get<std::string>().c_str());
    }
    std::fprintf(
        stderr,
        "hpcscreen: %s records are in shards that could not be read; the run is not "
        "complete. Repair or restore them and run the same command with --resume "
        "--retry-failed%s\n",
        with_commas(t.n_failed).c_str(),
        c.options.allow_failed_shards ? "" : " (or pass --allow-failed-shards to accept this)");
    if (!c.options.allow_failed_shards) return exit_incomplete;
  }
  return exit_ok;
}

using file_list = std::vector<std::pair<std::string, std::string>>;  // name → content

// One hit list per ranking key, in memory (top-K rows each), with what run.json says of them.
file_list hit_lists(const run_context& c, run_state& st) {
  file_list files;
  st.has_hits = c.layout.ranked && !c.layout.names.empty() && !c.layout.keys.empty();
  const auto& tops = st.ledger.tops;
  for (std::size_t k = 0; st.has_hits && k < c.layout.keys.size(); ++k) {
    const auto merged = k < tops.size() ? tops[k].sorted() : std::vector<ranking::hit>{};
    const auto& file = c.layout.keys[k].hits_file;
    files.emplace_back(file, hits_csv(c, merged));
    st.hit_files.push_back({{"file", file},
                            {"rank_by", c.layout.names[c.layout.keys[k].index]},
                            {"higher_is_better", c.layout.keys[k].higher_is_better},
                            {"hits", merged.size()}});
    st.n_hits = std::max(st.n_hits, merged.size());
  }
  return files;
}

// The run-wide files, each on its own and atomically: the hit lists, then run.json, which names
// any that could not be written (the run is then not complete).
void write_run_files(const run_context& c, const attempt_summary& a,
                     const std::vector<json>& rank_reports, run_state& st, const file_list& files) {
  const auto path = [&](const std::string& name) {
    return (fs::path(c.options.out_dir) / name).string();
  };
  for (std::size_t k = 0; k < files.size(); ++k) {
    const auto& [name, content] = files[k];
    const auto n_errors = st.write_errors.size();
    write_or_note(st.write_errors, name, [&] { run::write_file_atomically(path(name), content); });
    if (st.write_errors.size() > n_errors) st.hit_files[k]["written"] = false;
  }
  // Ids and file names are bytes: invalid UTF-8 is replaced in run.json (kept in the CSVs).
  const auto text =
      run_json(c, a, rank_reports, st).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  write_or_note(st.write_errors, "run.json",
                [&] { run::write_file_atomically(path("run.json"), text); });
}

}  // namespace

json combine_rank_reports(const std::vector<json>& reports) {
  json out = json::object();
  for (const auto& r : reports) combine_into(out, r);
  return out;
}

json rank_report_json(const rank_result& r, const run_context& c, int rank, double busy_s) {
  return {{"rank", rank},
          {"host", host_name()},
          {"n_chunks", r.n_chunks},
          {"n_read", r.totals.n_read},
          {"n_scored", r.totals.n_scored},
          {"n_rejected", r.totals.n_rejected},
          {"n_failed", r.totals.n_failed},
          {"read_s", r.read_s},
          {"commit_s", r.commit_s},
          {"busy_s", busy_s},
          {"stages", r.stages},
          {"pool_threads", r.pool_threads},
          {"pool_idle_thread_s", r.pool_idle_thread_s},
          {"peak_rss_bytes", peak_rss_bytes()},
          {"coordination_s", r.coordination_s},
          {"workload", c.work->rank_report()}};
}

int write_run_outputs(const run_context& c, const attempt_summary& a,
                      const std::vector<json>& rank_reports) {
  run_state st;
  // An output that cannot be written is named in run.json (and stderr); the others still are.
  std::string rejects_error;
  try {
    st.ledger = read_ledgers(c, a.attempt, rejects_error);
  } catch (const std::exception& e) {
    // Without the records nothing can be said of the run: the last attempt's outputs stay.
    std::fprintf(stderr,
                 "hpcscreen: error: the chunk records of '%s' cannot be read (%s); hits, run.json "
                 "and the other run-wide files are left as the last attempt wrote them\n",
                 c.options.out_dir.c_str(), e.what());
    return exit_error;
  }
  if (!rejects_error.empty()) st.write_errors.push_back("rejects.csv: " + rejects_error);
  if (const auto& lost = st.ledger.damaged_outputs; !lost.empty()) {
    st.write_errors.push_back("per-chunk outputs: the files of " + std::to_string(lost.size()) +
                              " committed chunks are missing or not as written (chunk " +
                              std::to_string(lost.begin()->first) + ": " + lost.begin()->second +
                              "); run the same command with --resume to do them again");
  }
  auto files = hit_lists(c, st);
  write_or_note(st.write_errors, "workload outputs", [&] {
    st.workload_outputs = c.work->write_run_outputs(
        run_view{c.options.out_dir, c.manifest, c.plan, st.ledger.committed});
  });
  check_accounting(c, rank_reports, st);
  write_run_files(c, a, rank_reports, st, files);
  return closing_status(c, a, st);
}

}  // namespace hpcscreen::pipeline
