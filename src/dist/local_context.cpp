#include <algorithm>
#include <cstdlib>

#include "hpcscreen/dist/context.hpp"

namespace hpcscreen::dist {
namespace {

class local_counter : public shared_counter {
 public:
  std::uint64_t next() override { return value_++; }
  void raise_stop(int signal) override { stop_ = std::max(stop_, signal); }
  int stop_raised() override { return stop_; }

 private:
  std::uint64_t value_ = 0;
  int stop_ = 0;
};

class local_board : public progress_board {
 public:
  void publish(const std::uint64_t (&values)[n_slots]) override {
    values_.assign(values, values + n_slots);
  }
  std::vector<std::uint64_t> read_all() override {
    return values_.empty() ? std::vector<std::uint64_t>(n_slots, 0) : values_;
  }

 private:
  std::vector<std::uint64_t> values_;
};

class local_context : public context {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string description() const override { return "single process"; }
  void barrier() override {}
  std::unique_ptr<shared_counter> make_counter() override {
    return std::make_unique<local_counter>();
  }
  std::unique_ptr<progress_board> make_progress_board() override {
    return std::make_unique<local_board>();
  }
  std::vector<std::string> gather(const std::string& blob) override { return {blob}; }
  std::string broadcast(const std::string& blob) override { return blob; }
  bool all_ok(bool ok) override { return ok; }
  [[noreturn]] void abort(int status) override { std::_Exit(status); }
};

}  // namespace

std::unique_ptr<context> make_local_context() {
  return std::make_unique<local_context>();
}

}  // namespace hpcscreen::dist
