// Catalogue inputs as vendors ship them (issue 12): compressed, with headers, CXSMILES, odd
// line ends, broken rows; pack's accounting, --keep-columns and --resume; the featurizer's
// checks before RDKit. Every input is written here; expected values are worked out by hand.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/iostreams/filter/bzip2.hpp>
#include <boost/iostreams/filter/gzip.hpp>
#include <boost/iostreams/filter/lzma.hpp>
#include <boost/iostreams/filter/zstd.hpp>
#include <boost/iostreams/filtering_stream.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/chem/sdf_reader.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/io/manifest.hpp"
#include "hpcscreen/io/shard.hpp"
#include "hpcscreen/pack/compound_readers.hpp"
#include "hpcscreen/pack/pack_library.hpp"
#include "hpcscreen/pack/text_source.hpp"

namespace fs = std::filesystem;
namespace bio = boost::iostreams;
using namespace hpcscreen;

namespace {

fs::path fresh_dir(const std::string& name) {
  auto d = fs::temp_directory_path() /
           ("hpcscreen_test_readers_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Compressed with Boost's compressors (not the code under test, which only decompresses).
std::string compressed(const std::string& kind, const std::string& text) {
  std::ostringstream out(std::ios::binary);
  {
    bio::filtering_ostream f;
    if (kind == "gzip") f.push(bio::gzip_compressor());
    if (kind == "bzip2") f.push(bio::bzip2_compressor());
    if (kind == "xz") f.push(bio::lzma_compressor());
    if (kind == "zstd") f.push(bio::zstd_compressor());
    f.push(out);
    f << text;
  }
  return out.str();
}

struct collected {
  std::vector<pack::compound_record> records;
  std::vector<pack::pack_reject> rejects;
  pack::record_sink on_record() {
    return [this](pack::compound_record&& r) { records.push_back(std::move(r)); };
  }
  pack::reject_sink on_reject() {
    return [this](pack::pack_reject&& r) { rejects.push_back(std::move(r)); };
  }
};

collected read_smi(const fs::path& p, const pack::reader_options& o = {}) {
  collected c;
  const auto counts = pack::read_smi(p.string(), o, c.on_record(), c.on_reject());
  EXPECT_EQ(counts.n_rows, counts.n_records + counts.n_rejects);
  EXPECT_EQ(counts.n_records, c.records.size());
  return c;
}

collected read_csv(const fs::path& p, const pack::reader_options& o = {}) {
  collected c;
  const auto counts = pack::read_csv(p.string(), o, c.on_record(), c.on_reject());
  EXPECT_EQ(counts.n_rows, counts.n_records + counts.n_rejects);
  EXPECT_EQ(counts.n_rejects, c.rejects.size());
  return c;
}

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Every record of a library, shard by shard: (id, smiles, extra fields...).
std::vector<std::vector<std::string>> library_rows(const fs::path& dir) {
  const auto m = io::read_manifest(dir.string());
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : m.shards) {
    io::shard_reader r((dir / s.file).string(), m.shard_schema, m.fields);
    std::vector<string_column> cols;
    for (const auto& f : m.fields) cols.push_back(r.read(f, 0, r.n_records()));
    for (std::size_t i = 0; i < r.n_records(); ++i) {
      std::vector<std::string> row;
      for (const auto& c : cols) row.emplace_back(c[i]);
      rows.push_back(row);
    }
  }
  return rows;
}

const std::string three_smi = "CCO ethanol\nc1ccccc1 benzene\nCC(=O)O acetic_acid\n";

void expect_three(const collected& c) {
  ASSERT_EQ(c.records.size(), 3u);
  EXPECT_EQ(c.records[0].smiles, "CCO");
  EXPECT_EQ(c.records[0].id, "ethanol");
  EXPECT_EQ(c.records[1].smiles, "c1ccccc1");
  EXPECT_EQ(c.records[1].id, "benzene");
  EXPECT_EQ(c.records[2].smiles, "CC(=O)O");
  EXPECT_EQ(c.records[2].id, "acetic_acid");
  EXPECT_EQ(c.records[2].line, 3u);
  EXPECT_TRUE(c.rejects.empty());
}

}  // namespace

TEST(compression, gzip_bzip2_xz_zstd_and_plain_give_the_same_records) {
  const auto dir = fresh_dir("kinds");
  for (const std::string kind : {"plain", "gzip", "bzip2", "xz", "zstd"}) {
    SCOPED_TRACE(kind);
    // The name says nothing about the compression: it is told from the content.
    const auto p = dir / ("in_" + kind + ".smi");
    write_bytes(p, kind == "plain" ? three_smi : compressed(kind, three_smi));
    expect_three(read_smi(p));
    pack::text_source in(p.string());
    EXPECT_STREQ(pack::compression_name(in.kind()), kind.c_str());
  }
}

TEST(compression, concatenated_streams_read_as_one) {
  // pbzip2 and pigz write several streams back to back; all of them are the file.
  const auto dir = fresh_dir("concat");
  for (const std::string kind : {"gzip", "bzip2", "xz", "zstd"}) {
    SCOPED_TRACE(kind);
    const auto p = dir / ("in_" + kind + ".smi");
    write_bytes(p, compressed(kind, "CCO ethanol\nc1ccccc1 benzene\n") +
                       compressed(kind, "CC(=O)O acetic_acid\n"));
    expect_three(read_smi(p));
  }
}

TEST(compression, truncated_data_is_an_error_naming_the_file) {
  const auto dir = fresh_dir("trunc");
  std::string text;
  for (int i = 0; i < 20000; ++i)
    text += "C" + std::to_string(i % 7) + " id" + std::to_string(i) + "\n";
  for (const std::string kind : {"gzip", "bzip2", "xz", "zstd"}) {
    SCOPED_TRACE(kind);
    const auto full = compressed(kind, text);
    const auto p = dir / ("cut_" + kind + ".smi");
    write_bytes(p, full.substr(0, full.size() * 2 / 3));
    const auto msg = what_of([&] { read_smi(p); });
    EXPECT_TRUE(has(msg, p.string())) << msg;
    EXPECT_TRUE(has(msg, "corrupt or truncated")) << msg;
  }
}

// The error names the last line read whole, not the line where the failing read began: a
// gzip file of 400,000 lines cut at two thirds of its bytes is read up to a block before the cut.
TEST(compression, truncated_data_names_the_last_line_read_whole) {
  const auto dir = fresh_dir("trunc_line");
  std::string text;
  for (int i = 0; i < 400000; ++i) text += "C" + std::to_string(i % 7) + " id" + std::to_string(i) + "\n";
  const auto full = compressed("gzip", text);
  const auto p = dir / "cut.smi.gz";
  write_bytes(p, full.substr(0, full.size() * 2 / 3));
  const auto msg = what_of([&] { read_smi(p); });
  const auto at = msg.find("after line ");
  ASSERT_NE(at, std::string::npos) << msg;
  const auto last = std::stoul(msg.substr(at + 11));
  EXPECT_GT(last, 100000u) << msg;  // not line 1: lines up to about a block before the cut
  EXPECT_LT(last, 400000u) << msg;
}

TEST(compression, bzip2_file_given_as_smi_is_decompressed_not_packed_as_bytes) {
  // Regression: a .bz2 packed with --format smi became one garbage record, exit 0.
  const auto dir = fresh_dir("bz2smi");
  write_bytes(dir / "part.bz2", compressed("bzip2", three_smi));
  pack::pack_options o;
  o.inputs = {(dir / "part.bz2").string()};
  o.out_dir = (dir / "lib").string();
  o.format = "smi";
  const auto s = pack::pack_compounds(o);
  EXPECT_EQ(s.n_records, 3u);
  EXPECT_EQ(s.n_pack_rejects, 0u);
  const auto rows = library_rows(dir / "lib");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1], (std::vector<std::string>{"benzene", "c1ccccc1"}));
}

TEST(compression, binary_content_is_refused_with_what_was_found) {
  const auto dir = fresh_dir("binary");
  const char raw[] = "CCO\0\x01\x02\x03 binary";
  const std::string binary(raw, sizeof raw - 1);
  write_bytes(dir / "raw.smi", binary);
  write_bytes(dir / "inner.smi", compressed("gzip", binary));
  write_bytes(dir / "twice.smi", compressed("xz", compressed("bzip2", three_smi)));
  write_bytes(dir / "archive.smi", std::string("PK\x03\x04rest", 8));

  auto msg = what_of([&] { pack::text_source t((dir / "raw.smi").string()); });
  EXPECT_TRUE(has(msg, (dir / "raw.smi").string())) << msg;
  EXPECT_TRUE(has(msg, "NUL byte at byte 3")) << msg;
  msg = what_of([&] { pack::text_source t((dir / "inner.smi").string()); });
  EXPECT_TRUE(has(msg, "gzip-compressed data holding binary data")) << msg;
  msg = what_of([&] { pack::text_source t((dir / "twice.smi").string()); });
  EXPECT_TRUE(has(msg, "xz-compressed data holding bzip2-compressed data")) << msg;
  msg = what_of([&] { pack::text_source t((dir / "archive.smi").string()); });
  EXPECT_TRUE(has(msg, "zip archive")) << msg;

  // pack refuses before it writes anything.
  pack::pack_options o;
  o.inputs = {(dir / "inner.smi").string()};
  o.out_dir = (dir / "lib").string();
  EXPECT_THROW(pack::pack_compounds(o), usage_error);
  EXPECT_FALSE(fs::exists(dir / "lib"));
}

// pzstd writes a skippable frame (magic 0x184D2A5x, a 4-byte length, that many bytes) before
// every frame, the first included (RFC 8878 3.1.2).
TEST(compression, zstd_starting_with_a_skippable_frame_is_zstd) {
  const auto dir = fresh_dir("zstd_skip");
  const std::string skippable("\x50\x2a\x4d\x18\x04\x00\x00\x00\x00\x00\x00\x00", 12);
  write_bytes(dir / "lead.smi.zst", skippable + compressed("zstd", three_smi));
  expect_three(read_smi(dir / "lead.smi.zst"));
}

// Damaged bzip2 decompresses to garbage until its block's CRC is checked: that is damage
// (an error naming it), not binary content.
TEST(compression, corrupt_bzip2_is_damage_not_binary_content) {
  const auto dir = fresh_dir("bz2_corrupt");
  std::string text;
  for (int i = 0; i < 20000; ++i)
    text += "C" + std::to_string(i % 7) + " id" + std::to_string(i) + "\n";
  auto bytes = compressed("bzip2", text);
  for (std::size_t i = bytes.size() / 3; i < bytes.size() / 3 + 64; ++i) bytes[i] = char(~bytes[i]);
  write_bytes(dir / "bad.smi.bz2", bytes);
  const auto msg = what_of([&] { read_smi(dir / "bad.smi.bz2"); });
  EXPECT_TRUE(has(msg, "bzip2 data is corrupt or truncated")) << msg;
  EXPECT_FALSE(has(msg, "not text")) << msg;
}

TEST(line_ends, cr_only_crlf_and_lf_all_end_lines) {
  const auto dir = fresh_dir("cr");
  write_bytes(dir / "mac.smi", "CCO ethanol\rc1ccccc1 benzene\rCC(=O)O acetic_acid\r");
  expect_three(read_smi(dir / "mac.smi"));
  write_bytes(dir / "mixed.smi", "CCO ethanol\r\nc1ccccc1 benzene\rCC(=O)O acetic_acid");
  expect_three(read_smi(dir / "mixed.smi"));
  // Two CRs are two line ends: an empty line between them is a (blank) record.
  write_bytes(dir / "blank.smi", "CCO a\r\rCCN b\r\n");
  const auto c = read_smi(dir / "blank.smi");
  ASSERT_EQ(c.records.size(), 3u);
  EXPECT_EQ(c.records[1].smiles, "");
  EXPECT_EQ(c.records[2].line, 3u);
  write_bytes(dir / "mac.csv", "id,smiles\ra,CCO\rb,CCN\r");
  const auto csv = read_csv(dir / "mac.csv");
  ASSERT_EQ(csv.records.size(), 2u);
  EXPECT_EQ(csv.records[1].id, "b");
  EXPECT_EQ(csv.records[1].smiles, "CCN");
}

TEST(line_ends, crlf_split_across_the_read_buffer_is_one_line_end) {
  // Regression guard: the reader's buffer is 256 KiB; put the CR as its last byte and the LF
  // as the first byte of the next fill.
  const auto dir = fresh_dir("crlf_edge");
  const std::size_t buffer = 1 << 18;
  std::string first = "C " + std::string(buffer - 3, 'x');  // "C xxx...x" then '\r' at buffer-1
  write_bytes(dir / "edge.smi", first + "\r\nCCN second\r\n");
  pack::reader_options o;
  o.max_line_bytes = 0;
  const auto c = read_smi(dir / "edge.smi", o);
  ASSERT_EQ(c.records.size(), 2u);
  EXPECT_EQ(c.records[0].id.size(), buffer - 3);
  EXPECT_EQ(c.records[1].smiles, "CCN");
  EXPECT_EQ(c.records[1].line, 2u);
}

TEST(bom, utf8_byte_order_mark_is_skipped_in_smi_and_csv) {
  const auto dir = fresh_dir("bom");
  write_bytes(dir / "bom.smi", "\xEF\xBB\xBF" + three_smi);
  expect_three(read_smi(dir / "bom.smi"));
  write_bytes(dir / "bom.csv", "\xEF\xBB\xBFsmiles,id\nCCO,ethanol\n");
  const auto c = read_csv(dir / "bom.csv");
  ASSERT_EQ(c.records.size(), 1u);
  EXPECT_EQ(c.records[0].smiles, "CCO");
  EXPECT_EQ(c.records[0].id, "ethanol");
  // The same behind bzip2.
  write_bytes(dir / "bom_bz2.smi", compressed("bzip2", "\xEF\xBB\xBF" + three_smi));
  expect_three(read_smi(dir / "bom_bz2.smi"));
}

TEST(enamine, cxsmiles_tsv_with_idnumber_keeps_the_extension) {
  const auto dir = fresh_dir("enamine");
  const std::string text =
      "smiles\tidnumber\treagent1\treagent2\treaction\tMW\tHAC\tslogP\tInChIKey\n"
      "C[C@H](N)C(=O)O |&1:1|\tZ1234567890\t1\t2\tM_1\t89.09\t6\t-0.58\tQNAJ\n"
      "CCO\tZ0000000002\t3\t4\tM_2\t46.07\t3\t-0.0014\tLFQS\n"
      "CC\"O\tZ0000000003\t5\t6\tM_3\t46.07\t3\t-0.0014\tXXXX\n";
  write_bytes(dir / "REAL_HAC_6.cxsmiles.bz2", compressed("bzip2", text));
  pack::pack_options o;
  o.inputs = {(dir / "REAL_HAC_6.cxsmiles.bz2").string()};
  o.out_dir = (dir / "lib").string();
  o.csv.keep_columns = {"MW", "slogp"};
  const auto s = pack::pack_compounds(o);
  EXPECT_EQ(s.n_rows_read, 3u);
  EXPECT_EQ(s.n_records, 3u);
  const auto rows = library_rows(dir / "lib");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0],
            (std::vector<std::string>{"Z1234567890", "C[C@H](N)C(=O)O |&1:1|", "89.09", "-0.58"}));
  // .cxsmiles fields are literal: a '"' is data (screen rejects the SMILES, pack keeps the row).
  EXPECT_EQ(rows[2][1], "CC\"O");
  const auto m = io::read_manifest((dir / "lib").string());
  EXPECT_EQ(m.fields, (std::vector<std::string>{"id", "smiles", "MW", "slogp"}));
}

TEST(zinc, smi_header_line_is_a_header_and_names_the_id) {
  const auto dir = fresh_dir("zinc");
  write_bytes(dir / "zinc.smi",
              "smiles zinc_id\nCCO ZINC000000000001\nC[C@H](N)C(=O)O |&1:1| ZINC000000000002\n");
  const auto c = read_smi(dir / "zinc.smi");
  ASSERT_EQ(c.records.size(), 2u);
  EXPECT_EQ(c.records[0].smiles, "CCO");
  EXPECT_EQ(c.records[0].id, "ZINC000000000001");
  EXPECT_EQ(c.records[0].line, 2u);
  EXPECT_EQ(c.records[1].smiles, "C[C@H](N)C(=O)O |&1:1|");
  EXPECT_EQ(c.records[1].id, "ZINC000000000002");

  // Column order and case do not matter; an explicit --id-column wins over the common names.
  write_bytes(dir / "cols.smi", "ZINC_ID SMILES Vendor\nZ1 CCO v1\nZ2 CCN v2\n");
  auto d = read_smi(dir / "cols.smi");
  ASSERT_EQ(d.records.size(), 2u);
  EXPECT_EQ(d.records[1].smiles, "CCN");
  EXPECT_EQ(d.records[1].id, "Z2");
  pack::reader_options o;
  o.id_column = "vendor";
  d = read_smi(dir / "cols.smi", o);
  EXPECT_EQ(d.records[1].id, "v2");
}

// A headerless file whose first id is a word that names a SMILES column ("mol", "smiles") is
// data: the line is a header only when that word stands first or alone, or the line begins with
// an id column's name.
TEST(zinc, a_first_id_named_like_a_column_is_data) {
  const auto dir = fresh_dir("smi_not_header");
  for (const std::string first : {"CCO mol", "CCO\tSMILES", "CCO mol name"}) {
    SCOPED_TRACE(first);
    write_bytes(dir / "x.smi", first + "\nCCN aspirin\nc1ccccc1 benzene\n");
    const auto c = read_smi(dir / "x.smi");
    ASSERT_EQ(c.records.size(), 3u);
    EXPECT_EQ(c.records[0].smiles, "CCO");
    EXPECT_EQ(c.records[2].smiles, "c1ccccc1");
    EXPECT_EQ(c.records[2].id, "benzene");
  }
  for (const std::string header : {"Name SMILES", "smiles", "mol name"}) {
    SCOPED_TRACE(header);
    const bool smiles_first = header.rfind("Name", 0) != 0;
    write_bytes(dir / "h.smi", header + "\n" + (smiles_first ? "CCN aspirin\n" : "aspirin CCN\n"));
    const auto c = read_smi(dir / "h.smi");
    ASSERT_EQ(c.records.size(), 1u);
    EXPECT_EQ(c.records[0].smiles, "CCN");
  }
}

// A CSV file named .smi would pack every row as one unparsable SMILES: refused, saying why.
TEST(zinc, a_csv_file_named_smi_is_refused_before_packing) {
  const auto dir = fresh_dir("csv_as_smi");
  write_bytes(dir / "d.smi", "SMILES,ID\nCCO,x1\nCCN,x2\n");
  pack::pack_options o;
  o.inputs = {(dir / "d.smi").string()};
  o.out_dir = (dir / "lib").string();
  const auto msg = what_of([&] { pack::pack_compounds(o); });
  EXPECT_TRUE(has(msg, "comma-separated header")) << msg;
  EXPECT_TRUE(has(msg, "--format csv")) << msg;
  EXPECT_FALSE(fs::exists(dir / "lib" / "manifest.json"));
  o.format = "csv";
  EXPECT_EQ(pack::pack_compounds(o).n_records, 2u);
}

TEST(columns, explicit_columns_win_and_match_any_case) {
  const auto dir = fresh_dir("columns");
  write_bytes(dir / "in.csv", "ID,Name,structure,SMILES\n1,aspirin,CCO,CCN\n");
  auto c = read_csv(dir / "in.csv");
  ASSERT_EQ(c.records.size(), 1u);
  EXPECT_EQ(c.records[0].id, "1");  // 'id' comes before 'name' in the common names
  EXPECT_EQ(c.records[0].smiles, "CCN");
  pack::reader_options o;
  o.id_column = "NAME";
  o.smiles_column = "Structure";
  c = read_csv(dir / "in.csv", o);
  EXPECT_EQ(c.records[0].id, "aspirin");
  EXPECT_EQ(c.records[0].smiles, "CCO");
  o.id_column = "missing";
  EXPECT_TRUE(has(what_of([&] { read_csv(dir / "in.csv", o); }), "no id column named 'missing'"));

  // pack checks every input's header before it writes anything.
  write_bytes(dir / "other.csv", "smiles,title\nCCO,x\n");
  pack::pack_options p;
  p.inputs = {(dir / "other.csv").string(), (dir / "in.csv").string()};
  p.out_dir = (dir / "lib").string();
  p.csv.id_column = "title";
  EXPECT_TRUE(has(what_of([&] { pack::pack_compounds(p); }), "no id column named 'title'"));
  EXPECT_FALSE(fs::exists(dir / "lib"));
}

TEST(encoding, latin1_byte_is_kept_for_the_screen_to_reject) {
  const auto dir = fresh_dir("latin1");
  write_bytes(dir / "l1.smi",
              "C\xE9"
              "C latin\nCCO ok\n");
  const auto c = read_smi(dir / "l1.smi");
  ASSERT_EQ(c.records.size(), 2u);
  EXPECT_EQ(c.records[0].smiles,
            "C\xE9"
            "C");
  const auto r = chem::featurize_smiles(c.records[0].smiles, {});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.reason, "non_ascii");
}

TEST(csv_rows, unterminated_quote_on_row_3_of_5000_rejects_that_row_alone) {
  // Regression: the open quote swallowed the 4,998 rows after it, reported as one reject.
  const auto dir = fresh_dir("quote");
  std::string text = "id,smiles\n";
  for (int i = 1; i <= 5000; ++i) {
    text += (i == 3 ? "\"m3" : "m" + std::to_string(i)) + ",CCO\n";
  }
  write_bytes(dir / "big.csv", text);
  for (const std::uint64_t limit : {100'000ull, 200ull}) {  // runs to end of file / to the limit
    SCOPED_TRACE(limit);
    pack::reader_options o;
    o.max_line_bytes = limit;
    const auto c = read_csv(dir / "big.csv", o);
    ASSERT_EQ(c.records.size(), 4999u);
    ASSERT_EQ(c.rejects.size(), 1u);
    EXPECT_EQ(c.rejects[0].line, 4u);  // row 3 is line 4, after the header
    EXPECT_TRUE(has(c.rejects[0].reason, "unterminated quote")) << c.rejects[0].reason;
    EXPECT_EQ(c.records[1].id, "m2");
    EXPECT_EQ(c.records[2].id, "m4");
    EXPECT_EQ(c.records[2].line, 5u);
    EXPECT_EQ(c.records[4998].id, "m5000");
  }
}

TEST(csv_rows, quoted_newline_that_gives_the_wrong_field_count_rejects_its_first_line) {
  const auto dir = fresh_dir("quote2");
  // Line 2 opens a quote that line 3 closes, but the joined row has 3 fields, not 2.
  write_bytes(dir / "in.csv", "id,smiles\n\"a,CCO\nb\",CCN,extra\nc,CCC\n\"multi\nline\",C\n");
  const auto c = read_csv(dir / "in.csv");
  ASSERT_EQ(c.rejects.size(), 2u);
  EXPECT_EQ(c.rejects[0].line, 2u);
  EXPECT_EQ(c.rejects[1].line, 3u);  // read again on its own: 3 fields
  ASSERT_EQ(c.records.size(), 2u);
  EXPECT_EQ(c.records[0].id, "c");
  EXPECT_EQ(c.records[1].id, "multi\nline");
  EXPECT_EQ(c.records[1].line, 5u);
}

TEST(csv_rows, line_over_the_limit_is_rejected_with_its_line_number) {
  const auto dir = fresh_dir("long");
  write_bytes(dir / "in.csv", "id,smiles\na,CCO\nb," + std::string(500, 'C') + "\nc,CCN\n");
  write_bytes(dir / "in.smi", "CCO a\n" + std::string(500, 'C') + " b\nCCN c\n");
  pack::reader_options o;
  o.max_line_bytes = 100;
  for (const auto& c : {read_csv(dir / "in.csv", o), read_smi(dir / "in.smi", o)}) {
    ASSERT_EQ(c.records.size(), 2u);
    ASSERT_EQ(c.rejects.size(), 1u);
    EXPECT_EQ(c.rejects[0].reason, "line is longer than --max-line-bytes (100 bytes)");
    EXPECT_EQ(c.records[1].smiles, "CCN");
    EXPECT_EQ(c.records[1].id, "c");
  }
  EXPECT_EQ(read_csv(dir / "in.csv", o).rejects[0].line, 3u);
  EXPECT_EQ(read_smi(dir / "in.smi", o).rejects[0].line, 2u);
}

TEST(pack_accounting, every_row_is_in_a_shard_or_in_pack_rejects) {
  const auto dir = fresh_dir("accounting");
  write_bytes(dir / "a.csv", "id,smiles\nx1,CCO\n\"x2,CCN\nx3,CCC,extra\nx4,C\n");
  write_bytes(dir / "b.smi", "# comment\nCCO y1\n\nCCN y2\n");
  pack::pack_options o;
  o.inputs = {(dir / "a.csv").string(), (dir / "b.smi").string()};
  o.out_dir = (dir / "lib").string();
  o.shard_records = 2;
  const auto s = pack::pack_compounds(o);
  // a.csv: 4 rows, x2 (unterminated) and x3 (3 fields) rejected; b.smi: 3 rows incl. the blank.
  EXPECT_EQ(s.n_rows_read, 7u);
  EXPECT_EQ(s.n_records, 5u);
  EXPECT_EQ(s.n_pack_rejects, 2u);
  EXPECT_EQ(s.n_comments, 1u);
  // Shards never span inputs: a.csv -> 1 shard of 2, b.smi -> 2 + 1, named by input.
  EXPECT_EQ(s.n_shards, 3u);
  for (const char* name : {"shard-00000-00000.h5", "shard-00001-00000.h5", "shard-00001-00001.h5"})
    EXPECT_TRUE(fs::exists(dir / "lib" / name)) << name;
  EXPECT_EQ(slurp(dir / "lib" / "pack_rejects.csv"),
            "file,line,reason\n" + (dir / "a.csv").string() +
                ",3,unterminated quote: no closing quote before the end of the file\n" +
                (dir / "a.csv").string() + ",4,\"row has 3 fields, header has 2\"\n");
  EXPECT_FALSE(fs::exists(dir / "lib" / pack::incomplete_marker));
  EXPECT_FALSE(fs::exists(dir / "lib" / "pack_journal.jsonl"));
  EXPECT_FALSE(fs::exists(dir / "lib" / "pack_parts"));
  const auto rows = library_rows(dir / "lib");
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"x1", "CCO"}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"x4", "C"}));
  EXPECT_EQ(rows[2], (std::vector<std::string>{"y1", "CCO"}));
  EXPECT_EQ(rows[3], (std::vector<std::string>{"shard-00001-00000:1", ""}));  // the blank line
  EXPECT_EQ(rows[4], (std::vector<std::string>{"y2", "CCN"}));
}

TEST(pack_resume, killed_pack_is_marked_incomplete_and_resumes_to_the_same_library) {
  const auto dir = fresh_dir("resume");
  std::vector<std::string> inputs;
  for (int f = 0; f < 3; ++f) {
    std::string text = "smiles,id,MW\n";
    for (int i = 0; i < 25; ++i) {
      text += (i == 7 ? std::string("\"broken")
                      : "C" + std::string(static_cast<std::size_t>(i % 5), 'C')) +
              ",f" + std::to_string(f) + "_" + std::to_string(i) + "," + std::to_string(i) + "\n";
    }
    const auto p = dir / ("in" + std::to_string(f) + ".csv.gz");
    write_bytes(p, compressed(f == 1 ? "zstd" : "gzip", text));
    inputs.push_back(p.string());
  }
  pack::pack_options o;
  o.inputs = inputs;
  o.shard_records = 10;
  o.csv.keep_columns = {"MW"};
  o.csv.max_line_bytes = 60;  // the unterminated quote is rejected within a few lines

  o.out_dir = (dir / "whole").string();
  const auto whole = pack::pack_compounds(o);
  // Each input: 25 rows, 1 reject, 24 records in shards of 10, 10, 4.
  EXPECT_EQ(whole.n_records, 72u);
  EXPECT_EQ(whole.n_pack_rejects, 3u);
  EXPECT_EQ(whole.n_shards, 9u);

  // The same pack, killed (SIGKILL: no unwinding, no flushing) after input 1's second shard.
  o.out_dir = (dir / "killed").string();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    o.after_shard_commit = [](std::size_t input, std::size_t shard) {
      if (input == 1 && shard == 1) ::raise(SIGKILL);
    };
    try {
      pack::pack_compounds(o);
    } catch (...) {
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_TRUE(fs::exists(dir / "killed" / pack::incomplete_marker));
  EXPECT_FALSE(fs::exists(dir / "killed" / io::manifest_file_name));
  const auto msg = what_of([&] { io::read_manifest((dir / "killed").string()); });
  EXPECT_TRUE(has(msg, "this library's pack did not complete; rerun pack with --resume")) << msg;

  // Without --resume the folder is refused; with other options too.
  EXPECT_TRUE(has(what_of([&] { pack::pack_compounds(o); }), "--resume"));
  auto other = o;
  other.resume = true;
  other.shard_records = 11;
  EXPECT_TRUE(has(what_of([&] { pack::pack_compounds(other); }), "'shard_records'"));

  o.resume = true;
  const auto resumed = pack::pack_compounds(o);
  EXPECT_EQ(resumed.n_inputs_skipped, 1u);  // input 0 finished before the kill
  EXPECT_EQ(resumed.n_shards_kept, 3u);     // its 3 shards; input 1 is packed again
  EXPECT_EQ(resumed.n_records, 72u);
  EXPECT_EQ(resumed.n_pack_rejects, 3u);
  EXPECT_EQ(resumed.n_rows_read, 75u);
  EXPECT_FALSE(fs::exists(dir / "killed" / pack::incomplete_marker));
  EXPECT_EQ(library_rows(dir / "killed"), library_rows(dir / "whole"));
  auto rejects = [](const fs::path& lib) { return slurp(lib / "pack_rejects.csv"); };
  EXPECT_EQ(rejects(dir / "killed"), rejects(dir / "whole"));
  // A complete library has nothing to resume.
  EXPECT_TRUE(has(what_of([&] { pack::pack_compounds(o); }), "nothing to resume"));
}

TEST(pack_resume, finished_inputs_are_kept_by_their_completion_record_and_checked) {
  const auto dir = fresh_dir("resume_records");
  std::vector<std::string> inputs;
  for (int f = 0; f < 3; ++f) {
    std::string text = "CCO\n";
    for (int i = 0; i < 12; ++i) text += "C" + std::string(static_cast<std::size_t>(i % 4), 'C') + "\n";
    const auto p = dir / ("in" + std::to_string(f) + ".smi");
    write_bytes(p, text);  // no ids: they derive from the shard names
    inputs.push_back(p.string());
  }
  pack::pack_options o;
  o.inputs = inputs;
  o.shard_records = 5;
  o.out_dir = (dir / "whole").string();
  pack::pack_compounds(o);

  // Killed once input 2's first shard is on disk: inputs 0 and 1 have completion records.
  o.out_dir = (dir / "killed").string();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    o.after_shard_commit = [](std::size_t input, std::size_t) {
      if (input == 2) ::raise(SIGKILL);
    };
    try {
      pack::pack_compounds(o);
    } catch (...) {
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_TRUE(fs::exists(dir / "killed" / "pack_parts" / "input-00000.json"));
  EXPECT_TRUE(fs::exists(dir / "killed" / "pack_parts" / "input-00001.json"));
  EXPECT_FALSE(fs::exists(dir / "killed" / "pack_parts" / "input-00002.json"));
  EXPECT_TRUE(fs::exists(dir / "killed" / "shard-00002-00000.h5"));
  // A shard of a finished input that is gone: that input is packed again, the other kept.
  fs::remove(dir / "killed" / "shard-00000-00001.h5");
  o.resume = true;
  const auto resumed = pack::pack_compounds(o);
  EXPECT_EQ(resumed.n_inputs_skipped, 1u);
  EXPECT_EQ(resumed.n_shards_kept, 3u);
  EXPECT_EQ(resumed.n_records, 39u);
  EXPECT_EQ(library_rows(dir / "killed"), library_rows(dir / "whole"));
  EXPECT_EQ(library_rows(dir / "killed")[5][0], "shard-00000-00001:0");
  EXPECT_FALSE(fs::exists(dir / "killed" / "pack_parts"));
}

TEST(featurize_limits, megabyte_smiles_is_rejected_as_too_long_before_rdkit) {
  // Regression: a 1,000,000-character SMILES held RDKit's parser for over 20 minutes.
  const std::string huge(1'000'000, 'C');
  const auto r = chem::featurize_smiles(huge, {500});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.reason, "too_long");
  EXPECT_EQ(r.detail, "the SMILES is 1000000 bytes, more than 10000 (20 per atom of --max-atoms)");
}

TEST(featurize_limits, too_many_atom_tokens_are_rejected_before_rdkit) {
  // 600 'C' tokens with --max-atoms 500: short enough for the byte limit, counted before parsing.
  const auto r = chem::featurize_smiles(std::string(600, 'C'), {500});
  EXPECT_EQ(r.reason, "too_many_atoms");
  EXPECT_EQ(r.detail, "600 atoms exceed --max-atoms 500 (counted in the SMILES before parsing)");
  // Cl and Br count once; bracket hydrogens (removed by RDKit) not at all: 3 heavy atoms.
  const auto ok = chem::featurize_smiles("[H]C(Cl)Br", {3});
  EXPECT_TRUE(ok.ok) << ok.reason << ": " << ok.detail;
  EXPECT_EQ(ok.graph.n_atoms, 3);
  const auto four = chem::featurize_smiles("ClC(Br)[Hg]", {3});
  EXPECT_EQ(four.reason, "too_many_atoms");
}

TEST(featurize_cxsmiles, enhanced_stereo_is_parsed_and_features_are_those_of_the_smiles) {
  const auto plain = chem::featurize_smiles("C[C@H](N)C(=O)O", {});
  const auto cx = chem::featurize_smiles("C[C@H](N)C(=O)O |&1:1|", {});
  ASSERT_TRUE(plain.ok);
  ASSERT_TRUE(cx.ok) << cx.reason << ": " << cx.detail;
  EXPECT_EQ(cx.graph.n_atoms, 6);
  EXPECT_EQ(cx.graph.atom_features, plain.graph.atom_features);
  EXPECT_EQ(cx.graph.edges, plain.graph.edges);
  EXPECT_EQ(cx.graph.bond_features, plain.graph.bond_features);
  // Atom 1 keeps its tetrahedral tag (OGB chirality index 1 or 2, not 0).
  EXPECT_NE(cx.graph.atom_features[1 * chem::n_atom_features + 1], 0);

  // Text after the extension, or whitespace anywhere else, is still not a SMILES.
  EXPECT_EQ(chem::featurize_smiles("CCO |&1:1| name", {}).reason, "invalid_character");
  EXPECT_EQ(chem::featurize_smiles("CCO name", {}).reason, "invalid_character");
  EXPECT_EQ(chem::featurize_smiles("CCO |&1:1", {}).reason, "invalid_character");
  // RDKit 2022.09 ignores a stereo group naming an atom the SMILES lacks; no crash.
  const auto stray = chem::featurize_smiles("CCO |&1:9|", {});
  EXPECT_TRUE(stray.ok) << stray.reason;
  EXPECT_EQ(stray.graph.n_atoms, 3);
}

namespace {

// One-atom molblocks written by hand: their canonical SMILES are the element symbols.
std::string one_atom_molblock(const std::string& title, const std::string& element,
                              const std::string& name_property) {
  return title + "\n  hand-written\n\n" +
         "  1  0  0  0  0  0  0  0  0  0999 V2000\n"
         "    0.0000    0.0000    0.0000 " +
         element + (element.size() == 1 ? " " : "") +
         "  0  0  0  0  0  0  0  0  0  0  0  0\n"
         "M  END\n"
         "> <name>\n" +
         name_property + "\n\n";
}

}  // namespace

TEST(sdf, a_missing_terminator_rejects_that_record_and_keeps_the_next) {
  const auto dir = fresh_dir("sdf_terminator");
  // Each record is 9 lines and "$$$$". Record b (lines 11-19) has no "$$$$": c's title is line 20.
  write_bytes(dir / "x.sdf", one_atom_molblock("a", "C", "first") + "$$$$\n" +
                                 one_atom_molblock("b", "N", "second") +
                                 one_atom_molblock("c", "O", "third") + "$$$$\n" +
                                 one_atom_molblock("d", "S", "fourth") + "$$$$\n");
  std::vector<pack::compound_record> records;
  std::vector<pack::pack_reject> rejects;
  const auto n = chem::read_sdf(
      (dir / "x.sdf").string(), {"name"}, [&](pack::compound_record&& r) { records.push_back(r); },
      [&](pack::pack_reject&& r) { rejects.push_back(r); });
  EXPECT_EQ(n, 3u);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].id, "first");
  EXPECT_EQ(records[0].smiles, "C");
  EXPECT_EQ(records[1].id, "third");
  EXPECT_EQ(records[1].smiles, "O");
  EXPECT_EQ(records[1].line, 20u);
  EXPECT_EQ(records[2].id, "fourth");
  EXPECT_EQ(records[2].smiles, "S");
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0].line, 11u);  // b's title line
  EXPECT_NE(rejects[0].reason.find("no '$$$$' terminator"), std::string::npos) << rejects[0].reason;
  EXPECT_NE(rejects[0].reason.find("line 20"), std::string::npos) << rejects[0].reason;
}

TEST(sdf, a_molblock_without_atoms_is_a_pack_reject_saying_so) {
  const auto dir = fresh_dir("sdf_no_atoms");
  write_bytes(dir / "x.sdf",
              "empty\n  hand-written\n\n"
              "  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n" +
                  one_atom_molblock("a", "C", "first") + "$$$$\n");
  std::vector<pack::compound_record> records;
  std::vector<pack::pack_reject> rejects;
  chem::read_sdf((dir / "x.sdf").string(), {"name"},
                 [&](pack::compound_record&& r) { records.push_back(r); },
                 [&](pack::pack_reject&& r) { rejects.push_back(r); });
  ASSERT_EQ(records.size(), 1u);
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0].line, 1u);
  EXPECT_EQ(rejects[0].reason, "the molblock has no atoms");
}

TEST(csv_rows, a_blank_line_is_a_reject_that_says_so) {
  const auto dir = fresh_dir("csv_blank");
  write_bytes(dir / "x.csv", "smiles,id\nCCO,a\n\nCCN,b\n");
  const auto c = read_csv(dir / "x.csv");
  ASSERT_EQ(c.records.size(), 2u);
  ASSERT_EQ(c.rejects.size(), 1u);
  EXPECT_EQ(c.rejects[0].line, 3u);
  EXPECT_TRUE(has(c.rejects[0].reason, "a blank line")) << c.rejects[0].reason;
}

// A SMILES file truncated while pack reads it (a download still running, a file rewritten):
// the input fails, nothing of it is kept, and --resume packs it again once it is complete.
TEST(pack_inputs, a_file_that_changes_while_read_fails_its_input_and_resumes_when_whole) {
  const auto dir = fresh_dir("changed");
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "CC" + std::string(static_cast<std::size_t>(i % 7), 'C') + " m" + std::to_string(i) + "\n";
  const auto in = dir / "big.smi";
  write_bytes(in, text);
  pack::pack_options o;
  o.inputs = {(dir / "." / "big.smi").string()};  // resumed below as "big.smi" without "./"
  o.out_dir = (dir / "lib").string();
  o.shard_records = 500;
  o.csv.max_line_bytes = 1000;
  bool truncated = false;
  o.after_shard_commit = [&](std::size_t, std::size_t shard) {
    if (shard == 0 && !truncated) {
      fs::resize_file(in, text.size() / 2);  // half the file vanishes under the reader
      truncated = true;
    }
  };
  try {
    pack::pack_compounds(o);
    FAIL() << "a truncated input was packed";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("changed while it was read"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "lib" / "manifest.json"));
  write_bytes(in, text);  // the complete file again (a new size and time)
  o.inputs = {in.string()};
  o.after_shard_commit = nullptr;
  o.resume = true;
  const auto s = pack::pack_compounds(o);
  EXPECT_EQ(s.n_records, 5000u);
  EXPECT_EQ(s.n_pack_rejects, 0u);
  EXPECT_TRUE(fs::exists(dir / "lib" / "manifest.json"));
}
