#pragma once

// The webhook consumer's sign of life for a container health check: a file
// whose modification time the consumer renews while it is bound to its
// JetStream consumer and reaches PostgreSQL (or makes progress on a
// delivery). The process merely running says nothing: a consumer can run
// for hours without NATS or PostgreSQL. compose.yaml's check calls the
// consumer unhealthy when the file is older than a minute.

#include <chrono>
#include <string>

namespace gatehouse::webhooks {

class heartbeat {
public:
  /// An empty path disables it. A file left by an earlier run (a restarted
  /// container keeps /tmp) is removed, so that only this run renews it.
  explicit heartbeat(std::string path);

  /// Removes the file: a stopped consumer is not healthy.
  ~heartbeat();

  heartbeat(const heartbeat&) = delete;
  heartbeat& operator=(const heartbeat&) = delete;

  /// Renews the file's modification time (creating it when missing), at
  /// most once a second. A failure is logged once until it works again.
  void beat();

private:
  std::string path_;
  std::chrono::steady_clock::time_point last_{};
  bool failing_ = false;
};

} // namespace gatehouse::webhooks
