#pragma once

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>

namespace gatehouse {

// Message structs travel between actors only; edges convert wire formats to
// and from them. Every struct has a CAF 0.17 inspect() so CAF accepts it.

/// What GET /internal/check reports.
struct check_view {
  /// The GitLab version this deployment claims (settings.gitlab_version).
  std::string gitlab_version;
  /// Gatehouse's own build revision.
  std::string gitlab_rev;
  /// Whether the state store (PostgreSQL) answered its last probe; GitLab
  /// calls this field `redis`.
  bool state_store_reachable = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, check_view& x) {
  return f(caf::meta::type_name("gatehouse.check_view"), x.gitlab_version,
           x.gitlab_rev, x.state_store_reachable);
}

/// What one probe of the state store found.
struct store_probe {
  std::string gitlab_version;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, store_probe& x) {
  return f(caf::meta::type_name("gatehouse.store_probe"), x.gitlab_version);
}

/// The state of each dependency, for /-/readiness and /metrics.
struct readiness_view {
  /// PostgreSQL answered the last probe.
  bool postgres_up = false;
  /// Why the last probe failed; empty when it succeeded.
  std::string postgres_error;
  /// "connected", "reconnecting", "disconnected" or "closed".
  std::string nats_state;
  /// Milliseconds since the epoch of the last successful PostgreSQL probe;
  /// 0 when none succeeded yet.
  std::int64_t postgres_last_ok_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, readiness_view& x) {
  return f(caf::meta::type_name("gatehouse.readiness_view"), x.postgres_up,
           x.postgres_error, x.nats_state, x.postgres_last_ok_ms);
}

} // namespace gatehouse
