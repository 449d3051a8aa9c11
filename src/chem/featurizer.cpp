// The featurizer registry: the OGB graph (the project's own GNN contract) and Morgan
// fingerprints (ECFP/FCFP, bits or counts) as RDKit's rdFingerprintGenerator makes them.
#include "hpcscreen/chem/featurizer.hpp"

#include <DataStructs/ExplicitBitVect.h>
#include <DataStructs/SparseIntVect.h>
#include <GraphMol/Fingerprints/MorganGenerator.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "molecule.hpp"

namespace hpcscreen::chem {

void featurizer::dense(const parsed_molecule&, float*) const {
  throw std::logic_error("featurizer '" + name() + "' gives no dense features");
}
void featurizer::graph(const parsed_molecule&, mol_graph&) const {
  throw std::logic_error("featurizer '" + name() + "' gives no graph");
}

namespace {

using json = nlohmann::json;

// A spec's parameters, each read once: anything left over is a parameter the featurizer lacks.
class spec_reader {
 public:
  explicit spec_reader(json spec) : spec_(std::move(spec)) {
    spec_.erase("name");
    spec_.erase("version");
  }
  template <class T>
  T take(const std::string& key, T fallback) {
    if (!spec_.contains(key)) return fallback;
    T v;
    try {
      v = spec_.at(key).get<T>();
    } catch (const json::exception&) {
      throw std::invalid_argument("featurizer parameter '" + key + "' is " + spec_.at(key).dump() +
                                  ", of the wrong type");
    }
    spec_.erase(key);
    return v;
  }
  std::int64_t take_in_range(const std::string& key, std::int64_t fallback, std::int64_t lo,
                             std::int64_t hi) {
    const auto v = take<std::int64_t>(key, fallback);
    if (v < lo || v > hi) {
      throw std::invalid_argument("featurizer parameter '" + key + "' is " + std::to_string(v) +
                                  ", outside " + std::to_string(lo) + ".." + std::to_string(hi));
    }
    return v;
  }
  void done(const std::string& name) const {
    if (spec_.empty()) return;
    throw std::invalid_argument("featurizer '" + name + "' has no parameter '" +
                                spec_.begin().key() + "'");
  }

 private:
  json spec_;
};

class ogb_featurizer final : public featurizer {
 public:
  const std::string& name() const override { return name_; }
  int version() const override { return featurizer_version; }
  std::string identity() const override { return name_ + "/" + std::to_string(version()); }
  feature_tensors tensors() const override { return {feature_tensors::kind::graph, 0}; }
  void graph(const parsed_molecule& m, mol_graph& g) const override { ogb_graph(m.mol, g); }

 private:
  std::string name_ = featurizer_name;
};

// Morgan fingerprints folded to `bits`, as rdFingerprintGenerator.GetMorganGenerator(radius,
// fpSize=bits, includeChirality=chirality, atomInvariantsGenerator=GetMorganFeatureAtomInvGen()
// when features) and GetFingerprintAsNumPy / GetCountFingerprintAsNumPy give them.
class morgan_featurizer final : public featurizer {
 public:
  explicit morgan_featurizer(spec_reader& p)
      : radius_(static_cast<unsigned>(p.take_in_range("radius", 2, 0, 10))),
        bits_(static_cast<std::uint32_t>(p.take_in_range("bits", 2048, 1, 1 << 20))),
        counts_(p.take<bool>("counts", false)),
        chirality_(p.take<bool>("chirality", false)),
        features_(p.take<bool>("features", false)) {
    p.done(name_);
    if (features_) atom_invariants_ = std::make_unique<RDKit::MorganFingerprint::MorganFeatureAtomInvGenerator>();
    generator_.reset(RDKit::MorganFingerprint::getMorganGenerator<std::uint64_t>(
        radius_, /*countSimulation=*/false, chirality_, /*useBondTypes=*/true,
        /*onlyNonzeroInvariants=*/false, atom_invariants_.get(), /*bondInvariantsGenerator=*/nullptr,
        bits_));
  }
  const std::string& name() const override { return name_; }
  int version() const override { return 1; }
  std::string identity() const override {
    return name_ + "/1 radius=" + std::to_string(radius_) + " bits=" + std::to_string(bits_) +
           " counts=" + (counts_ ? "1" : "0") + " chirality=" + (chirality_ ? "1" : "0") +
           " features=" + (features_ ? "1" : "0");
  }
  feature_tensors tensors() const override { return {feature_tensors::kind::dense, bits_}; }
  void dense(const parsed_molecule& m, float* row) const override {
    std::fill(row, row + bits_, 0.0f);
    if (counts_) {
      std::unique_ptr<RDKit::SparseIntVect<std::uint32_t>> fp(generator_->getCountFingerprint(m.mol));
      for (const auto& [bit, count] : fp->getNonzeroElements()) row[bit] = static_cast<float>(count);
    } else {
      std::unique_ptr<ExplicitBitVect> fp(generator_->getFingerprint(m.mol));
      for (std::uint32_t b = 0; b < bits_; ++b)
        if (fp->getBit(b)) row[b] = 1.0f;
    }
  }

 private:
  std::string name_ = "morgan";
  unsigned radius_;
  std::uint32_t bits_;
  bool counts_, chirality_, features_;
  std::unique_ptr<RDKit::AtomInvariantsGenerator> atom_invariants_;
  std::unique_ptr<RDKit::FingerprintGenerator<std::uint64_t>> generator_;
};

struct registered {
  int version;
  std::function<std::unique_ptr<featurizer>(spec_reader&)> make;
};

const std::map<std::string, registered>& registry() {
  static const std::map<std::string, registered> r = {
      {featurizer_name,
       {featurizer_version,
        [](spec_reader& p) {
          p.done(featurizer_name);
          return std::make_unique<ogb_featurizer>();
        }}},
      {"morgan", {1, [](spec_reader& p) { return std::make_unique<morgan_featurizer>(p); }}},
  };
  return r;
}

}  // namespace

std::vector<std::string> featurizer_names() {
  std::vector<std::string> names;
  for (const auto& [name, r] : registry()) names.push_back(name + "/" + std::to_string(r.version));
  return names;
}

std::unique_ptr<featurizer> make_featurizer(const std::string& spec_json) {
  json spec;
  try {
    spec = json::parse(spec_json);
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("the featurizer is not JSON: ") + e.what());
  }
  if (!spec.is_object() || !spec.contains("name") || !spec["name"].is_string() ||
      !spec.contains("version") || !spec["version"].is_number_integer()) {
    throw std::invalid_argument("the featurizer needs a 'name' (string) and a 'version' (integer)");
  }
  const auto name = spec["name"].get<std::string>();
  const auto version = spec["version"].get<int>();
  std::string known;
  for (const auto& n : featurizer_names()) known += (known.empty() ? "" : ", ") + n;
  const auto it = registry().find(name);
  if (it == registry().end() || it->second.version != version) {
    throw std::invalid_argument("featurizer '" + name + "/" + std::to_string(version) +
                                "' is not one this hpcscreen provides (" + known +
                                "); the model was trained on other features and would score "
                                "noise");
  }
  spec_reader params(spec);
  return it->second.make(params);
}

record_features featurize_record(std::string_view smiles, const featurize_options& options,
                                 const std::vector<const featurizer*>& set) {
  record_features r;
  std::unique_ptr<RDKit::RWMol> mol;
  auto parsed = parse_checked(smiles, options, mol);
  if (!parsed.ok) {
    r.reason = std::move(parsed.reason);
    r.detail = std::move(parsed.detail);
    return r;
  }
  r.ok = true;
  r.n_atoms = static_cast<std::int64_t>(mol->getNumAtoms());
  const parsed_molecule m(*mol);
  r.dense.resize(set.size());
  for (std::size_t k = 0; k < set.size(); ++k) {
    const auto t = set[k]->tensors();
    if (t.what == feature_tensors::kind::graph) {
      set[k]->graph(m, r.graph);
    } else {
      r.dense[k].resize(static_cast<std::size_t>(t.width));
      set[k]->dense(m, r.dense[k].data());
    }
  }
  return r;
}

}  // namespace hpcscreen::chem
