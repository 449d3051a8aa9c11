#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/core/half.hpp"
#include "hpcscreen/io/annotation_file.hpp"
#include "hpcscreen/io/embedding_export.hpp"

namespace fs = std::filesystem;
using namespace hpcscreen;

namespace {
std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace

// Every half value survives half → float → half; NaNs stay NaN.
TEST(float16, every_half_round_trips) {
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = half_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f)))) << h;
      continue;
    }
    EXPECT_EQ(float_to_half(f), h) << h;
  }
}

// Hand-worked values: normals, subnormals, ties to even, overflow at 65520, signed zero.
TEST(float16, rounds_to_nearest_even) {
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // the tie rounds to even: infinity
  EXPECT_EQ(float_to_half(1e6f), 0x7c00);
  EXPECT_EQ(float_to_half(-1e6f), 0xfc00);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // half of it: tie to even (zero)
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: to even (1); 1 + 3*2^-11: up to 1 + 2^-9.
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_half(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::nanf("")))));
  // Rounding error at most half an ulp over a sweep of floats.
  for (std::uint32_t u = bits(1e-3f); u < bits(6e4f); u += 4099) {
    const float f = from_bits(u);
    const float r = half_to_float(float_to_half(f));
    const float ulp = std::ldexp(1.0f, std::ilogb(f) - 10);
    EXPECT_LE(std::fabs(r - f), ulp / 2) << f;
  }
}

TEST(embedding_file, round_trip_and_extent) {
  const auto dir = fs::temp_directory_path() / ("hpcscreen_test_emb_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  io::annotation_chunk a;
  a.shard_file = "shard-00000.h5";
  a.row_begin = 10;
  a.row_end = 13;
  a.embedding = true;
  a.per_residue = false;
  a.float16 = true;
  a.hidden_size = 3;
  a.has_per_sequence = a.has_per_residue = true;
  a.rows = {10, 12};
  a.ids.push_back("a");
  a.ids.push_back("b/c");
  a.lengths = {2, 1};
  a.residue_offsets = {0, 2, 3};
  for (int k = 0; k < 6; ++k) {
    const auto h = float_to_half(0.5f * static_cast<float>(k));
    a.per_sequence_bytes.insert(a.per_sequence_bytes.end(),
                                reinterpret_cast<const std::uint8_t*>(&h),
                                reinterpret_cast<const std::uint8_t*>(&h) + 2);
  }
  for (int k = 0; k < 9; ++k) {
    const auto h = float_to_half(-1.0f * static_cast<float>(k));
    a.per_residue_bytes.insert(a.per_residue_bytes.end(), reinterpret_cast<const std::uint8_t*>(&h),
                               reinterpret_cast<const std::uint8_t*>(&h) + 2);
  }
  const auto path = (dir / "chunk.h5").string();
  io::write_annotation_chunk(path, a);
  const auto b = io::read_annotation_chunk(path);
  EXPECT_TRUE(b.embedding);
  EXPECT_TRUE(b.float16);
  EXPECT_EQ(b.hidden_size, 3u);
  EXPECT_TRUE(b.labels.empty());
  EXPECT_EQ(b.rows, a.rows);
  EXPECT_EQ(b.residue_offsets, a.residue_offsets);
  EXPECT_EQ(b.per_sequence_bytes, a.per_sequence_bytes);
  EXPECT_EQ(b.per_residue_bytes, a.per_residue_bytes);
  const auto e = io::read_embedding_extent(path);
  EXPECT_EQ(e.n_records, 2u);
  EXPECT_EQ(e.n_residues, 3u);
  EXPECT_TRUE(e.has_per_sequence && e.has_per_residue && e.float16);

  // Files whose datasets disagree with each other (damaged or edited) are refused, not read past
  // their ends: each case is the file above with one thing wrong.
  const auto refused = [&](const std::string& what, auto&& spoil) {
    SCOPED_TRACE(what);
    auto bad = a;
    spoil(bad);
    const auto p = (dir / (what + ".h5")).string();
    io::write_annotation_chunk(p, bad);
    EXPECT_THROW(io::read_annotation_chunk(p), shard_error);
  };
  // (The writer itself refuses matrices of the wrong size; those were checked on files edited
  // with h5py.)
  refused("offsets_decreasing", [](io::annotation_chunk& x) { x.residue_offsets = {0, 4, 3}; });
  refused("row_outside_the_chunk", [](io::annotation_chunk& x) { x.rows = {10, 13}; });
  refused("row_twice", [](io::annotation_chunk& x) { x.rows = {12, 12}; });
  refused("lengths_missing", [](io::annotation_chunk& x) { x.lengths = {2}; });
  fs::remove_all(dir);
}

TEST(embedding_export, ids_become_valid_dataset_names) {
  EXPECT_EQ(io::dataset_name_for_id("sp|P69905|HBA_HUMAN"), "sp|P69905|HBA_HUMAN");
  EXPECT_EQ(io::dataset_name_for_id("a/b%c"), "a%2Fb%25c");
  EXPECT_EQ(io::dataset_name_for_id("."), "%2E");
  EXPECT_EQ(io::dataset_name_for_id(".."), "%2E%2E");
}
