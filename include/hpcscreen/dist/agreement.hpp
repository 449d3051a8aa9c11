#pragma once
// Failures agreed by every rank before any gives up: each rank captures its own failure, then
// all ranks learn the worst one and every distinct message. Used by run, pack and featurize.
#include <functional>
#include <string>

#include "hpcscreen/core/error.hpp"
#include "hpcscreen/dist/context.hpp"

namespace hpcscreen::dist {

// One rank's failure. Kinds are ordered: a stop request outranks a usage error (the user's to
// fix), which outranks any other error.
struct failure {
  enum kind_t : int { none = 0, error = 1, usage = 2, stopped = 3 };
  kind_t kind = none;
  std::string message;
  bool ok() const { return kind == none; }
};

// Runs f and captures what it throws (usage_error, stopped_error, any std::exception).
template <class F>
failure capture_failure(F&& f) {
  try {
    f();
  } catch (const usage_error& e) {
    return {failure::usage, e.what()};
  } catch (const stopped_error& e) {
    return {failure::stopped, e.what()};
  } catch (const std::exception& e) {
    return {failure::error, e.what()};
  }
  return {};
}

// The exit status a failure calls for: 0, exit_usage, exit_interrupted or exit_error.
int exit_status_of(const failure& f);

// Collective: the worst kind of every rank's failure and each distinct message once, one per
// line; with name_ranks, a message not every rank gave names the first rank that gave it.
// Returns the same on every rank (kind none when every rank is fine).
failure agree(context& ctx, const failure& mine, bool name_ranks = true);

// Collective: as agree, then every rank throws the agreed failure as usage_error,
// stopped_error or error; returns when no rank failed.
void agree_or_throw(context& ctx, const failure& mine, bool name_ranks = true);

// A command that runs on every rank when started by an MPI launcher (cli::launched_by_mpi), else
// on one process without initialising MPI. The body's exception (the same on every rank, by
// agree_or_throw) is printed once, by rank 0, as "hpcscreen COMMAND: ..."; returns the exit
// status: 0, exit_usage, exit_interrupted or exit_error.
int run_collective_command(int argc, char** argv, const std::string& command,
                           const std::function<void(context&)>& body);

}  // namespace hpcscreen::dist
