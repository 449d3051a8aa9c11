// Prints what the C++ stages produce, one JSON line per input line, for the parity test with
// the Python featurizer and tokenizer (tests/e2e/test_parity.py).
//   dump_features graph < smiles.txt
//   dump_features tokens hpcscreen.json < sequences.txt
//   dump_features featurizer '{"name": "morgan", "version": 1, ...}' < smiles.txt
//     (dense featurizers: the nonzero columns and their values)
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "hpcscreen/chem/featurize.hpp"
#include "hpcscreen/chem/featurizer.hpp"
#include "hpcscreen/tokenize/tokenizer.hpp"

using namespace hpcscreen;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  std::string line;
  if (mode == "graph") {
    chem::silence_rdkit_logs();
    while (std::getline(std::cin, line)) {
      const auto r = chem::featurize_smiles(line, {100000});
      nlohmann::json j = {{"ok", r.ok}};
      if (r.ok)
        j.update({{"x", r.graph.atom_features},
                  {"edges", r.graph.edges},
                  {"edge_attr", r.graph.bond_features}});
      std::cout << j.dump() << '\n';
    }
    return 0;
  }
  if (mode == "featurizer" && argc > 2) {
    chem::silence_rdkit_logs();
    const auto f = chem::make_featurizer(argv[2]);
    const std::vector<const chem::featurizer*> set{f.get()};
    while (std::getline(std::cin, line)) {
      const auto r = chem::featurize_record(line, {100000}, set);
      nlohmann::json j = {{"ok", r.ok}};
      if (r.ok && f->tensors().what == chem::feature_tensors::kind::float_graph) {
        const auto& g = r.float_graphs[0];
        std::vector<std::int64_t> index(2 * static_cast<std::size_t>(g.n_edges)), rev;
        for (std::int64_t e = 0; e < g.n_edges; ++e) {
          index[static_cast<std::size_t>(e)] = g.edges[static_cast<std::size_t>(2 * e)];
          index[static_cast<std::size_t>(g.n_edges + e)] = g.edges[static_cast<std::size_t>(2 * e + 1)];
          rev.push_back(e ^ 1);
        }
        j.update({{"n_atoms", g.n_atoms}, {"V", g.atom_features}, {"E", g.edge_features},
                  {"edge_index", index}, {"rev_edge_index", rev}});
      } else if (r.ok) {
        std::vector<std::size_t> on;
        std::vector<float> values;
        for (std::size_t k = 0; k < r.dense[0].size(); ++k) {
          if (r.dense[0][k] == 0.0f) continue;
          on.push_back(k);
          values.push_back(r.dense[0][k]);
        }
        j.update({{"on", on}, {"values", values}});
      }
      std::cout << j.dump() << '\n';
    }
    return 0;
  }
  if (mode == "tokens" && argc > 2) {
    std::ifstream in(argv[2]);
    std::stringstream text;
    text << in.rdbuf();
    tokenize::tokenizer tok(tokenize::parse_tokenizer_config(text.str(), argv[2]));
    while (std::getline(std::cin, line)) {
      const auto e = tok.encode(line);
      std::cout << nlohmann::json({{"ok", e.ok}, {"ids", e.ids}, {"reason", e.reason}}).dump()
                << '\n';
    }
    return 0;
  }
  std::cerr << "usage: dump_features graph | tokens HPCSCREEN_JSON | featurizer SPEC_JSON\n";
  return 2;
}
