#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pack/compound_readers.hpp"

namespace fs = std::filesystem;
using namespace hpcscreen;

namespace {
fs::path fresh_dir(const std::string& name) {
  auto d =
      fs::temp_directory_path() / ("hpcscreen_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
string_column column(std::vector<std::string> v) {
  string_column c;
  for (const auto& s : v) c.push_back(s);
  return c;
}
std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}
}  // namespace

TEST(shard, round_trip_of_row_ranges) {
  const auto dir = fresh_dir("shard");
  const auto path = (dir / "s.h5").string();
  const auto ids = column({"a", "", "ccc", "dd"});
  const auto smiles = column({"CCO", "C", "", "c1ccccc1"});
  io::write_shard(path, io::compound_shard_schema, io::compound_fields, {ids, smiles}, {4, 3, 2});
  io::shard_reader r(path, io::compound_shard_schema, io::compound_fields);
  ASSERT_EQ(r.n_records(), 4u);
  const auto part = r.read("smiles", 1, 4);
  ASSERT_EQ(part.size(), 3u);
  EXPECT_EQ(part[0], "C");
  EXPECT_EQ(part[1], "");
  EXPECT_EQ(part[2], "c1ccccc1");
  EXPECT_EQ(r.read("id", 0, 1)[0], "a");
  EXPECT_EQ(r.read("id", 2, 2).size(), 0u);
}

TEST(shard, empty_shard_is_valid) {
  const auto dir = fresh_dir("empty");
  const auto path = (dir / "s.h5").string();
  io::write_shard(path, io::compound_shard_schema, io::compound_fields, {column({}), column({})});
  io::shard_reader r(path, io::compound_shard_schema, io::compound_fields);
  EXPECT_EQ(r.n_records(), 0u);
}

TEST(shard, flipped_byte_in_a_chunk_fails_its_fletcher32_checksum) {
  const auto dir = fresh_dir("flip");
  const auto path = (dir / "s.h5").string();
  std::vector<std::string> many;
  for (int i = 0; i < 200; ++i) many.push_back("QQQQQQQQQQ" + std::to_string(i));
  io::shard_write_options uncompressed;
  uncompressed.deflate_level = 0;  // so the bytes are findable in the file
  io::write_shard(path, io::compound_shard_schema, io::compound_fields,
                  {column(many), column(many)}, uncompressed);
  auto bytes = slurp(path);
  const auto at = bytes.find("QQQQQQQQQQ150");
  ASSERT_NE(at, std::string::npos);
  bytes[at + 3] = 'X';
  write_text(path, bytes);
  io::shard_reader r(path, io::compound_shard_schema, io::compound_fields);
  try {
    r.read("id", 0, 200);
    FAIL() << "damaged chunk was read without error";
  } catch (const shard_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Fletcher32"), std::string::npos) << e.what();
  }
}

TEST(shard, truncated_file_and_wrong_schema_are_named) {
  const auto dir = fresh_dir("trunc");
  const auto path = (dir / "s.h5").string();
  io::write_shard(path, io::compound_shard_schema, io::compound_fields,
                  {column({"a"}), column({"C"})});
  EXPECT_THROW(io::shard_reader(path, "hpcscreen.proteins/1", {"id"}), shard_error);
  fs::resize_file(path, fs::file_size(path) / 2);
  try {
    io::shard_reader r(path, io::compound_shard_schema, io::compound_fields);
    r.read("smiles", 0, 1);
    FAIL();
  } catch (const shard_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
}

TEST(manifest, round_trip_and_clear_errors) {
  const auto dir = fresh_dir("manifest");
  io::manifest m;
  m.kind = "compounds";
  m.shard_schema = io::compound_shard_schema;
  m.fields = io::compound_fields;
  m.shards = {{"shard-00000.h5", 5, "crc32:00000001"}, {"shard-00001.h5", 2, "crc32:00000002"}};
  std::ofstream(dir / io::manifest_file_name) << io::manifest_text(m);
  const auto back = io::read_manifest(dir.string());
  EXPECT_EQ(back.n_records(), 7u);
  EXPECT_EQ(back.shards[1].file, "shard-00001.h5");
  EXPECT_EQ(back.shards[1].checksum, "crc32:00000002");

  const auto missing = fresh_dir("nomanifest");
  try {
    io::read_manifest(missing.string());
    FAIL();
  } catch (const shard_error& e) {
    EXPECT_NE(std::string(e.what()).find("manifest.json"), std::string::npos);
  }
  write_text(
      dir / "manifest.json",
      R"({"schema":"hpcscreen.manifest/1","kind":"compounds","shard_schema":"x","fields":[],"n_records":3,"shards":[{"file":"a.h5","n_records":2}]})");
  EXPECT_THROW(io::read_manifest(dir.string()), shard_error);  // n_records disagrees
  write_text(
      dir / "manifest.json",
      R"({"schema":"hpcscreen.manifest/1","kind":"compounds","shard_schema":"x","fields":[],"shards":[{"file":"../etc/passwd","n_records":2}]})");
  EXPECT_THROW(io::read_manifest(dir.string()), shard_error);
}

TEST(manifest, checksum_is_of_the_bytes_read) {
  // The run's identity names it; the value is Python's zlib.crc32 of the same bytes.
  const auto dir = fresh_dir("manifest_checksum");
  write_text(dir / "manifest.json",
             "{\"schema\":\"hpcscreen.manifest/1\",\"kind\":\"compounds\",\"shard_schema\":\"x\","
             "\"fields\":[],\"n_records\":2,\"shards\":[{\"file\":\"a.h5\",\"n_records\":2}]}\n");
  EXPECT_EQ(io::read_manifest(dir.string()).checksum, "crc32:721ecd81");
}

TEST(readers, smi_lines_ids_comments_blank_and_crlf) {
  const auto dir = fresh_dir("smi");
  write_text(dir / "in.smi",
             "# header comment\r\nCCO ethanol\r\nc1ccccc1\tbenzene extra words\n\n   \nC\n");
  std::vector<pack::compound_record> got;
  const auto counts = pack::read_smi((dir / "in.smi").string(), {},
                                     [&](pack::compound_record&& r) { got.push_back(r); },
                                     [](pack::pack_reject&&) { FAIL(); });
  EXPECT_EQ(counts.n_comments, 1u);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0].smiles, "CCO");
  EXPECT_EQ(got[0].id, "ethanol");
  EXPECT_EQ(got[0].line, 2u);
  EXPECT_EQ(got[1].id, "benzene");
  EXPECT_EQ(got[2].smiles, "");     // blank line kept, rejected later with a reason
  EXPECT_EQ(got[3].smiles, "   ");  // whitespace-only line kept as it is
  EXPECT_EQ(got[4].id, "");
}

TEST(readers, smi_gzip_reads_like_plain) {
  const auto dir = fresh_dir("gz");
  const auto path = (dir / "in.smi.gz").string();
  gzFile gz = gzopen(path.c_str(), "wb");
  gzputs(gz, "CCO a\nCCN b\n");
  gzclose(gz);
  std::vector<pack::compound_record> got;
  pack::read_smi(
      path, {}, [&](pack::compound_record&& r) { got.push_back(r); }, [](auto&&) {});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].smiles, "CCN");
}

TEST(readers, csv_quotes_columns_and_bad_rows) {
  const auto dir = fresh_dir("csv");
  write_text(dir / "in.csv",
             "name,score,SMILES\n"
             "\"aspirin, form I\",1,CC(=O)Oc1ccccc1C(=O)O\n"
             "\"multi\nline\",2,CCO\n"
             "short,3\n"
             "\"q\"\"uote\",4,C\n");
  std::vector<pack::compound_record> got;
  std::vector<pack::pack_reject> rejects;
  pack::read_csv((dir / "in.csv").string(), {},
                 [&](pack::compound_record&& r) { got.push_back(r); },
                 [&](pack::pack_reject&& r) { rejects.push_back(r); });
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].id, "aspirin, form I");
  EXPECT_EQ(got[0].smiles, "CC(=O)Oc1ccccc1C(=O)O");
  EXPECT_EQ(got[1].id, "multi\nline");
  EXPECT_EQ(got[2].id, "q\"uote");
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0].line, 5u);
  EXPECT_NE(rejects[0].reason.find("2 fields"), std::string::npos);

  pack::csv_options named;
  named.smiles_column = "structure";
  EXPECT_THROW(pack::read_csv((dir / "in.csv").string(), named, [](auto&&) {}, [](auto&&) {}),
               usage_error);
}
