#pragma once
// Every library kind and every workload, named once. The CLI, the pipeline, the report and the
// schemas take names, fields and columns from here. A new workload is one folder (its
// preprocess stage, batch plan and infer stage behind pipeline::workload) and one entry below.
#include <string>
#include <vector>

namespace hpcscreen::pipeline {

struct library_kind {
  std::string name;                     // manifest "kind"
  std::string shard_schema;             // shard "schema" attribute
  std::vector<std::string> fields;      // shard fields, "id" first
  std::vector<std::string> hit_fields;  // shown after the scores in hits.csv
  std::string summary;
};

struct workload_kind {
  std::string name;          // the command: "screen", "annotate"
  std::string library_kind;  // what it reads
  std::string done_verb;     // "scored", "annotated": the summary line's word
  std::string summary;       // one line for 'hpcscreen --help'
};

const std::vector<library_kind>& library_kinds();
const std::vector<workload_kind>& workload_kinds();
// Throw usage_error naming the known kinds.
const library_kind& find_library_kind(const std::string& name);
const workload_kind& find_workload_kind(const std::string& name);

}  // namespace hpcscreen::pipeline
