// The conductor, the books and the run folder in one process: the local context and a fake
// workload whose "model" reads each record's score from its SMILES field, so every expected
// count, reject and hit below is worked out by hand from the library the test writes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "hpcscreen/app/commands.hpp"
#include "hpcscreen/core/checksum.hpp"
#include "hpcscreen/core/cli.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/infer/backoff.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pipeline/pipeline.hpp"
#include "hpcscreen/pipeline/signals.hpp"

namespace fs = std::filesystem;
using namespace hpcscreen;
using nlohmann::json;
namespace po = boost::program_options;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The fake model's rules, by the record's "smiles" text:
//   a number x    → scores activity = x and toxicity = (x - 4)², ranked by activity (higher
//                   first, hits.csv) and by toxicity (lower first, lowest-toxicity.csv)
//   "bad"         → rejected by preprocessing (reason fake_syntax)
//   "poison"      → forward() raises whenever the record is in the batch
//   "huge"        → out of memory whenever the record is in the batch
//   "nan"         → the model returns NaN
//   "abort"       → the task throws a plain error (a workload bug): the run ends
//   "stop"        → a stop request (SIGUSR1) arrives while the chunk is in flight
//   "stuck"       → a stop request arrives, then the task stays inside this record (as RDKit or
//                   a model can on a pathological input) until the test releases it
// Batches with more than `oom_above` records run out of memory (0: never).
std::promise<void> g_release_stuck;
std::shared_future<void> g_stuck_released = g_release_stuck.get_future().share();

struct fake_settings {
  std::size_t oom_above = 0;
  std::size_t batch = 4;
};

class fake_job : public pipeline::chunk_work {
 public:
  fake_job(pipeline::chunk_input in, const fake_settings& s, infer::backoff_counters& c)
      : chunk_work(std::move(in)), s_(s), counters_(c) {}

  pipeline::stage next_stage() override {
    if (phase_++ == 0) return {"infer", (in_.n_rows() + s_.batch - 1) / s_.batch, 0};
    return {"done", 0, 0};
  }
  void run_task(std::size_t t) override {
    if (pipeline::stop_requested()) return;
    const auto& text = in_["smiles"];
    const auto begin = t * s_.batch, end = std::min(in_.n_rows(), begin + s_.batch);
    infer::run_isolating(
        begin, end,
        [&](std::size_t b, std::size_t e) {
          if (s_.oom_above && e - b > s_.oom_above) throw out_of_memory_error("fake: batch too big");
          for (auto i = b; i < e; ++i) {
            if (text[i] == "poison") throw model_error("fake forward(): index out of range");
            if (text[i] == "huge") throw out_of_memory_error("fake: cannot allocate");
            if (text[i] == "abort") throw std::runtime_error("fake workload bug");
            if (text[i] == "stop") std::raise(SIGUSR1);
            if (text[i] == "stuck") {
              std::raise(SIGUSR1);
              g_stuck_released.wait();
            }
          }
          std::lock_guard<std::mutex> lock(mutex_);
          for (auto i = b; i < e; ++i) {
            if (text[i] == "bad") continue;
            const float x = text[i] == "nan" ? NAN : std::stof(std::string(text[i]));
            scores_[i] = {x, (x - 4) * (x - 4)};
          }
        },
        [&](std::size_t i, const char* reason, std::string detail) {
          std::lock_guard<std::mutex> lock(mutex_);
          failures_[i] = {reason, detail};
        },
        counters_);
  }
  void collect(pipeline::chunk_outcomes& out) override {
    const auto& text = in_["smiles"];
    for (std::size_t i = 0; i < in_.n_rows(); ++i) {
      if (text[i] == "bad") {
        out.reject(i, "featurize", "fake_syntax", "not a number");
      } else if (failures_.count(i)) {
        out.reject(i, "infer", failures_[i].first, failures_[i].second);
      } else {
        out.score(i, scores_.at(i).data());
      }
    }
  }

 private:
  fake_settings s_;
  infer::backoff_counters& counters_;
  int phase_ = 0;
  std::mutex mutex_;
  std::map<std::size_t, std::array<float, 2>> scores_;
  std::map<std::size_t, std::pair<std::string, std::string>> failures_;
};

class fake_workload : public pipeline::workload {
 public:
  fake_workload(fake_settings s, std::string model, std::size_t top_k)
      : s_(s), model_(std::move(model)), top_k_(top_k) {}
  pipeline::score_layout scores() const override {
    pipeline::score_layout l;
    l.names = {"activity", "toxicity"};
    l.keys = {{0, true, "hits.csv"}, {1, false, "lowest-toxicity.csv"}};
    l.top_k = top_k_;
    return l;
  }
  // The stand-in model file's checksum fixes a run's identity, as a real model's does.
  json identity() const override {
    return {{"model_checksums", {file_checksum(model_)}}, {"top_k", top_k_}};
  }
  std::map<std::string, int> stage_split(int, int) const override { return {}; }
  std::unique_ptr<pipeline::chunk_work> start(pipeline::chunk_input in) override {
    return std::make_unique<fake_job>(std::move(in), s_, counters_);
  }
  json rank_report() const override { return {{"memory_splits", counters_.memory_splits.load()}}; }
  json report(const json& summed) const override { return summed; }

 private:
  fake_settings s_;
  std::string model_;
  std::size_t top_k_;
  mutable infer::backoff_counters counters_;
};

// The settings the next fake run uses (tests vary what the fake model does per run).
fake_settings next_fake_settings;

// The fake workload's command line, registered like the real ones (pipeline/registry.hpp).
class fake_command : public pipeline::workload_command {
 public:
  void add_options(po::options_description& desc) override {
    desc.add_options()("model,m", po::value(&model_)->required(), "a stand-in model file")(
        "top-k,k", cli::in_range(top_k_, "top-k", 0, cli::int32_max), "hits to keep");
  }
  std::unique_ptr<pipeline::workload> make(int) override {
    return std::make_unique<fake_workload>(next_fake_settings, model_, top_k_);
  }

 private:
  std::string model_;
  std::size_t top_k_ = 100;
};

// The fake's library kind: lines of text with ids, numbers to score or "bad".
const char* fake_library_kind = "fake-lines";

const pipeline::workload_kind& fake_kind() {
  static const bool registered = [] {
    pipeline::register_library_kind(
        {fake_library_kind, "hpcscreen.fake_lines/1", {"id", "smiles"}, {"smiles"}, "test lines",
         "", {}});
    pipeline::register_workload({"fake-score", fake_library_kind, "scored",
                                 "scores numbers (unit tests)", "usage: fake-score",
                                 [] { return std::make_unique<fake_command>(); }});
    return true;
  }();
  (void)registered;
  return pipeline::find_workload_kind("fake-score");
}

struct fake_run_options : pipeline::run_options {
  std::string model;
  std::size_t top_k = 3;
};

class conductor_test : public ::testing::Test {
 protected:
  void SetUp() override {
    pipeline::clear_stop_request();
    dir_ = fs::temp_directory_path() /
           ("hpcscreen-conductor-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "lib");
  }
  void TearDown() override {
    pipeline::clear_stop_request();
    fs::remove_all(dir_);
  }

  // One shard per list of SMILES texts; ids are "m<shard>-<row>" unless given.
  void write_library(const std::vector<std::vector<std::string>>& shards,
                     const std::vector<std::vector<std::string>>& ids = {}) {
    io::manifest m;
    m.kind = fake_library_kind;
    m.shard_schema = "hpcscreen.fake_lines/1";
    m.fields = {"id", "smiles"};
    for (std::size_t s = 0; s < shards.size(); ++s) {
      std::vector<string_column> columns(2);
      for (std::size_t r = 0; r < shards[s].size(); ++r) {
        columns[0].push_back(ids.empty() ? "m" + std::to_string(s) + "-" + std::to_string(r)
                                         : ids[s][r]);
        columns[1].push_back(shards[s][r]);
      }
      const auto name = "shard-" + std::to_string(s) + ".h5";
      io::write_shard((dir_ / "lib" / name).string(), m.shard_schema, m.fields, columns);
      m.shards.push_back({name, shards[s].size(), file_checksum((dir_ / "lib" / name).string())});
    }
    std::ofstream(dir_ / "lib" / io::manifest_file_name) << io::manifest_text(m);
    // A stand-in model file: the run folder records its checksum.
    std::ofstream(dir_ / "model.pt") << "fake";
  }

  fake_run_options options(const std::string& out) const {
    fake_run_options f;
    auto& o = f;
    o.library_dir = (dir_ / "lib").string();
    f.model = (dir_ / "model.pt").string();
    o.out_dir = (dir_ / out).string();
    o.threads = 2;
    o.chunk_rows = 4;
    o.progress_interval_s = 0;
    return f;
  }

  // Through the real command path (app::run_workload): the options as a user would type them.
  int run(const fake_run_options& f, fake_settings s = {}) {
    const pipeline::run_options& o = f;
    std::vector<std::string> args = {
        "--library", o.library_dir, "--out", o.out_dir, "--model", f.model,
        "--top-k", std::to_string(f.top_k), "--threads", std::to_string(o.threads),
        "--chunk-rows", std::to_string(o.chunk_rows),
        "--chunks-in-flight", std::to_string(o.chunks_in_flight),
        "--featurize-threads", std::to_string(o.featurize_threads),
        "--max-chunks", std::to_string(o.max_chunks_per_rank), "--progress-interval", "0"};
    for (const auto& [on, flag] : {std::pair{o.resume, "--resume"},
                                   std::pair{o.retry_failed, "--retry-failed"},
                                   std::pair{o.allow_failed_shards, "--allow-failed-shards"}}) {
      if (on) args.push_back(flag);
    }
    next_fake_settings = s;
    auto ctx = dist::make_local_context();
    try {
      return app::run_workload(fake_kind(), args, *ctx, "fake-score (unit test)");
    } catch (const usage_error&) {
      return pipeline::exit_usage;
    }
  }

  json run_json(const std::string& out) const { return json::parse(slurp(dir_ / out / "run.json")); }
  std::string hits(const std::string& out) const { return slurp(dir_ / out / "hits.csv"); }

  fs::path dir_;
};

// 10 records in 2 shards (chunks of 4 rows: 0-3, 4-5 of shard 0; 0-3 of shard 1):
// scores 1..6 and 9, one syntax reject, one poisoned record, one NaN.
const std::vector<std::vector<std::string>> library_a = {
    {"1", "5", "bad", "2", "6", "poison"}, {"9", "nan", "3", "4"}};
const std::string hits_a =
    "rank,id,score,shard,row,activity,toxicity,smiles\n"
    "1,m1-0,9,shard-1.h5,0,9,25,9\n"
    "2,m0-4,6,shard-0.h5,4,6,4,6\n"
    "3,m0-1,5,shard-0.h5,1,5,1,5\n";
// Toxicity (x - 4)² of the scored 1, 5, 2, 6 (shard 0) and 9, 3, 4 (shard 1), lowest first; the
// tie at 1 goes to the earlier record.
const std::string lowest_toxicity_a =
    "rank,id,score,shard,row,activity,toxicity,smiles\n"
    "1,m1-3,0,shard-1.h5,3,4,0,4\n"
    "2,m0-1,1,shard-0.h5,1,5,1,5\n"
    "3,m1-2,1,shard-1.h5,2,3,1,3\n";

TEST_F(conductor_test, books_count_every_record_and_rank_the_scores) {
  write_library(library_a);
  ASSERT_EQ(run(options("run")), pipeline::exit_ok);
  const auto rj = run_json("run");
  EXPECT_EQ(rj["records_read"], 10);
  EXPECT_EQ(rj["records_scored"], 7);
  EXPECT_EQ(rj["records_rejected"], 3);
  EXPECT_EQ(rj["records_failed"], 0);
  EXPECT_TRUE(rj["complete"].get<bool>());
  EXPECT_TRUE(rj["accounting_ok"].get<bool>());
  EXPECT_EQ(rj["reject_reasons"], (json{{"fake_syntax", 1}, {"model_error", 1}, {"non_finite_score", 1}}));
  EXPECT_EQ(hits("run"), hits_a);
  EXPECT_EQ(slurp(dir_ / "run" / "lowest-toxicity.csv"), lowest_toxicity_a);
  EXPECT_EQ(rj["hits"], 3);
  ASSERT_EQ(rj["hit_files"].size(), 2u);
  EXPECT_EQ(rj["hit_files"][1], (json{{"file", "lowest-toxicity.csv"},
                                      {"rank_by", "toxicity"},
                                      {"higher_is_better", false},
                                      {"hits", 3}}));
  const auto rejects = slurp(dir_ / "run" / "rejects.csv");
  EXPECT_NE(rejects.find("shard-0.h5,2,m0-2,featurize,fake_syntax: not a number\n"), std::string::npos);
  EXPECT_NE(rejects.find("shard-0.h5,5,m0-5,infer,model_error: fake forward(): index out of range\n"),
            std::string::npos)
      << rejects;
  EXPECT_NE(rejects.find("shard-1.h5,1,m1-1,infer,non_finite_score:"), std::string::npos);
}

TEST_F(conductor_test, chunks_in_flight_and_threads_do_not_change_results) {
  write_library(library_a);
  auto one = options("one");
  one.chunks_in_flight = 1;
  one.threads = 1;
  ASSERT_EQ(run(one), pipeline::exit_ok);
  auto many = options("many");
  many.chunks_in_flight = 3;
  many.threads = 3;
  ASSERT_EQ(run(many), pipeline::exit_ok);
  EXPECT_EQ(hits("one"), hits_a);
  EXPECT_EQ(hits("many"), hits_a);
  EXPECT_EQ(slurp(dir_ / "many" / "lowest-toxicity.csv"), lowest_toxicity_a);
  EXPECT_EQ(slurp(dir_ / "one" / "rejects.csv"), slurp(dir_ / "many" / "rejects.csv"));
}

TEST_F(conductor_test, interrupted_run_resumes_to_the_same_result) {
  write_library(library_a);
  auto o = options("run");
  o.max_chunks_per_rank = 1;
  ASSERT_EQ(run(o), pipeline::exit_interrupted);
  auto rj = run_json("run");
  EXPECT_FALSE(rj["complete"].get<bool>());
  EXPECT_EQ(rj["chunks_committed"], 1);
  EXPECT_EQ(rj["records_pending"], 6);
  o.resume = true;
  ASSERT_EQ(run(o), pipeline::exit_interrupted);
  o.max_chunks_per_rank = 0;
  ASSERT_EQ(run(o), pipeline::exit_ok);
  rj = run_json("run");
  EXPECT_TRUE(rj["complete"].get<bool>());
  EXPECT_EQ(rj["attempt"], 3);
  EXPECT_EQ(rj["records_read"], 10);
  EXPECT_EQ(hits("run"), hits_a);
}

// Regression: one unreadable chunk record made --resume rewrite hits.csv empty and fail.
TEST_F(conductor_test, lost_chunk_record_and_journal_garbage_are_done_again_on_resume) {
  write_library(library_a);
  auto o = options("run");
  ASSERT_EQ(run(o), pipeline::exit_ok);
  fs::remove(dir_ / "run" / "parts" / "chunk-0000000001.json");
  std::ofstream(dir_ / "run" / "journal" / "attempt-1.rank-0.log", std::ios::app)
      << std::string("\0\0\0\0\n", 5) << "99999\n";
  o.resume = true;
  ASSERT_EQ(run(o), pipeline::exit_ok);
  const auto rj = run_json("run");
  EXPECT_EQ(rj["chunks_committed"], 3);
  EXPECT_EQ(rj["chunks_this_attempt"], 1) << "only the chunk whose record was lost is done again";
  EXPECT_EQ(rj["records_read"], 10);
  EXPECT_TRUE(rj["complete"].get<bool>());
  EXPECT_EQ(hits("run"), hits_a);
}

// A committed record that lacks one of the run's hit lists (damaged, or edited by hand) would
// lose that chunk's hits from the list: its chunk is done again instead.
TEST_F(conductor_test, record_missing_a_hit_list_is_done_again_on_resume) {
  write_library(library_a);
  auto o = options("run");
  ASSERT_EQ(run(o), pipeline::exit_ok);
  const auto part = dir_ / "run" / "parts" / "chunk-0000000002.json";  // shard 1: m1-0, m1-2, m1-3
  auto rec = json::parse(slurp(part));
  ASSERT_EQ(rec["hit_lists"].size(), 2u);
  ASSERT_EQ(rec["hit_lists"][1].size(), 3u);
  rec["hit_lists"].erase(1);
  std::ofstream(part) << rec.dump();
  o.resume = true;
  ASSERT_EQ(run(o), pipeline::exit_ok);
  const auto rj = run_json("run");
  EXPECT_EQ(rj["chunks_this_attempt"], 1) << "only the chunk whose record lacks a list is redone";
  EXPECT_TRUE(rj["complete"].get<bool>());
  EXPECT_EQ(hits("run"), hits_a);
  EXPECT_EQ(slurp(dir_ / "run" / "lowest-toxicity.csv"), lowest_toxicity_a);
}

// A hit list that cannot be written: the other outputs are, run.json names it and says the run
// is not complete, the exit status is an error; the next --resume writes it.
TEST_F(conductor_test, unwritable_hit_list_is_named_in_run_json) {
  write_library(library_a);
  auto o = options("run");
  ASSERT_EQ(run(o), pipeline::exit_ok);
  fs::remove(dir_ / "run" / "hits.csv");
  fs::remove(dir_ / "run" / "lowest-toxicity.csv");
  fs::create_directory(dir_ / "run" / "hits.csv.tmp");  // the atomic write's temporary file
  o.resume = true;
  EXPECT_EQ(run(o), pipeline::exit_error);
  auto rj = run_json("run");
  EXPECT_EQ(rj["attempt"], 2);
  EXPECT_FALSE(rj["complete"].get<bool>());
  ASSERT_EQ(rj["output_errors"].size(), 1u) << rj["output_errors"];
  EXPECT_NE(rj["output_errors"][0].get<std::string>().find("hits.csv.tmp"), std::string::npos);
  EXPECT_TRUE(rj["accounting_ok"].get<bool>());
  EXPECT_EQ(rj["records_read"], 10);
  EXPECT_FALSE(fs::exists(dir_ / "run" / "hits.csv"));
  EXPECT_EQ(rj["hit_files"][0]["written"], false);
  // The other outputs are still written, each on its own.
  EXPECT_TRUE(fs::exists(dir_ / "run" / "rejects.csv"));
  EXPECT_EQ(slurp(dir_ / "run" / "lowest-toxicity.csv"), lowest_toxicity_a);
  EXPECT_FALSE(rj["hit_files"][1].contains("written"));
  fs::remove(dir_ / "run" / "hits.csv.tmp");
  ASSERT_EQ(run(o), pipeline::exit_ok);
  rj = run_json("run");
  EXPECT_TRUE(rj["complete"].get<bool>());
  EXPECT_TRUE(rj["output_errors"].empty());
  EXPECT_EQ(hits("run"), hits_a);
}

TEST_F(conductor_test, resume_of_a_missing_folder_is_refused) {
  write_library(library_a);
  auto o = options("nowhere");
  o.resume = true;
  EXPECT_EQ(run(o), pipeline::exit_error);
  EXPECT_FALSE(fs::exists(dir_ / "nowhere"));
}

TEST_F(conductor_test, damaged_shard_fails_its_rows_and_is_retried_after_repair) {
  write_library(library_a);
  const auto shard = dir_ / "lib" / "shard-1.h5";
  const auto good = slurp(shard);
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << "not an HDF5 file";
  auto o = options("run");
  ASSERT_EQ(run(o), pipeline::exit_incomplete);
  auto rj = run_json("run");
  EXPECT_EQ(rj["records_failed"], 4);
  EXPECT_EQ(rj["records_read"], 10);
  EXPECT_FALSE(rj["complete"].get<bool>()) << "failed rows were neither scored nor rejected";
  EXPECT_TRUE(rj["failed_shards"].contains("shard-1.h5"));

  o.resume = true;  // without --retry-failed the failed rows stay failed
  ASSERT_EQ(run(o), pipeline::exit_incomplete);

  std::ofstream(shard, std::ios::binary | std::ios::trunc) << good;
  o.retry_failed = true;
  ASSERT_EQ(run(o), pipeline::exit_ok);
  rj = run_json("run");
  EXPECT_EQ(rj["records_failed"], 0);
  EXPECT_EQ(rj["records_scored"], 7);
  EXPECT_TRUE(rj["complete"].get<bool>());
  EXPECT_EQ(hits("run"), hits_a);
}

TEST_F(conductor_test, allow_failed_shards_exits_zero_but_not_complete) {
  write_library(library_a);
  std::ofstream(dir_ / "lib" / "shard-0.h5", std::ios::binary | std::ios::trunc) << "junk";
  auto o = options("run");
  o.allow_failed_shards = true;
  ASSERT_EQ(run(o), pipeline::exit_ok);
  const auto rj = run_json("run");
  EXPECT_EQ(rj["records_failed"], 6);
  EXPECT_FALSE(rj["complete"].get<bool>());
}

TEST_F(conductor_test, stop_request_abandons_chunks_in_flight) {
  // The stop arrives in the second chunk of shard 0; that chunk is never committed.
  write_library({{"1", "2", "3", "4", "stop", "5"}, {"6", "7"}});
  auto o = options("run");
  o.chunks_in_flight = 1;
  o.threads = 1;
  ASSERT_EQ(run(o), pipeline::exit_interrupted);
  const auto rj = run_json("run");
  EXPECT_TRUE(rj["interrupted"].get<bool>());
  EXPECT_EQ(rj["stop_signal"], SIGUSR1);
  EXPECT_EQ(rj["chunks_committed"], 1);
  EXPECT_EQ(rj["records_read"], 4);
  EXPECT_TRUE(rj["accounting_ok"].get<bool>());
}

// Regression: a thread inside RDKit's parser on a one-megabyte SMILES ignored SIGTERM for over
// 20 minutes. A stop now ends the attempt after a grace period with the thread left behind.
TEST_F(conductor_test, stop_request_does_not_wait_for_a_thread_stuck_in_a_record) {
  write_library({{"1", "2", "3", "4", "5", "stuck"}});
  auto o = options("run");
  o.threads = 1;
  o.chunks_in_flight = 1;
  // Without the grace period this call never returns (the record is released only below).
  ASSERT_EQ(run(o), pipeline::exit_interrupted);
  const auto rj = run_json("run");
  EXPECT_EQ(rj["chunks_committed"], 1);
  EXPECT_EQ(rj["records_read"], 4);
  EXPECT_FALSE(rj["complete"].get<bool>());
  g_release_stuck.set_value();
}

TEST_F(conductor_test, failing_chunk_ends_the_run_and_keeps_what_was_committed) {
  write_library({{"1", "2", "3", "4", "abort", "5"}});
  auto o = options("run");
  o.chunks_in_flight = 1;
  o.threads = 1;
  EXPECT_EQ(run(o), pipeline::exit_error);
  std::ifstream journal(dir_ / "run" / "journal" / "attempt-1.rank-0.log");
  std::string line;
  ASSERT_TRUE(std::getline(journal, line));
  EXPECT_EQ(line, "0");
  EXPECT_FALSE(std::getline(journal, line)) << "the failing chunk must not be committed";
}

TEST_F(conductor_test, model_failing_on_every_record_stops_the_run) {
  write_library({{"poison", "poison", "poison", "poison"}});
  EXPECT_EQ(run(options("run")), pipeline::exit_error);
}

TEST_F(conductor_test, batches_too_big_for_memory_are_halved_and_score_the_same) {
  write_library(library_a);
  fake_settings s;
  s.oom_above = 1;  // only single records fit
  ASSERT_EQ(run(options("run"), s), pipeline::exit_ok);
  EXPECT_EQ(hits("run"), hits_a);
  const auto rj = run_json("run");
  EXPECT_GT(rj["fake-score"]["memory_splits"].get<int>(), 0);
  EXPECT_EQ(rj["records_scored"], 7);
}

TEST_F(conductor_test, record_too_large_even_alone_is_rejected) {
  write_library({{"1", "huge", "2"}});
  ASSERT_EQ(run(options("run")), pipeline::exit_ok);
  const auto rj = run_json("run");
  EXPECT_EQ(rj["reject_reasons"], (json{{"too_large_for_memory", 1}}));
  EXPECT_EQ(rj["records_scored"], 2);
}

TEST_F(conductor_test, latin1_id_is_kept_byte_for_byte) {
  write_library({{"1", "2"}}, {{"caf\xe9", "plain"}});
  ASSERT_EQ(run(options("run")), pipeline::exit_ok);
  EXPECT_NE(hits("run").find("2,caf\xe9,1,shard-0.h5,0,1,9,1\n"), std::string::npos) << hits("run");
  EXPECT_TRUE(run_json("run")["complete"].get<bool>());
}

TEST_F(conductor_test, bad_option_values_are_usage_errors_without_a_run_folder) {
  write_library(library_a);
  auto zero_k = options("a");
  zero_k.top_k = 0;  // refused by the host for every ranked workload
  EXPECT_EQ(run(zero_k), pipeline::exit_usage);
  auto split = options("b");
  split.featurize_threads = 5;
  EXPECT_EQ(run(split), pipeline::exit_usage);
  auto many = options("c");
  many.threads = 100000;
  EXPECT_EQ(run(many), pipeline::exit_usage);
  for (const char* name : {"a", "b", "c"}) EXPECT_FALSE(fs::exists(dir_ / name)) << name;
}

TEST_F(conductor_test, manifest_listing_a_shard_twice_is_refused) {
  write_library(library_a);
  auto m = json::parse(slurp(dir_ / "lib" / "manifest.json"));
  m["shards"].push_back(m["shards"][0]);
  m["n_records"] = m["n_records"].get<int>() + 6;
  std::ofstream(dir_ / "lib" / "manifest.json") << m.dump();
  EXPECT_EQ(run(options("run")), pipeline::exit_error);
  EXPECT_FALSE(fs::exists(dir_ / "run"));
}

// A second name for one shard file (a link) is the shard listed twice; a copy of its content is
// the same rows held twice, which are all screened (pack writes such a library when one input is
// given under two names).
TEST_F(conductor_test, a_link_to_a_shard_is_refused_and_a_copy_screened) {
  write_library(library_a);
  const auto manifest = dir_ / "lib" / "manifest.json";
  const auto m = json::parse(slurp(manifest));
  const auto first = dir_ / "lib" / m["shards"][0]["file"].get<std::string>();
  for (const bool link : {true, false}) {
    fs::remove(dir_ / "lib" / "second.h5");
    if (link) {
      fs::create_symlink(first, dir_ / "lib" / "second.h5");
    } else {
      fs::copy_file(first, dir_ / "lib" / "second.h5");
    }
    auto twice = m;
    twice["shards"].push_back(m["shards"][0]);
    twice["shards"].back()["file"] = "second.h5";
    if (link) twice["shards"].back()["checksum"] = "crc32:00000000";  // the link is what counts
    const int n_twice = m["n_records"].get<int>() + m["shards"][0]["n_records"].get<int>();
    twice["n_records"] = n_twice;
    std::ofstream(manifest) << twice.dump();
    const std::string out = link ? "linked" : "copied";
    EXPECT_EQ(run(options(out)), link ? pipeline::exit_error : pipeline::exit_ok) << out;
    if (!link) EXPECT_EQ(run_json(out)["records_read"], n_twice);
  }
}

}  // namespace
