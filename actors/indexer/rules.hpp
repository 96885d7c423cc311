#pragma once

// The indexer coordination's rules (contract other-callers §6 Zoekt, §7
// Elasticsearch): which node reports Gatehouse refuses, how many tasks a
// node gets and how often it should ask, how a task looks on the wire
// side, which projects Zoekt indexes, which node a repository goes to,
// when a node is lost, what an assignment round changes, and what a push
// asks Elasticsearch to index. Pure functions over the read-model snapshot
// and the store's index state; no CAF, no I/O.

#include "messages/indexer.hpp"
#include "messages/read_model.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace gatehouse::indexer {

// -- GitLab's constants (Search::Zoekt::Node) ---------------------------------

/// A node's batch when it reports no concurrency (DEFAULT_CONCURRENCY_LIMIT).
inline constexpr std::int64_t default_concurrency_limit = 20;
/// The largest batch (MAX_CONCURRENCY_LIMIT).
inline constexpr std::int64_t max_concurrency_limit = 200;
/// A node seen this recently is online (ONLINE_DURATION_THRESHOLD).
inline constexpr unix_time online_seconds = 60;
/// Past this share of its disk a node stops indexing and gets no new
/// repositories (WATERMARK_LIMIT_CRITICAL, production value).
inline constexpr double critical_watermark = 0.85;
inline constexpr const char* pull_frequency_default = "10s";
inline constexpr const char* pull_frequency_increased = "500ms";
/// How long a node's row is not written again (DEBOUNCE_DELAY).
inline constexpr std::int64_t debounce_seconds = 5;
/// Git's empty tree: FROM_SHA of a push that created its branch.
inline constexpr const char* empty_tree_sha
  = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

// -- nodes --------------------------------------------------------------------

/// Whether Gatehouse takes `report` (GitLab's Node validations, answered
/// 422): node.url and node.name must not be blank (Rails' blank: empty or
/// white space only), nor disk.all and disk.used (sent as null or ""); no disk figure may be negative (GitLab only checks
/// presence, but a negative size would make the node look roomy to the
/// placement rule); every service named must be "zoekt" or
/// "knowledge_graph". No services, or an empty list, is a Zoekt node: the
/// heartbeat GitLab reads does not store node.services, so its rows keep
/// the column's default, Zoekt.
bool node_report_valid(const node_report& report);

/// How many tasks a node gets per poll (Node#concurrency_limit): its
/// reported concurrency times zoekt_cpu_to_tasks_ratio, rounded half away
/// from zero as Ruby's round; 20 when that is 0 (or negative, which GitLab
/// would hand on as is), at most 200.
std::int64_t concurrency_limit(const node_row& node,
                               const search_settings& settings);

/// Node#task_pull_frequency: "500ms" while the node's due backlog fills a
/// batch, "10s" otherwise.
std::string pull_frequency(std::int64_t backlog, std::int64_t limit);

/// used / total; 0 for a node that reports no disk.
double storage_used_share(const node_row& node);

/// Node#watermark_exceeded_critical?
bool past_critical_watermark(const node_row& node);

/// The heartbeat's stop_indexing: indexing paused, or the node's disk past
/// the critical watermark. (GitLab still hands such a node its tasks.)
bool stop_indexing(const node_row& node, const search_settings& settings);

/// Seen within the last minute of `now` (both PostgreSQL's clock).
bool node_online(const node_row& node, unix_time now);

/// Not seen for `lost_after` (zero disables: GitLab's threshold "0").
bool node_lost(const node_row& node, unix_time now,
               std::chrono::seconds lost_after);

// -- projects -----------------------------------------------------------------

/// GitLab's visibility levels: private 0, internal 10, public 20.
int visibility_level(const std::string& visibility);

/// ProjectFeature's levels: disabled 0, private 10, enabled 20.
int repository_access_level(const std::string& level);

/// Project#namespace_ancestry: the ids of the project's namespace and its
/// ancestors, root first, each followed by '-' ("9970-123-"). Bounded
/// walk: a broken parent chain ends it.
std::string namespace_ancestry(const snapshot& snap,
                               const project_record& project);

/// The top-level namespace of `namespace_id`; nullptr when unknown.
const namespace_record* top_level_namespace(const snapshot& snap,
                                            std::int64_t namespace_id);

/// Zoekt indexes the project: its top-level namespace is enabled.
bool zoekt_indexed(const snapshot& snap, const project_record& project);

// -- tasks --------------------------------------------------------------------

/// The task as the node receives it (TaskSerializerService): index_repo
/// and force_index_repo become "index" (Force for the latter),
/// delete_repo "delete". nullopt for an unknown type, or an index task
/// whose project the snapshot does not know (deleted, or not loaded yet):
/// the store orphans tasks of deleted projects, and nothing can be sent
/// for it.
std::optional<task_view> render_task(const snapshot& snap, const node_row& node,
                                     const task_row& task);

// -- placement and assignment rounds ------------------------------------------

/// What a repository not yet indexed is assumed to take on its node until
/// its size is known, so that one round spreads new repositories instead
/// of piling them onto the roomiest node.
inline constexpr std::int64_t unknown_repository_bytes = 1 << 20;

/// The room of the nodes that may take new repositories: online nodes
/// below the critical watermark, each with its free bytes (total − used −
/// what repositories assigned to it and not yet ready will take). Small
/// (one entry per node), so the actor keeps it between rounds instead of
/// the whole index state.
class node_room {
public:
  /// Candidates: online nodes under the critical watermark that are not
  /// lost (`lost_after`; zero: never). A lost node can still look online
  /// when lost_after is below the online window.
  explicit node_room(const index_state& state,
                     std::chrono::seconds lost_after = std::chrono::seconds{0});

  /// The node with the most room; ties go to the lower id. nullopt: no
  /// node can take a repository, it waits.
  std::optional<std::int64_t> best() const;

  /// best(), charged with the repository's size (at least
  /// unknown_repository_bytes) for the next choice.
  std::optional<std::int64_t> place(std::int64_t size_bytes);

private:
  /// Node id -> free bytes, ascending ids.
  std::map<std::int64_t, std::int64_t> free_;
};

/// The node a new repository goes to: node_room(state).best().
std::optional<std::int64_t> choose_node(
  const index_state& state,
  std::chrono::seconds lost_after = std::chrono::seconds{0});

struct assignment_limits {
  /// A node not seen this long has its repositories moved (zero: never).
  std::chrono::seconds lost_after{std::chrono::hours{12}};
  /// At most this many changes (assign + wait + drop) per round; the rest
  /// waits for the next round, so a round's transaction stays short.
  std::size_t max_changes = 1000;
};

/// One assignment round's decisions, in this order of priority until the
/// budget is spent: drop repositories whose project is gone or no longer
/// Zoekt-indexed (they free room); move repositories waiting for a node,
/// on a lost node or on a node no longer registered; create repositories
/// for indexed projects that have none (assigned, or waiting when no node
/// can take them). Repositories already pending_deletion are left to the
/// store. Lost nodes are not acted on while indexing is paused (GitLab's
/// marking_lost_enabled?). Linear in the snapshot's projects; the writes
/// are bounded.
assignment_write plan_assignments(const snapshot& snap,
                                  const index_state& state,
                                  const assignment_limits& limits);

// -- pushes -------------------------------------------------------------------

/// Whether `after` deletes the ref (all zeros).
bool is_zero_sha(const std::string& sha);

/// Whether the push moved the project's default branch to a commit: only
/// the default branch is indexed, by Zoekt and by Elasticsearch alike.
bool pushes_default_branch(const project_record& project,
                           const pushed_ref& push);

/// The Elasticsearch index request of a push (§7; what GitLab's
/// ElasticCommitIndexerWorker launches gitlab-elasticsearch-indexer with):
/// only with elasticsearch_indexing on and for a push of the default
/// branch of a project whose repository exists. FROM_SHA is the push's
/// `before`, or the empty tree for a new branch: Gatehouse keeps no
/// "last indexed commit", and the push's own range is what changed (a
/// consumer that missed requests can index from its own last commit).
/// Subject gitlab.events.index.elastic.<project_id>, kind index_elastic;
/// the id is derived from the push event's, so a redelivered push makes
/// no second request. Every project is indexed: the read model has no
/// elasticsearch_limit_indexing namespaces or projects.
std::optional<outbox_event> elastic_index_request(const snapshot& snap,
                                                  const project_record& project,
                                                  const pushed_ref& push);

} // namespace gatehouse::indexer
