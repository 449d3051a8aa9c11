#pragma once
// The hpcscreen.json stored inside a TorchScript archive (data_schemas/model_contract.md).
#include <string>
#include <vector>

namespace hpcscreen::infer {

inline constexpr const char* metadata_file_name = "hpcscreen.json";
inline constexpr const char* gnn_contract = "hpcscreen.gnn/1";

struct model_metadata {
  std::string contract;  // "hpcscreen.gnn/1"
  std::string kind;      // "gnn"
  std::string name;
  std::string featurizer_name;
  int featurizer_version = 0;
  std::string featurizer_json;  // the whole "featurizer" object: name, version, parameters
  std::vector<std::string> tasks;
  std::string rank_by;
  bool higher_is_better = true;
  std::string raw_json;

  std::size_t rank_task_index() const;
};

// Throws model_error when a name appears twice: a column must be named unambiguously.
void check_unique_names(const std::vector<std::string>& names, const std::string& where);

// Parses and checks the fields every compound model needs; throws model_error saying what was
// expected and what was found. The featurizer is checked by whoever makes it (the registry).
model_metadata parse_gnn_metadata(const std::string& json_text, const std::string& model_path);

}  // namespace hpcscreen::infer
