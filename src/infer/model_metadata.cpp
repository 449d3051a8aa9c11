#include "hpcscreen/infer/model_metadata.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "hpcscreen/batch/molecule_tensors.hpp"
#include "hpcscreen/core/error.hpp"

namespace hpcscreen::infer {

std::size_t model_metadata::rank_task_index() const {
  const auto it = std::find(tasks.begin(), tasks.end(), rank_by);
  HPCSCREEN_ASSERT(it != tasks.end());
  return static_cast<std::size_t>(it - tasks.begin());
}

void check_unique_names(const std::vector<std::string>& names, const std::string& where) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (std::size_t k = 0; k < i; ++k) {
      if (names[i] == names[k]) {
        throw model_error(where + " names '" + names[i] + "' twice (columns " + std::to_string(k) +
                          " and " + std::to_string(i) +
                          "); every output column needs its own name");
      }
    }
  }
}

model_metadata parse_gnn_metadata(const std::string& json_text, const std::string& model_path) {
  const std::string where = "model '" + model_path + "': " + metadata_file_name + ": ";
  model_metadata m;
  m.raw_json = json_text;
  try {
    const auto j = nlohmann::json::parse(json_text);
    m.contract = j.at("contract").get<std::string>();
    m.kind = j.at("kind").get<std::string>();
    if (m.kind != "gnn") {
      throw model_error(where + "kind is '" + m.kind +
                        "', but 'screen' needs kind 'gnn' (a compound model; protein models "
                        "run with 'hpcscreen annotate')");
    }
    m.name = j.value("name", "");
    // Checked whole by the featurizer registry; name and version kept for messages.
    const auto& f = j.at("featurizer");
    m.featurizer_json = f.dump();
    if (f.is_object() && f.contains("name") && f["name"].is_string())
      m.featurizer_name = f["name"].get<std::string>();
    if (f.is_object() && f.contains("version") && f["version"].is_number_integer() &&
        f["version"].get<std::int64_t>() >= 0 && f["version"].get<std::int64_t>() <= 1000000)
      m.featurizer_version = static_cast<int>(f["version"].get<std::int64_t>());
    else
      m.featurizer_version = -1;  // no whole version: refused by whoever makes the featurizer
    m.tasks = j.at("tasks").get<std::vector<std::string>>();
    m.rank_by = j.value("rank_by", m.tasks.empty() ? std::string() : m.tasks.front());
    m.higher_is_better = j.value("higher_is_better", true);
  } catch (const nlohmann::json::exception& e) {
    throw model_error(where + "malformed or missing field: " + e.what());
  }
  if (m.kind != "gnn") {
    throw model_error(where + "kind is '" + m.kind + "', but 'screen' needs kind 'gnn'");
  }
  if (m.contract != gnn_contract) {
    throw model_error(where + "contract is '" + m.contract + "', expected '" + gnn_contract + "'");
  }
  if (m.tasks.empty()) throw model_error(where + "'tasks' is empty; list the output columns");
  check_unique_names(m.tasks, where + "'tasks'");
  if (std::find(m.tasks.begin(), m.tasks.end(), m.rank_by) == m.tasks.end()) {
    throw model_error(where + "rank_by '" + m.rank_by + "' is not one of the tasks");
  }
  return m;
}

}  // namespace hpcscreen::infer
