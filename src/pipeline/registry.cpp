#include "hpcscreen/pipeline/registry.hpp"

#include "hpcscreen/core/error.hpp"

namespace hpcscreen::pipeline {
namespace {

std::vector<library_kind>& libraries() {
  static std::vector<library_kind> all;
  return all;
}
std::vector<workload_kind>& workloads() {
  static std::vector<workload_kind> all;
  return all;
}
std::vector<tool_command>& tools() {
  static std::vector<tool_command> all;
  return all;
}

template <class T>
const T* named(const std::vector<T>& all, const std::string& name) {
  for (const auto& k : all) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

template <class T>
const T& find_named(const std::vector<T>& all, const std::string& name, const char* what) {
  if (const auto* k = named(all, name)) return *k;
  std::string known;
  for (const auto& k : all) known += (known.empty() ? "" : ", ") + k.name;
  throw usage_error("unknown " + std::string(what) + " '" + name + "' (known: " + known + ")");
}

// Every verb is one name: a second registration under a taken name is a programming error.
void check_free(const std::string& name) {
  if (named(libraries(), name) || named(workloads(), name) || named(tools(), name))
    throw error("registry: '" + name + "' is registered twice");
}

}  // namespace

void register_library_kind(library_kind kind) {
  if (named(libraries(), kind.name)) throw error("registry: library kind '" + kind.name + "' twice");
  libraries().push_back(std::move(kind));
}
void register_workload(workload_kind kind) {
  check_free(kind.name);
  workloads().push_back(std::move(kind));
}
void register_tool(tool_command command) {
  check_free(command.name);
  tools().push_back(std::move(command));
}

const std::vector<library_kind>& library_kinds() { return libraries(); }
const std::vector<workload_kind>& workload_kinds() { return workloads(); }
const std::vector<tool_command>& tool_commands() { return tools(); }

const library_kind& find_library_kind(const std::string& name) {
  return find_named(libraries(), name, "library kind");
}
const workload_kind& find_workload_kind(const std::string& name) {
  return find_named(workloads(), name, "workload");
}
const workload_kind* workload_named(const std::string& name) { return named(workloads(), name); }
const tool_command* tool_named(const std::string& name) { return named(tools(), name); }

}  // namespace hpcscreen::pipeline
