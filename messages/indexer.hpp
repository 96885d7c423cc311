#pragma once

// Search indexing (contract other-callers §6 Zoekt, §7 Elasticsearch): what
// Zoekt indexer nodes report and are told, what the push-event feed hands
// the indexer-coordination actor, and what that actor asks its store to
// write. The edges map fields only (Grape's coercion included: a declared
// integer that is not one is errc::invalid_params "<name> is invalid"; a
// missing required one "<name> is missing"); every rule lives in
// actors/indexer/.

#include <caf/allowed_unsafe_message_type.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::indexer {

// -- what a node reports -------------------------------------------------------

/// The dotted parameters of POST …/zoekt/:uuid/heartbeat (18.0+) and
/// GET …/zoekt/:uuid/tasks (16.5–17.x), as sent. Required ones the edge
/// checked are present (possibly empty strings: Grape's `requires` lets ""
/// through, and the node's validation then refuses it with 422).
struct node_report {
  /// :uuid of the path.
  std::string uuid;
  /// node.url (required): where the node indexes.
  std::string url;
  /// node.name (required).
  std::string name;
  /// node.search_url (undeclared, read by GitLab): where it serves search;
  /// url when absent.
  std::optional<std::string> search_url;
  /// disk.all, disk.used (required, bytes).
  std::int64_t disk_all = 0;
  std::int64_t disk_used = 0;
  /// disk.all or disk.used was sent but is nil after Grape's coercion (null
  /// or ""; the figure above is then 0): GitLab's validation refuses such a
  /// node (total_bytes, used_bytes must be present), 422.
  bool disk_blank = false;
  /// disk.indexed (optional), disk.free (required by the tasks call only).
  std::optional<std::int64_t> disk_indexed;
  std::optional<std::int64_t> disk_free;
  /// node.services (optional): "zoekt", "knowledge_graph".
  std::optional<std::vector<std::string>> services;
  /// node.schema_version (optional).
  std::optional<std::int64_t> schema_version;
  /// node.task_count, node.concurrency (undeclared, read by GitLab as
  /// integers; "" and absent are the same).
  std::optional<std::int64_t> task_count;
  std::optional<std::int64_t> concurrency;
  /// node.version (undeclared).
  std::optional<std::string> version;
};

// -- heartbeat and tasks -------------------------------------------------------

/// POST /internal/search/zoekt/:uuid/heartbeat.
struct heartbeat_query {
  node_report node;
};

/// GET /internal/search/zoekt/:uuid/tasks (the call heartbeat replaced).
struct tasks_query {
  node_report node;
};

/// Where an index task's repository is (the payload's GitalyConnectionInfo).
struct gitaly_connection {
  std::string address;
  std::string token;
  std::string storage;
  /// disk_path + ".git"
  std::string path;
};

/// One task as the node receives it (GitLab's TaskSerializerService).
struct task_view {
  /// "index" or "delete".
  std::string name;
  std::int64_t task_id = 0;
  /// RepoId: the project id.
  std::int64_t repo_id = 0;
  // -- index only --
  /// Absent when the repository is missing (MissingRepo true).
  std::optional<gitaly_connection> gitaly;
  /// Callback.payload.schema_version: the node's.
  std::int64_t schema_version = 0;
  /// FileSizeLimit, bytes.
  std::int64_t file_size_limit = 0;
  std::int64_t parallelism = 1;
  /// Timeout, e.g. "5400s".
  std::string timeout;
  std::int64_t file_count_limit = 0;
  bool missing_repo = false;
  /// Force: true for a forced re-index (the key is left out otherwise).
  bool force = false;
  /// Metadata: project_id, traversal_ids, visibility_level,
  /// repository_access_level, forked ("t"/"f"), archived ("t"/"f"), in this
  /// order; every value a string.
  std::vector<std::pair<std::string, std::string>> metadata;
};

/// The answer to both calls. Heartbeat's body has five keys; the tasks
/// call's those of its last version (17.8-17.11), which adds
/// optimized_performance:false.
struct heartbeat_answer {
  /// The node failed GitLab's validation (a blank node.url or node.name,
  /// a negative disk figure, an unknown service): 422
  /// {"message":"422 Unprocessable Entity"}, nothing written; the other
  /// fields are then unset.
  bool invalid_node = false;
  std::int64_t node_id = 0;
  /// The node was created by this call: it should drop what it indexed.
  bool truncate = false;
  std::vector<task_view> tasks;
  /// "10s", or "500ms" when the node's backlog fills a batch.
  std::string pull_frequency;
  /// Indexing paused, or the node past the critical disk watermark.
  bool stop_indexing = false;
};

// -- callback --------------------------------------------------------------------

/// POST /internal/search/zoekt/:uuid/callback.
struct callback_query {
  std::string uuid;
  /// name (required): "index", "delete", ….
  std::string name;
  /// success (required; Grape's Boolean).
  bool success = false;
  /// error (optional).
  std::optional<std::string> error;
  /// payload (required, JSON): its task_id when it holds an integer one.
  std::optional<std::int64_t> task_id;
  /// additional_payload.repo_stats.{size_in_bytes,index_file_count}.
  std::optional<std::int64_t> size_in_bytes;
  std::optional<std::int64_t> index_file_count;
};

/// 202 {"message":"202 Accepted"}, or, for a node nobody registered,
/// 422 {"message":"422 Unprocessable Entity"}.
struct callback_answer {
  bool node_found = true;
};

// -- the push-event feed --------------------------------------------------------

/// One branch push event of GATEHOUSE_EVENTS (gitlab.events.push.<id>), as
/// the indexer feed hands it over.
struct pushed_ref {
  /// The push event's id (Nats-Msg-Id): makes the work it causes
  /// idempotent.
  std::string event_id;
  std::int64_t project_id = 0;
  /// refs/heads/<branch>
  std::string ref;
  std::string before;
  std::string after;
  /// The event's correlation id when it has one ("" otherwise).
  std::string correlation_id;
};

/// Handled: what it called for is durable; the feed acknowledges it.
struct pushed_ref_done {
  /// Zoekt tasks created (0 for a repeat or a project not indexed).
  int zoekt_tasks = 0;
  /// Elasticsearch index requests written to the outbox.
  int elastic_requests = 0;
};

// -- the indexer store ------------------------------------------------------------

/// A node's row as the rules need it.
struct node_row {
  std::int64_t id = 0;
  std::string uuid;
  std::string name;
  std::int64_t total_bytes = 0;
  std::int64_t used_bytes = 0;
  std::int64_t indexed_bytes = 0;
  std::int64_t schema_version = 0;
  std::optional<std::int64_t> concurrency;
  std::optional<std::int64_t> task_count;
  /// Unix seconds.
  std::int64_t last_seen_at = 0;
};

/// Insert or update a node from its report. `debounce_seconds`: an existing
/// node updated less than that long ago is not written again (GitLab's
/// save_debounce); the row is answered either way.
struct node_write {
  node_report report;
  std::int64_t debounce_seconds = 5;
};

struct node_written {
  node_row node;
  /// The row was inserted by this write.
  bool created = false;
};

/// Take up to `limit` tasks of a node that are due, oldest first, at most
/// one per repository; they become "processing". Tasks whose project is
/// gone become "orphaned" instead.
struct task_take {
  std::int64_t node_id = 0;
  int limit = 20;
};

/// A taken task: its type and project (the actor renders it from the read
/// model's project).
struct task_row {
  std::int64_t id = 0;
  /// "index_repo", "force_index_repo", "delete_repo".
  std::string type;
  std::int64_t project_id = 0;
};

struct tasks_taken {
  std::vector<task_row> tasks;
  /// The node's pending and processing tasks that are due, counted up to
  /// the limit (GitLab's backlog check for pull_frequency), after the take.
  std::int64_t backlog = 0;
};

/// Record a node's callback for one of its tasks. Success: the task is done
/// and, for an index task, the repository ready with its stats (a delete
/// task removes the repository row). Failure: retries_left is decremented,
/// and at the last retry the task is failed. A task already done (success)
/// or failed (failure) is left alone.
struct callback_write {
  std::string node_uuid;
  std::optional<std::int64_t> task_id;
  bool success = false;
  std::optional<std::int64_t> size_in_bytes;
  std::optional<std::int64_t> index_file_count;
};

struct callback_written {
  bool node_found = false;
  bool task_found = false;
};

/// An event written to the outbox in the transaction of what it reports.
struct outbox_event {
  /// A UUID; a repeat of one already in the outbox is skipped.
  std::string event_id;
  std::int64_t project_id = 0;
  std::string subject;
  /// The Gatehouse-Event header.
  std::string kind;
  std::string body;
};

/// Index a pushed project, once per push event: in one transaction, make
/// sure the project has a repository row (assigned to `node_id` when it has
/// none), create an index task for it on its node unless a task for
/// `event_id` exists, and write `elastic` to the outbox when set.
struct push_index_write {
  std::string event_id;
  std::int64_t project_id = 0;
  /// Whether Zoekt indexes the project (its top-level namespace enabled).
  bool zoekt = false;
  /// The node for a repository that has none: chosen by the rules among
  /// online nodes; nullopt when none is online (the repository then waits
  /// for the next assignment round).
  std::optional<std::int64_t> node_id;
  std::optional<outbox_event> elastic;
};

struct push_index_written {
  /// False when event_id had been handled already (nothing written).
  bool first_time = true;
  bool task_created = false;
  bool elastic_written = false;
};

/// What the assignment rounds decide over.
struct repository_row {
  std::int64_t project_id = 0;
  /// nullopt: waiting for a node.
  std::optional<std::int64_t> node_id;
  /// pending, initializing, ready, failed, pending_deletion
  std::string state;
  std::int64_t size_bytes = 0;
};

struct index_state {
  std::vector<node_row> nodes;
  std::vector<repository_row> repositories;
  /// Unix seconds, PostgreSQL's clock (nodes' last_seen_at are on it).
  std::int64_t now = 0;
};

/// One assignment round's writes, in one transaction: repositories
/// (re)assigned to a node get an index task there (the old node, if any
/// and still registered, a delete task); repositories to drop get a delete
/// task on their node and are marked pending_deletion (removed when the
/// node confirms, or at once when they have no node); new repositories
/// are created (assigned or waiting).
struct assignment_write {
  /// (project id, node id): create or move.
  std::vector<std::pair<std::int64_t, std::int64_t>> assign;
  /// Projects to create without a node (no node online).
  std::vector<std::int64_t> wait;
  /// Projects no longer indexed (deleted, or moved out of an enabled
  /// namespace).
  std::vector<std::int64_t> drop;
};

struct assignment_written {
  int index_tasks = 0;
  int delete_tasks = 0;
};

} // namespace gatehouse::indexer

// Local messages between the edges, the indexer-coordination actor and its
// store, never serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::heartbeat_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::tasks_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::heartbeat_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::callback_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::callback_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::pushed_ref)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::pushed_ref_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::node_write)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::node_written)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::task_take)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::tasks_taken)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::callback_write)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::callback_written)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::push_index_write)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::push_index_written)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::index_state)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::assignment_write)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::indexer::assignment_written)
