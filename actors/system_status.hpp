#pragma once

#include "messages/interfaces.hpp"

#include <chrono>
#include <cstdint>
#include <string>

namespace gatehouse {

/// Settings of the system-status actor, fixed at spawn.
struct system_status_settings {
  /// Time between two probes of PostgreSQL.
  std::chrono::milliseconds probe_interval{1000};
  /// How long one probe may take before PostgreSQL counts as down.
  std::chrono::milliseconds probe_timeout{2000};
  /// Gatehouse's build revision, reported as gitlab_rev.
  std::string revision;
};

struct system_status_state {
  static inline constexpr const char* name = "system-status";
  system_status_settings settings;
  /// Where probes go.
  store_actor store;
  /// The last probe's outcome.
  bool postgres_up = false;
  std::string postgres_error = "not probed yet";
  std::int64_t postgres_last_ok_ms = 0;
  /// settings.gitlab_version as last read.
  std::string gitlab_version;
  /// Whether a probe is in flight; ticks that find one skip theirs.
  bool probing = false;
  /// Last state the NATS edge reported.
  std::string nats_state = "disconnected";
};

system_status_actor::behavior_type system_status(
  system_status_actor::stateful_pointer<system_status_state> self,
  system_status_settings settings, store_actor store);

} // namespace gatehouse
