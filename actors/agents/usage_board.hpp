#pragma once

// The KAS usage counters as /metrics shows them. The agent registry
// refreshes them from PostgreSQL (every replica shows the instance's
// totals); the HTTP edge renders them on its own threads, hence the lock.

#include "messages/agents.hpp"

#include <mutex>
#include <string>

namespace gatehouse::agents {

class usage_board {
public:
  void set(usage_totals totals);

  /// Prometheus text; "" until the first refresh.
  std::string render() const;

private:
  mutable std::mutex mtx_;
  bool ready_ = false;
  usage_totals totals_;
};

} // namespace gatehouse::agents
