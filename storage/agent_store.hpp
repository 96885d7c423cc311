#pragma once

// The agent registry's writes (messages/interfaces.hpp agent_store_actor):
// agent configurations and their authorizations, KAS's usage counters and
// connections, and the outbox events that report them, each in one
// transaction so that no event is lost or written without its change.

#include "messages/interfaces.hpp"
#include "storage/pg_session.hpp"

#include <chrono>
#include <functional>
#include <string>

namespace gatehouse::storage {

/// Settings of an agent store actor, fixed at spawn.
struct agent_store_settings {
  /// libpq connection URL.
  std::string database_url;
  /// Server-side statement_timeout for every query on this connection.
  std::chrono::milliseconds statement_timeout{5000};
  /// Called on the store's thread after each commit that wrote outbox
  /// rows: wakes this replica's outbox relay at once. Must not block.
  std::function<void()> on_events_committed;
};

struct agent_store_state {
  static inline constexpr const char* name = "agent-store";
  agent_store_settings settings;
  /// Opened lazily and dropped on a broken connection, so the next request
  /// reconnects.
  pg_session session;
};

/// Unique ids older than this no longer count (GitLab's 28-day window).
inline constexpr std::chrono::hours agent_unique_id_retention{28 * 24};

/// Unique ids purged at most per usage_totals call, so that one call stays
/// short however long the purge was skipped.
inline constexpr int agent_unique_id_purge_batch = 10000;

/// The agent store actor. Blocks on libpqxx: the wiring must spawn it
/// detached. Every failure answers errc::unavailable (and is logged); a
/// failed write wrote nothing.
///
/// - touch_agent_token: last_used_at = now(); no change-log row (011).
/// - configuration_write: locks the agent row (missing: agent_found false,
///   nothing written), stores the configuration, replaces the four
///   authorization lists (targets that no longer exist are skipped), and
///   writes changed_event when the stored configuration differed (jsonb
///   equality) or there was none.
/// - usage_write: adds the counters, refreshes the unique ids, and records
///   each connection of a known agent, writing `registered` when it had
///   none and `upgraded` when agent_version or kubernetes_version differ.
/// - config_push: writes the event unless its id is in the outbox; true
///   when written.
/// - usage_totals: counters, distinct ids per name over 7 and 28 days,
///   agents seen within an hour; purges a batch of expired unique ids.
/// Events go in with ON CONFLICT (event_id) DO NOTHING, serialised per
/// project like post_receive's (outbox_insert_lock_class).
agent_store_actor::behavior_type agent_store(
  agent_store_actor::stateful_pointer<agent_store_state> self,
  agent_store_settings settings);

} // namespace gatehouse::storage
