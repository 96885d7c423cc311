#pragma once

// The agent registry's rules (contract other-callers §2): which agent a
// token names, what KAS may learn about a project, whether a user may use
// an agent through the Kubernetes proxy, which authorizations an agent's
// configuration grants, and which pushes change an agent's configuration
// file. Pure functions over a read-model snapshot; no CAF, no I/O.

#include "messages/agents.hpp"
#include "messages/read_model.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::agents {

/// GitLab's limit on configured projects and groups per list
/// (RefreshAuthorizationService::AUTHORIZED_ENTITY_LIMIT).
inline constexpr std::size_t authorized_entity_limit = 500;

/// The agent of an active token, and the token's id.
struct token_match {
  const cluster_agent_record* agent = nullptr;
  std::int64_t token_id = 0;
};

/// The agent a token names; nullopt for no token, an unknown or revoked
/// token, or a token whose agent is gone.
std::optional<token_match> agent_for_token(const snapshot& snap,
                                           const std::optional<std::string>& token);

/// GitLab's "401 Unauthorized" of a missing or unknown agent token.
refusal unauthorized();

/// Where KAS finds `project`'s repository (gitaly_info, gitaly_repository,
/// default_branch_or_main).
repository_view repository_of(const snapshot& snap,
                              const project_record& project);

/// GitLab's find_project: an id of digits, or a full path (it must contain
/// a '/'; case-insensitive, redirects followed); nullptr otherwise.
const project_record* find_project(const snapshot& snap,
                                   const std::optional<std::string>& id);

/// agent_has_access_to_project?: anyone may download the project's code,
/// or it is the agent's own configuration project.
bool agent_may_read(const snapshot& snap, const cluster_agent_record& agent,
                    const project_record& project);

/// agent_info for the agent of `match`.
agent_info_answer agent_info(const snapshot& snap, const token_match& match);

/// project_info, verify_project_access and autoflow's repository_info.
project_answer project_info(const snapshot& snap, const project_query& q);

/// authorize_proxy_user: the user a credential names, and whether the
/// agent's user_access authorizations let that user through (GitLab's
/// AuthorizeProxyUserService, community edition: access_as agent).
proxy_user_answer authorize_proxy_user(const snapshot& snap,
                                       const proxy_user_query& q,
                                       unix_time now);

/// The four authorization lists `config` (agent_config as JSON text)
/// grants `agent` (GitLab's CiAccess and UserAccess RefreshServices):
/// projects and groups by full path, limited to the agent's top-level
/// namespace. Malformed parts grant nothing.
configuration_write authorizations_for(const snapshot& snap,
                                       const cluster_agent_record& agent,
                                       const std::string& config);

/// The agents of the pushed project whose configuration file
/// (.gitlab/agents/<name>/config.yaml) the push may have changed on the
/// default branch. With an incomplete path list, every agent of the
/// project: a spurious notice costs KAS a read, a missed one leaves an
/// agent on an old configuration.
std::vector<const cluster_agent_record*>
agents_configured_by(const snapshot& snap, const pushed_paths& push);

/// Whether `text` is a JSON object.
bool is_json_object(const std::string& text);

/// The path of an agent's configuration file.
std::string config_path(const cluster_agent_record& agent);

/// usage_metrics: GitLab's validation (counters must not be negative),
/// as a refusal, or the counters and unique ids to store.
std::optional<refusal> usage_refusal(const usage_query& q);

// -- events -------------------------------------------------------------------

/// gitlab.events.agent_configuration.<agent_id>, kind agent_configuration.
outbox_event configuration_event(const snapshot& snap,
                                 const cluster_agent_record& agent,
                                 const configuration_write& write,
                                 unix_time now);

/// gitlab.events.agent_connection.<agent_id>, kind `kind`
/// (agent_registered or agent_upgraded).
outbox_event connection_event(const snapshot& snap,
                              const cluster_agent_record& agent,
                              const kas_registration& seen,
                              const std::string& kind, unix_time now);

/// gitlab.events.agent_config_push.<agent_id>, kind agent_config_push;
/// its id is derived from the push event's and the agent's, so a
/// redelivered push event makes no second notice.
outbox_event config_push_event(const snapshot& snap,
                               const cluster_agent_record& agent,
                               const pushed_paths& push, unix_time now);

} // namespace gatehouse::agents
