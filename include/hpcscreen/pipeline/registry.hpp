#pragma once
// The host's registry: every library kind, every workload and every further command registers
// itself here, whole (its verb, summary, options and what it makes). `hpcscreen` dispatches
// from it, pack takes library kinds from it, and the run takes a workload's kind from it. A new
// workload is one folder and one line in src/app/registrations.cpp.
#include <boost/program_options.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace hpcscreen::dist {
class context;
}

namespace hpcscreen::pipeline {

namespace po = boost::program_options;
class workload;

// `hpcscreen pack KIND`: the kind's own options, then the pack on every rank.
class pack_command {
 public:
  virtual ~pack_command() = default;
  virtual void add_options(po::options_description& desc) = 0;
  // After parsing: checks that need several options; throws usage_error.
  virtual void check(const po::variables_map& /*vm*/) {}
  // Collective. Packs; returns the summary lines rank 0 prints. Throws usage_error, error or
  // stopped_error, the same on every rank.
  virtual std::string run(dist::context& ctx, std::function<bool()> stop_requested) = 0;
};

struct library_kind {
  std::string name;                     // manifest "kind", and the word after 'pack'
  std::string shard_schema;             // shard "schema" attribute
  std::vector<std::string> fields;      // shard fields, "id" first
  std::vector<std::string> hit_fields;  // shown after the scores in hits.csv
  std::string summary;                  // one line for 'hpcscreen --help'
  std::string pack_usage;               // usage lines of 'hpcscreen pack NAME'
  std::function<std::unique_ptr<pack_command>()> pack;
  // report.html's picture of a hit (inline SVG or <img> with a data: URI; never script), from
  // its hits.csv columns (name → value) and the library folder. Unset: hits have no picture.
  std::function<std::string(const std::map<std::string, std::string>& hit,
                            const std::string& library_dir)>
      depict;
};

// A run command's workload-specific half: its options, checked once parsed, and the workload
// made from them on every rank.
class workload_command {
 public:
  virtual ~workload_command() = default;
  virtual void add_options(po::options_description& desc) = 0;
  // After parsing: checks that need several options; throws usage_error.
  virtual void check(const po::variables_map& /*vm*/) {}
  // Loads and checks models; throws model_error (the ranks agree on it).
  virtual std::unique_ptr<workload> make(int threads) = 0;
};

struct workload_kind {
  std::string name;          // the command: "screen", "annotate"
  std::string library_kind;  // what it reads
  std::string done_verb;     // "scored", "annotated": the summary line's word
  std::string summary;       // one line for 'hpcscreen --help'
  std::string usage;         // usage line of 'hpcscreen NAME --help'
  std::function<std::unique_ptr<workload_command>()> command;
  std::uint64_t default_chunk_rows = 4096;  // --chunk-rows unless given (records are not alike)
};

// A command that is neither pack nor a run (featurize, export): it parses its own arguments
// (those after the verb) and returns the exit status.
struct tool_command {
  std::string name;
  std::string summary;  // may span lines, each indented by the caller
  std::function<int(const std::vector<std::string>& args, int argc, char** argv)> main;
};

void register_library_kind(library_kind kind);
void register_workload(workload_kind kind);
void register_tool(tool_command command);

const std::vector<library_kind>& library_kinds();
const std::vector<workload_kind>& workload_kinds();
const std::vector<tool_command>& tool_commands();
// Throw usage_error naming the known ones.
const library_kind& find_library_kind(const std::string& name);
const workload_kind& find_workload_kind(const std::string& name);
// nullptr when none has that name.
const workload_kind* workload_named(const std::string& name);
const tool_command* tool_named(const std::string& name);

}  // namespace hpcscreen::pipeline
