#pragma once
// Exit statuses of every command, documented in the README and data_schemas/run_folder.md.
namespace hpcscreen {

enum exit_status : int {
  exit_ok = 0,
  exit_error = 1,  // refused before work (model, library, run folder) or an error while running
  exit_usage = 2,  // command line
  exit_incomplete = 3,    // failed shards (without --allow-failed-shards) or accounting mismatch
  exit_interrupted = 75,  // stopped by a signal, --stop-after or --max-chunks; rerun with --resume
};

}  // namespace hpcscreen
