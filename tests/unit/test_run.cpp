#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"
#include "hpcscreen/run/run_folder.hpp"

namespace fs = std::filesystem;
using namespace hpcscreen;

namespace {
std::string fresh(const std::string& name) {
  auto d = fs::temp_directory_path() / ("hpcscreen_run_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d.string();
}
}  // namespace

TEST(run_folder, refuses_existing_folder_without_resume) {
  const auto dir = fresh("refuse");
  EXPECT_EQ(run::begin_attempt(dir, false, R"({"model":"a"})", "{}"), 1);
  EXPECT_THROW(run::begin_attempt(dir, false, R"({"model":"a"})", "{}"), run_error);
  EXPECT_EQ(run::begin_attempt(dir, true, R"({"model":"a"})", "{}"), 2);
}

TEST(run_folder, resume_with_another_model_is_refused) {
  const auto dir = fresh("identity");
  run::begin_attempt(dir, false, R"({"model_checksum":"crc32:1","chunk_rows":10})", "{}");
  try {
    run::begin_attempt(dir, true, R"({"model_checksum":"crc32:2","chunk_rows":10})", "{}");
    FAIL();
  } catch (const run_error& e) {
    EXPECT_NE(std::string(e.what()).find("model_checksum"), std::string::npos) << e.what();
  }
}

TEST(journal, commits_are_read_back_and_a_torn_line_is_not_a_commit) {
  const auto dir = fresh("journal");
  run::begin_attempt(dir, false, "{}", "{}");
  {
    run::journal j(dir, 1, 0);
    j.commit(3);
    j.commit(7);
    run::journal k(dir, 1, 1);
    k.commit(5);
  }
  std::ofstream(fs::path(dir) / "journal" / "attempt-1.rank-2.log", std::ios::app)
      << "11\n1";  // torn "12"
  EXPECT_EQ(run::committed_chunks(dir), (std::set<std::uint64_t>{3, 5, 7, 11}));
}

TEST(chunk_record, json_round_trip_keeps_every_field) {
  run::chunk_record r;
  r.chunk_id = 42;
  r.shard = 3;
  r.row_begin = 100;
  r.row_end = 110;
  r.rank = 2;
  r.attempt = 1;
  r.counts = {10, 7, 2, 1};
  r.failure = "x";
  r.hits = {{1.25f, {3, 101}, "id,1", "CCO"}, {-3.5e-7f, {3, 104}, "b", "C"}};
  r.rejects = {{105, "bad", "featurize", "valence", "too many bonds"}};
  const auto back = run::chunk_record_from_json(run::to_json(r));
  EXPECT_EQ(back.chunk_id, 42u);
  EXPECT_EQ(back.counts.n_failed, 1u);
  ASSERT_EQ(back.hits.size(), 2u);
  EXPECT_EQ(back.hits[1].score, -3.5e-7f);  // float survives exactly
  EXPECT_EQ(back.hits[0].id, "id,1");
  EXPECT_EQ(back.rejects[0].detail, "too many bonds");
}

TEST(options, durations_and_sizes) {
  EXPECT_EQ(parse_duration_s("90", "x"), 90);
  EXPECT_EQ(parse_duration_s("1h30m", "x"), 5400);
  EXPECT_EQ(parse_duration_s("2.5s", "x"), 2.5);
  EXPECT_THROW(parse_duration_s("soon", "stop-after"), usage_error);
  EXPECT_THROW(parse_duration_s("1h30", "stop-after"), usage_error);
  EXPECT_EQ(parse_bytes("64G", "x"), 64ull << 30);
  EXPECT_EQ(parse_bytes("512MiB", "x"), 512ull << 20);
  EXPECT_THROW(parse_bytes("lots", "dram-budget"), usage_error);
  EXPECT_EQ(format_duration(3725), "1h02m05s");
}
