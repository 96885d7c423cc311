#pragma once

// The indexer coordination's reads and writes (messages/interfaces.hpp
// indexer_store_actor): Zoekt nodes, repositories and tasks
// (012_zoekt.sql), and the Elasticsearch index requests that go to the
// outbox, each in one transaction. Decides nothing: which node, project
// and task come from the actor; the semantics are those of
// messages/indexer.hpp.

#include "messages/interfaces.hpp"
#include "storage/pg_session.hpp"

#include <chrono>
#include <functional>
#include <string>

namespace gatehouse::storage {

/// Settings of an indexer store actor, fixed at spawn.
struct indexer_store_settings {
  /// libpq connection URL.
  std::string database_url;
  /// Server-side statement_timeout for every query on this connection.
  std::chrono::milliseconds statement_timeout{5000};
  /// Called on the store's thread after each commit that wrote outbox
  /// rows: wakes this replica's outbox relay at once. Must not block.
  std::function<void()> on_events_committed;
};

struct indexer_store_state {
  static inline constexpr const char* name = "indexer-store";
  indexer_store_settings settings;
  /// Opened lazily and dropped on a broken connection, so the next request
  /// reconnects.
  pg_session session;
};

/// A task_take reads candidates in batches of this many rows at most, and
/// at most indexer_take_batches of them: duplicates of a project, orphaned
/// and skipped tasks are passed over, and one poll must stay short however
/// many there are.
inline constexpr int indexer_take_batch_rows = 500;
inline constexpr int indexer_take_batches = 4;

/// The largest limit a task_take honours.
inline constexpr int indexer_take_max_limit = 1000;

/// Handled push events are remembered this long (a redelivery within it
/// writes nothing), and purged at most this many per push_index_write.
inline constexpr std::chrono::hours indexed_push_event_retention{7 * 24};
inline constexpr int indexed_push_event_purge_batch = 100;

/// Finished tasks (done, failed, orphaned, skipped) are kept this long,
/// and purged at most this many per assignment_write.
inline constexpr std::chrono::hours finished_task_retention{24};
inline constexpr int finished_task_purge_batch = 1000;

/// The indexer store actor. Blocks on libpqxx: the wiring must spawn it
/// detached. Every failure answers errc::unavailable (a value PostgreSQL
/// refuses: bad_request) and is logged; a failed write wrote nothing.
///
/// - node_write: upsert by uuid (PostgreSQL's clock); an existing node
///   written less than debounce_seconds ago is answered as stored.
/// - task_take: FOR UPDATE SKIP LOCKED, so replicas polling for one node
///   take disjoint tasks; a task whose project row is gone (not a delete)
///   becomes orphaned, one whose repository failed skipped.
/// - callback_write: a task of another node is not found; a delete
///   removes the repository only while it is pending_deletion (a
///   repository moved to another node stays); an index success updates the
///   repository only while it is on the calling node.
/// - push_index_write: idempotent on event_id (gatehouse_state.
///   indexed_push_events); the outbox skips a repeated elastic event id.
/// - index_state: every node and repository, read in one snapshot.
/// - assignment_write: per project, row locks in ascending project order;
///   also purges a batch of finished tasks past their retention.
indexer_store_actor::behavior_type indexer_store(
  indexer_store_actor::stateful_pointer<indexer_store_state> self,
  indexer_store_settings settings);

} // namespace gatehouse::storage
