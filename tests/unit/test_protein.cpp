// Tokenization, windowing and batching of protein sequences, against hand-worked values.
// ProtBert's vocabulary: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 L=5 A=6 G=7 V=8 E=9 S=10
// I=11 K=12 R=13 D=14 T=15 P=16 N=17 Q=18 F=19 Y=20 M=21 H=22 C=23 W=24 X=25 U=26 B=27 Z=28 O=29
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "hpcscreen/batch/token_batch.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/pack/fasta_reader.hpp"
#include "hpcscreen/tokenize/tokenizer.hpp"

using namespace hpcscreen;
using ids = std::vector<std::int64_t>;

namespace {
tokenize::tokenizer_config protbert(std::int64_t max_length = 1024) {
  tokenize::tokenizer_config c;
  c.tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "L", "A", "G", "V", "E",
              "S",     "I",     "K",     "R",     "D",      "T", "P", "N", "Q", "F",
              "Y",     "M",     "H",     "C",     "W",      "X", "U", "B", "Z", "O"};
  c.map = {{'U', 'X'}, {'Z', 'X'}, {'O', 'X'}, {'B', 'X'}};
  c.max_length = max_length;
  return c;
}
}  // namespace

TEST(tokenizer, protbert_ids_case_rare_residues_and_stop) {
  tokenize::tokenizer t(protbert());
  const auto e = t.encode("MKtuX*");
  ASSERT_TRUE(e.ok) << e.reason;
  EXPECT_EQ(e.ids, (ids{21, 12, 15, 25, 25}));  // t -> T; u -> U -> X
  EXPECT_EQ(e.n_mapped, 1u);
  EXPECT_TRUE(e.stop_removed);
  EXPECT_EQ(t.encode("BZOU").ids, (ids{25, 25, 25, 25}));
  EXPECT_EQ(t.max_residues(), 1022);
}

TEST(tokenizer, unknown_letters_follow_the_model_rule) {
  tokenize::tokenizer t(protbert());
  const auto e = t.encode("MJK");
  ASSERT_TRUE(e.ok);
  EXPECT_EQ(e.ids, (ids{21, 1, 12}));
  EXPECT_EQ(e.n_unknown, 1u);
  auto strict = protbert();
  strict.reject_unknown = true;
  EXPECT_EQ(tokenize::tokenizer(strict).encode("MJK").reason, "unknown_residue");
}

TEST(tokenizer, rejects_with_reasons) {
  tokenize::tokenizer t(protbert());
  EXPECT_EQ(t.encode("").reason, "empty_sequence");
  EXPECT_EQ(t.encode("*").reason, "empty_sequence");
  EXPECT_EQ(t.encode("JJJ").reason, "all_unknown");
  const auto digit = t.encode("MK1A");
  EXPECT_EQ(digit.reason, "invalid_character");
  EXPECT_NE(digit.detail.find("residue 3"), std::string::npos) << digit.detail;
  EXPECT_EQ(t.encode("MK*A").reason, "invalid_character");
  EXPECT_EQ(t.encode("MK-A").reason, "invalid_character");
  EXPECT_EQ(t.encode("MK\xc3\xa9").reason, "invalid_character");
}

TEST(tokenizer, config_from_model_json) {
  const auto c = tokenize::parse_tokenizer_config(
      R"({"tokenizer": {"tokens": ["[PAD]","[UNK]","[CLS]","[SEP]","A","X"], "max_length": 10, "map": {"U": "X"}}})",
      "m.pt");
  tokenize::tokenizer t(c);
  EXPECT_EQ(t.encode("AUa").ids, (ids{4, 5, 4}));
  EXPECT_EQ(t.max_residues(), 8);
  EXPECT_THROW(tokenize::parse_tokenizer_config(R"({"tokenizer": {"tokens": []}})", "m.pt"),
               model_error);
  EXPECT_THROW(tokenize::tokenizer(tokenize::parse_tokenizer_config(
                   R"({"tokenizer": {"tokens": ["A"], "max_length": 10}})", "m.pt")),
               model_error);  // no [PAD]
}

TEST(windows, short_sequence_is_one_window) {
  const auto w = tokenize::plan_windows(5, 8, 2);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].begin, 0);
  EXPECT_EQ(w[0].end, 5);
  EXPECT_EQ(w[0].keep_end, 5);
}

TEST(windows, overlaps_split_at_their_middle) {
  // length 10, window 4, overlap 2: [0,4) [2,6) [4,8) [6,10); overlaps [2,4) [4,6) [6,8) split at
  // 3, 5, 7.
  const auto w = tokenize::plan_windows(10, 4, 2);
  ASSERT_EQ(w.size(), 4u);
  const std::vector<std::array<std::int64_t, 4>> expected{
      {0, 4, 0, 3}, {2, 6, 3, 5}, {4, 8, 5, 7}, {6, 10, 7, 10}};
  for (std::size_t k = 0; k < 4; ++k) {
    EXPECT_EQ((std::array<std::int64_t, 4>{w[k].begin, w[k].end, w[k].keep_begin, w[k].keep_end}),
              expected[k])
        << k;
  }
  // length 11, window 4, overlap 1: [0,4) [3,7) [6,10) and the last aligned to the end, [7,11).
  const auto v = tokenize::plan_windows(11, 4, 1);
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[3].begin, 7);
  EXPECT_EQ(v[2].keep_begin, 6);
  EXPECT_EQ(v[2].keep_end, 8);  // overlap [7,10) splits at 8
  EXPECT_EQ(v[3].keep_begin, 8);
}

TEST(windows, titin_every_residue_kept_exactly_once) {
  const auto w = tokenize::plan_windows(35000, 1022, 255);
  std::int64_t next = 0;
  for (const auto& x : w) {
    EXPECT_EQ(x.keep_begin, next);
    EXPECT_LE(x.begin, x.keep_begin);
    EXPECT_LE(x.keep_end, x.end);
    EXPECT_LE(x.end - x.begin, 1022);
    next = x.keep_end;
  }
  EXPECT_EQ(next, 35000);
}

TEST(token_batch, length_aware_fills_the_token_budget) {
  // lengths 5, 100, 7, 98, 6 with 256 tokens: [100, 98] (2x100=200), [7, 6, 5] (3x7=21)
  const std::vector<std::int64_t> lengths{5, 100, 7, 98, 6};
  const auto b = batch::plan_length_aware(lengths, {256, 64});
  const std::vector<std::vector<std::size_t>> expected{{1, 3}, {2, 4, 0}};
  EXPECT_EQ(b, expected);
  const auto p = batch::padding_of(b, lengths);
  EXPECT_EQ(p.real_tokens, 216u);
  EXPECT_EQ(p.padded_tokens, 221u);  // 2x100 + 3x7
  const auto f = batch::padding_of(batch::plan_fixed(5, 2), lengths);
  EXPECT_EQ(f.padded_tokens, 2u * 100 + 2u * 98 + 6u);  // [5,100] [7,98] [6]
}

TEST(fasta, multi_line_blank_lines_crlf_and_gzip) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("hpcscreen_fasta_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "in.fa.gz").string();
  gzFile gz = gzopen(path.c_str(), "wb");
  gzputs(gz, "\r\n>sp|P1|X first protein\r\nMKT AY\r\n\r\nIAK\r\n>p2\nmk*\n>empty\n>p4 tail\nAC\n");
  gzclose(gz);
  std::vector<pack::protein_record> got;
  std::vector<pack::pack_reject> rejects;
  pack::read_fasta(
      path, [&](auto&& r) { got.push_back(r); }, [&](auto&& r) { rejects.push_back(r); });
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].id, "sp|P1|X");
  EXPECT_EQ(got[0].description, "first protein");
  EXPECT_EQ(got[0].sequence, "MKTAYIAK");
  EXPECT_EQ(got[0].line, 2u);
  EXPECT_EQ(got[1].sequence, "mk*");  // kept as written: the tokenizer decides
  EXPECT_EQ(got[2].sequence, "");     // packed; annotate rejects it as empty_sequence
  EXPECT_EQ(got[3].sequence, "AC");
  EXPECT_TRUE(rejects.empty());
}

TEST(fasta, truncated_last_record_and_text_before_the_first_header) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("hpcscreen_fasta2_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "in.fa").string();
  std::ofstream(path) << "MKTA\n>p1\nAAA\n>cut_off";
  std::vector<pack::protein_record> got;
  std::vector<pack::pack_reject> rejects;
  pack::read_fasta(
      path, [&](auto&& r) { got.push_back(r); }, [&](auto&& r) { rejects.push_back(r); });
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(rejects.size(), 2u);
  EXPECT_EQ(rejects[0].line, 1u);
  EXPECT_NE(rejects[1].reason.find("truncated"), std::string::npos);
  EXPECT_EQ(rejects[1].line, 4u);
}

TEST(fasta, semicolon_lines_are_comments) {
  // Pearson's FASTA: ';' starts a comment line, before the first header or inside a record.
  const auto dir =
      std::filesystem::temp_directory_path() / ("hpcscreen_fasta4_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "in.fa").string();
  std::ofstream(path) << ";LCBO - Prolactin precursor\n;comment two\n>p1 x;y\nMKT\n;mid\nAY\n";
  std::vector<pack::protein_record> got;
  std::vector<pack::pack_reject> rejects;
  pack::read_fasta(
      path, [&](auto&& r) { got.push_back(r); }, [&](auto&& r) { rejects.push_back(r); });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].description, "x;y");
  EXPECT_EQ(got[0].sequence, "MKTAY");
  EXPECT_TRUE(rejects.empty());
}

TEST(fasta, broken_gzip_names_file_and_line) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("hpcscreen_fasta3_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "in.fa.gz").string();
  gzFile gz = gzopen(path.c_str(), "wb");
  for (int i = 0; i < 2000; ++i) gzputs(gz, ">p\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ\n");
  gzclose(gz);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  try {
    pack::read_fasta(
        path, [](auto&&) {}, [](auto&&) {});
    FAIL() << "a truncated gzip stream was read without error";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line"), std::string::npos) << e.what();
  }
}
