// Featurization against hand-worked OGB smiles2graph features. Index conventions (OGB's
// allowable lists): atomic number n -> n-1; chirality [UNSPECIFIED, CW, CCW, OTHER, misc];
// degree 0..10; formal charge -5..5 -> c+5; H count 0..8; radicals 0..4; hybridization
// [SP, SP2, SP3, SP3D, SP3D2, misc]; bond type [SINGLE, DOUBLE, TRIPLE, AROMATIC, misc];
// bond stereo [NONE, Z, E, CIS, TRANS, ANY].
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/chem/featurizer.hpp"

using namespace hpcscreen::chem;
using feats = std::vector<std::int64_t>;

namespace {
mol_graph graph_of(const std::string& smiles) {
  silence_rdkit_logs();
  auto r = featurize_smiles(smiles, {});
  EXPECT_TRUE(r.ok) << smiles << ": " << r.reason << " " << r.detail;
  return r.graph;
}
feats atom(const mol_graph& g, int i) {
  return feats(g.atom_features.begin() + i * 9, g.atom_features.begin() + (i + 1) * 9);
}
feats bond(const mol_graph& g, int e) {
  return feats(g.bond_features.begin() + e * 3, g.bond_features.begin() + (e + 1) * 3);
}
std::string reason_of(const std::string& smiles, featurize_options o = {}) {
  silence_rdkit_logs();
  auto r = featurize_smiles(smiles, o);
  return r.ok ? "ok" : r.reason;
}
}  // namespace

TEST(featurize, ethanol) {
  const auto g = graph_of("CCO");
  ASSERT_EQ(g.n_atoms, 3);
  // CH3: degree 4 (1 heavy + 3 H), 3 H, sp3.
  EXPECT_EQ(atom(g, 0), (feats{5, 0, 4, 5, 3, 0, 2, 0, 0}));
  EXPECT_EQ(atom(g, 1), (feats{5, 0, 4, 5, 2, 0, 2, 0, 0}));
  EXPECT_EQ(atom(g, 2), (feats{7, 0, 2, 5, 1, 0, 2, 0, 0}));
  ASSERT_EQ(g.n_edges, 4);
  EXPECT_EQ(g.edges, (feats{0, 1, 1, 0, 1, 2, 2, 1}));
  for (int e = 0; e < 4; ++e) EXPECT_EQ(bond(g, e), (feats{0, 0, 0}));
}

TEST(featurize, acetate_charge_and_conjugation) {
  const auto g = graph_of("CC(=O)[O-]");
  EXPECT_EQ(atom(g, 1), (feats{5, 0, 3, 5, 0, 0, 1, 0, 0}));  // carboxyl C: sp2, no H
  EXPECT_EQ(atom(g, 3), (feats{7, 0, 1, 4, 0, 0, 1, 0, 0}));  // O-: charge -1 -> index 4
  EXPECT_EQ(bond(g, 0), (feats{0, 0, 0}));                    // CH3-C, not conjugated
  EXPECT_EQ(bond(g, 2), (feats{1, 0, 1}));                    // C=O, conjugated
  EXPECT_EQ(bond(g, 4), (feats{0, 0, 1}));                    // C-O-, conjugated
}

TEST(featurize, aromatic_rings) {
  const auto benzene = graph_of("c1ccccc1");
  ASSERT_EQ(benzene.n_edges, 12);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(atom(benzene, i), (feats{5, 0, 3, 5, 1, 0, 1, 1, 1}));
  for (int e = 0; e < 12; ++e) EXPECT_EQ(bond(benzene, e), (feats{3, 0, 1}));
  const auto pyridine = graph_of("c1ccncc1");
  EXPECT_EQ(atom(pyridine, 3), (feats{6, 0, 2, 5, 0, 0, 1, 1, 1}));
}

TEST(featurize, chirality_tags) {
  EXPECT_EQ(atom(graph_of("N[C@@H](C)C(=O)O"), 1), (feats{5, 1, 4, 5, 1, 0, 2, 0, 0}));
  EXPECT_EQ(atom(graph_of("N[C@H](C)C(=O)O"), 1), (feats{5, 2, 4, 5, 1, 0, 2, 0, 0}));
  // Not a stereocentre (two methyls): the tag is cleaned up as in Chem.MolFromSmiles.
  EXPECT_EQ(atom(graph_of("C[C@H](C)C"), 1)[1], 0);
}

TEST(featurize, double_bond_stereo) {
  EXPECT_EQ(bond(graph_of("C/C=C/C"), 2), (feats{1, 2, 0}));   // E
  EXPECT_EQ(bond(graph_of("C/C=C\\C"), 2), (feats{1, 1, 0}));  // Z
  const auto diene = graph_of("F/C=C/C=C/C");
  EXPECT_EQ(bond(diene, 2), (feats{1, 2, 1}));  // conjugated E double bond
  EXPECT_EQ(bond(diene, 4), (feats{0, 0, 1}));  // conjugated single bond between them
  EXPECT_EQ(bond(diene, 8), (feats{0, 0, 0}));
}

TEST(featurize, ions_radicals_and_misc_values) {
  EXPECT_EQ(atom(graph_of("[NH4+]"), 0), (feats{6, 0, 4, 6, 4, 0, 2, 0, 0}));
  const auto salt = graph_of("[Na+].[Cl-]");
  EXPECT_EQ(salt.n_edges, 0);
  EXPECT_EQ(atom(salt, 0)[0], 10);
  EXPECT_EQ(atom(salt, 0)[6], 5);  // RDKit says S hybridization: not in OGB's list -> misc
  EXPECT_EQ(atom(graph_of("[CH3]"), 0)[5], 1);   // one radical electron
  EXPECT_EQ(atom(graph_of("[*]C"), 0)[0], 118);  // dummy atom, atomic number 0 -> misc
  EXPECT_EQ(atom(graph_of("[C+6]"), 0)[3], 11);  // charge outside -5..5 -> misc
}

TEST(featurize, rejects_with_reasons) {
  EXPECT_EQ(reason_of(""), "empty_smiles");
  EXPECT_EQ(reason_of("   \t"), "whitespace_only");
  EXPECT_EQ(reason_of("C\xc3\xa9"
                      "C"),
            "non_ascii");  // RDKit alone would parse methane
  EXPECT_EQ(reason_of("C C"), "invalid_character");
  EXPECT_EQ(reason_of("C1CC"), "smiles_syntax");
  EXPECT_EQ(reason_of("CC(C"), "smiles_syntax");
  EXPECT_EQ(reason_of("CN(C)(C)(C)C"), "valence");
  EXPECT_EQ(reason_of("c1cccc1"), "kekulization");
  EXPECT_EQ(reason_of("CCCCCCCCCC", featurize_options{5}), "too_many_atoms");
  EXPECT_EQ(reason_of("CCCCC", featurize_options{5}), "ok");
  // Regression (fuzzing): RDKit needed seconds to hours on aromatic rings of dummy atoms.
  EXPECT_EQ(reason_of("CCCCCCCcOccccOccc1*********************CcccOccc1"), "too_many_dummy_atoms");
  EXPECT_EQ(reason_of("*C(*)(*)*"), "ok");
}

TEST(featurize, threads_give_identical_graphs) {
  const std::vector<std::string> smiles{"CCO", "c1ccccc1O", "N[C@@H](C)C(=O)O", "C/C=C/C",
                                        "CC(=O)[O-]"};
  std::vector<mol_graph> a(smiles.size()), b(smiles.size());
  std::thread t1([&] {
    for (size_t i = 0; i < smiles.size(); ++i) a[i] = graph_of(smiles[i]);
  });
  std::thread t2([&] {
    for (size_t i = smiles.size(); i-- > 0;) b[i] = graph_of(smiles[i]);
  });
  t1.join();
  t2.join();
  for (size_t i = 0; i < smiles.size(); ++i) {
    EXPECT_EQ(a[i].atom_features, b[i].atom_features);
    EXPECT_EQ(a[i].bond_features, b[i].bond_features);
  }
}

// The parse with only the steps a molecule needs (parse_steps::needed, the default) against
// RDKit's whole SmilesToMol (parse_steps::all): the same accept or reject with the same reason
// and message, and the same features for every registered featurizer, molecule by molecule,
// on the NCI set, the HIV set (when ../shared/data is there) and the nasty-SMILES corpus.
namespace {
std::vector<std::string> read_smiles(const std::string& path, bool whole_line) {
  std::vector<std::string> out;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::string line;
  while (std::getline(in, line)) {
    if (whole_line) {
      if (!line.empty() && line[0] != '#') out.push_back(line);
    } else {
      std::istringstream fields(line);
      std::string smiles;
      if (fields >> smiles) out.push_back(smiles);
    }
  }
  return out;
}

struct featurizer_set {
  std::vector<std::unique_ptr<featurizer>> owned;
  std::vector<const featurizer*> set;
};
// Every registered featurizer; `lighter` leaves out the two slowest settings (FCFP's feature
// patterns, Chemprop with every H an atom), which read nothing the others do not.
featurizer_set every_featurizer(bool lighter) {
  featurizer_set f;
  for (const char* spec :
       {R"({"name": "ogb-smiles2graph", "version": 1})",
        R"({"name": "morgan", "version": 1, "radius": 3, "bits": 4096, "counts": true, "chirality": true})",
        R"({"name": "chemprop", "version": 1})",
        R"({"name": "morgan", "version": 1, "features": true})",
        R"({"name": "chemprop", "version": 1, "atom_featurizer": "v1", "add_h": true})"}) {
    if (lighter && f.set.size() == 3) break;
    f.owned.push_back(make_featurizer(spec));
    f.set.push_back(f.owned.back().get());
  }
  return f;
}

// The number of molecules whose parses differ; prints the first few.
std::size_t parse_differences(const std::vector<std::string>& smiles, bool lighter = false) {
  silence_rdkit_logs();
  const auto f = every_featurizer(lighter);
  featurize_options all, needed;
  all.parse = parse_steps::all;
  needed.parse = parse_steps::needed;
  std::size_t differences = 0;
  for (const auto& s : smiles) {
    const auto a = featurize_record(s, all, f.set);
    const auto b = featurize_record(s, needed, f.set);
    bool same = a.ok == b.ok && a.reason == b.reason && a.detail == b.detail &&
                a.n_atoms == b.n_atoms && a.graph.atom_features == b.graph.atom_features &&
                a.graph.edges == b.graph.edges && a.graph.bond_features == b.graph.bond_features &&
                a.dense == b.dense && a.float_graphs.size() == b.float_graphs.size();
    for (std::size_t k = 0; same && k < a.float_graphs.size(); ++k) {
      same = a.float_graphs[k].atom_features == b.float_graphs[k].atom_features &&
             a.float_graphs[k].edge_features == b.float_graphs[k].edge_features &&
             a.float_graphs[k].edges == b.float_graphs[k].edges;
    }
    if (!same && ++differences <= 5) {
      ADD_FAILURE() << s << ": all steps " << (a.ok ? "ok" : a.reason + " " + a.detail)
                    << "; needed steps " << (b.ok ? "ok" : b.reason + " " + b.detail)
                    << (a.ok && b.ok ? " (features differ)" : "");
    }
  }
  return differences;
}
}  // namespace

TEST(parse_steps, nasty_corpus_same_features_and_rejects) {
  const auto smiles = read_smiles(HPCSCREEN_NASTY_SMILES, true);
  ASSERT_GT(smiles.size(), 150u);
  EXPECT_EQ(parse_differences(smiles), 0u);
  // The corpus holds rejects of every RDKit kind, not only molecules that parse.
  featurize_options o;
  std::set<std::string> reasons;
  for (const auto& s : smiles) reasons.insert(reason_of(s, o));
  for (const char* r : {"ok", "smiles_syntax", "valence", "kekulization"}) EXPECT_TRUE(reasons.count(r)) << r;
}

TEST(parse_steps, nci_set_same_features_and_rejects) {
  const auto smiles = read_smiles(HPCSCREEN_NCI_SMILES, false);
  ASSERT_GT(smiles.size(), 4900u);
  EXPECT_EQ(parse_differences(smiles), 0u);
}

TEST(parse_steps, hiv_set_same_features_and_rejects) {
  if (!std::ifstream(HPCSCREEN_HIV_SMILES).good()) GTEST_SKIP() << HPCSCREEN_HIV_SMILES << " is absent";
  const auto smiles = read_smiles(HPCSCREEN_HIV_SMILES, false);
  ASSERT_GT(smiles.size(), 40000u);
  EXPECT_EQ(parse_differences(smiles, true), 0u);
}

// Hand-worked: what the skipped steps would have changed had they run on these molecules
// is kept by the path that runs them. "[H]C([H])([H])O" loses its H atoms (methanol, 2 atoms,
// carbon with 3 H); "F[C@H](F)F" loses a chiral tag that stereo perception cleans (not a
// stereocentre); "C[C@H](N)C(=O)O" keeps its tag (CCW for '@' written C, H, N, C: OGB index 2).
TEST(parse_steps, removed_hydrogens_and_cleaned_stereo) {
  auto g = graph_of("[H]C([H])([H])O");
  ASSERT_EQ(g.n_atoms, 2);
  EXPECT_EQ(atom(g, 0)[4], 3);  // total H count of the carbon
  g = graph_of("F[C@H](F)F");
  EXPECT_EQ(atom(g, 1)[1], 0);  // CHI_UNSPECIFIED after cleaning
  g = graph_of("C[C@H](N)C(=O)O");
  EXPECT_EQ(atom(g, 1)[1], 2);
}

// Every numeric featurizer parameter outside its range is refused when the spec is read, 0 as
// much as a negative number (JSON reads 0 as unsigned; "bits": 0 once reached RDKit and
// aborted featurize).
TEST(featurizer_spec, numbers_out_of_range_are_refused) {
  for (const char* spec : {R"({"name": "morgan", "version": 1, "bits": 0})",
                           R"({"name": "morgan", "version": 1, "bits": -1})",
                           R"({"name": "morgan", "version": 1, "bits": 16385})",
                           R"({"name": "morgan", "version": 1, "radius": 11})",
                           R"({"name": "morgan", "version": 1, "radius": -1})"}) {
    EXPECT_THROW(make_featurizer(spec), std::invalid_argument) << spec;
  }
  EXPECT_NO_THROW(make_featurizer(R"({"name": "morgan", "version": 1, "bits": 1, "radius": 0})"));
  EXPECT_NO_THROW(make_featurizer(R"({"name": "morgan", "version": 1, "bits": 16384})"));
}
