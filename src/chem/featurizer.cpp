// The featurizer registry: the OGB graph (the project's own GNN contract) and Morgan
// fingerprints (ECFP/FCFP, bits or counts) as RDKit's rdFingerprintGenerator makes them.
#include "hpcscreen/chem/featurizer.hpp"

#include <DataStructs/ExplicitBitVect.h>
#include <DataStructs/SparseIntVect.h>
#include <GraphMol/Fingerprints/MorganGenerator.h>
#include <GraphMol/MolOps.h>
#include <GraphMol/SmilesParse/SmilesParse.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <type_traits>

#include "molecule.hpp"

namespace hpcscreen::chem {

void featurizer::dense(const parsed_molecule&, float*) const {
  throw std::logic_error("featurizer '" + name() + "' gives no dense features");
}
void featurizer::graph(const parsed_molecule&, mol_graph&) const {
  throw std::logic_error("featurizer '" + name() + "' gives no graph");
}
void featurizer::float_graph_of(const parsed_molecule&, float_graph&) const {
  throw std::logic_error("featurizer '" + name() + "' gives no float graph");
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
  // Booleans and strings of exactly that JSON type: no conversion from other types.
  template <class T>
  T take(const std::string& key, T fallback) {
    if (!spec_.contains(key)) return fallback;
    const auto& j = spec_.at(key);
    const bool right = std::is_same_v<T, bool> ? j.is_boolean() : j.is_string();
    if (!right) {
      throw std::invalid_argument("featurizer parameter '" + key + "' is " + j.dump() + ", not " +
                                  (std::is_same_v<T, bool> ? "true or false" : "a string"));
    }
    T v = j.get<T>();
    spec_.erase(key);
    return v;
  }
  // A whole number written as one (2, not 2.0, 2.9 or "2"), checked against its range before
  // any conversion.
  std::int64_t take_in_range(const std::string& key, std::int64_t fallback, std::int64_t lo,
                             std::int64_t hi) {
    if (!spec_.contains(key)) return fallback;
    const auto& j = spec_.at(key);
    const auto bad = [&] {
      return std::invalid_argument("featurizer parameter '" + key + "' is " + j.dump() +
                                   ", not a whole number from " + std::to_string(lo) + " to " +
                                   std::to_string(hi));
    };
    if (!j.is_number_integer()) throw bad();
    // (JSON reads every whole number from 0 up as unsigned: both bounds apply to it too.)
    if (j.is_number_unsigned() ? (j.get<std::uint64_t>() > static_cast<std::uint64_t>(hi) ||
                                  static_cast<std::int64_t>(j.get<std::uint64_t>()) < lo)
                               : (j.get<std::int64_t>() < lo || j.get<std::int64_t>() > hi))
      throw bad();
    const auto v = j.get<std::int64_t>();
    spec_.erase(key);
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
        // A chunk holds its records' rows densely (rows x bits float32): 16,384 bits keep a
        // chunk of 4,096 records at 256 MiB.
        bits_(static_cast<std::uint32_t>(p.take_in_range("bits", 2048, 1, max_bits))),
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
  static constexpr std::int64_t max_bits = 16384;
  std::string name_ = "morgan";
  unsigned radius_;
  std::uint32_t bits_;
  bool counts_, chirality_, features_;
  std::unique_ptr<RDKit::AtomInvariantsGenerator> atom_invariants_;
  std::unique_ptr<RDKit::FingerprintGenerator<std::uint64_t>> generator_;
};

// Chemprop 2.3's molecular graph (data_schemas/chemprop_features.md): multi-hot atom features
// (V2, V1 or organic lists, each block with a last slot for other values, then aromaticity and
// mass / 100) and the multi-hot bond features, two directed edges per bond.
class chemprop_featurizer final : public featurizer {
 public:
  explicit chemprop_featurizer(spec_reader& p)
      : atoms_(p.take<std::string>("atom_featurizer", "v2")),
        bonds_(p.take<std::string>("bond_featurizer", "multihot")),
        keep_h_(p.take<bool>("keep_h", false)),
        add_h_(p.take<bool>("add_h", false)) {
    p.done(name_);
    if (atoms_ == "v2") {
      for (int z = 1; z <= 36; ++z) atomic_numbers_.push_back(z);
      atomic_numbers_.push_back(53);
      hybridizations_ = {RDKit::Atom::S,    RDKit::Atom::SP,   RDKit::Atom::SP2, RDKit::Atom::SP2D,
                         RDKit::Atom::SP3,  RDKit::Atom::SP3D, RDKit::Atom::SP3D2};
    } else if (atoms_ == "v1") {
      for (int z = 1; z <= 100; ++z) atomic_numbers_.push_back(z);
      hybridizations_ = {RDKit::Atom::SP, RDKit::Atom::SP2, RDKit::Atom::SP3, RDKit::Atom::SP3D,
                         RDKit::Atom::SP3D2};
    } else if (atoms_ == "organic") {
      atomic_numbers_ = {1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53};
      hybridizations_ = {RDKit::Atom::S, RDKit::Atom::SP, RDKit::Atom::SP2, RDKit::Atom::SP3};
    } else {
      throw std::invalid_argument("featurizer 'chemprop': atom_featurizer '" + atoms_ +
                                  "' is not v2, v1 or organic");
    }
    if (bonds_ != "multihot") {
      throw std::invalid_argument("featurizer 'chemprop': bond_featurizer '" + bonds_ +
                                  "' is not multihot");
    }
    width_ = static_cast<std::int64_t>(atomic_numbers_.size() + 1) + 7 + 6 + 5 + 6 +
             static_cast<std::int64_t>(hybridizations_.size() + 1) + 2;
  }
  const std::string& name() const override { return name_; }
  int version() const override { return 1; }
  std::string identity() const override {
    return name_ + "/1 atom_featurizer=" + atoms_ + " bond_featurizer=" + bonds_ +
           " keep_h=" + (keep_h_ ? "1" : "0") + " add_h=" + (add_h_ ? "1" : "0");
  }
  feature_tensors tensors() const override {
    return {feature_tensors::kind::float_graph, width_, edge_width};
  }

  void float_graph_of(const parsed_molecule& m, float_graph& g) const override {
    // The screen's parse removes H atoms, as Chemprop does without --keep-h; otherwise the
    // SMILES is parsed again keeping them. --add-h makes every H an atom.
    std::unique_ptr<RDKit::ROMol> own;
    const RDKit::ROMol* mol = &m.mol;
    if (keep_h_) {
      RDKit::SmilesParserParams params;
      params.allowCXSMILES = true;
      params.parseName = false;
      params.removeHs = false;
      own.reset(RDKit::SmilesToMol(std::string(m.smiles), params));
      if (!own) throw std::runtime_error("RDKit could not parse the SMILES keeping its H atoms");
      mol = own.get();
    }
    if (add_h_) {
      own.reset(RDKit::MolOps::addHs(*mol));
      if (!own->getRingInfo()->isInitialized()) RDKit::MolOps::findSSSR(*own);
      mol = own.get();
    }
    g = float_graph{};
    const auto n_atoms = static_cast<std::int64_t>(mol->getNumAtoms());
    g.n_atoms = std::max<std::int64_t>(n_atoms, 1);  // no atoms: one zero row, as Chemprop
    g.atom_features.assign(static_cast<std::size_t>(g.n_atoms * width_), 0.0f);
    for (const auto* atom : mol->atoms()) atom_row(*atom, &g.atom_features[atom->getIdx() * width_]);
    g.n_edges = 2 * static_cast<std::int64_t>(mol->getNumBonds());
    g.edge_features.assign(static_cast<std::size_t>(g.n_edges * edge_width), 0.0f);
    g.edges.reserve(static_cast<std::size_t>(g.n_edges) * 2);
    for (const auto* bond : mol->bonds()) {
      const std::int64_t u = bond->getBeginAtomIdx(), v = bond->getEndAtomIdx();
      g.edges.insert(g.edges.end(), {u, v, v, u});
      float* row = &g.edge_features[2 * bond->getIdx() * edge_width];
      bond_row(*bond, row);
      std::copy(row, row + edge_width, row + edge_width);
    }
  }

 private:
  static constexpr std::int64_t edge_width = 14;

  // One-hot of `value` among `choices`, the block's last slot for anything else.
  template <class T>
  static float* one_hot(float* at, const std::vector<T>& choices, T value) {
    std::size_t k = 0;
    while (k < choices.size() && choices[k] != value) ++k;
    at[k] = 1.0f;
    return at + choices.size() + 1;
  }

  void atom_row(const RDKit::Atom& a, float* row) const {
    static const std::vector<int> degrees = {0, 1, 2, 3, 4, 5};
    static const std::vector<int> charges = {-1, -2, 1, 2, 0};
    static const std::vector<int> chiral = {0, 1, 2, 3};
    static const std::vector<int> hydrogens = {0, 1, 2, 3, 4};
    row = one_hot(row, atomic_numbers_, static_cast<int>(a.getAtomicNum()));
    row = one_hot(row, degrees, static_cast<int>(a.getTotalDegree()));
    row = one_hot(row, charges, a.getFormalCharge());
    row = one_hot(row, chiral, static_cast<int>(a.getChiralTag()));
    row = one_hot(row, hydrogens, static_cast<int>(a.getTotalNumHs()));
    row = one_hot(row, hybridizations_, a.getHybridization());
    row[0] = a.getIsAromatic() ? 1.0f : 0.0f;
    row[1] = static_cast<float>(0.01 * a.getMass());
  }

  static void bond_row(const RDKit::Bond& b, float* row) {
    switch (b.getBondType()) {  // no slot for other types: all four bits stay 0
      case RDKit::Bond::SINGLE:
        row[1] = 1.0f;
        break;
      case RDKit::Bond::DOUBLE:
        row[2] = 1.0f;
        break;
      case RDKit::Bond::TRIPLE:
        row[3] = 1.0f;
        break;
      case RDKit::Bond::AROMATIC:
        row[4] = 1.0f;
        break;
      default:
        break;
    }
    row[5] = b.getIsConjugated() ? 1.0f : 0.0f;
    row[6] = b.getOwningMol().getRingInfo()->numBondRings(b.getIdx()) > 0 ? 1.0f : 0.0f;
    const int stereo = static_cast<int>(b.getStereo());
    row[7 + (stereo >= 0 && stereo <= 5 ? stereo : 6)] = 1.0f;
  }

  std::string name_ = "chemprop";
  std::string atoms_, bonds_;
  bool keep_h_, add_h_;
  std::vector<int> atomic_numbers_;
  std::vector<RDKit::Atom::HybridizationType> hybridizations_;
  std::int64_t width_ = 0;
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
      {"chemprop", {1, [](spec_reader& p) { return std::make_unique<chemprop_featurizer>(p); }}},
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
      !spec.contains("version") || !spec["version"].is_number_integer() ||
      spec["version"].get<std::int64_t>() < 1 || spec["version"].get<std::int64_t>() > 1000000) {
    throw std::invalid_argument("the featurizer must be an object with a 'name' (string) and a "
                                "'version' (a whole number); found " + spec.dump());
  }
  const auto name = spec["name"].get<std::string>();
  const auto version = static_cast<int>(spec["version"].get<std::int64_t>());
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

namespace {

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Reads a cache blob front to back; any read past its end is a damaged blob.
class blob_reader {
 public:
  explicit blob_reader(std::string_view b) : b_(b) {}
  template <class T>
  T get() {
    T v;
    need(sizeof v);
    std::memcpy(&v, b_.data() + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  template <class T>
  void get_many(T* out, std::size_t n) {
    need(n * sizeof(T));
    std::memcpy(out, b_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
  }
  void need(std::size_t n) const {
    if (at_ + n > b_.size()) throw std::invalid_argument("a cached record is truncated");
  }
  void done() const {
    if (at_ != b_.size()) throw std::invalid_argument("a cached record has trailing bytes");
  }

 private:
  std::string_view b_;
  std::size_t at_ = 0;
};

}  // namespace

std::string encode_features(const record_features& r, std::size_t k, const feature_tensors& t) {
  std::string out;
  put<std::uint32_t>(out, static_cast<std::uint32_t>(r.n_atoms));
  if (t.what == feature_tensors::kind::graph) {
    const auto& g = r.graph;
    put<std::uint32_t>(out, static_cast<std::uint32_t>(g.n_edges));
    for (const auto v : g.atom_features) put<std::uint8_t>(out, static_cast<std::uint8_t>(v));
    for (const auto v : g.edges) put<std::uint32_t>(out, static_cast<std::uint32_t>(v));
    for (const auto v : g.bond_features) put<std::uint8_t>(out, static_cast<std::uint8_t>(v));
  } else if (t.what == feature_tensors::kind::dense) {
    const auto& row = r.dense[k];
    std::uint32_t nonzero = 0;
    for (const float v : row) nonzero += v != 0.0f;
    put<std::uint32_t>(out, nonzero);
    for (std::uint32_t c = 0; c < row.size(); ++c) {
      if (row[c] == 0.0f) continue;
      put<std::uint32_t>(out, c);
      put<float>(out, row[c]);
    }
  } else {
    const auto& g = r.float_graphs[k];
    put<std::uint32_t>(out, static_cast<std::uint32_t>(g.n_atoms));
    put<std::uint32_t>(out, static_cast<std::uint32_t>(g.n_edges));
    out.append(reinterpret_cast<const char*>(g.atom_features.data()), g.atom_features.size() * sizeof(float));
    out.append(reinterpret_cast<const char*>(g.edge_features.data()), g.edge_features.size() * sizeof(float));
    for (const auto v : g.edges) put<std::uint32_t>(out, static_cast<std::uint32_t>(v));
  }
  return out;
}

namespace {
// The vocabularies of OGB's categorical features (ogb.utils.features, get_atom_feature_dims and
// get_bond_feature_dims): a cached value outside them is damage, not a molecule.
constexpr std::uint8_t ogb_atom_dims[] = {119, 5, 12, 12, 10, 6, 6, 2, 2};
constexpr std::uint8_t ogb_bond_dims[] = {5, 6, 2};
static_assert(std::size(ogb_atom_dims) == n_atom_features &&
              std::size(ogb_bond_dims) == n_bond_features);

void check_edges(const std::vector<std::int64_t>& edges, std::int64_t n_atoms) {
  for (const auto v : edges)
    if (v >= n_atoms) throw std::invalid_argument("a cached bond names an atom the graph lacks");
}

void check_finite(const std::vector<float>& values) {
  for (const auto v : values)
    if (!std::isfinite(v)) throw std::invalid_argument("a cached feature is not finite");
}
}  // namespace

void decode_features(std::string_view bytes, std::size_t k, const feature_tensors& t,
                     record_features& r) {
  blob_reader in(bytes);
  r.n_atoms = in.get<std::uint32_t>();
  if (t.what == feature_tensors::kind::graph) {
    auto& g = r.graph;
    g = mol_graph{};
    g.n_atoms = r.n_atoms;
    g.n_edges = in.get<std::uint32_t>();
    in.need(static_cast<std::size_t>(g.n_atoms) * n_atom_features);
    g.atom_features.resize(static_cast<std::size_t>(g.n_atoms) * n_atom_features);
    for (auto& v : g.atom_features) v = in.get<std::uint8_t>();
    in.need(static_cast<std::size_t>(g.n_edges) * 2 * 4);
    g.edges.resize(static_cast<std::size_t>(g.n_edges) * 2);
    for (auto& v : g.edges) v = in.get<std::uint32_t>();
    g.bond_features.resize(static_cast<std::size_t>(g.n_edges) * n_bond_features);
    for (auto& v : g.bond_features) v = in.get<std::uint8_t>();
    for (std::size_t i = 0; i < g.atom_features.size(); ++i)
      if (g.atom_features[i] >= ogb_atom_dims[i % n_atom_features])
        throw std::invalid_argument("a cached atom feature is outside OGB's vocabulary");
    for (std::size_t i = 0; i < g.bond_features.size(); ++i)
      if (g.bond_features[i] >= ogb_bond_dims[i % n_bond_features])
        throw std::invalid_argument("a cached bond feature is outside OGB's vocabulary");
    check_edges(g.edges, g.n_atoms);
  } else if (t.what == feature_tensors::kind::dense) {
    if (r.dense.size() <= k) r.dense.resize(k + 1);
    auto& row = r.dense[k];
    row.assign(static_cast<std::size_t>(t.width), 0.0f);
    const auto nonzero = in.get<std::uint32_t>();
    for (std::uint32_t i = 0; i < nonzero; ++i) {
      const auto c = in.get<std::uint32_t>();
      const auto v = in.get<float>();
      if (c >= row.size()) throw std::invalid_argument("a cached column is out of range");
      row[c] = v;
    }
    check_finite(row);
  } else {
    if (r.float_graphs.size() <= k) r.float_graphs.resize(k + 1);
    auto& g = r.float_graphs[k];
    g = float_graph{};
    g.n_atoms = in.get<std::uint32_t>();
    g.n_edges = in.get<std::uint32_t>();
    const auto n_v = static_cast<std::size_t>(g.n_atoms * t.width);
    const auto n_e = static_cast<std::size_t>(g.n_edges * t.edge_width);
    in.need((n_v + n_e) * sizeof(float) + static_cast<std::size_t>(g.n_edges) * 2 * 4);
    g.atom_features.resize(n_v);
    in.get_many(g.atom_features.data(), n_v);
    g.edge_features.resize(n_e);
    in.get_many(g.edge_features.data(), n_e);
    g.edges.resize(static_cast<std::size_t>(g.n_edges) * 2);
    for (auto& v : g.edges) v = in.get<std::uint32_t>();
    check_edges(g.edges, g.n_atoms);
    check_finite(g.atom_features);
    check_finite(g.edge_features);
  }
  in.done();
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
  const parsed_molecule m(*mol, smiles);
  r.dense.resize(set.size());
  r.float_graphs.resize(set.size());
  for (std::size_t k = 0; k < set.size(); ++k) {
    const auto t = set[k]->tensors();
    if (t.what == feature_tensors::kind::graph) {
      set[k]->graph(m, r.graph);
    } else if (t.what == feature_tensors::kind::float_graph) {
      try {
        set[k]->float_graph_of(m, r.float_graphs[k]);
      } catch (const std::exception& e) {
        record_features failed;
        failed.reason = "featurizer_error";
        failed.detail = "featurizer '" + set[k]->identity() + "': " + e.what();
        failed.failed_featurizer = k;
        return failed;
      }
    } else {
      r.dense[k].resize(static_cast<std::size_t>(t.width));
      set[k]->dense(m, r.dense[k].data());
    }
  }
  return r;
}

}  // namespace hpcscreen::chem
