#pragma once
// Three kinds of failure, never mixed (see STYLE.md):
//  - a bug: HPCSCREEN_ASSERT aborts with the expression and file:line;
//  - a bad record: not an exception, a reject with a stable reason code (core/record.hpp);
//  - a broken unit (shard, model, configuration, MPI): one of the typed exceptions below,
//    with context prefixed on the way up and the library's own message kept.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace hpcscreen {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Wrong command line or run configuration: exit status 2.
class usage_error : public error {
 public:
  using error::error;
};

// A library shard or manifest that cannot be used.
class shard_error : public error {
 public:
  using error::error;
};

// A model file that cannot be loaded or breaks the contract.
class model_error : public error {
 public:
  using error::error;
};

// A model whose output breaks its declared contract (shape, dtype) on a real batch. Not a
// per-record failure to isolate by splitting batches: the run stops and names what was
// expected and found.
class model_contract_error : public error {
 public:
  using error::error;
};

// A stop request (a signal) honoured: what is done is kept and the command exits 75.
class stopped_error : public error {
 public:
  using error::error;
};

// A batch that does not fit in memory (LibTorch's allocator or the memory tier ran out). The
// inference layer retries it in halves; see infer/backoff.hpp.
class out_of_memory_error : public model_error {
 public:
  using model_error::model_error;
};

// Anything about the run folder: existing folder, journal, resume mismatch.
class run_error : public error {
 public:
  using error::error;
};

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line,
                                     const std::string& msg) {
  std::fprintf(stderr, "hpcscreen: internal error: assertion '%s' failed at %s:%d%s%s\n", expr,
               file, line, msg.empty() ? "" : ": ", msg.c_str());
  std::abort();
}

}  // namespace hpcscreen

#define HPCSCREEN_ASSERT(expr)                                                       \
  do {                                                                               \
    if (!(expr)) ::hpcscreen::assert_fail(#expr, __FILE__, __LINE__, std::string()); \
  } while (0)

#define HPCSCREEN_ASSERT_MSG(expr, msg)                                      \
  do {                                                                       \
    if (!(expr)) ::hpcscreen::assert_fail(#expr, __FILE__, __LINE__, (msg)); \
  } while (0)
