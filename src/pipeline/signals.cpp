#include "hpcscreen/pipeline/signals.hpp"

#include <atomic>
#include <csignal>
#include <initializer_list>

namespace hpcscreen::pipeline {
namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int sig) {
  g_signal = sig;
}
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (const int sig : {SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP}) sigaction(sig, &sa, nullptr);
}

bool stop_requested() {
  return g_signal != 0;
}
int stop_signal() {
  return g_signal;
}
void request_stop(int sig) {
  if (g_signal == 0) g_signal = sig;
}
void clear_stop_request() {
  g_signal = 0;
}

}  // namespace hpcscreen::pipeline
