#include "hpcscreen/dist/agreement.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "hpcscreen/core/cli.hpp"
#include "hpcscreen/core/exit_status.hpp"

namespace hpcscreen::dist {

using json = nlohmann::json;

namespace {
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
}  // namespace

failure agree(context& ctx, const failure& mine, bool name_ranks) {
  if (ctx.all_ok(mine.ok())) return {};
  const auto all = ctx.gather(dump({{"kind", static_cast<int>(mine.kind)}, {"message", mine.message}}));
  json verdict = {{"kind", 0}, {"message", ""}};
  if (ctx.rank() == 0) {
    int worst = failure::none;
    std::map<std::string, std::vector<int>> ranks_by_message;
    for (std::size_t r = 0; r < all.size(); ++r) {
      const auto f = json::parse(all[r]);
      const int kind = f["kind"].get<int>();
      if (kind == failure::none) continue;
      worst = std::max(worst, kind);
      ranks_by_message[f["message"].get<std::string>()].push_back(static_cast<int>(r));
    }
    std::string message;
    for (const auto& [m, ranks] : ranks_by_message) {
      if (!message.empty()) message += "\n";
      message += m;
      if (name_ranks && ranks.size() != all.size()) {
        message += " (rank " + std::to_string(ranks.front()) +
                   (ranks.size() > 1 ? " and others" : "") + ")";
      }
    }
    verdict = {{"kind", worst}, {"message", message}};
  }
  verdict = json::parse(ctx.broadcast(dump(verdict)));
  return {static_cast<failure::kind_t>(verdict["kind"].get<int>()),
          verdict["message"].get<std::string>()};
}

void agree_or_throw(context& ctx, const failure& mine, bool name_ranks) {
  const auto agreed = agree(ctx, mine, name_ranks);
  switch (agreed.kind) {
    case failure::none: return;
    case failure::usage: throw usage_error(agreed.message);
    case failure::stopped: throw stopped_error(agreed.message);
    default: throw hpcscreen::error(agreed.message);
  }
}

int exit_status_of(const failure& f) {
  switch (f.kind) {
    case failure::none: return exit_ok;
    case failure::usage: return exit_usage;
    case failure::stopped: return exit_interrupted;
    default: return exit_error;
  }
}

namespace {
int report_failure(const failure& f, bool printer, const std::string& command) {
  if (!f.ok() && printer) {
    std::fprintf(stderr, "hpcscreen %s: %s%s\n", command.c_str(),
                 f.kind == failure::error ? "error: " : "", f.message.c_str());
  }
  return exit_status_of(f);
}
}  // namespace

int run_collective_command(int argc, char** argv, const std::string& command,
                           const std::function<void(context&)>& body) {
  if (!cli::launched_by_mpi()) {
    auto local = make_local_context();
    return report_failure(capture_failure([&] { body(*local); }), true, command);
  }
  mpi_session mpi(argc, argv);
  auto world = mpi.world();
  return report_failure(capture_failure([&] { body(*world); }), world->rank() == 0, command);
}

}  // namespace hpcscreen::dist
