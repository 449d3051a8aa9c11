#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "hpcscreen/core/csv.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/options.hpp"
#include "hpcscreen/run/chunk_record.hpp"
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

// A job script's `mkdir -p $OUT` before the run: the empty folder takes a new run, and has
// nothing to resume.
TEST(run_folder, an_empty_folder_made_beforehand_takes_a_new_run) {
  const auto dir = fresh("made_empty");
  fs::create_directories(dir);
  EXPECT_THROW(run::begin_attempt(dir, true, R"({"model":"a"})", "{}"), run_error);
  EXPECT_EQ(run::begin_attempt(dir, false, R"({"model":"a"})", "{}"), 1);
  EXPECT_TRUE(fs::exists(fs::path(dir) / "run_config.json"));
  EXPECT_THROW(run::begin_attempt(dir, false, R"({"model":"a"})", "{}"), run_error);
}

// A run cut off (SIGKILL) after begin_attempt made its folders and lock, before run_config.json
// was written: the folder holds no run, and the same command starts in it. A folder holding
// anything more is never taken.
TEST(run_folder, a_folder_cut_off_before_its_config_takes_a_new_run) {
  const auto dir = fresh("cut_before_config");
  fs::create_directories(fs::path(dir) / "journal");
  fs::create_directories(fs::path(dir) / "parts");
  std::ofstream(fs::path(dir) / "lock");
  std::ofstream(fs::path(dir) / "run_config.json.tmp") << "{\"sche";
  EXPECT_THROW(run::begin_attempt(dir, true, R"({"model":"a"})", "{}"), run_error);
  EXPECT_EQ(run::begin_attempt(dir, false, R"({"model":"a"})", "{}"), 1);
  EXPECT_FALSE(fs::exists(fs::path(dir) / "run_config.json.tmp"));

  const auto other = fresh("cut_before_config_other");
  fs::create_directories(fs::path(other) / "journal");
  fs::create_directories(fs::path(other) / "parts");
  std::ofstream(fs::path(other) / "parts" / "chunk-0000000000.json") << "{}";
  EXPECT_THROW(run::begin_attempt(other, false, R"({"model":"a"})", "{}"), run_error);
  const auto lock_folder = fresh("cut_before_config_lock_folder");
  fs::create_directories(fs::path(lock_folder) / "lock");  // not a lock file: no leftover
  for (const bool resume : {false, true}) {
    try {
      run::begin_attempt(lock_folder, resume, R"({"model":"a"})", "{}");
      ADD_FAILURE() << "a folder holding a 'lock' folder was taken";
    } catch (const run_error& e) {
      EXPECT_NE(std::string(e.what()).find("holds no run"), std::string::npos) << e.what();
    }
  }
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

// A library moved between attempts is the run's library when its manifest is the same; then
// the run's identity holds its new place. Another manifest at the new place is refused.
TEST(run_folder, resume_follows_a_moved_library_with_the_same_manifest) {
  const auto dir = fresh("moved");
  run::begin_attempt(dir, false, R"({"library":"/scratch/lib","manifest_checksum":"crc32:7"})",
                     "{}");
  try {
    run::begin_attempt(dir, true, R"({"library":"/other/lib","manifest_checksum":"crc32:8"})",
                       "{}");
    FAIL();
  } catch (const run_error& e) {
    EXPECT_NE(std::string(e.what()).find("holds another"), std::string::npos) << e.what();
  }
  EXPECT_EQ(run::begin_attempt(dir, true,
                               R"({"library":"/project/lib","manifest_checksum":"crc32:7"})", "{}"),
            2);
  const auto config = nlohmann::json::parse(std::ifstream(fs::path(dir) / "run_config.json"));
  EXPECT_EQ(config["identity"]["library"], "/project/lib");
  // Its old place is another library now: refused.
  EXPECT_THROW(run::begin_attempt(
                   dir, true, R"({"library":"/scratch/lib","manifest_checksum":"crc32:9"})", "{}"),
               run_error);
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
  // Every field set, each to a value of its own that is not its default, so that a field left out
  // of to_json/chunk_record_from_json, or read back from another key, shows here.
  run::chunk_record r;
  r.chunk_id = 42;
  r.shard = 3;
  r.row_begin = 100;
  r.row_end = 110;
  r.rank = 2;
  r.attempt = 5;
  r.counts = {10, 6, 3, 1, 2};
  r.failure = "s3.h5: Fletcher-32 checksum mismatch";
  ranking::hit first;
  first.score = 1.25f;
  first.key = {3, 101};
  first.id = "id,1";
  first.fields = {"CCO", "ethanol"};
  first.scores = {1.25f, -0.5f};
  ranking::hit second;
  second.score = -3.5e-7f;
  second.key = {4, 104};
  second.id = "b";
  second.fields = {"C"};
  second.scores = {0.75f, -3.5e-7f};
  r.hit_lists = {{first, second}, {second}, {second, first}};
  r.rejects = {{105, "bad", "featurize", "valence", "too many bonds"},
               {106, "worse", "read", "smiles_syntax", "unclosed ring"},
               {108, "worst", "infer", "non_finite", "score is NaN"}};
  r.elapsed_s = 12.375;
  r.end_time_s = 1700000000.25;
  r.score_sample = {0.5f, -2.25f, 7.0f};
  r.outputs = {{"scores/chunk-0000000042.csv", 1234, "crc32:0badf00d"},
               {"predictions/chunk-0000000042.h5", 99, "crc32:12345678"}};

  const auto back = run::chunk_record_from_json(run::to_json(r));
  EXPECT_EQ(back.chunk_id, 42u);
  EXPECT_EQ(back.shard, 3u);
  EXPECT_EQ(back.row_begin, 100u);
  EXPECT_EQ(back.row_end, 110u);
  EXPECT_EQ(back.rank, 2);
  EXPECT_EQ(back.attempt, 5);
  EXPECT_EQ(back.counts.n_read, 10u);
  EXPECT_EQ(back.counts.n_scored, 6u);
  EXPECT_EQ(back.counts.n_rejected, 3u);
  EXPECT_EQ(back.counts.n_failed, 1u);
  EXPECT_EQ(back.counts.n_filtered, 2u);
  EXPECT_EQ(back.failure, r.failure);
  ASSERT_EQ(back.hit_lists.size(), 3u);
  for (std::size_t k = 0; k < r.hit_lists.size(); ++k) {
    ASSERT_EQ(back.hit_lists[k].size(), r.hit_lists[k].size());
    for (std::size_t i = 0; i < r.hit_lists[k].size(); ++i) {
      SCOPED_TRACE("list " + std::to_string(k) + " hit " + std::to_string(i));
      const auto &got = back.hit_lists[k][i], &want = r.hit_lists[k][i];
      EXPECT_EQ(got.score, want.score);  // floats survive exactly
      EXPECT_EQ(got.key, want.key);
      EXPECT_EQ(got.id, want.id);
      EXPECT_EQ(got.fields, want.fields);
      EXPECT_EQ(got.scores, want.scores);
    }
  }
  ASSERT_EQ(back.rejects.size(), r.rejects.size());
  for (std::size_t i = 0; i < r.rejects.size(); ++i) {
    SCOPED_TRACE("reject " + std::to_string(i));
    EXPECT_EQ(back.rejects[i].row, r.rejects[i].row);
    EXPECT_EQ(back.rejects[i].id, r.rejects[i].id);
    EXPECT_EQ(back.rejects[i].stage, r.rejects[i].stage);
    EXPECT_EQ(back.rejects[i].reason, r.rejects[i].reason);
    EXPECT_EQ(back.rejects[i].detail, r.rejects[i].detail);
  }
  EXPECT_EQ(back.elapsed_s, 12.375);
  EXPECT_EQ(back.end_time_s, 1700000000.25);
  EXPECT_EQ(back.score_sample, r.score_sample);
  ASSERT_EQ(back.outputs.size(), 2u);
  EXPECT_EQ(back.outputs[1].file, "predictions/chunk-0000000042.h5");
  EXPECT_EQ(back.outputs[1].bytes, 99u);
  EXPECT_EQ(back.outputs[0].checksum, "crc32:0badf00d");
}

// The outputs a record lists are checked against the files: their presence, size and CRC-32
// (the CRC-32 of "abc" is 352441c2, RFC 1952's reference code).
TEST(chunk_record, listed_outputs_are_checked_for_presence_size_and_checksum) {
  const auto dir = fresh("outputs");
  fs::create_directories(fs::path(dir) / "scores");
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(fs::path(dir) / name, std::ios::binary) << text;
  };
  write("scores/a.csv", "abc");
  write("scores/b.csv", "hello\n");
  run::chunk_record r;
  r.outputs = run::describe_outputs(dir, {"scores/a.csv", "scores/b.csv"});
  ASSERT_EQ(r.outputs.size(), 2u);
  EXPECT_EQ(r.outputs[0].bytes, 3u);
  EXPECT_EQ(r.outputs[0].checksum, "crc32:352441c2");
  EXPECT_EQ(run::damaged_output(dir, r), "");
  write("scores/a.csv", "abd");  // same size, other bytes
  EXPECT_NE(run::damaged_output(dir, r).find("scores/a.csv is not the file written"),
            std::string::npos);
  EXPECT_EQ(run::damaged_output(dir, r, true), "");  // sizes only (the check at an attempt's end)
  write("scores/a.csv", "abc");
  write("scores/b.csv", "hel");
  EXPECT_NE(run::damaged_output(dir, r).find("scores/b.csv holds 3 bytes, 6 were written"),
            std::string::npos);
  EXPECT_NE(run::damaged_output(dir, r, true).find("scores/b.csv holds 3 bytes"),
            std::string::npos);
  fs::remove(fs::path(dir) / "scores" / "b.csv");
  EXPECT_NE(run::damaged_output(dir, r).find("scores/b.csv is missing"), std::string::npos);
  // A listed path that leaves the run folder, or a list that is not one, makes the record
  // unusable when it is read (its chunk is done again).
  auto j = nlohmann::json::parse(run::to_json(r));
  j["outputs"][0][0] = "../elsewhere.csv";
  EXPECT_THROW(run::chunk_record_from_json(j.dump()), run_error);
  for (const auto& bad : {nlohmann::json(nullptr), nlohmann::json::object(),
                          nlohmann::json::array({nlohmann::json::array({"scores/a.csv", 3})})}) {
    j["outputs"] = bad;
    EXPECT_THROW(run::chunk_record_from_json(j.dump()), run_error) << bad.dump();
  }
}

TEST(chunk_record, json_round_trip_keeps_bytes_that_are_not_utf8) {
  // A Latin-1 catalogue: ids, library fields and messages are bytes, kept exactly.
  const std::string latin1 = "caf\xe9";
  run::chunk_record r;
  r.failure = "shard " + latin1 + ".h5 unreadable";
  ranking::hit h;
  h.score = 0.5f;
  h.key = {0, 7};
  h.id = latin1;
  h.fields = {"C" + latin1};
  h.scores = {0.5f};
  r.hit_lists = {{h}};
  r.rejects = {{9, latin1 + "2", "featurize", "smiles_syntax", "bad byte \xff"}};
  std::string text;
  ASSERT_NO_THROW(text = run::to_json(r));
  const auto back = run::chunk_record_from_json(text);
  EXPECT_EQ(back.failure, r.failure);
  ASSERT_EQ(back.hit_lists.size(), 1u);
  ASSERT_EQ(back.hit_lists[0].size(), 1u);
  EXPECT_EQ(back.hit_lists[0][0].id, latin1);
  EXPECT_EQ(back.hit_lists[0][0].fields, h.fields);
  ASSERT_EQ(back.rejects.size(), 1u);
  EXPECT_EQ(back.rejects[0].id, latin1 + "2");
  EXPECT_EQ(back.rejects[0].detail, "bad byte \xff");
  // Bytes that only look like UTF-8 (RFC 3629, section 3: an overlong form, a surrogate, a
  // lead byte F5, a value above U+10FFFF) are bytes too: JSON would refuse them as text.
  for (const std::string id : {"ov\xc0\x80x", "sur\xed\xa0\x80x", "f5\xf5\x80\x80\x80x",
                               "mx\xf4\x90\x80\x80x", "ov3\xe0\x80\xafx"}) {
    r.hit_lists[0][0].id = id;
    ASSERT_NO_THROW(text = run::to_json(r)) << id;
    EXPECT_EQ(run::chunk_record_from_json(text).hit_lists[0][0].id, id);
  }
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"));
}

TEST(chunk_record, reads_records_written_before_hit_lists) {
  // A record as written before December 2026 (run folders of then must still resume): the first
  // ranking's list under "hits", each further one under "extra_hits".
  const std::string text = R"({"chunk":7,"shard":1,"row_begin":0,"row_end":4,"rank":0,
    "attempt":1,"n_read":4,"n_scored":3,"n_rejected":1,"n_failed":0,"failure":"",
    "elapsed_s":0.5,"score_sample":[0.25],
    "hits":[[0.9,1,2,"b",["CC"],[0.9,0.1]],[0.5,1,0,"a",["C"],[0.5,0.3]]],
    "extra_hits":[[[0.3,1,0,"a",["C"],[0.5,0.3]]]],
    "rejects":[[3,"d","featurize","valence","N has 5 bonds"]]})";
  const auto r = run::chunk_record_from_json(text);
  ASSERT_EQ(r.hit_lists.size(), 2u);
  ASSERT_EQ(r.hit_lists[0].size(), 2u);
  EXPECT_EQ(r.hit_lists[0][0].id, "b");
  EXPECT_EQ(r.hit_lists[0][0].key, (record_key{1, 2}));
  EXPECT_EQ(r.hit_lists[0][1].fields, std::vector<std::string>{"C"});
  ASSERT_EQ(r.hit_lists[1].size(), 1u);
  EXPECT_EQ(r.hit_lists[1][0].score, 0.3f);
  EXPECT_EQ(r.hit_lists[1][0].scores, (std::vector<float>{0.5f, 0.3f}));
  EXPECT_EQ(r.counts.n_filtered, 0u);
  EXPECT_EQ(r.end_time_s, 0.0);
  EXPECT_TRUE(r.outputs.empty());  // the workload checks its files' presence
  ASSERT_EQ(r.rejects.size(), 1u);
  EXPECT_EQ(r.rejects[0].reason, "valence");
}

// The records a run may use: shapes worked out by hand for a run of 4 chunks over 2 shards, 2
// rankings, 2 scores and 1 shown field; the chunk is shard 1 rows 10-14.
TEST(chunk_record, shape_is_checked_against_the_run) {
  const run::record_shape shape{4, 2, 2, 2, 1};
  run::chunk_record r;
  r.chunk_id = 3;
  r.shard = 1;
  r.row_begin = 10;
  r.row_end = 14;
  r.counts = {4, 3, 1, 0, 0};  // read, scored, rejected, failed, filtered
  r.rejects = {{13, "d", "featurize", "valence", "N has 5 bonds"}};
  ranking::hit h{0.5f, {1, 12}, "a", {"CCO"}, {0.5f, 0.25f}};
  r.hit_lists = {{h}, {h}};
  EXPECT_NO_THROW(run::check_shape(r, shape));
  auto bad = r;
  bad.hit_lists.pop_back();  // a ranking's list is missing
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  bad.counts = {4, 0, 0, 4, 0};  // ... which a chunk whose shard failed has none of
  bad.rejects.clear();
  bad.hit_lists.clear();
  EXPECT_NO_THROW(run::check_shape(bad, shape));
  bad = r;
  bad.hit_lists.push_back({});  // an empty list past the rankings (older records had one)
  EXPECT_NO_THROW(run::check_shape(bad, shape));
  bad.hit_lists.back() = {h};  // hits for a ranking the run does not have
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  bad = r;
  bad.hit_lists[1] = {h, h};  // one record twice
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  for (const record_key key : {record_key{1, 14}, record_key{1, 9}, record_key{0, 12}}) {
    bad = r;
    bad.hit_lists[0][0].key = key;  // not a row of the chunk
    EXPECT_THROW(run::check_shape(bad, shape), run_error);
  }
  bad = r;
  bad.hit_lists[0][0].scores.push_back(1.0f);  // a score the run does not have
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  bad = r;
  bad.hit_lists[1][0].fields.clear();  // the shown field missing
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  bad = r;
  bad.counts.n_scored = 2;  // counts that do not add up to the chunk's 4 rows
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  bad = r;
  bad.rejects.clear();  // a reject counted but not listed
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  bad = r;
  bad.rejects[0].row = 14;  // a reject past the chunk's rows
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  bad = r;
  bad.hit_lists[0][0].score = std::numeric_limits<float>::infinity();  // 1e39 read as a float
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  bad = r;
  bad.shard = 2;  // a shard the library does not have
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  bad = r;
  bad.chunk_id = 4;
  EXPECT_THROW(run::check_shape(bad, shape), run_error);
  // A record whose hit_lists is not a list does not read at all.
  auto j = nlohmann::json::parse(run::to_json(r));
  j["hit_lists"] = nullptr;
  EXPECT_THROW(run::chunk_record_from_json(j.dump()), run_error);
}

// A temporary name left as a link to a file elsewhere is removed, not written through; a FIFO is
// a special file (reading it would block), a regular file or nothing is not.
TEST(run_folder, temporary_files_are_made_anew_and_fifos_are_not_read) {
  const auto dir = fresh("temporary");
  fs::create_directories(dir);
  const auto elsewhere = (fs::path(dir) / "precious.txt").string();
  std::ofstream(elsewhere) << "keep";
  const auto target = (fs::path(dir) / "out.txt").string();
  fs::create_symlink(elsewhere, target + ".tmp");
  run::write_file_atomically(target, "new");
  std::ifstream kept(elsewhere);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(kept), {}), "keep");
  EXPECT_EQ(run::read_file(target), "new");
  fs::create_symlink(elsewhere, target + ".tmp");
  const auto tmp = run::fresh_temporary(target);
  EXPECT_FALSE(fs::is_symlink(tmp));
  EXPECT_TRUE(fs::is_regular_file(tmp) && fs::file_size(tmp) == 0);

  const auto fifo = (fs::path(dir) / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  EXPECT_TRUE(is_special_file(fifo));
  EXPECT_TRUE(is_special_file(dir));
  EXPECT_FALSE(is_special_file(target));
  EXPECT_FALSE(is_special_file((fs::path(dir) / "nothing").string()));
  EXPECT_THROW(run::read_file(fifo), run_error);  // refused at once, not waited on
}

// Text shown to people (report.html, messages): UTF-8 kept, a Latin-1 byte and a NUL as \xNN.
TEST(csv, shown_text_keeps_utf8_and_shows_other_bytes) {
  using namespace std::string_literals;
  EXPECT_EQ(shown_text("caf\xe9-\xc3\xa9\0x\ty\n\x7f"s), "caf\\xe9-\xc3\xa9\\x00x\ty\n\\x7f");
  EXPECT_EQ(shown_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate is no UTF-8
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
