#pragma once
// SIGTERM, SIGINT (Slurm before walltime, PBS qdel), SIGUSR1 or SIGUSR2 (passed on by mpirun,
// which kills the job too soon after a SIGTERM) and SIGHUP (a login session dropping) ask for a
// clean stop: take no new chunk, abandon the one in flight at the next batch boundary, commit,
// report, exit with `interrupted`.
namespace hpcscreen::pipeline {

void install_stop_handlers();
bool stop_requested();
int stop_signal();  // the signal that asked, 0 if none
// A stop that another rank received, made this rank's own (the first signal is kept).
void request_stop(int sig);
// Forgets a stop request: for tests that run several pipelines in one process.
void clear_stop_request();

}  // namespace hpcscreen::pipeline
