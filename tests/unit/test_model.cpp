#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/core/error.hpp"
#include "hpcscreen/infer/bert_model.hpp"
#include "hpcscreen/infer/gnn_model.hpp"

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
