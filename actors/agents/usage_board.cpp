#include "actors/agents/usage_board.hpp"

namespace gatehouse::agents {

namespace {

// Counter names are GitLab's declared ones (the edge passes no others),
// so they need no label escaping.
void series(std::string& out, const char* metric, const std::string& counter,
            const char* window, std::int64_t value) {
  out += metric;
  out += "{counter=\"" + counter + "\"";
  if (window != nullptr)
    out += std::string{",window=\""} + window + "\"";
  out += "} " + std::to_string(value) + "\n";
}

} // namespace

void usage_board::set(usage_totals totals) {
  std::lock_guard<std::mutex> guard{mtx_};
  totals_ = std::move(totals);
  ready_ = true;
}

std::string usage_board::render() const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!ready_)
    return {};
  std::string out;
  out += "# HELP gatehouse_kas_usage_total KAS usage counters "
         "(usage_metrics and agent_events), summed over every replica.\n"
         "# TYPE gatehouse_kas_usage_total counter\n";
  for (const auto& [name, value] : totals_.counters)
    series(out, "gatehouse_kas_usage_total", name, nullptr, value);
  out += "# HELP gatehouse_kas_unique_ids Distinct ids KAS reported per "
         "unique counter within the window.\n"
         "# TYPE gatehouse_kas_unique_ids gauge\n";
  for (const auto& [name, value] : totals_.unique_week)
    series(out, "gatehouse_kas_unique_ids", name, "7d", value);
  for (const auto& [name, value] : totals_.unique_month)
    series(out, "gatehouse_kas_unique_ids", name, "28d", value);
  out += "# HELP gatehouse_kas_connected_agents Agents whose connection KAS "
         "reported within the last hour.\n"
         "# TYPE gatehouse_kas_connected_agents gauge\n"
         "gatehouse_kas_connected_agents "
         + std::to_string(totals_.connected_agents) + "\n";
  return out;
}

} // namespace gatehouse::agents
