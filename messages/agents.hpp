#pragma once

// The GitLab agent server's (KAS) calls (contract other-callers §1.2, §2):
// what KAS asks about agents, projects and users, what it reports, and what
// the agent registry asks its store to write. The edges map fields only
// (Grape's type coercion included: a declared integer that is not one is
// errc::invalid_params "<name> is invalid"); every rule lives in
// actors/agents/.

#include <caf/allowed_unsafe_message_type.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::agents {

// -- names GitLab declares -----------------------------------------------------

/// usage_metrics counters GitLab increments; other keys are ignored.
inline constexpr const char* known_counters[] = {
  "gitops_sync",
  "k8s_api_proxy_request",
  "flux_git_push_notifications_total",
  "k8s_api_proxy_requests_via_ci_access",
  "k8s_api_proxy_requests_via_user_access",
  "k8s_api_proxy_requests_via_pat_access",
};

/// usage_metrics unique counters (sets of user, agent or project ids).
inline constexpr const char* known_unique_counters[] = {
  "agent_users_using_ci_tunnel",
  "k8s_api_proxy_requests_unique_users_via_ci_access",
  "k8s_api_proxy_requests_unique_agents_via_ci_access",
  "k8s_api_proxy_requests_unique_users_via_user_access",
  "k8s_api_proxy_requests_unique_agents_via_user_access",
  "k8s_api_proxy_requests_unique_users_via_pat_access",
  "k8s_api_proxy_requests_unique_agents_via_pat_access",
  "flux_git_push_notified_unique_projects",
};

/// agent_events lists of {user_id, project_id}.
inline constexpr const char* known_user_events[] = {
  "k8s_api_proxy_requests_unique_users_via_ci_access",
  "k8s_api_proxy_requests_unique_users_via_user_access",
  "k8s_api_proxy_requests_unique_users_via_pat_access",
};

// -- answers shared by several calls -------------------------------------------

/// A refusal GitLab renders as {"message": message} (render_api_error!),
/// or, when `oauth_error` is set, as Rack::OAuth2's bearer-token error:
/// {"error": oauth_error, "error_description": message[, "scope": scope]}
/// with a WWW-Authenticate header on 401.
struct refusal {
  int status = 0;
  std::string message;
  std::optional<std::string> oauth_error;
  std::optional<std::string> scope;
};

/// Where a project's repository is, as KAS dials Gitaly for it (§2.3).
struct repository_view {
  std::int64_t project_id = 0;
  /// gitaly_info
  std::string gitaly_address;
  /// "" allowed; nullopt is JSON null.
  std::optional<std::string> gitaly_token;
  /// gitaly_info.features (Gitaly feature flags): name -> "true"/"false".
  /// Left out of the body when `with_features` is false (autoflow).
  std::vector<std::pair<std::string, std::string>> gitaly_features;
  bool with_features = true;
  /// gitaly_repository
  std::string storage_name;
  /// disk_path + ".git"
  std::string relative_path;
  /// "project-<id>"
  std::string gl_repository;
  std::string gl_project_path;
  /// The project's default branch, "main" when it has none.
  std::string default_branch;
};

/// An answer without a body: 204, or a refusal.
struct no_content {
  std::optional<refusal> refused;
};

// -- K1, K2: agent_info --------------------------------------------------------

/// GET /internal/agents/agentk/agent_info, /internal/kubernetes/agent_info.
struct agent_info_query {
  /// The agent token: the first present of Gitlab-Agentk-Api-Request,
  /// Gitlab-Agent-Api-Request, Authorization: Bearer (§1.2).
  std::optional<std::string> token;
};

struct agent_info_answer {
  std::optional<refusal> refused;
  std::int64_t agent_id = 0;
  std::string agent_name;
  repository_view repository;
};

// -- K3, K4, K9: a project by id or full path ----------------------------------

/// GET /internal/kubernetes/project_info?id=,
/// /internal/kubernetes/verify_project_access?id= (agent token required),
/// /internal/autoflow/repository_info?id= (no agent token).
struct project_query {
  std::optional<std::string> token;
  /// As sent; nullopt when absent (project_info then finds nothing;
  /// autoflow answers "id is missing").
  std::optional<std::string> id;
  /// autoflow: no agent token; every existing project is answered.
  bool autoflow = false;
};

struct project_answer {
  std::optional<refusal> refused;
  repository_view repository;
};

// -- K5: agent_configuration ---------------------------------------------------

/// POST /internal/kubernetes/agent_configuration.
struct configuration_query {
  std::int64_t agent_id = 0;
  /// agent_config as JSON text (Grape's JSON type: an object, an array, or
  /// a string holding one).
  std::string config;
};

// -- K6: authorize_proxy_user --------------------------------------------------

/// POST /internal/kubernetes/authorize_proxy_user.
struct proxy_user_query {
  std::int64_t agent_id = 0;
  /// "session_cookie" or "personal_access_token" (the edge rejects others).
  std::string access_type;
  std::string access_key;
  /// Present and non-blank when access_type is session_cookie.
  std::optional<std::string> csrf_token;
};

struct proxy_user_answer {
  std::optional<refusal> refused;
  std::int64_t agent_id = 0;
  std::int64_t config_project_id = 0;
  std::int64_t user_id = 0;
  std::string username;
};

// -- K7: usage_metrics ---------------------------------------------------------

/// POST /internal/kubernetes/usage_metrics: the declared names only.
struct usage_query {
  std::vector<std::pair<std::string, std::int64_t>> counters;
  std::vector<std::pair<std::string, std::vector<std::int64_t>>>
    unique_counters;
};

// -- K8: agent_events ----------------------------------------------------------

struct user_event {
  std::optional<std::int64_t> user_id;
  std::optional<std::int64_t> project_id;
};

/// One register_agent_at_kas event: an agent connected to KAS.
struct kas_registration {
  std::optional<std::int64_t> project_id;
  std::optional<std::int64_t> agent_id;
  std::optional<std::string> agent_version;
  std::optional<std::string> architecture;
  std::optional<std::string> kubernetes_version;
  std::optional<std::string> installation_method;
  std::optional<std::string> helm_chart_version;
};

/// POST /internal/kubernetes/agent_events: the declared names only.
struct events_query {
  std::vector<std::pair<std::string, std::vector<user_event>>> user_events;
  std::vector<kas_registration> registrations;
};

// -- K10: ci/agents/runner/info ------------------------------------------------

/// GET /internal/ci/agents/runner/info: the runner token KAS forwards in
/// Gitlab-Agent-Api-Request.
struct runner_query {
  std::optional<std::string> token;
};

struct runner_answer {
  std::optional<refusal> refused;
  std::int64_t runner_id = 0;
};

// -- push events of agent configuration projects -------------------------------

/// What the push-event feed tells the registry about one push event of
/// GATEHOUSE_EVENTS (gitlab.events.push.<project_id>).
struct pushed_paths {
  /// The push event's id (Nats-Msg-Id).
  std::string event_id;
  std::int64_t project_id = 0;
  /// refs/heads/<branch>
  std::string ref;
  std::string before;
  std::string after;
  /// Every path the listed commits added, modified or removed.
  std::vector<std::string> paths;
  /// False when the event lists only part of the push's commits (more than
  /// 20, or Gatehouse-Commits: unavailable): paths may then miss some.
  bool complete = true;
};

/// Handled: the notices it called for are durable (or none was needed);
/// the feed acknowledges the event.
struct pushed_paths_done {
  int notices = 0;
};

// -- writes of the agent store --------------------------------------------------

/// One authorization row (GitLab's agent_project_authorizations,
/// agent_group_authorizations, agent_user_access_project_authorizations,
/// agent_user_access_group_authorizations).
struct authorization_row {
  /// A project id (projects) or a namespace id (groups).
  std::int64_t target_id = 0;
  /// The row's config as JSON text: ci_access: the entry without "id";
  /// user_access: {"access_as": ...} or {}.
  std::string config;
};

/// An event the registry writes to the outbox in the same transaction as
/// what it reports (so none is lost).
struct outbox_event {
  /// A UUID; a repeat of one already in the outbox is skipped.
  std::string event_id;
  /// The outbox orders a project's events: the agent's project.
  std::int64_t project_id = 0;
  std::string subject;
  /// The Gatehouse-Event header.
  std::string kind;
  std::string body;
};

/// Store an agent's configuration and replace its four authorization
/// lists, in one transaction; `changed_event` goes to the outbox in it when
/// the stored configuration differed (or there was none).
struct configuration_write {
  std::int64_t agent_id = 0;
  /// JSON text; compared as jsonb.
  std::string config;
  std::vector<authorization_row> ci_access_projects;
  std::vector<authorization_row> ci_access_groups;
  std::vector<authorization_row> user_access_projects;
  std::vector<authorization_row> user_access_groups;
  outbox_event changed_event;
};

/// What the store found: whether the agent exists and whether the stored
/// configuration differed (then the event was written).
struct configuration_written {
  bool agent_found = false;
  bool changed = false;
};

/// An agent's connection to KAS to record as its last-seen one, with the
/// event for each way it may differ from the recorded one.
struct connection_write {
  /// A known agent (agent_id set).
  kas_registration seen;
  /// Written when the agent had no recorded connection.
  outbox_event registered;
  /// Written when agent_version or kubernetes_version differ from the
  /// recorded ones.
  outbox_event upgraded;
};

/// Counters to add, unique ids to remember and connections to record, in
/// one transaction.
struct usage_write {
  /// name -> increment (agent_events count one per event).
  std::vector<std::pair<std::string, std::int64_t>> counters;
  /// (counter name, entity id).
  std::vector<std::pair<std::string, std::int64_t>> unique_ids;
  std::vector<connection_write> connections;
};

/// For each connection of usage_write, in order: "registered", "upgraded",
/// or "" when nothing changed (the events written).
struct usage_written {
  std::vector<std::string> changes;
};

/// The totals /metrics exports.
struct usage_totals {
  std::vector<std::pair<std::string, std::int64_t>> counters;
  /// (counter name, distinct ids seen in the last 7 days).
  std::vector<std::pair<std::string, std::int64_t>> unique_week;
  /// (counter name, distinct ids seen in the last 28 days).
  std::vector<std::pair<std::string, std::int64_t>> unique_month;
  /// Agents with a connection seen in the last hour.
  std::int64_t connected_agents = 0;
};

} // namespace gatehouse::agents

// Local messages between the edges, the agent registry and its store, never
// serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::agent_info_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::agent_info_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::project_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::project_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::configuration_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::no_content)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::proxy_user_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::proxy_user_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::usage_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::events_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::runner_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::runner_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::pushed_paths)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::pushed_paths_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::configuration_write)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::configuration_written)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::outbox_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::connection_write)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::usage_write)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::usage_written)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::agents::usage_totals)
