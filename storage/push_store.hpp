#pragma once

// The push-processing writes: the reference counter of /pre_receive and
// /post_receive (GitLab's Redis counter, here in PostgreSQL so that every
// replica shares it) and the transactional outbox that carries push events
// to the relay (storage/outbox_store.hpp, edges/nats/outbox_relay.hpp).

#include "messages/interfaces.hpp"
#include "storage/outbox_store.hpp"
#include "storage/pg_session.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace gatehouse::storage {

/// Settings of a push store actor, fixed at spawn.
struct push_store_settings {
  /// libpq connection URL.
  std::string database_url;
  /// Server-side statement_timeout for every query on this connection.
  std::chrono::milliseconds statement_timeout{5000};
  /// Called on the store's thread after each commit that wrote events:
  /// wakes this replica's outbox relay without a round trip to PostgreSQL.
  /// Must not block.
  std::function<void()> on_events_committed;
  /// At most one NOTIFY per this interval (for the relays of other
  /// replicas, which otherwise find the rows at their next poll).
  std::chrono::milliseconds notify_interval{100};
  /// Pushes written in one transaction at most.
  std::size_t max_batch = 64;
};

/// A post_receive waiting for its session's next commit.
struct queued_push {
  post_receive_write write;
  caf::typed_response_promise<post_receive_written> promise;

  const std::string& request_id() const {
    return write.request_id;
  }
};

/// A pre_receive waiting for its session's next commit.
struct queued_count {
  std::string gl_repository;
  /// Empty for none.
  std::string id;
  caf::typed_response_promise<bool> promise;

  const std::string& request_id() const {
    return id;
  }
};

struct push_store_state {
  static inline constexpr const char* name = "push-store";
  push_store_settings settings;
  /// Opened lazily and dropped on a connection failure, so the next request
  /// reconnects.
  pg_session session;
  /// pre_receive calls since expired counters were last purged.
  std::uint32_t since_purge = 0;
  /// Calls received since the last flush; written together when the flush
  /// message queued behind them arrives.
  std::vector<queued_count> queued_counts;
  std::vector<queued_push> queued;
  bool flush_queued = false;
  /// When this session last sent a NOTIFY; the epoch when never.
  std::chrono::steady_clock::time_point last_notify{};
};

/// The reference counter's lifetime after each increment (GitLab's
/// REFERENCE_EXPIRE_TIME).
inline constexpr std::chrono::seconds reference_counter_ttl{600};

/// The push store actor. Blocks on libpqxx: the wiring must spawn it
/// detached (one connection per instance; several may run side by side).
///
/// - pre_receive: +1 on the counter and a fresh 600 s expiry (an expired
///   counter starts from 0); true, or false (logged) when the write fails,
///   as GitLab answers when Redis fails.
/// - post_receive: decrements the counter (a counter that would go below 0,
///   or has expired, is deleted; still true), takes the unexpired moved
///   message of (user_id, project_id) when both are non-zero and inserts
///   the events into the outbox, all in one transaction, then wakes the
///   relay. Any failure rolls back and answers errc::unavailable: an event
///   is never acknowledged without being committed.
/// - Group commit: the calls that queue while a transaction runs are
///   written together: first the pre_receives in one transaction, then the
///   post_receives in another (at most max_batch each; one statement,
///   storage/schema/007_push_batch.sql). Each call is answered after its
///   commit with its own result. When a batch fails for a reason that
///   rolled it back cleanly (one push's bad row, a deadlock), its calls are
///   written again one by one, so one bad push fails alone.
/// - With a request id (pre_receive's second form,
///   post_receive_write::request_id), the same transaction records the id in
///   gatehouse_state.requests with what it committed; a write whose id is
///   recorded already changes nothing and answers the recorded result, so a
///   retry reaching any replica applies once.
push_store_actor::behavior_type push_store(
  push_store_actor::stateful_pointer<push_store_state> self,
  push_store_settings settings);

} // namespace gatehouse::storage
