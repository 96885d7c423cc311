#include "actors/agents/rules.hpp"

#include "actors/access/git_access.hpp"
#include "actors/access/project_policy.hpp"
#include "common/ascii.hpp"
#include "common/base64.hpp"
#include "common/ids.hpp"
#include "common/time.hpp"
#include "common/uuid.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <set>
#include <unordered_map>

namespace gatehouse::agents {

namespace {

using json = nlohmann::json;
using ordered = nlohmann::ordered_json;

// Every namespace chain is walked at most this far (a corrupt parent loop
// must not hang an actor).
constexpr std::size_t max_depth = 1000;

const char* const k8s_proxy_scope = "k8s_proxy";

refusal message_refusal(int status, std::string message) {
  return refusal{status, std::move(message), std::nullopt, std::nullopt};
}

const project_record* project_by_id(const snapshot& snap, std::int64_t id) {
  auto it = snap.projects.find(id);
  return it == snap.projects.end() ? nullptr : &it->second;
}

const project_record* project_by_full_path(const snapshot& snap,
                                           const std::string& path) {
  auto key = ascii_lower(path);
  if (auto it = snap.project_by_path.find(key);
      it != snap.project_by_path.end())
    return project_by_id(snap, it->second);
  if (auto it = snap.redirects.find(key); it != snap.redirects.end())
    return project_by_id(snap, it->second);
  return nullptr;
}

/// The top-level namespace above namespace `id` (itself when top-level).
std::int64_t root_of(const snapshot& snap, std::int64_t id) {
  for (std::size_t depth = 0; depth < max_depth; ++depth) {
    auto it = snap.namespaces.find(id);
    if (it == snap.namespaces.end() || !it->second.parent_id)
      break;
    id = *it->second.parent_id;
  }
  return id;
}

/// The highest group membership of `user_id` in namespace `id` or its
/// ancestors (GitLab's group members, inherited downwards).
int group_level(const snapshot& snap, std::int64_t user_id, std::int64_t id) {
  int best = 0;
  std::optional<std::int64_t> ns = id;
  for (std::size_t depth = 0; ns && depth < max_depth; ++depth) {
    if (auto m = snap.namespace_members.find({user_id, *ns});
        m != snap.namespace_members.end())
      best = std::max(best, m->second);
    auto it = snap.namespaces.find(*ns);
    if (it == snap.namespaces.end())
      break;
    ns = it->second.parent_id;
  }
  return best;
}

/// use_k8s_proxies: Developer and up (inherited memberships included), or
/// an administrator; never for a user who cannot sign in.
bool may_use_proxies_on_project(const snapshot& snap, const user_record& user,
                                const project_record& project) {
  if (!access::user_active(&user))
    return false;
  return user.admin
    || access::access_level(snap, user.id, project) >= access::level_developer;
}

bool may_use_proxies_on_group(const snapshot& snap, const user_record& user,
                              std::int64_t namespace_id) {
  if (!access::user_active(&user))
    return false;
  return user.admin
    || group_level(snap, user.id, namespace_id) >= access::level_developer;
}

/// Rails' MessageEncryptor output ("<data>--<iv>--<auth tag>", each strict
/// base64): what KAS forwards from a GitLab session cookie.
bool looks_encrypted(const std::string& text) {
  std::size_t parts = 0;
  std::size_t start = 0;
  while (true) {
    auto end = text.find("--", start);
    auto part = text.substr(start, end == std::string::npos ? std::string::npos
                                                             : end - start);
    if (part.empty() || !base64_decode(part))
      return false;
    ++parts;
    if (end == std::string::npos)
      break;
    start = end + 2;
  }
  return parts == 3;
}

ordered agent_json(const snapshot& snap, const cluster_agent_record& agent) {
  ordered out = {{"id", agent.id},
                 {"name", agent.name},
                 {"project_id", agent.project_id}};
  if (auto* project = project_by_id(snap, agent.project_id))
    out["project_path"] = project->full_path;
  return out;
}

std::string dump(const ordered& body) {
  // Seeded text need not be UTF-8: never throw over it.
  return body.dump(-1, ' ', false, ordered::error_handler_t::replace);
}

ordered ids_of(const std::vector<authorization_row>& rows) {
  ordered out = ordered::array();
  for (const auto& row : rows)
    out.push_back(row.target_id);
  return out;
}

/// The entries of `config`[section][entity]: at most the limit, keyed by
/// lower-cased id, each without its "id" (GitLab's extract_config_entries).
/// Entries that are not objects with a string id are skipped.
std::vector<std::pair<std::string, json>>
config_entries(const json& config, const char* section, const char* entity) {
  std::vector<std::pair<std::string, json>> out;
  if (!config.is_object())
    return out;
  auto s = config.find(section);
  if (s == config.end() || !s->is_object())
    return out;
  auto list = s->find(entity);
  if (list == s->end() || !list->is_array())
    return out;
  for (const auto& entry : *list) {
    if (out.size() >= authorized_entity_limit)
      break;
    if (!entry.is_object())
      continue;
    auto id = entry.find("id");
    if (id == entry.end() || !id->is_string())
      continue;
    json rest = entry;
    rest.erase("id");
    out.emplace_back(ascii_lower(id->get<std::string>()), std::move(rest));
  }
  return out;
}

struct scope_of_agent {
  std::int64_t root = 0;
  bool root_is_group = false;
};

scope_of_agent scope_for(const snapshot& snap,
                         const cluster_agent_record& agent) {
  scope_of_agent out;
  if (auto* project = project_by_id(snap, agent.project_id)) {
    out.root = root_of(snap, project->namespace_id);
    auto it = snap.namespaces.find(out.root);
    out.root_is_group = it != snap.namespaces.end()
                        && it->second.kind == "group";
  }
  return out;
}

/// Projects named by `entries` below the agent's top-level namespace
/// (root_ancestor.all_projects).
std::vector<authorization_row>
project_rows(const snapshot& snap, const scope_of_agent& scope,
             const std::vector<std::pair<std::string, json>>& entries,
             const std::function<json(const json&)>& row_config) {
  std::vector<authorization_row> out;
  std::set<std::int64_t> seen;
  for (const auto& [path, entry] : entries) {
    auto it = snap.project_by_path.find(path);
    if (it == snap.project_by_path.end())
      continue;
    auto* project = project_by_id(snap, it->second);
    if (project == nullptr || root_of(snap, project->namespace_id) != scope.root
        || !seen.insert(project->id).second)
      continue;
    out.push_back({project->id, row_config(entry).dump()});
  }
  return out;
}

/// Groups named by `entries`: the top-level group and its descendants,
/// none when the agent's project belongs to a user.
std::vector<authorization_row>
group_rows(const snapshot& snap, const scope_of_agent& scope,
           const std::vector<std::pair<std::string, json>>& entries,
           const std::function<json(const json&)>& row_config) {
  std::vector<authorization_row> out;
  if (entries.empty() || !scope.root_is_group)
    return out;
  // Namespaces are not indexed by path; one pass finds the named ones.
  std::unordered_map<std::string, std::size_t> wanted;
  for (std::size_t i = 0; i < entries.size(); ++i)
    wanted.emplace(entries[i].first, i);
  std::vector<std::pair<std::size_t, std::int64_t>> found;
  snap.namespaces.for_each([&](std::int64_t id, const namespace_record& ns) {
    auto w = wanted.find(ascii_lower(ns.full_path));
    if (w != wanted.end() && ns.kind == "group"
        && root_of(snap, id) == scope.root)
      found.emplace_back(w->second, id);
  });
  // In the configuration's order, whatever the map's.
  std::sort(found.begin(), found.end());
  for (const auto& [index, id] : found)
    out.push_back({id, row_config(entries[index].second).dump()});
  return out;
}

} // namespace

std::optional<token_match>
agent_for_token(const snapshot& snap, const std::optional<std::string>& token) {
  if (!token || token->empty())
    return std::nullopt;
  auto it = snap.agent_tokens_by_digest.find(token_digest(*token));
  if (it == snap.agent_tokens_by_digest.end())
    return std::nullopt;
  auto agent = snap.agents.find(it->second.agent_id);
  if (agent == snap.agents.end())
    return std::nullopt;
  return token_match{&agent->second, it->second.id};
}

refusal unauthorized() {
  return message_refusal(401, "401 Unauthorized");
}

repository_view repository_of(const snapshot& snap,
                              const project_record& project) {
  repository_view out;
  out.project_id = project.id;
  if (auto it = snap.storages.find(project.storage);
      it != snap.storages.end()) {
    out.gitaly_address = it->second.gitaly_address;
    // Gitlab::GitalyClient.token uses .presence: empty becomes null.
    if (!it->second.gitaly_token.empty())
      out.gitaly_token = it->second.gitaly_token;
  }
  out.storage_name = project.storage;
  out.relative_path = project.disk_path + ".git";
  out.gl_repository = "project-" + std::to_string(project.id);
  out.gl_project_path = project.full_path;
  out.default_branch = project.default_branch.empty() ? "main"
                                                      : project.default_branch;
  return out;
}

const project_record* find_project(const snapshot& snap,
                                   const std::optional<std::string>& id) {
  if (!id)
    return nullptr;
  if (auto numeric = parse_id(*id))
    return project_by_id(snap, *numeric);
  if (id->find('/') == std::string::npos)
    return nullptr;
  return project_by_full_path(snap, *id);
}

bool agent_may_read(const snapshot& snap, const cluster_agent_record& agent,
                    const project_record& project) {
  return access::project_policy{snap, project}.download_code(nullptr)
         || project.id == agent.project_id;
}

agent_info_answer agent_info(const snapshot& snap, const token_match& match) {
  agent_info_answer out;
  auto* project = project_by_id(snap, match.agent->project_id);
  if (project == nullptr) {
    out.refused = message_refusal(404, "404 Not Found");
    return out;
  }
  out.agent_id = match.agent->id;
  out.agent_name = match.agent->name;
  out.repository = repository_of(snap, *project);
  return out;
}

project_answer project_info(const snapshot& snap, const project_query& q) {
  project_answer out;
  auto* project = find_project(snap, q.id);
  if (q.autoflow) {
    // Autoflow answers any project that exists: KAS's JWT is the check.
    if (project == nullptr) {
      out.refused = message_refusal(404, "404 Not Found");
      return out;
    }
    out.repository = repository_of(snap, *project);
    out.repository.with_features = false;
    return out;
  }
  auto match = agent_for_token(snap, q.token);
  if (!match) {
    out.refused = unauthorized();
    return out;
  }
  if (project == nullptr || !agent_may_read(snap, *match->agent, *project)) {
    out.refused = message_refusal(404, "404 Not Found");
    return out;
  }
  out.repository = repository_of(snap, *project);
  return out;
}

proxy_user_answer authorize_proxy_user(const snapshot& snap,
                                       const proxy_user_query& q,
                                       unix_time now) {
  proxy_user_answer out;
  const user_record* user = nullptr;
  if (q.access_type == "session_cookie") {
    // GitLab decrypts the key with its own secret and looks the session up
    // in its Redis. Gatehouse shares neither: a key that is not
    // MessageEncryptor output is invalid, as in GitLab; any other names a
    // session Gatehouse cannot have.
    out.refused = looks_encrypted(q.access_key)
      ? message_refusal(401, "401 Unauthorized - Invalid session")
      : message_refusal(400, "400 Bad request - Invalid access_key");
    return out;
  }
  if (!q.access_key.empty()) {
    auto token = snap.tokens_by_digest.find(token_digest(q.access_key));
    if (token != snap.tokens_by_digest.end()) {
      const auto& t = token->second;
      // AccessTokenValidationService's order: expiry, revocation (found
      // below), then scopes.
      if (t.expires_at && *t.expires_at <= now) {
        out.refused = refusal{401,
                              "Token is expired. You can either do "
                              "re-authorization or token refresh.",
                              "invalid_token", std::nullopt};
        return out;
      }
      if (std::find(t.scopes.begin(), t.scopes.end(), k8s_proxy_scope)
          == t.scopes.end()) {
        out.refused = refusal{403,
                              "The request requires higher privileges than "
                              "provided by the access token.",
                              "insufficient_scope", k8s_proxy_scope};
        return out;
      }
      if (auto u = snap.users.find(t.user_id); u != snap.users.end())
        user = &u->second;
    } else if (snap.revoked_tokens_by_digest.count(
                 token_digest(q.access_key))) {
      out.refused = refusal{401,
                            "Token was revoked. You have to re-authorize from "
                            "the user.",
                            "invalid_token", std::nullopt};
      return out;
    }
  }
  if (user == nullptr) {
    out.refused = message_refusal(
      400, "400 Bad request - Unable to get user from request data");
    return out;
  }
  auto agent_it = snap.agents.find(q.agent_id);
  if (agent_it == snap.agents.end()) {
    out.refused = message_refusal(404, "404 Not found");
    return out;
  }
  const auto& agent = agent_it->second;
  auto forbidden = [&out] {
    out.refused = message_refusal(403, "403 Forbidden");
    return out;
  };
  // Every row of one agent carries the same access_as (its user_access
  // section); exactly one key, and the community edition knows only
  // "agent".
  const std::string* access_as_text = nullptr;
  if (!agent.user_access_projects.empty())
    access_as_text = &agent.user_access_projects.front().second;
  else if (!agent.user_access_groups.empty())
    access_as_text = &agent.user_access_groups.front().second;
  if (access_as_text == nullptr)
    return forbidden();
  auto row_config = json::parse(*access_as_text, nullptr, false);
  if (!row_config.is_object() || !row_config.contains("access_as"))
    return forbidden();
  const auto& access_as = row_config["access_as"];
  if (!access_as.is_object() || access_as.size() != 1
      || !access_as.contains("agent"))
    return forbidden();
  bool allowed = false;
  for (const auto& [project_id, config] : agent.user_access_projects) {
    if (auto* project = project_by_id(snap, project_id);
        project != nullptr && may_use_proxies_on_project(snap, *user, *project)) {
      allowed = true;
      break;
    }
  }
  for (std::size_t i = 0; !allowed && i < agent.user_access_groups.size(); ++i)
    allowed = may_use_proxies_on_group(snap, *user,
                                       agent.user_access_groups[i].first);
  if (!allowed)
    return forbidden();
  out.agent_id = agent.id;
  out.config_project_id = agent.project_id;
  out.user_id = user->id;
  out.username = user->username;
  return out;
}

configuration_write authorizations_for(const snapshot& snap,
                                       const cluster_agent_record& agent,
                                       const std::string& config_text) {
  configuration_write out;
  out.agent_id = agent.id;
  auto config = json::parse(config_text, nullptr, false);
  out.config = config.is_discarded() ? "{}" : config.dump();
  if (!config.is_object())
    return out;
  auto scope = scope_for(snap, agent);
  auto entry_as_is = [](const json& entry) { return entry; };
  // Every user_access row carries the section's access_as, or {}.
  json user_access_as = json::object();
  if (auto ua = config.find("user_access");
      ua != config.end() && ua->is_object() && ua->contains("access_as"))
    user_access_as["access_as"] = (*ua)["access_as"];
  auto user_config = [&user_access_as](const json&) { return user_access_as; };
  out.ci_access_projects = project_rows(
    snap, scope, config_entries(config, "ci_access", "projects"), entry_as_is);
  out.ci_access_groups = group_rows(
    snap, scope, config_entries(config, "ci_access", "groups"), entry_as_is);
  out.user_access_projects = project_rows(
    snap, scope, config_entries(config, "user_access", "projects"),
    user_config);
  out.user_access_groups = group_rows(
    snap, scope, config_entries(config, "user_access", "groups"), user_config);
  return out;
}

bool is_json_object(const std::string& text) {
  return json::parse(text, nullptr, false).is_object();
}

std::string config_path(const cluster_agent_record& agent) {
  return ".gitlab/agents/" + agent.name + "/config.yaml";
}

std::vector<const cluster_agent_record*>
agents_configured_by(const snapshot& snap, const pushed_paths& push) {
  std::vector<const cluster_agent_record*> out;
  auto ids = snap.agents_by_project.find(push.project_id);
  auto* project = project_by_id(snap, push.project_id);
  if (ids == snap.agents_by_project.end() || project == nullptr)
    return out;
  auto branch = project->default_branch.empty() ? std::string{"main"}
                                                : project->default_branch;
  // A deleted branch changes no configuration KAS could read.
  if (push.ref != "refs/heads/" + branch
      || push.after.find_first_not_of('0') == std::string::npos)
    return out;
  std::set<std::string> paths(push.paths.begin(), push.paths.end());
  for (auto id : ids->second) {
    auto agent = snap.agents.find(id);
    if (agent == snap.agents.end())
      continue;
    if (!push.complete || paths.count(config_path(agent->second)) > 0)
      out.push_back(&agent->second);
  }
  return out;
}

std::optional<refusal> usage_refusal(const usage_query& q) {
  for (const auto& [name, increment] : q.counters)
    if (increment < 0)
      return message_refusal(400, "400 Bad request - " + name
                                    + " count must be greater than or equal "
                                      "to zero");
  return std::nullopt;
}

outbox_event configuration_event(const snapshot& snap,
                                 const cluster_agent_record& agent,
                                 const configuration_write& write,
                                 unix_time now) {
  ordered body = {
    {"object_kind", "agent_configuration"},
    {"agent", agent_json(snap, agent)},
    {"configuration", ordered::parse(write.config, nullptr, false)},
    {"authorizations",
     {{"ci_access",
       {{"projects", ids_of(write.ci_access_projects)},
        {"groups", ids_of(write.ci_access_groups)}}},
      {"user_access",
       {{"projects", ids_of(write.user_access_projects)},
        {"groups", ids_of(write.user_access_groups)}}}}},
    {"changed_at", format_time(now)}};
  if (body["configuration"].is_discarded())
    body["configuration"] = ordered::object();
  return outbox_event{random_uuid(), agent.project_id,
                      "gitlab.events.agent_configuration."
                        + std::to_string(agent.id),
                      "agent_configuration", dump(body)};
}

outbox_event connection_event(const snapshot& snap,
                              const cluster_agent_record& agent,
                              const kas_registration& seen,
                              const std::string& kind, unix_time now) {
  auto text_or_null = [](const std::optional<std::string>& s) {
    return s ? ordered(*s) : ordered(nullptr);
  };
  ordered body = {
    {"object_kind", kind},
    {"agent", agent_json(snap, agent)},
    {"connection",
     {{"agent_version", text_or_null(seen.agent_version)},
      {"kubernetes_version", text_or_null(seen.kubernetes_version)},
      {"architecture", text_or_null(seen.architecture)},
      {"installation_method", text_or_null(seen.installation_method)},
      {"helm_chart_version", text_or_null(seen.helm_chart_version)}}},
    {"seen_at", format_time(now)}};
  return outbox_event{random_uuid(), agent.project_id,
                      "gitlab.events.agent_connection."
                        + std::to_string(agent.id),
                      kind, dump(body)};
}

outbox_event config_push_event(const snapshot& snap,
                               const cluster_agent_record& agent,
                               const pushed_paths& push, unix_time now) {
  ordered body = {{"object_kind", "agent_config_push"},
                  {"agent", agent_json(snap, agent)},
                  {"project_id", push.project_id},
                  {"ref", push.ref},
                  {"before", push.before},
                  {"after", push.after},
                  {"config_path", config_path(agent)},
                  {"paths_complete", push.complete},
                  {"push_event_id", push.event_id},
                  {"pushed_at", format_time(now)}};
  return outbox_event{
    derived_uuid("agent_config_push:" + push.event_id + ":"
                 + std::to_string(agent.id)),
    agent.project_id,
    "gitlab.events.agent_config_push." + std::to_string(agent.id),
    "agent_config_push", dump(body)};
}

} // namespace gatehouse::agents
