#include "hpcscreen/pipeline/registry.hpp"

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/io/shard.hpp"

namespace hpcscreen::pipeline {

const std::vector<library_kind>& library_kinds() {
  static const std::vector<library_kind> kinds = {
      {"compounds", io::compound_shard_schema, io::compound_fields, {"smiles"},
       "compounds: SMILES with ids (data_schemas/compound_shard.md)"},
      {"proteins", io::protein_shard_schema, io::protein_fields, {"description"},
       "protein sequences with ids and descriptions (data_schemas/protein_shard.md)"},
  };
  return kinds;
}

const std::vector<workload_kind>& workload_kinds() {
  static const std::vector<workload_kind> kinds = {
      {"screen", "compounds", "scored",
       "score a compound library with TorchScript GNNs; top hits at rank 0"},
      {"annotate", "proteins", "annotated",
       "annotate a protein library with a TorchScript BERT; every result kept"},
  };
  return kinds;
}

namespace {
template <class T>
const T& find_named(const std::vector<T>& all, const std::string& name, const char* what) {
  std::string known;
  for (const auto& k : all) {
    if (k.name == name) return k;
    known += (known.empty() ? "" : ", ") + k.name;
  }
  throw usage_error("unknown " + std::string(what) + " '" + name + "' (known: " + known + ")");
}
}  // namespace

const library_kind& find_library_kind(const std::string& name) {
  return find_named(library_kinds(), name, "library kind");
}
const workload_kind& find_workload_kind(const std::string& name) {
  return find_named(workload_kinds(), name, "workload");
}

}  // namespace hpcscreen::pipeline
