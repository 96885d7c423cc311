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
}

// -- tables
// --------------------------------------------------------------------

using read_tx = pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>;

void load_settings(read_tx& tx, snapshot& snap) {
  for (const auto& row : tx.exec("SELECT key, value::text FROM settings"))
    apply_setting(snap.settings, row[0].as<std::string>(),
                  json::parse(row[1].as<std::string>()));
}

void load_users(read_tx& tx, snapshot& snap) {
  auto rows = tx.exec("SELECT id, username, name, email, state, admin, "
                      "external, can_create_project, two_factor_enabled, "
                      "public_email FROM users");
  snap.users.reserve(rows.size());
  snap.user_by_username.reserve(rows.size());
  for (const auto& row : rows) {
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
    snap.user_by_username[ascii_lower(u.username)] = u.id;
    snap.users.emplace(u.id, std::move(u));
  }
}

void load_keys(read_tx& tx, snapshot& snap) {
  auto rows = tx.exec("SELECT id, kind, user_id, title, key_type, key_blob, "
                      "fingerprint_sha256, usage_type, "
                      + epoch("expires_at") + ", " + epoch("last_used_at")
                      + ", " + epoch("created_at") + " FROM keys");
  snap.keys.reserve(rows.size());
  snap.key_by_fingerprint.reserve(rows.size());
  for (const auto& row : rows) {
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
    snap.key_by_fingerprint[row[6].as<std::string>()] = k.id;
    snap.keys.emplace(k.id, std::move(k));
  }
  for (const auto& row : tx.exec(
         "SELECT key_id, project_id, can_push FROM deploy_keys_projects")) {
    auto it = snap.keys.find(row[0].as<std::int64_t>());
    if (it != snap.keys.end())
      it->second.deploy_projects[row[1].as<std::int64_t>()] = row[2].as<bool>();
  }
}

void load_namespaces(read_tx& tx, snapshot& snap) {
  for (const auto& row : tx.exec(
         "SELECT id, parent_id, path, full_path, kind, name FROM namespaces")) {
    namespace_record n;
    n.id = row[0].as<std::int64_t>();
    n.parent_id = optional_int(row[1]);
    n.path = row[2].as<std::string>();
    n.full_path = row[3].as<std::string>();
    n.kind = row[4].as<std::string>();
    n.name = row[5].as<std::string>();
    snap.namespaces.emplace(n.id, std::move(n));
  }
}

void load_projects(read_tx& tx, snapshot& snap) {
  auto rows
    = tx.exec("SELECT id, namespace_id, path, full_path, name, visibility, "
              "archived, default_branch, storage, disk_path, "
              "repository_access_level, merge_requests_enabled, lfs_enabled, "
              "repository_exists, description FROM projects");
  snap.projects.reserve(rows.size());
  snap.project_by_path.reserve(rows.size());
  for (const auto& row : rows) {
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
    snap.project_by_path[ascii_lower(p.full_path)] = p.id;
    snap.projects.emplace(p.id, std::move(p));
  }
  for (const auto& row :
       tx.exec("SELECT path, project_id FROM project_redirects"))
    snap.redirects[ascii_lower(row[0].as<std::string>())]
      = row[1].as<std::int64_t>();
}

void load_storages(read_tx& tx, snapshot& snap) {
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

void load_members(read_tx& tx, snapshot& snap) {
  for (const auto& row : tx.exec("SELECT user_id, project_id, namespace_id, "
                                 "access_level FROM members")) {
    auto user = row[0].as<std::int64_t>();
    auto level = row[3].as<int>();
    if (!row[1].is_null())
      snap.project_members[{user, row[1].as<std::int64_t>()}] = level;
    else if (!row[2].is_null())
      snap.namespace_members[{user, row[2].as<std::int64_t>()}] = level;
  }
}

void load_protected_refs(read_tx& tx, snapshot& snap) {
  for (const auto& row : tx.exec(
         "SELECT id, project_id, name, push_access_level, merge_access_level, "
         "allow_force_push FROM protected_branches ORDER BY project_id, id")) {
    protected_branch_record b;
    b.id = row[0].as<std::int64_t>();
    b.project_id = row[1].as<std::int64_t>();
    b.name = row[2].as<std::string>();
    b.push_access_level = row[3].as<int>();
    b.merge_access_level = row[4].as<int>();
    b.allow_force_push = row[5].as<bool>();
    snap.protected_branches[b.project_id].push_back(std::move(b));
  }
  for (const auto& row :
       tx.exec("SELECT id, project_id, name, create_access_level FROM "
               "protected_tags ORDER BY project_id, id")) {
    protected_tag_record t;
    t.id = row[0].as<std::int64_t>();
    t.project_id = row[1].as<std::int64_t>();
    t.name = row[2].as<std::string>();
    t.create_access_level = row[3].as<int>();
    snap.protected_tags[t.project_id].push_back(std::move(t));
  }
}

/// Whether a change notification's payload ({"kinds":[...]}) may concern
/// the tables load_snapshot reads. Only kinds known to be irrelevant are
/// skipped; anything else, an unknown payload included, reloads. Keep this
/// list in step with load_snapshot.
bool concerns_read_model(const std::string& payload) {
  static const std::set<std::string> ignored{
    "personal_access_tokens", "cluster_agents", "pages_domains",
    "pages_deployments",      "zoekt_nodes",    "webhooks"};
  auto doc = json::parse(payload, nullptr, false);
  if (!doc.is_object() || !doc.contains("kinds") || !doc["kinds"].is_array()
      || doc["kinds"].empty())
    return true;
  for (const auto& kind : doc["kinds"])
    if (!kind.is_string() || !ignored.count(kind.get<std::string>()))
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

/// A value that changes whenever anyone writes a table that load_snapshot
/// reads: per table, PostgreSQL's cumulative statistics of inserted,
/// updated and deleted rows (aborted ones too; flushed within about a
/// second of a transaction's end) and its file node, which a TRUNCATE or a
/// rewrite replaces without counting rows. Read before a load, it covers
/// no write that the load cannot see. Null when statistics are off.
std::optional<std::string> read_model_writes(pqxx::connection& c) {
  pqxx::nontransaction tx{c, "read_model_writes"};
  auto r = tx.exec(
    "SELECT string_agg(relid::text || ':' || (n_tup_ins + n_tup_upd + "
    "n_tup_del) || ':' || pg_relation_filenode(relid), ',' ORDER BY relid) "
    "FROM pg_stat_user_tables WHERE relid = ANY (ARRAY['settings', "
    "'storages', 'users', 'keys', 'deploy_keys_projects', 'namespaces', "
    "'projects', 'project_redirects', 'members', 'protected_branches', "
    "'protected_tags']::regclass[]) AND current_setting('track_counts') = "
    "'on'");
  if (r.empty() || r[0][0].is_null())
    return std::nullopt;
  return r[0][0].as<std::string>();
}

/// Destroys, here, each replaced model that nobody else holds any more,
/// then gives its pages back. Destroyed by its last holder elsewhere, a
/// model at a million keys takes a while to free, and a trim meanwhile
/// finds nothing to return: RSS stayed at two models after a reload.
void release_retired(read_model_loader_state& st) {
  auto before = st.retired.size();
  st.retired.erase(std::remove_if(st.retired.begin(), st.retired.end(),
                                  [](const snapshot_ptr& s) {
                                    return s.use_count() == 1;
                                  }),
                   st.retired.end());
  if (st.retired.size() != before)
    release_free_memory();
}

/// Loads a snapshot on the session's connection and hands it out.
caf::error reload(loader_pointer self) {
  auto& st = self->state;
  // Cleared before reading: a change committed during the load notifies
  // again and triggers the next reload.
  st.session->pending = false;
  auto started = std::chrono::steady_clock::now();
  auto* helper = st.session->helper.get();
  std::optional<std::string> writes;
  auto snap = st.session->db.run("read_model", [&](pqxx::connection& c) {
    writes = read_model_writes(c);
    return std::make_shared<snapshot>(load_snapshot(c, helper));
  });
  if (!snap)
    return std::move(snap.error());
  st.writes_at_load = writes;
  st.refreshes_skipped = 0;
  if (st.current)
    st.retired.push_back(std::move(st.current));
  st.current = std::move(*snap);
  release_free_memory();
  st.loaded = std::chrono::steady_clock::now();
  log::info("read model loaded",
            {{"actor", read_model_loader_state::name},
             {"users", st.current->users.size()},
             {"keys", st.current->keys.size()},
             {"projects", st.current->projects.size()},
             {"duration_ms",
              std::chrono::duration<double, std::milli>(st.loaded - started)
                .count()}});
  st.last_error.clear();
  ++st.loads;
  for (const auto& sub : st.subscribers)
    caf::anon_send(sub, atom::snapshot::value, st.current);
  for (auto& promise : st.waiting)
    promise.deliver(st.current);
  st.waiting.clear();
  return {};
}

/// The safety net for writers that do not NOTIFY (a hand edit): reloads
/// only when a read-model table was written since the last load. At a
/// million keys a load takes seconds and, while it runs, a second model.
caf::error reload_if_written(loader_pointer self) {
  auto& st = self->state;
  auto writes = st.session->db.run(
    "read_model", [](pqxx::connection& c) { return read_model_writes(c); });
  if (!writes)
    return std::move(writes.error());
  // A backstop for what the statistics cannot see: every tenth refresh
  // reloads anyway.
  if (*writes && *writes == st.writes_at_load
      && ++st.refreshes_skipped < 10) {
    st.loaded = std::chrono::steady_clock::now(); // next look in an interval
    return {};
  }
  return reload(self);
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
  if (!err) {
    auto stale = std::chrono::steady_clock::now() - st.loaded
      >= st.settings.refresh_interval;
    if (st.session->pending)
      err = reload(self);
    else if (stale)
      err = reload_if_written(self);
  }
  if (err) {
    fail(self, pg_error_text(err));
    st.backoff = st.settings.min_backoff;
    schedule_tick(self, st.backoff);
    return;
  }
  schedule_tick(self, st.settings.poll_interval);
}

} // namespace

snapshot load_snapshot(pqxx::connection& conn, pqxx::connection* helper) {
  snapshot snap;
  read_tx tx{conn, "read_model"};
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
  load_settings(tx, snap);
  load_storages(tx, snap);
  load_users(tx, snap);
  if (!keys.valid())
    load_keys(tx, snap);
  load_namespaces(tx, snap);
  load_projects(tx, snap);
  load_members(tx, snap);
  load_protected_refs(tx, snap);
  if (keys.valid()) {
    // Before the commit: the exported snapshot lives as long as the
    // exporting transaction.
    auto part = keys.get();
    snap.keys = std::move(part.keys);
    snap.key_by_fingerprint = std::move(part.key_by_fingerprint);
  }
  tx.commit();
  snap.loaded_at = now_seconds();
  return snap;
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
