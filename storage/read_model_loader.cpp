#include "storage/read_model_loader.hpp"

#include "common/ascii.hpp"
#include "common/log.hpp"
#include "common/time.hpp"
#include "messages/errors.hpp"
#include "storage/pg_session.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <future>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <optional>
#include <set>
#include <string_view>
#include <utility>

namespace gatehouse::storage {

namespace {

using json = nlohmann::json;

// -- values
// --------------------------------------------------------------------

std::string text(const pqxx::field& f) {
  return f.is_null() ? std::string{} : f.as<std::string>();
}

std::optional<std::int64_t> optional_int(const pqxx::field& f) {
  if (f.is_null())
    return std::nullopt;
  return f.as<std::int64_t>();
}

/// Unix seconds of a timestamptz column, floored.
std::string epoch(const char* column) {
  return std::string("floor(extract(epoch FROM ") + column + "))::bigint";
}

// -- settings
// ------------------------------------------------------------------

void set_string(std::string& out, const json& v) {
  if (v.is_string())
    out = v.get<std::string>();
}

void set_int(std::int64_t& out, const json& v) {
  if (v.is_number_integer())
    out = v.get<std::int64_t>();
}

std::optional<unix_time> time_field(const json& m, const char* key) {
  auto it = m.find(key);
  if (it == m.end() || !it->is_string())
    return std::nullopt;
  // Any ISO-8601 time with a zone: the seed loader writes "…Z", but an
  // operator may have edited the setting by hand.
  return parse_timestamp(it->get<std::string>());
}

std::vector<broadcast_message_record> broadcast_messages(const json& list) {
  std::vector<broadcast_message_record> out;
  if (!list.is_array())
    return out;
  for (const auto& m : list) {
    if (!m.is_object() || !m.contains("message") || !m["message"].is_string())
      continue;
    broadcast_message_record r;
    if (auto id = m.find("id"); id != m.end() && id->is_number_integer())
      r.id = id->get<std::int64_t>();
    r.message = m["message"].get<std::string>();
    if (auto t = m.find("target_path"); t != m.end() && t->is_string())
      r.target_path = t->get<std::string>();
    r.starts_at = time_field(m, "starts_at");
    r.ends_at = time_field(m, "ends_at");
    out.push_back(std::move(r));
  }
  return out;
}

void set_flag(bool& out, const json& v) {
  if (v.is_boolean())
    out = v.get<bool>();
}

/// GitLab's search settings (012); as apply_setting.
void apply_search_setting(search_settings& s, const std::string& key,
                          const json& v) {
  if (key == "zoekt_indexing_paused")
    set_flag(s.zoekt_indexing_paused, v);
  else if (key == "zoekt_indexing_parallelism")
    set_int(s.zoekt_indexing_parallelism, v);
  else if (key == "zoekt_maximum_files")
    set_int(s.zoekt_maximum_files, v);
  else if (key == "zoekt_indexing_timeout_seconds")
    set_int(s.zoekt_indexing_timeout_seconds, v);
  else if (key == "zoekt_cpu_to_tasks_ratio") {
    if (v.is_number())
      s.zoekt_cpu_to_tasks_ratio = v.get<double>();
  } else if (key == "elasticsearch_indexing")
    set_flag(s.elasticsearch_indexing, v);
  else if (key == "elasticsearch_indexed_file_size_limit_kb")
    set_int(s.elasticsearch_indexed_file_size_limit_kb, v);
}

/// One row of the settings table; unknown keys and mistyped values leave
/// the defaults (the seed loader validates what it writes).
void apply_setting(settings_record& s, const std::string& key, const json& v) {
  if (key == "external_url")
    set_string(s.external_url, v);
  else if (key == "ssh_clone_url_root")
    set_string(s.ssh_clone_url_root, v);
  else if (key == "enabled_git_access_protocol") {
    set_string(s.enabled_git_access_protocol, v);
    if (s.enabled_git_access_protocol.empty())
      s.enabled_git_access_protocol = "all";
  } else if (key == "receive_max_input_size_mb")
    set_int(s.receive_max_input_size_mb, v);
  else if (key == "gitlab_version")
    set_string(s.gitlab_version, v);
  else if (key == "pages_host")
    set_string(s.pages_host, v);
  else if (key == "gitlab_shell_operation_limit")
    set_int(s.gitlab_shell_operation_limit, v);
  else if (key == "allow_local_requests_from_web_hooks_and_services") {
    if (v.is_boolean())
      s.allow_local_requests_from_web_hooks_and_services = v.get<bool>();
  } else if (key == "broadcast_messages")
    s.broadcast_messages = broadcast_messages(v);
  else
    apply_search_setting(s.search, key, v);
}

// -- tables
// --------------------------------------------------------------------

using read_tx = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;

void load_settings(read_tx& tx, snapshot& snap) {
  for (const auto& row : tx.exec("SELECT key, value::text FROM settings"))
    apply_setting(snap.settings, row[0].as<std::string>(),
                  json::parse(row[1].as<std::string>()));
}

// Each table's query and row reader serve both the full load and the
// re-read of changed records, so the two cannot disagree.

const std::string users_query
  = "SELECT id, username, name, email, state, admin, external, "
    "can_create_project, two_factor_enabled, public_email FROM users";

void add_user(snapshot& snap, const pqxx::row& row) {
  user_record u;
  u.id = row[0].as<std::int64_t>();
  u.username = row[1].as<std::string>();
  u.name = row[2].as<std::string>();
  u.email = row[3].as<std::string>();
  u.state = row[4].as<std::string>();
  u.admin = row[5].as<bool>();
  u.external = row[6].as<bool>();
  u.can_create_project = row[7].as<bool>();
  u.two_factor_enabled = row[8].as<bool>();
  u.public_email = row[9].as<std::string>();
  snap.user_by_username.insert_or_assign(ascii_lower(u.username), u.id);
  snap.users.insert_or_assign(u.id, std::move(u));
}

const std::string keys_query
  = "SELECT id, kind, user_id, title, key_type, key_blob, "
    "fingerprint_sha256, usage_type, "
    + epoch("expires_at") + ", " + epoch("last_used_at") + ", "
    + epoch("created_at") + " FROM keys";

const std::string deploy_keys_projects_query
  = "SELECT key_id, project_id, can_push FROM deploy_keys_projects";

/// Deploy key id -> (project id -> can_push).
using deploy_links = std::unordered_map<std::int64_t, std::map<std::int64_t, bool>>;

deploy_links read_deploy_links(const pqxx::result& rows) {
  deploy_links out;
  for (const auto& row : rows)
    out[row[0].as<std::int64_t>()][row[1].as<std::int64_t>()]
      = row[2].as<bool>();
  return out;
}

void add_key(snapshot& snap, const pqxx::row& row, deploy_links& links) {
  key_record k;
  k.id = row[0].as<std::int64_t>();
  k.deploy = std::string_view(row[1].c_str()) == "deploy";
  k.user_id = optional_int(row[2]);
  k.title = row[3].as<std::string>();
  k.key_type = row[4].as<std::string>();
  k.blob = row[5].as<std::string>();
  k.usage_type = row[7].as<std::string>();
  k.expires_at = optional_int(row[8]);
  k.last_used_at = optional_int(row[9]);
  k.created_at = row[10].as<std::int64_t>();
  if (auto it = links.find(k.id); it != links.end())
    k.deploy_projects = std::move(it->second);
  snap.key_by_fingerprint.insert_or_assign(row[6].as<std::string>(), k.id);
  snap.keys.insert_or_assign(k.id, std::move(k));
}

void load_keys(read_tx& tx, snapshot& snap) {
  auto links = read_deploy_links(tx.exec(deploy_keys_projects_query));
  auto rows = tx.exec(keys_query);
  snap.keys.reserve(rows.size());
  snap.key_by_fingerprint.reserve(rows.size());
  for (const auto& row : rows)
    add_key(snap, row, links);
}

const std::string namespaces_query
  = "SELECT id, parent_id, path, full_path, kind, name FROM namespaces";

void add_namespace(snapshot& snap, const pqxx::row& row) {
  namespace_record n;
  n.id = row[0].as<std::int64_t>();
  n.parent_id = optional_int(row[1]);
  n.path = row[2].as<std::string>();
  n.full_path = row[3].as<std::string>();
  n.kind = row[4].as<std::string>();
  n.name = row[5].as<std::string>();
  snap.namespaces.insert_or_assign(n.id, std::move(n));
}

const std::string projects_query
  = "SELECT id, namespace_id, path, full_path, name, visibility, archived, "
    "default_branch, storage, disk_path, repository_access_level, "
    "merge_requests_enabled, lfs_enabled, repository_exists, description, "
    "forked_from_project_id IS NOT NULL FROM projects";

void add_project(snapshot& snap, const pqxx::row& row) {
  project_record p;
  p.id = row[0].as<std::int64_t>();
  p.namespace_id = row[1].as<std::int64_t>();
  p.path = row[2].as<std::string>();
  p.full_path = row[3].as<std::string>();
  p.name = row[4].as<std::string>();
  p.visibility = row[5].as<std::string>();
  p.archived = row[6].as<bool>();
  p.default_branch = text(row[7]);
  p.storage = row[8].as<std::string>();
  p.disk_path = row[9].as<std::string>();
  p.repository_access_level = row[10].as<std::string>();
  p.merge_requests_enabled = row[11].as<bool>();
  p.lfs_enabled = row[12].as<bool>();
  p.repository_exists = row[13].as<bool>();
  p.description = row[14].as<std::string>();
  p.forked = row[15].as<bool>();
  snap.project_by_path.insert_or_assign(ascii_lower(p.full_path), p.id);
  snap.projects.insert_or_assign(p.id, std::move(p));
}

const std::string redirects_query
  = "SELECT path, project_id FROM project_redirects";

void add_redirect(snapshot& snap, const pqxx::row& row) {
  snap.redirects.insert_or_assign(ascii_lower(row[0].as<std::string>()),
                                  row[1].as<std::int64_t>());
}

void load_storages(read_tx& tx, snapshot& snap) {
  snap.storages.clear();
  for (const auto& row : tx.exec(
         "SELECT name, gitaly_address, gitaly_token, path FROM storages")) {
    storage_record s;
    s.name = row[0].as<std::string>();
    s.gitaly_address = row[1].as<std::string>();
    s.gitaly_token = row[2].as<std::string>();
    s.path = text(row[3]);
    snap.storages.emplace(s.name, std::move(s));
  }
}

const std::string project_members_query
  = "SELECT user_id, project_id, access_level FROM members WHERE project_id "
    "IS NOT NULL";
const std::string namespace_members_query
  = "SELECT user_id, namespace_id, access_level FROM members WHERE "
    "namespace_id IS NOT NULL";

void add_member(sharded_map<snapshot::id_pair, int, id_pair_hash>& members,
                const pqxx::row& row) {
  members.insert_or_assign({row[0].as<std::int64_t>(),
                            row[1].as<std::int64_t>()},
                           row[2].as<int>());
}

const std::string protected_branches_query
  = "SELECT id, project_id, name, push_access_level, merge_access_level, "
    "allow_force_push FROM protected_branches";

void add_protected_branch(snapshot& snap, const pqxx::row& row) {
  protected_branch_record b;
  b.id = row[0].as<std::int64_t>();
  b.project_id = row[1].as<std::int64_t>();
  b.name = row[2].as<std::string>();
  b.push_access_level = row[3].as<int>();
  b.merge_access_level = row[4].as<int>();
  b.allow_force_push = row[5].as<bool>();
  snap.protected_branches[b.project_id].push_back(std::move(b));
}

const std::string protected_tags_query
  = "SELECT id, project_id, name, create_access_level FROM protected_tags";

void add_protected_tag(snapshot& snap, const pqxx::row& row) {
  protected_tag_record t;
  t.id = row[0].as<std::int64_t>();
  t.project_id = row[1].as<std::int64_t>();
  t.name = row[2].as<std::string>();
  t.create_access_level = row[3].as<int>();
  snap.protected_tags[t.project_id].push_back(std::move(t));
}

const std::string tokens_query
  = "SELECT id, user_id, token_digest, array_to_json(scopes)::text, "
    + epoch("expires_at::timestamp AT TIME ZONE 'UTC'")
    + " FROM personal_access_tokens WHERE NOT revoked";

// Revoked tokens are kept by digest only: GitLab tells a revoked token
// from an unknown one on some calls (KAS's authorize_proxy_user).
const std::string revoked_tokens_query
  = "SELECT id, token_digest FROM personal_access_tokens WHERE revoked";

void add_revoked_token(snapshot& snap, const pqxx::row& row) {
  snap.revoked_tokens_by_digest.insert_or_assign(
    row[1].as<std::string>(), row[0].as<std::int64_t>());
}

void add_token(snapshot& snap, const pqxx::row& row) {
  personal_access_token_record t;
  t.id = row[0].as<std::int64_t>();
  t.user_id = row[1].as<std::int64_t>();
  auto digest = row[2].as<std::string>();
  for (const auto& scope : json::parse(row[3].c_str()))
    if (scope.is_string())
      t.scopes.push_back(scope.get<std::string>());
  t.expires_at = optional_int(row[4]);
  snap.tokens_by_digest.insert_or_assign(std::move(digest), std::move(t));
}

const std::string agents_query
  = "SELECT id, project_id, name FROM cluster_agents";

/// (agent id, target id, config JSON) of a user_access table.
std::string user_access_query(const char* table, const char* target) {
  return std::string("SELECT agent_id, ") + target + ", config::text FROM "
    + table;
}

const std::string user_access_projects_query = user_access_query(
  "agent_user_access_project_authorizations", "project_id");
const std::string user_access_groups_query
  = user_access_query("agent_user_access_group_authorizations", "group_id");

void add_agent(snapshot& snap, const pqxx::row& row) {
  cluster_agent_record a;
  a.id = row[0].as<std::int64_t>();
  a.project_id = row[1].as<std::int64_t>();
  a.name = row[2].as<std::string>();
  auto& ids = snap.agents_by_project[a.project_id];
  ids.insert(std::lower_bound(ids.begin(), ids.end(), a.id), a.id);
  snap.agents.insert_or_assign(a.id, std::move(a));
}

/// Removes an agent and its entry in agents_by_project.
void drop_agent(snapshot& snap, std::int64_t id) {
  auto it = snap.agents.find(id);
  if (it == snap.agents.end())
    return;
  auto project = it->second.project_id;
  snap.agents.erase(id);
  if (auto p = snap.agents_by_project.find(project);
      p != snap.agents_by_project.end()) {
    auto ids = p->second;
    ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
    if (ids.empty())
      snap.agents_by_project.erase(project);
    else
      snap.agents_by_project.insert_or_assign(project, std::move(ids));
  }
}

/// Adds user_access rows (ordered by agent, then target) to their agents.
void add_user_access(snapshot& snap, const pqxx::result& rows,
                     bool projects) {
  for (const auto& row : rows) {
    auto agent = row[0].as<std::int64_t>();
    if (!snap.agents.count(agent))
      continue; // cannot happen within one transaction; a guard
    auto& a = snap.agents[agent];
    (projects ? a.user_access_projects : a.user_access_groups)
      .emplace_back(row[1].as<std::int64_t>(), row[2].as<std::string>());
  }
}

const std::string agent_tokens_query
  = "SELECT id, agent_id, token_digest FROM cluster_agent_tokens WHERE NOT "
    "revoked";

void add_agent_token(snapshot& snap, const pqxx::row& row) {
  agent_token_record t;
  t.id = row[0].as<std::int64_t>();
  t.agent_id = row[1].as<std::int64_t>();
  snap.agent_tokens_by_digest.insert_or_assign(row[2].as<std::string>(), t);
}

const std::string runners_query
  = "SELECT id, token_digest FROM ci_runners WHERE active";

void add_runner(snapshot& snap, const pqxx::row& row) {
  snap.runner_by_digest.insert_or_assign(row[1].as<std::string>(),
                                         row[0].as<std::int64_t>());
}

/// The whole (short) list: read again on any change, like settings.
void load_zoekt_enabled_namespaces(read_tx& tx, snapshot& snap) {
  snap.zoekt_enabled_namespaces.clear();
  for (const auto& row : tx.exec("SELECT namespace_id FROM "
                                 "zoekt_enabled_namespaces ORDER BY "
                                 "namespace_id"))
    snap.zoekt_enabled_namespaces.push_back(row[0].as<std::int64_t>());
}

void load_agents(read_tx& tx, snapshot& snap) {
  for (const auto& row : tx.exec(agents_query))
    add_agent(snap, row);
  add_user_access(snap,
                  tx.exec(user_access_projects_query
                          + " ORDER BY agent_id, project_id"),
                  true);
  add_user_access(snap,
                  tx.exec(user_access_groups_query
                          + " ORDER BY agent_id, group_id"),
                  false);
  for (const auto& row : tx.exec(agent_tokens_query))
    add_agent_token(snap, row);
  for (const auto& row : tx.exec(runners_query))
    add_runner(snap, row);
}

/// Loads every table but the keys (load_snapshot may read those on a
/// second connection).
void load_all_but_keys(read_tx& tx, snapshot& snap) {
  load_settings(tx, snap);
  load_storages(tx, snap);
  auto users = tx.exec(users_query);
  snap.users.reserve(users.size());
  snap.user_by_username.reserve(users.size());
  for (const auto& row : users)
    add_user(snap, row);
  for (const auto& row : tx.exec(namespaces_query))
    add_namespace(snap, row);
  auto projects = tx.exec(projects_query);
  snap.projects.reserve(projects.size());
  snap.project_by_path.reserve(projects.size());
  for (const auto& row : projects)
    add_project(snap, row);
  for (const auto& row : tx.exec(redirects_query))
    add_redirect(snap, row);
  for (const auto& row : tx.exec(project_members_query))
    add_member(snap.project_members, row);
  for (const auto& row : tx.exec(namespace_members_query))
    add_member(snap.namespace_members, row);
  for (const auto& row :
       tx.exec(protected_branches_query + " ORDER BY project_id, id"))
    add_protected_branch(snap, row);
  for (const auto& row :
       tx.exec(protected_tags_query + " ORDER BY project_id, id"))
    add_protected_tag(snap, row);
  for (const auto& row : tx.exec(tokens_query))
    add_token(snap, row);
  for (const auto& row : tx.exec(revoked_tokens_query))
    add_revoked_token(snap, row);
  load_agents(tx, snap);
  load_zoekt_enabled_namespaces(tx, snap);
}

// -- changes
// -------------------------------------------------------------------

/// What the change log asks to read again, since a model's snapshot.
struct change_set {
  /// A '*' row (a seed, a TRUNCATE) or more rows than re-reading beats.
  bool everything = false;
  bool settings = false;
  bool storages = false;
  bool zoekt_enabled_namespaces = false;
  std::set<std::int64_t> users;
  std::set<std::int64_t> keys;
  /// Fingerprints the changed keys had, whose lookup entries may go.
  std::set<std::string> key_fingerprints;
  std::set<std::int64_t> namespaces;
  std::set<std::int64_t> projects;
  std::set<std::string> redirects;
  std::set<snapshot::id_pair> project_members;
  std::set<snapshot::id_pair> namespace_members;
  std::set<std::int64_t> protected_branches;
  std::set<std::int64_t> protected_tags;
  std::set<std::int64_t> tokens;
  /// Digests the changed tokens had, whose entries go.
  std::set<std::string> token_digests;
  /// Agents whose row or user_access authorizations changed.
  std::set<std::int64_t> agents;
  std::set<std::int64_t> agent_tokens;
  std::set<std::string> agent_token_digests;
  std::set<std::int64_t> runners;
  std::set<std::string> runner_digests;
  std::size_t rows = 0;
};

/// Beyond this many change rows, a full load is the cheaper read.
constexpr std::size_t max_change_rows = 100000;

/// `{1,2,3}`: a bigint[] parameter.
template <class Ids>
std::string int_array(const Ids& ids) {
  std::string out = "{";
  for (auto id : ids) {
    if (out.size() > 1)
      out += ',';
    out += std::to_string(id);
  }
  return out + "}";
}

/// `{"a","b\"c"}`: a text[] parameter.
template <class Strings>
std::string text_array(const Strings& values) {
  std::string out = "{";
  for (const auto& v : values) {
    if (out.size() > 1)
      out += ',';
    out += '"';
    for (char c : v) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

/// The rows of the change log committed after `as_of` (a pg_snapshot):
/// those whose transaction it does not see. Transactions older than its
/// xmin had all ended, and it saw each that committed.
change_set read_changes(read_tx& tx, const std::string& as_of) {
  change_set out;
  auto rows = tx.exec_params(
    "SELECT kind, id1, id2, name FROM gatehouse_state.read_model_changes "
    "WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT "
    "pg_visible_in_snapshot(txid, $1::pg_snapshot) LIMIT $2",
    as_of, max_change_rows + 1);
  out.rows = rows.size();
  if (out.rows > max_change_rows) {
    out.everything = true;
    return out;
  }
  for (const auto& row : rows) {
    std::string_view kind = row[0].c_str();
    auto id1 = optional_int(row[1]).value_or(0);
    auto id2 = optional_int(row[2]).value_or(0);
    if (kind == "users")
      out.users.insert(id1);
    else if (kind == "keys") {
      out.keys.insert(id1);
      if (!row[3].is_null())
        out.key_fingerprints.insert(row[3].as<std::string>());
    } else if (kind == "namespaces")
      out.namespaces.insert(id1);
    else if (kind == "projects")
      out.projects.insert(id1);
    else if (kind == "project_redirects")
      out.redirects.insert(text(row[3]));
    else if (kind == "project_members")
      out.project_members.insert({id1, id2});
    else if (kind == "namespace_members")
      out.namespace_members.insert({id1, id2});
    else if (kind == "protected_branches")
      out.protected_branches.insert(id1);
    else if (kind == "protected_tags")
      out.protected_tags.insert(id1);
    else if (kind == "personal_access_tokens") {
      out.tokens.insert(id1);
      if (!row[3].is_null())
        out.token_digests.insert(row[3].as<std::string>());
    } else if (kind == "cluster_agents")
      out.agents.insert(id1);
    else if (kind == "cluster_agent_tokens") {
      out.agent_tokens.insert(id1);
      if (!row[3].is_null())
        out.agent_token_digests.insert(row[3].as<std::string>());
    } else if (kind == "ci_runners") {
      out.runners.insert(id1);
      if (!row[3].is_null())
        out.runner_digests.insert(row[3].as<std::string>());
    } else if (kind == "settings")
      out.settings = true;
    else if (kind == "storages")
      out.storages = true;
    else if (kind == "zoekt_enabled_namespaces")
      out.zoekt_enabled_namespaces = true;
    else
      out.everything = true; // '*', or a kind this version does not know
  }
  return out;
}

/// Drops `key -> id` from a lookup unless another record owns it now.
void drop_lookup(sharded_map<std::string, std::int64_t>& lookup,
                 const std::string& key, std::int64_t id) {
  if (auto it = lookup.find(key); it != lookup.end() && it->second == id)
    lookup.erase(key);
}

/// Re-reads, in `tx`, every record `changes` names into `snap` (a copy
/// of the model the changes came after). Records first leave, then the
/// rows found come back: what a full load in `tx` would read.
void apply_changes(read_tx& tx, const change_set& changes, snapshot& snap) {
  if (changes.settings) {
    snap.settings = settings_record{};
    load_settings(tx, snap);
  }
  if (changes.storages)
    load_storages(tx, snap);
  if (changes.zoekt_enabled_namespaces)
    load_zoekt_enabled_namespaces(tx, snap);

  for (auto id : changes.users) {
    if (auto it = snap.users.find(id); it != snap.users.end()) {
      drop_lookup(snap.user_by_username, ascii_lower(it->second.username), id);
      snap.users.erase(id);
    }
  }
  if (!changes.users.empty())
    for (const auto& row : tx.exec_params(
           users_query + " WHERE id = ANY($1::bigint[])",
           int_array(changes.users)))
      add_user(snap, row);

  for (const auto& fingerprint : changes.key_fingerprints)
    if (auto it = snap.key_by_fingerprint.find(fingerprint);
        it != snap.key_by_fingerprint.end()
        && changes.keys.count(it->second))
      snap.key_by_fingerprint.erase(fingerprint);
  for (auto id : changes.keys)
    snap.keys.erase(id);
  if (!changes.keys.empty()) {
    auto ids = int_array(changes.keys);
    auto links = read_deploy_links(tx.exec_params(
      deploy_keys_projects_query + " WHERE key_id = ANY($1::bigint[])", ids));
    for (const auto& row :
         tx.exec_params(keys_query + " WHERE id = ANY($1::bigint[])", ids))
      add_key(snap, row, links);
  }

  for (auto id : changes.namespaces)
    snap.namespaces.erase(id);
  if (!changes.namespaces.empty())
    for (const auto& row : tx.exec_params(
           namespaces_query + " WHERE id = ANY($1::bigint[])",
           int_array(changes.namespaces)))
      add_namespace(snap, row);

  for (auto id : changes.projects) {
    if (auto it = snap.projects.find(id); it != snap.projects.end()) {
      drop_lookup(snap.project_by_path, ascii_lower(it->second.full_path),
                  id);
      snap.projects.erase(id);
    }
  }
  if (!changes.projects.empty())
    for (const auto& row : tx.exec_params(
           projects_query + " WHERE id = ANY($1::bigint[])",
           int_array(changes.projects)))
      add_project(snap, row);

  for (const auto& path : changes.redirects)
    snap.redirects.erase(path);
  if (!changes.redirects.empty())
    for (const auto& row : tx.exec_params(
           redirects_query + " WHERE lower(path) = ANY($1::text[])",
           text_array(changes.redirects)))
      add_redirect(snap, row);

  auto reread_members = [&](const std::set<snapshot::id_pair>& pairs,
                            auto& members, const std::string& query,
                            const char* column) {
    if (pairs.empty())
      return;
    std::vector<std::int64_t> users;
    std::vector<std::int64_t> targets;
    for (const auto& pair : pairs) {
      members.erase(pair);
      users.push_back(pair.first);
      targets.push_back(pair.second);
    }
    for (const auto& row : tx.exec_params(
           query + " AND (user_id, " + column
             + ") IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))",
           int_array(users), int_array(targets)))
      add_member(members, row);
  };
  reread_members(changes.project_members, snap.project_members,
                 project_members_query, "project_id");
  reread_members(changes.namespace_members, snap.namespace_members,
                 namespace_members_query, "namespace_id");

  for (auto id : changes.protected_branches)
    snap.protected_branches.erase(id);
  if (!changes.protected_branches.empty())
    for (const auto& row : tx.exec_params(
           protected_branches_query
             + " WHERE project_id = ANY($1::bigint[]) ORDER BY project_id, id",
           int_array(changes.protected_branches)))
      add_protected_branch(snap, row);

  for (auto id : changes.protected_tags)
    snap.protected_tags.erase(id);
  if (!changes.protected_tags.empty())
    for (const auto& row : tx.exec_params(
           protected_tags_query
             + " WHERE project_id = ANY($1::bigint[]) ORDER BY project_id, id",
           int_array(changes.protected_tags)))
      add_protected_tag(snap, row);

  for (const auto& digest : changes.token_digests)
    if (auto it = snap.tokens_by_digest.find(digest);
        it != snap.tokens_by_digest.end() && changes.tokens.count(it->second.id))
      snap.tokens_by_digest.erase(digest);
  for (const auto& digest : changes.token_digests)
    if (auto it = snap.revoked_tokens_by_digest.find(digest);
        it != snap.revoked_tokens_by_digest.end()
        && changes.tokens.count(it->second))
      snap.revoked_tokens_by_digest.erase(digest);
  if (!changes.tokens.empty()) {
    auto ids = int_array(changes.tokens);
    for (const auto& row : tx.exec_params(
           tokens_query + " AND id = ANY($1::bigint[])", ids))
      add_token(snap, row);
    for (const auto& row : tx.exec_params(
           revoked_tokens_query + " AND id = ANY($1::bigint[])", ids))
      add_revoked_token(snap, row);
  }

  for (auto id : changes.agents)
    drop_agent(snap, id);
  if (!changes.agents.empty()) {
    auto ids = int_array(changes.agents);
    for (const auto& row :
         tx.exec_params(agents_query + " WHERE id = ANY($1::bigint[])", ids))
      add_agent(snap, row);
    add_user_access(snap,
                    tx.exec_params(user_access_projects_query
                                     + " WHERE agent_id = ANY($1::bigint[]) "
                                       "ORDER BY agent_id, project_id",
                                   ids),
                    true);
    add_user_access(snap,
                    tx.exec_params(user_access_groups_query
                                     + " WHERE agent_id = ANY($1::bigint[]) "
                                       "ORDER BY agent_id, group_id",
                                   ids),
                    false);
  }

  // A digest's entry goes only while a changed row still owns it: another
  // row may have taken the digest since.
  for (const auto& digest : changes.agent_token_digests)
    if (auto it = snap.agent_tokens_by_digest.find(digest);
        it != snap.agent_tokens_by_digest.end()
        && changes.agent_tokens.count(it->second.id))
      snap.agent_tokens_by_digest.erase(digest);
  if (!changes.agent_tokens.empty())
    for (const auto& row : tx.exec_params(
           agent_tokens_query + " AND id = ANY($1::bigint[])",
           int_array(changes.agent_tokens)))
      add_agent_token(snap, row);

  for (const auto& digest : changes.runner_digests)
    if (auto it = snap.runner_by_digest.find(digest);
        it != snap.runner_by_digest.end() && changes.runners.count(it->second))
      snap.runner_by_digest.erase(digest);
  if (!changes.runners.empty())
    for (const auto& row : tx.exec_params(
           runners_query + " AND id = ANY($1::bigint[])",
           int_array(changes.runners)))
      add_runner(snap, row);
}

/// Whether a change notification's payload ({"kinds":[...]}) may concern
/// the tables load_snapshot reads; an unknown payload may.
bool concerns_read_model(const std::string& payload) {
  auto doc = json::parse(payload, nullptr, false);
  if (!doc.is_object() || !doc.contains("kinds") || !doc["kinds"].is_array()
      || doc["kinds"].empty())
    return true;
  for (const auto& kind : doc["kinds"])
    if (!kind.is_string() || kind_concerns_read_model(kind.get<std::string>()))
      return true;
  return false;
}

unix_time now_seconds() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

// -- the loader actor
// ------------------------------------------------------------

} // namespace

/// A connection LISTENing on change_channel.
struct listen_session {
  pg_session db;
  /// The second connection of a load (load_snapshot); null when it could
  /// not be opened (the load then runs on one).
  std::unique_ptr<pqxx::connection> helper;
  /// A change notification arrived; bursts collapse into one reload at the
  /// next tick.
  bool pending = false;
};

namespace {

using loader_pointer
  = read_model_loader_actor::stateful_pointer<read_model_loader_state>;

void schedule_tick(loader_pointer self, std::chrono::milliseconds delay) {
  auto generation = ++self->state.tick_generation;
  if (delay.count() <= 0)
    self->send(self, atom::tick::value, generation);
  else
    self->delayed_send(self, delay, atom::tick::value, generation);
}

/// Gives the pages freed by a load (libpq's result sets, the previous
/// snapshot when nobody holds it any more) back to the system: glibc only
/// returns the top of its heap by itself, and a load's results lie below
/// the snapshot built from them.
void release_free_memory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

/// Destroys, here, each replaced model that nobody else holds any more;
/// after a full load's predecessor, gives the pages back. Destroyed by its
/// last holder elsewhere, a model at a million keys takes a while to free,
/// and a trim meanwhile finds nothing to return: RSS stayed at two models
/// after a reload. A model replaced by a change shares all but a few
/// shards with its successor: freeing it frees little.
void release_retired(read_model_loader_state& st) {
  bool trim = false;
  st.retired.erase(std::remove_if(st.retired.begin(), st.retired.end(),
                                  [&](const retired_model& r) {
                                    if (r.model.use_count() != 1)
                                      return false;
                                    trim = trim || r.trim;
                                    return true;
                                  }),
                   st.retired.end());
  if (trim)
    release_free_memory();
}

/// Makes `next` the current model and hands it out.
void publish(loader_pointer self, snapshot_ptr next, bool full) {
  auto& st = self->state;
  if (st.current)
    st.retired.push_back({std::move(st.current), full});
  st.current = std::move(next);
  st.last_error.clear();
  for (const auto& sub : st.subscribers)
    caf::anon_send(sub, atom::snapshot::value, st.current);
  for (auto& promise : st.waiting)
    promise.deliver(st.current);
  st.waiting.clear();
}

double millis_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
           std::chrono::steady_clock::now() - start)
    .count();
}

/// Loads a whole snapshot on the session's connection and hands it out.
caf::error reload(loader_pointer self) {
  auto& st = self->state;
  // Cleared before reading: a change committed during the load notifies
  // again, and is read from the change log next.
  st.session->pending = false;
  auto started = std::chrono::steady_clock::now();
  auto* helper = st.session->helper.get();
  std::string as_of;
  auto snap = st.session->db.run("read_model", [&](pqxx::connection& c) {
    return std::make_shared<snapshot>(load_snapshot(c, helper, &as_of));
  });
  if (!snap)
    return std::move(snap.error());
  st.as_of = std::move(as_of);
  st.synced = std::chrono::steady_clock::now();
  publish(self, std::move(*snap), true);
  release_free_memory();
  log::info("read model loaded",
            {{"actor", read_model_loader_state::name},
             {"users", st.current->users.size()},
             {"keys", st.current->keys.size()},
             {"projects", st.current->projects.size()},
             {"duration_ms", millis_since(started)}});
  ++st.loads;
  return {};
}

/// Reads the change log since the current model and applies what changed
/// to a copy that shares every untouched shard; a '*' in the log (a seed,
/// a TRUNCATE) or a flood of changes loads in full instead.
caf::error sync(loader_pointer self) {
  auto& st = self->state;
  if (!st.current || st.as_of.empty())
    return reload(self);
  st.session->pending = false;
  auto started = std::chrono::steady_clock::now();
  std::shared_ptr<snapshot> next;
  change_set changes;
  std::string as_of;
  auto done = st.session->db.run("read_model", [&](pqxx::connection& c) {
    read_tx tx{c, "read_model_changes"};
    as_of = tx.exec("SELECT pg_current_snapshot()::text")[0][0]
              .as<std::string>();
    changes = read_changes(tx, st.as_of);
    if (!changes.everything && changes.rows > 0) {
      next = std::make_shared<snapshot>(*st.current);
      apply_changes(tx, changes, *next);
      next->loaded_at = now_seconds();
    }
    tx.commit();
    return true;
  });
  if (!done)
    return std::move(done.error());
  if (changes.everything)
    return reload(self);
  st.as_of = std::move(as_of);
  st.synced = std::chrono::steady_clock::now();
  if (!next)
    return {};
  publish(self, std::move(next), false);
  ++st.updates;
  log::info("read model updated",
            {{"actor", read_model_loader_state::name},
             {"changes", changes.rows},
             {"duration_ms", millis_since(started)}});
  return {};
}

/// Deletes change-log rows no loader can still need: those of transactions
/// that had all ended an hour (change_log_retention) ago. Every connected
/// loader reads the log at least every refresh_interval, and one that was
/// away reloads in full.
caf::error prune_change_log(loader_pointer self) {
  auto& st = self->state;
  auto now = std::chrono::steady_clock::now();
  auto done = st.session->db.run("read_model", [&](pqxx::connection& c) {
    pqxx::nontransaction tx{c, "read_model_prune"};
    st.xmin_samples.emplace_back(
      now, tx.exec("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")[0][0]
             .as<std::string>());
    while (now - st.xmin_samples.front().first
           >= st.settings.change_log_retention) {
      tx.exec_params("DELETE FROM gatehouse_state.read_model_changes WHERE "
                     "txid < $1::xid8",
                     st.xmin_samples.front().second);
      st.xmin_samples.pop_front();
    }
    return true;
  });
  st.pruned = now;
  if (!done)
    return std::move(done.error());
  return {};
}

/// Connects, LISTENs, then loads: in that order, so no change committed
/// after the load can go unnoticed.
caf::error connect_and_load(loader_pointer self) {
  auto& st = self->state;
  auto session = std::make_shared<listen_session>();
  session->db = pg_session{
    {st.settings.database_url, st.settings.statement_timeout, change_channel},
    [raw = session.get()](const std::string& payload) {
      if (concerns_read_model(payload))
        raw->pending = true;
    }};
  if (auto err = session->db.open())
    return err;
  try {
    session->helper
      = connect(st.settings.database_url, st.settings.statement_timeout);
  } catch (const std::exception& e) {
    log::warn("read model: no second connection, loading on one",
              {{"actor", read_model_loader_state::name},
               {"error", one_line(e.what())}});
  }
  st.session = std::move(session);
  return reload(self);
}

/// Drops the connection after a failure; the next tick reconnects.
void fail(loader_pointer self, std::string what) {
  auto& st = self->state;
  // libpq's messages span lines; logs and errors want one.
  for (auto& c : what)
    if (c == '\n' || c == '\t')
      c = ' ';
  while (!what.empty() && what.back() == ' ')
    what.pop_back();
  bool was_connected = st.session != nullptr;
  st.session.reset();
  st.last_error = what;
  if (was_connected || st.backoff == st.settings.min_backoff)
    log::warn("read model: PostgreSQL unavailable, reconnecting",
              {{"actor", read_model_loader_state::name}, {"error", what}});
  // Nobody waits forever for a first snapshot that cannot be read now.
  for (auto& promise : st.waiting)
    promise.deliver(caf::make_error(errc::unavailable, what));
  st.waiting.clear();
}

void on_tick(loader_pointer self) {
  auto& st = self->state;
  if (!st.session) {
    bool reconnect = st.attempted;
    st.attempted = true;
    if (auto err = connect_and_load(self)) {
      fail(self, pg_error_text(err));
      schedule_tick(self, st.backoff);
      st.backoff = std::min(st.backoff * 2, st.settings.max_backoff);
      return;
    }
    st.backoff = st.settings.min_backoff;
    if (reconnect)
      log::info("read model: reconnected to PostgreSQL and reloaded",
                {{"actor", read_model_loader_state::name}});
    schedule_tick(self, st.settings.poll_interval);
    return;
  }
  release_retired(st);
  auto err = st.session->db.check_notifications();
  auto now = std::chrono::steady_clock::now();
  // Without a notification, the log is read every refresh_interval anyway:
  // a notification can be lost with its connection, never a log row.
  if (!err && (st.session->pending
               || now - st.synced >= st.settings.refresh_interval))
    err = sync(self);
  if (!err && now - st.pruned >= st.settings.refresh_interval)
    err = prune_change_log(self);
  if (err) {
    fail(self, pg_error_text(err));
    st.backoff = st.settings.min_backoff;
    schedule_tick(self, st.backoff);
    return;
  }
  schedule_tick(self, st.settings.poll_interval);
}

} // namespace

snapshot load_snapshot(pqxx::connection& conn, pqxx::connection* helper,
                       std::string* as_of) {
  snapshot snap;
  read_tx tx{conn, "read_model"};
  auto current = tx.exec("SELECT pg_current_snapshot()::text")[0][0]
                   .as<std::string>();
  // The key tables are the largest; with a helper connection they load
  // beside the rest, in a transaction on the same exported snapshot.
  std::future<snapshot> keys;
  if (helper) {
    auto id = tx.exec("SELECT pg_export_snapshot()")[0][0].as<std::string>();
    keys = std::async(std::launch::async,
                      [helper, id]() {
                        snapshot part;
                        read_tx helper_tx{*helper, "read_model_keys"};
                        helper_tx.exec("SET TRANSACTION SNAPSHOT "
                                       + helper_tx.quote(id));
                        load_keys(helper_tx, part);
                        helper_tx.commit();
                        return part;
                      });
  }
  load_all_but_keys(tx, snap);
  if (keys.valid()) {
    // Before the commit: the exported snapshot lives as long as the
    // exporting transaction.
    auto part = keys.get();
    snap.keys = std::move(part.keys);
    snap.key_by_fingerprint = std::move(part.key_by_fingerprint);
  } else {
    load_keys(tx, snap);
  }
  tx.commit();
  snap.loaded_at = now_seconds();
  if (as_of)
    *as_of = std::move(current);
  return snap;
}

bool kind_concerns_read_model(std::string_view kind) {
  static const std::set<std::string_view> outside{
    "pages_domains", "pages_deployments", "zoekt_nodes", "webhooks"};
  return outside.count(kind) == 0;
}

read_model_loader_actor::behavior_type read_model_loader(
  read_model_loader_actor::stateful_pointer<read_model_loader_state> self,
  read_model_loader_settings settings) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.backoff = st.settings.min_backoff;
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& subs = self->state.subscribers;
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [&](const caf::actor& a) {
                                return a.address() == msg.source;
                              }),
               subs.end());
  });
  schedule_tick(self, std::chrono::milliseconds{0});
  return {
    [=](atom::subscribe, caf::actor& subscriber) {
      auto& st = self->state;
      if (!subscriber)
        return;
      self->monitor(subscriber);
      if (st.current)
        caf::anon_send(subscriber, atom::snapshot::value, st.current);
      st.subscribers.push_back(std::move(subscriber));
    },
    [=](atom::get) -> caf::result<snapshot_ptr> {
      auto& st = self->state;
      if (st.current)
        return st.current;
      if (st.attempted && !st.session)
        return caf::make_error(errc::unavailable, st.last_error);
      auto promise = self->make_response_promise<snapshot_ptr>();
      st.waiting.push_back(promise);
      return promise;
    },
    [=](atom::tick, std::uint64_t generation) {
      // Only the tick this actor scheduled last drives the loop; a stray one
      // must not start a second chain.
      if (generation == self->state.tick_generation)
        on_tick(self);
    },
  };
}

} // namespace gatehouse::storage
