#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/infer/bert_model.hpp"
#include "hpcscreen/infer/gnn_model.hpp"
#include "hpcscreen/infer/precision.hpp"

using namespace hpcscreen;

namespace {
std::string model(const std::string& name) {
  const char* dir = std::getenv("HPCSCREEN_TEST_MODELS");
  return std::string(dir ? dir : "models") + "/" + name;
}
std::string load_error(const std::string& name) {
  try {
    infer::gnn_model m(model(name));
  } catch (const model_error& e) {
    return e.what();
  }
  return "";
}
batch::graph_batch batch_of(const std::vector<std::string>& smiles,
                            std::vector<chem::mol_graph>& keep) {
  chem::silence_rdkit_logs();
  keep.clear();
  for (const auto& s : smiles) keep.push_back(chem::featurize_smiles(s, {}).graph);
  std::vector<const chem::mol_graph*> ptrs;
  for (const auto& g : keep) ptrs.push_back(&g);
  return batch::assemble(ptrs);
}
}  // namespace

TEST(gnn_model, loads_metadata) {
  infer::gnn_model m(model("gnn.pt"));
  EXPECT_EQ(m.metadata().tasks, (std::vector<std::string>{"activity", "toxicity"}));
  EXPECT_EQ(m.metadata().rank_task_index(), 0u);
  EXPECT_TRUE(m.metadata().higher_is_better);
}

// Expected scores come from Python: Python featurizer, PyTorch model, one molecule per batch.
TEST(gnn_model, scores_match_the_python_reference_in_one_batch) {
  std::ifstream in(model("expected_scores.json"));
  ASSERT_TRUE(in) << "run the make_test_models fixture first";
  const auto expected = nlohmann::json::parse(in);
  std::vector<std::string> smiles;
  for (const auto& [s, _] : expected.items()) smiles.push_back(s);
  infer::configure_threads(2);
  infer::gnn_model m(model("gnn.pt"));
  std::vector<chem::mol_graph> keep;
  const auto scores = m.score(batch_of(smiles, keep));
  ASSERT_EQ(scores.size(), smiles.size() * 2);
  for (std::size_t i = 0; i < smiles.size(); ++i) {
    for (std::size_t t = 0; t < 2; ++t) {
      EXPECT_NEAR(scores[i * 2 + t], expected[smiles[i]][t].get<float>(), 1e-5) << smiles[i];
    }
  }
}

TEST(gnn_model, dense_variant_gives_the_same_scores) {
  infer::gnn_model sparse(model("gnn.pt")), dense(model("gnn_dense.pt"));
  std::vector<chem::mol_graph> keep;
  const auto b =
      batch_of({"CCO", "c1ccccc1O", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "[Na+].[Cl-]", "C#N"}, keep);
  const auto a = sparse.score(b), d = dense.score(b);
  ASSERT_EQ(a.size(), d.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], d[i], 1e-5);
}

TEST(gnn_model, contract_violations_are_refused_with_what_was_expected) {
  EXPECT_NE(load_error("missing.pt").find("does not exist"), std::string::npos);
  EXPECT_NE(load_error("not_torchscript.pt").find("cannot load TorchScript"), std::string::npos);
  EXPECT_NE(load_error("no_metadata.pt").find("no hpcscreen.json"), std::string::npos);
  const auto v2 = load_error("featurizer_v2.pt");
  EXPECT_NE(v2.find("ogb-smiles2graph/2"), std::string::npos) << v2;
  EXPECT_NE(v2.find("ogb-smiles2graph/1"), std::string::npos) << v2;
  EXPECT_NE(load_error("wrong_kind.pt").find("kind is 'bert'"), std::string::npos);
  const auto shape = load_error("wrong_shape.pt");
  EXPECT_NE(shape.find("expected float32 [2, 2]"), std::string::npos) << shape;
  EXPECT_NE(load_error("three_tasks_declared.pt").find("expected float32 [2, 3]"),
            std::string::npos);
  EXPECT_NE(load_error("wrong_arity.pt").find("takes 2 inputs, expected 5"), std::string::npos);
}

// An encoder ("output_level": "embedding") needs no labels; the probe batch fixes H, and a
// Hugging Face-style tuple's first element is used.
TEST(bert_model, encoder_returns_hidden_states_of_the_size_the_probe_found) {
  for (const auto* name : {"bert_encoder.pt", "bert_encoder_tuple.pt"}) {
    infer::bert_model m(model(name));
    EXPECT_TRUE(m.metadata().embedding);
    EXPECT_FALSE(m.metadata().per_residue);
    EXPECT_TRUE(m.metadata().labels.empty());
    EXPECT_EQ(m.metadata().hidden_size, 16);
    const std::vector<std::int64_t> ids = {2, 6, 5, 3}, mask = {1, 1, 1, 1};
    const auto out = m.run(ids, mask, 1, 4);
    EXPECT_EQ(out.n_labels, 16);
    EXPECT_EQ(out.values.size(), 4u * 16u);
  }
}

TEST(bert_model, encoder_whose_output_is_not_B_L_H_is_refused_at_load) {
  try {
    infer::bert_model m(model("bert_encoder_wrong_shape.pt"));
    FAIL() << "loaded";
  } catch (const model_error& e) {
    EXPECT_NE(std::string(e.what()).find("expected float32 [2, 7, H]"), std::string::npos) << e.what();
  }
}

// Reduced precision: each precision this CPU runs is converted from the same FP32 file and
// scores like FP32 within a stated tolerance; a precision the CPU lacks is refused by name.
namespace {
// The test models are random (hidden 16), their outputs logits of order 1. BF16 keeps 8
// significant bits (relative error 2^-8 per rounding, a few roundings deep) and INT8 weights
// 1/255 of each row's range: 0.05 absolute is several times what either gives here.
constexpr float reduced_precision_tolerance = 0.05f;

bool cpu_runs(infer::precision p) {
  const auto cpu = infer::detect_cpu_features();
  return p == infer::precision::bf16 ? cpu.runs_bf16() : cpu.runs_int8();
}

struct fake_cpu {  // HPCSCREEN_FAKE_CPU_FEATURES for one scope
  explicit fake_cpu(const char* list) { setenv("HPCSCREEN_FAKE_CPU_FEATURES", list, 1); }
  ~fake_cpu() { unsetenv("HPCSCREEN_FAKE_CPU_FEATURES"); }
};

std::vector<float> bert_logits(infer::bert_model& m, std::int64_t& batch, std::int64_t& length) {
  tokenize::tokenizer tok(m.metadata().tokenizer);
  const std::vector<std::string> seqs = {"MKTAYIAKQRQISFVKSHFSRQ", "GGSGG", "ACDEFGHIKLMNPQRSTVWY"};
  length = 0;
  for (const auto& s : seqs) length = std::max<std::int64_t>(length, s.size() + tok.n_special());
  batch = static_cast<std::int64_t>(seqs.size());
  std::vector<std::int64_t> ids(batch * length, tok.pad_id()), mask(batch * length, 0);
  for (std::int64_t b = 0; b < batch; ++b) {
    const auto enc = tok.encode(seqs[b]);
    std::int64_t p = b * length;
    ids[p++] = tok.cls_id();
    for (auto id : enc.ids) ids[p++] = id;
    ids[p++] = tok.sep_id();
    std::fill(mask.begin() + b * length, mask.begin() + p, 1);
  }
  return m.run(ids, mask, batch, length).values;
}
}  // namespace

class reduced_precision : public ::testing::TestWithParam<infer::precision> {};

TEST_P(reduced_precision, gnn_scores_agree_with_fp32) {
  const auto p = GetParam();
  if (!cpu_runs(p)) {
    GTEST_SKIP() << "this CPU lacks the ISA for " << infer::precision_name(p)
                 << " (CPUID: no AVX512_BF16 / AVX512_VNNI)";
  }
  infer::configure_threads(1);
  infer::gnn_model fp32(model("gnn.pt")), reduced(model("gnn.pt"), infer::precision_name(p));
  EXPECT_EQ(reduced.precision().used, p);
  EXPECT_GT(reduced.precision().n_converted, 0u);
  EXPECT_EQ(reduced.precision().quantized_engine, "onednn");
  std::vector<chem::mol_graph> keep;
  const auto b = batch_of({"CCO", "c1ccccc1O", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "[Na+].[Cl-]", "C#N",
                           "O=C1NC(=O)C(=O)N1", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"},
                          keep);
  const auto a = fp32.score(b), r = reduced.score(b);
  ASSERT_EQ(a.size(), r.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], r[i], reduced_precision_tolerance);
}

TEST_P(reduced_precision, bert_logits_agree_with_fp32) {
  const auto p = GetParam();
  if (!cpu_runs(p)) {
    GTEST_SKIP() << "this CPU lacks the ISA for " << infer::precision_name(p);
  }
  infer::configure_threads(1);
  infer::bert_model fp32(model("bert_residue.pt")),
      reduced(model("bert_residue.pt"), infer::precision_name(p));
  EXPECT_EQ(reduced.precision().used, p);
  std::int64_t batch = 0, length = 0;
  const auto a = bert_logits(fp32, batch, length), r = bert_logits(reduced, batch, length);
  ASSERT_EQ(a.size(), r.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], r[i], reduced_precision_tolerance);
}

INSTANTIATE_TEST_SUITE_P(precisions, reduced_precision,
                         ::testing::Values(infer::precision::bf16, infer::precision::int8),
                         [](const auto& info) { return infer::precision_name(info.param); });

TEST(precision, a_precision_the_cpu_lacks_is_refused_naming_the_isa) {
  fake_cpu none("");
  auto refusal = [](const char* p) {
    try {
      infer::gnn_model m(model("gnn.pt"), p);
    } catch (const infer::precision_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(refusal("bf16").find("AVX512_BF16"), std::string::npos) << refusal("bf16");
  EXPECT_NE(refusal("int8").find("AVX512_VNNI"), std::string::npos) << refusal("int8");
  EXPECT_NE(refusal("int8").find("HPCSCREEN_FAKE_CPU_FEATURES"), std::string::npos);
  infer::gnn_model automatic(model("gnn.pt"), "auto");
  EXPECT_EQ(automatic.precision().used, infer::precision::fp32);
  EXPECT_FALSE(automatic.precision().reason.empty());
}

TEST(precision, auto_follows_the_cpu_features) {
  infer::cpu_features none, vnni, bf16;
  vnni.avx512_vnni = vnni.os_avx512 = true;
  bf16 = vnni;
  bf16.avx512_bf16 = true;
  using infer::model_family;
  using infer::precision;
  EXPECT_EQ(infer::choose_precision("auto", model_family::bert, none).used, precision::fp32);
  EXPECT_EQ(infer::choose_precision("auto", model_family::bert, vnni).used, precision::int8);
  EXPECT_EQ(infer::choose_precision("auto", model_family::bert, bf16).used, precision::bf16);
  EXPECT_EQ(infer::choose_precision("auto", model_family::gnn, bf16).used, precision::bf16);
  EXPECT_EQ(infer::choose_precision("fp32", model_family::gnn, none).used, precision::fp32);
  EXPECT_THROW(infer::choose_precision("bf16", model_family::gnn, vnni), infer::precision_error);
  EXPECT_THROW(infer::choose_precision("fp16", model_family::gnn, bf16), usage_error);
  // AVX-512 instructions the kernel has not enabled (XCR0) do not count.
  auto disabled = bf16;
  disabled.os_avx512 = false;
  EXPECT_THROW(infer::choose_precision("int8", model_family::gnn, disabled), infer::precision_error);
}
