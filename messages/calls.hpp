#pragma once

// The call table: every internal call Gatehouse answers, declared once. Both
// edges read it: the HTTP edge registers METHOD PATH with the call's caller
// rule, the NATS edge subscribes to gatehouse.internal.v1.<name>; each
// decodes the call's request type, asks the domain actor that owns it, and
// encodes its answer type. Adding a call is one row here, one handler in
// its domain actor, and one field mapping per edge (README "Adding a call").

#include "messages/access.hpp"
#include "messages/agents.hpp"
#include "messages/indexer.hpp"
#include "messages/interfaces.hpp"
#include "messages/pages.hpp"
#include "messages/push.hpp"
#include "messages/types.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace gatehouse {

/// Who must have signed a call (contract other-callers §1.1).
enum class caller_rule : std::uint8_t {
  /// Nobody: health and metrics.
  none,
  shell,
  workhorse,
  kas,
  pages,
  /// Shell when its header is present, otherwise Workhorse, which must also
  /// send the Gitlab-Workhorse header (GitLab's
  /// authenticate_by_gitlab_shell_or_workhorse_token!).
  shell_or_workhorse,
  /// Workhorse with its Gitlab-Workhorse header (GitLab's
  /// require_gitlab_workhorse!): the /api/v4 routes only Workhorse calls.
  workhorse_api,
  /// Workhorse pre-authorizing an end user's git or LFS request: a refusal
  /// is plain text for the git client, and HEAD is refused (GitLab's
  /// Repositories::GitHttpClientController).
  workhorse_git,
};

/// The domain actor that owns a call.
enum class domain : std::uint8_t {
  status,
  access,
  push,
  pages,
  agents,
  indexer
};

/// The domain actors, as the edges hold them.
struct domain_actors {
  system_status_actor status;
  /// The access domain's partitions (access::partition_hash); empty when
  /// absent.
  std::vector<access_control_actor> access;
  push_processing_actor push;
  /// GitLab Pages' domain lookups; absent in tests that do not need it.
  pages_actor pages;
  /// KAS's calls; absent in tests that do not need it.
  agent_registry_actor agents;
  /// Zoekt's calls; absent in tests that do not need it.
  indexer_actor indexer;
};

namespace detail {

/// A partition per calling thread for calls any partition may answer: a
/// thread then mostly finds its partition idle and runs it itself
/// (edges/inline_unit.hpp).
inline std::size_t this_thread_partition() {
  static std::atomic<std::size_t> next{0};
  thread_local std::size_t mine = next++;
  return mine;
}

template <class Handle, class Request>
Handle pick(const Handle& owner, const Request&) {
  return owner;
}

template <class Request>
access_control_actor pick(const std::vector<access_control_actor>& partitions,
                          const Request& request) {
  if (partitions.empty())
    return {};
  auto hash = access::partition_hash(request);
  return partitions[(hash ? *hash : this_thread_partition())
                    % partitions.size()];
}

template <class Handle>
bool present(const Handle& owner) {
  return static_cast<bool>(owner);
}

inline bool present(const std::vector<access_control_actor>& partitions) {
  return !partitions.empty();
}

} // namespace detail

// X(id, name, method, path, caller rule, domain, request, answer,
//   changes_state)
// - name: the NATS subject suffix and the metrics label: the HTTP path after
//   /api/v4/internal/ with '/' replaced by '.';
// - path: fixed, or a pattern whose `*name` segment matches one or more
//   path segments and `:name` one (captured in order, for the codec);
// - changes_state: retries are guarded in PostgreSQL, not only in memory.
//
// GATEHOUSE_SHARED_CALLS are served over HTTP and NATS;
// GATEHOUSE_HTTP_CALLS only over HTTP: their requests are an end user's HTTP
// request that Workhorse forwards (headers, path), which has no NATS form.
#define GATEHOUSE_SHARED_CALLS(X)                                                     \
  X(check, "check", "GET", "/api/v4/internal/check", shell, status,            \
    check_query, check_view, false)                                            \
  X(allowed, "allowed", "POST", "/api/v4/internal/allowed", shell, access,     \
    access::allowed_params, access::allowed_outcome, false)                    \
  X(authorized_keys, "authorized_keys", "GET",                                 \
    "/api/v4/internal/authorized_keys", shell, access, access::key_query,      \
    access::authorized_key, false)                                             \
  X(discover, "discover", "GET", "/api/v4/internal/discover", shell, access,   \
    access::discover_query, access::discover_answer, false)                    \
  X(lfs_authenticate, "lfs_authenticate", "POST",                              \
    "/api/v4/internal/lfs_authenticate", shell, access, access::lfs_query,     \
    access::lfs_answer, false)                                                 \
  X(two_factor_recovery_codes, "two_factor_recovery_codes", "POST",            \
    "/api/v4/internal/two_factor_recovery_codes", shell, access,               \
    access::recovery_query, access::shell_answer, false)                       \
  X(personal_access_token, "personal_access_token", "POST",                    \
    "/api/v4/internal/personal_access_token", shell, access,                   \
    access::pat_query, access::shell_answer, false)                            \
  X(two_factor_manual_otp_check, "two_factor_manual_otp_check", "POST",        \
    "/api/v4/internal/two_factor_manual_otp_check", shell, access,             \
    access::otp_query, access::shell_answer, false)                            \
  X(two_factor_push_otp_check, "two_factor_push_otp_check", "POST",            \
    "/api/v4/internal/two_factor_push_otp_check", shell, access,               \
    access::otp_query, access::shell_answer, false)                            \
  X(pre_receive, "pre_receive", "POST", "/api/v4/internal/pre_receive", shell, \
    push, push::pre_receive_params, push::pre_receive_answer, true)            \
  X(post_receive, "post_receive", "POST", "/api/v4/internal/post_receive",     \
    shell, push, push::post_receive_params, push::post_receive_answer, true)   \
  X(git_audit_event, "shellhorse.git_audit_event", "POST",                     \
    "/api/v4/internal/shellhorse/git_audit_event", shell_or_workhorse, access, \
    access::audit_query, access::audit_answer, false)                          \
  X(agentk_agent_info, "agents.agentk.agent_info", "GET",                      \
    "/api/v4/internal/agents/agentk/agent_info", kas, agents,                  \
    agents::agent_info_query, agents::agent_info_answer, false)                \
  X(kubernetes_agent_info, "kubernetes.agent_info", "GET",                     \
    "/api/v4/internal/kubernetes/agent_info", kas, agents,                     \
    agents::agent_info_query, agents::agent_info_answer, false)                \
  X(kubernetes_project_info, "kubernetes.project_info", "GET",                 \
    "/api/v4/internal/kubernetes/project_info", kas, agents,                   \
    agents::project_query, agents::project_answer, false)                      \
  X(kubernetes_verify_project_access, "kubernetes.verify_project_access",      \
    "GET", "/api/v4/internal/kubernetes/verify_project_access", kas, agents,   \
    agents::project_query, agents::project_answer, false)                      \
  X(kubernetes_agent_configuration, "kubernetes.agent_configuration", "POST",  \
    "/api/v4/internal/kubernetes/agent_configuration", kas, agents,            \
    agents::configuration_query, agents::no_content, true)                     \
  X(kubernetes_authorize_proxy_user, "kubernetes.authorize_proxy_user",        \
    "POST", "/api/v4/internal/kubernetes/authorize_proxy_user", kas, agents,   \
    agents::proxy_user_query, agents::proxy_user_answer, false)                \
  X(kubernetes_usage_metrics, "kubernetes.usage_metrics", "POST",              \
    "/api/v4/internal/kubernetes/usage_metrics", kas, agents,                  \
    agents::usage_query, agents::no_content, true)                             \
  X(kubernetes_agent_events, "kubernetes.agent_events", "POST",                \
    "/api/v4/internal/kubernetes/agent_events", kas, agents,                   \
    agents::events_query, agents::no_content, true)                            \
  X(autoflow_repository_info, "autoflow.repository_info", "GET",               \
    "/api/v4/internal/autoflow/repository_info", kas, agents,                  \
    agents::project_query, agents::project_answer, false)                      \
  X(ci_runner_info, "ci.agents.runner.info", "GET",                            \
    "/api/v4/internal/ci/agents/runner/info", kas, agents,                     \
    agents::runner_query, agents::runner_answer, false)                        \
  X(zoekt_heartbeat, "search.zoekt.heartbeat", "POST",                         \
    "/api/v4/internal/search/zoekt/:uuid/heartbeat", shell, indexer,           \
    indexer::heartbeat_query, indexer::heartbeat_answer, true)                 \
  X(zoekt_tasks, "search.zoekt.tasks", "GET",                                  \
    "/api/v4/internal/search/zoekt/:uuid/tasks", shell, indexer,               \
    indexer::tasks_query, indexer::heartbeat_answer, true)                     \
  X(zoekt_callback, "search.zoekt.callback", "POST",                           \
    "/api/v4/internal/search/zoekt/:uuid/callback", shell, indexer,            \
    indexer::callback_query, indexer::callback_answer, true)

#define GATEHOUSE_HTTP_CALLS(X)                                                \
  X(geo_proxy, "geo.proxy", "GET", "/api/v4/geo/proxy", workhorse_api, status, \
    geo_query, geo_view, false)                                                \
  X(git_info_refs, "git.info_refs", "GET", "/*repository.git/info/refs",       \
    workhorse_git, access, access::git_http_query, access::git_http_answer,    \
    false)                                                                     \
  X(git_upload_pack, "git.upload_pack", "POST",                                \
    "/*repository.git/git-upload-pack", workhorse_git, access,                 \
    access::git_http_query, access::git_http_answer, false)                    \
  X(git_receive_pack, "git.receive_pack", "POST",                              \
    "/*repository.git/git-receive-pack", workhorse_git, access,                \
    access::git_http_query, access::git_http_answer, false)                    \
  X(lfs_upload_authorize, "git.lfs_upload_authorize", "PUT",                  \
    "/*repository.git/gitlab-lfs/objects/:oid/:size/authorize", workhorse_git, \
    access, access::lfs_upload_query, access::lfs_upload_answer, false)        \
  X(lfs_upload_finalize, "git.lfs_upload_finalize", "PUT",                    \
    "/*repository.git/gitlab-lfs/objects/:oid/:size", workhorse_git, access,   \
    access::lfs_upload_query, access::lfs_upload_answer, false)                \
  X(workhorse_authorize_upload, "workhorse.authorize_upload", "POST",          \
    "/api/v4/internal/workhorse/authorize_upload", workhorse, access,          \
    access::upload_query, access::upload_answer, false)                        \
  X(pages, "pages", "GET", "/api/v4/internal/pages", pages, pages,             \
    pages::domain_query, pages::virtual_domain, false)                         \
  X(pages_status, "pages.status", "GET", "/api/v4/internal/pages/status",      \
    pages, pages, pages::status_query, pages::status_answer, false)

#define GATEHOUSE_CALLS(X)                                                     \
  GATEHOUSE_SHARED_CALLS(X)                                                    \
  GATEHOUSE_HTTP_CALLS(X)

/// Every call, in the table's order.
enum class call_id : std::uint8_t {
#define GATEHOUSE_CALL_ID(id, ...) id,
  GATEHOUSE_CALLS(GATEHOUSE_CALL_ID)
#undef GATEHOUSE_CALL_ID
};

/// One row of the call table, at run time.
struct call_spec {
  call_id id;
  const char* name;
  const char* method;
  const char* path;
  caller_rule auth;
  domain owner;
  bool changes_state;
  /// Served over NATS too (GATEHOUSE_SHARED_CALLS).
  bool over_nats;
};

/// The rows of the call table, in order.
inline constexpr call_spec call_table[] = {
#define GATEHOUSE_CALL_SPEC(id, name, method, path, auth, owner, req, ans,     \
                            changes)                                           \
  {call_id::id, name,          method,         path,                           \
   caller_rule::auth, domain::owner, changes, true},
  GATEHOUSE_SHARED_CALLS(GATEHOUSE_CALL_SPEC)
#undef GATEHOUSE_CALL_SPEC
#define GATEHOUSE_CALL_SPEC(id, name, method, path, auth, owner, req, ans,     \
                            changes)                                           \
  {call_id::id, name,          method,         path,                           \
   caller_rule::auth, domain::owner, changes, false},
  GATEHOUSE_HTTP_CALLS(GATEHOUSE_CALL_SPEC)
#undef GATEHOUSE_CALL_SPEC
};

inline constexpr std::size_t call_count
  = sizeof(call_table) / sizeof(call_table[0]);

/// How many calls are served over NATS.
constexpr std::size_t nats_call_count() {
  std::size_t n = 0;
  for (const auto& spec : call_table)
    n += spec.over_nats ? 1 : 0;
  return n;
}

/// The row of `id`.
constexpr const call_spec& spec_of(call_id id) {
  return call_table[static_cast<std::size_t>(id)];
}

/// A call as a type, for code generated per call.
template <call_id Id>
using call_tag = std::integral_constant<call_id, Id>;

/// The C++ types of a call: its request, its answer, and the actor that
/// answers a request (for the access domain, the request's partition).
template <call_id Id>
struct call_types;

#define GATEHOUSE_CALL_TYPES(id, name, method, path, auth, owner, req, ans,    \
                             changes)                                          \
  template <>                                                                  \
  struct call_types<call_id::id> {                                             \
    using request = req;                                                       \
    using answer = ans;                                                        \
    static auto actor(const domain_actors& d, const req& r) {                 \
      return detail::pick(d.owner, r);                                         \
    }                                                                          \
    static bool present(const domain_actors& d) {                              \
      return detail::present(d.owner);                                         \
    }                                                                          \
  };
GATEHOUSE_CALLS(GATEHOUSE_CALL_TYPES)
#undef GATEHOUSE_CALL_TYPES

/// Calls `f(call_tag<id>{})` for every call, in the table's order.
template <class F>
void for_each_call(F&& f) {
#define GATEHOUSE_CALL_VISIT(id, ...) f(call_tag<call_id::id>{});
  GATEHOUSE_CALLS(GATEHOUSE_CALL_VISIT)
#undef GATEHOUSE_CALL_VISIT
}

/// Whether a request type carries the caller's Gatehouse-Request-Id.
template <class T, class = void>
struct has_request_id : std::false_type {};

template <class T>
struct has_request_id<T, std::void_t<decltype(std::declval<T&>().request_id)>>
  : std::true_type {};

} // namespace gatehouse
