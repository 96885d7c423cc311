#include "storage/agent_store.hpp"

#include "common/log.hpp"
#include "messages/errors.hpp"
#include "storage/outbox_store.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::storage {

namespace {

using json = nlohmann::json;

/// What the registry is told of a failure: bad_request for a value
/// PostgreSQL refused (a malformed event id, JSON that is none), else
/// unavailable; the write rolled back either way.
caf::error store_failure(const char* what, const caf::error& err) {
  log::warn("agent store: database error",
            {{"operation", what}, {"error", render(err)}});
  auto code = classify(err) == errc::bad_request ? errc::bad_request
                                                 : errc::unavailable;
  return caf::make_error(code, pg_error_text(err));
}

/// Runs `fn` on the actor's session; a failure as store_failure.
template <class T, class F>
caf::result<T> with_session(agent_store_state& st, const char* what, F fn) {
  caf::expected<T> out = st.session.run(what, fn);
  if (!out)
    return store_failure(what, out.error());
  return std::move(*out);
}

/// Serialises this transaction's outbox inserts with every other writer's
/// for the same projects until commit (seq order is commit order within a
/// project, which the relay relies on); keys ascending, so two writers
/// cannot deadlock.
void lock_outbox(pqxx::work& tx, std::set<std::int64_t> projects) {
  std::set<int> keys;
  for (auto p : projects)
    keys.insert(static_cast<int>(p % 2147483647));
  for (auto k : keys)
    tx.exec_params("SELECT pg_advisory_xact_lock($1, $2)",
                   outbox_insert_lock_class, k);
}

/// Inserts `e` unless its id is in the outbox; true when inserted. The
/// caller holds the project's outbox lock.
bool insert_event(pqxx::work& tx, const agents::outbox_event& e) {
  return !tx
            .exec_params(
              "INSERT INTO gatehouse_state.outbox (event_id, project_id, "
              "subject, kind, body) VALUES ($1::uuid, $2, $3, $4, $5) ON "
              "CONFLICT (event_id) DO NOTHING RETURNING 1",
              e.event_id, e.project_id, e.subject, e.kind, e.body)
            .empty();
}

/// Tells the relays of other replicas that rows are waiting (delivered on
/// commit). Inside the transaction: agent events are rare, so holding the
/// notify lock through the commit costs nothing worth a round trip.
void notify_relays(pqxx::work& tx, std::int64_t project) {
  tx.exec_params("SELECT pg_notify($1, $2)", std::string{outbox_channel},
                 std::to_string(project));
}

// -- configuration_write ------------------------------------------------------

/// (target id, config) rows as jsonb_to_recordset input; the first of a
/// repeated target wins.
std::string rows_json(const std::vector<agents::authorization_row>& rows) {
  json out = json::array();
  std::set<std::int64_t> seen;
  for (const auto& r : rows) {
    if (!seen.insert(r.target_id).second)
      continue;
    out.push_back({{"target_id", r.target_id},
                   {"config", r.config.empty() ? std::string{"{}"}
                                               : r.config}});
  }
  return out.dump();
}

/// Makes `table`'s rows of `agent` exactly `rows`, writing only rows that
/// differ (so an unchanged configuration logs no read-model change).
/// Targets that no longer exist are skipped.
void replace_list(pqxx::work& tx, std::int64_t agent, const char* table,
                  const char* target, const char* targets,
                  const std::vector<agents::authorization_row>& rows) {
  auto list = rows_json(rows);
  std::string t = table;
  std::string col = target;
  tx.exec_params("DELETE FROM " + t + " a WHERE a.agent_id = $1 AND a." + col
                   + " NOT IN (SELECT (e->>'target_id')::bigint FROM "
                     "jsonb_array_elements($2::jsonb) AS e)",
                 agent, list);
  tx.exec_params(
    "INSERT INTO " + t + " AS a (agent_id, " + col
      + ", config) SELECT $1, x.target_id, (x.config #>> '{}')::jsonb FROM "
        "jsonb_to_recordset($2::jsonb) AS x(target_id bigint, config jsonb) "
        "JOIN "
      + targets + " o ON o.id = x.target_id ORDER BY x.target_id "
      + "ON CONFLICT (agent_id, " + col
      + ") DO UPDATE SET config = EXCLUDED.config WHERE a.config IS DISTINCT "
        "FROM EXCLUDED.config",
    agent, list);
}

agents::configuration_written
write_configuration(agent_store_state& st, pqxx::connection& c,
                    const agents::configuration_write& w) {
  pqxx::work tx{c, "agent_configuration"};
  agents::configuration_written out;
  // FOR NO KEY UPDATE: serialises writes of one agent (and its connection
  // records) without blocking inserts that only refer to it.
  auto agent = tx.exec_params("SELECT project_id FROM cluster_agents WHERE id "
                              "= $1 FOR NO KEY UPDATE",
                              w.agent_id);
  if (agent.empty())
    return out; // rolled back: nothing to write
  out.agent_found = true;
  auto stored = tx.exec_params(
    "SELECT config = $2::jsonb FROM cluster_agent_configs WHERE agent_id = $1",
    w.agent_id, w.config);
  out.changed = stored.empty() || !stored[0][0].as<bool>();
  if (out.changed)
    tx.exec_params("INSERT INTO cluster_agent_configs AS c (agent_id, config, "
                   "updated_at) VALUES ($1, $2::jsonb, now()) ON CONFLICT "
                   "(agent_id) DO UPDATE SET config = EXCLUDED.config, "
                   "updated_at = now()",
                   w.agent_id, w.config);
  replace_list(tx, w.agent_id, "agent_project_authorizations", "project_id",
               "projects", w.ci_access_projects);
  replace_list(tx, w.agent_id, "agent_group_authorizations", "group_id",
               "namespaces", w.ci_access_groups);
  replace_list(tx, w.agent_id, "agent_user_access_project_authorizations",
               "project_id", "projects", w.user_access_projects);
  replace_list(tx, w.agent_id, "agent_user_access_group_authorizations",
               "group_id", "namespaces", w.user_access_groups);
  bool wrote = false;
  if (out.changed) {
    lock_outbox(tx, {w.changed_event.project_id});
    wrote = insert_event(tx, w.changed_event);
    if (wrote)
      notify_relays(tx, w.changed_event.project_id);
  }
  tx.commit();
  if (wrote && st.settings.on_events_committed)
    st.settings.on_events_committed();
  return out;
}

// -- usage_write --------------------------------------------------------------

agents::usage_written write_usage(agent_store_state& st, pqxx::connection& c,
                                  const agents::usage_write& w) {
  pqxx::work tx{c, "agent_usage"};
  // Summed per name and sorted: one row lock per counter, taken in the
  // same order by every writer.
  std::map<std::string, std::int64_t> sums;
  for (const auto& [name, n] : w.counters)
    if (n != 0)
      sums[name] += n;
  if (!sums.empty()) {
    json rows = json::array();
    for (const auto& [name, n] : sums)
      rows.push_back({{"name", name}, {"n", n}});
    tx.exec_params(
      "INSERT INTO gatehouse_state.agent_usage_counters AS c (name, value, "
      "updated_at) SELECT x.name, x.n, now() FROM jsonb_to_recordset($1::jsonb) "
      "AS x(name text, n bigint) ORDER BY x.name ON CONFLICT (name) DO UPDATE "
      "SET value = c.value + EXCLUDED.value, updated_at = now()",
      rows.dump());
  }
  std::set<std::pair<std::string, std::int64_t>> ids(w.unique_ids.begin(),
                                                      w.unique_ids.end());
  if (!ids.empty()) {
    json rows = json::array();
    for (const auto& [name, id] : ids)
      rows.push_back({{"name", name}, {"id", id}});
    tx.exec_params(
      "INSERT INTO gatehouse_state.agent_unique_ids AS u (name, entity_id, "
      "last_seen_at) SELECT x.name, x.id, now() FROM "
      "jsonb_to_recordset($1::jsonb) AS x(name text, id bigint) ORDER BY "
      "x.name, x.id ON CONFLICT (name, entity_id) DO UPDATE SET "
      "last_seen_at = now()",
      rows.dump());
  }

  agents::usage_written out;
  out.changes.assign(w.connections.size(), std::string{});
  if (w.connections.empty()) {
    tx.commit();
    return out;
  }
  // Decide first: lock every agent named (ascending ids), read each one's
  // recorded connection, and follow the connections in order, since two
  // may name the same agent.
  std::set<std::int64_t> named;
  for (const auto& cw : w.connections)
    if (cw.seen.agent_id)
      named.insert(*cw.seen.agent_id);
  json id_list = json::array();
  for (auto id : named)
    id_list.push_back(id);
  std::set<std::int64_t> known;
  for (const auto& row : tx.exec_params(
         "SELECT id FROM cluster_agents WHERE id IN (SELECT "
         "v::bigint FROM jsonb_array_elements_text($1::jsonb) AS v) ORDER BY "
         "id FOR NO KEY UPDATE",
         id_list.dump()))
    known.insert(row[0].as<std::int64_t>());
  using versions
    = std::pair<std::optional<std::string>, std::optional<std::string>>;
  std::map<std::int64_t, std::optional<versions>> recorded;
  for (const auto& row : tx.exec_params(
         "SELECT agent_id, agent_version, kubernetes_version FROM "
         "cluster_agent_connections WHERE agent_id IN (SELECT v::bigint FROM "
         "jsonb_array_elements_text($1::jsonb) AS v)",
         id_list.dump())) {
    auto opt = [](const pqxx::field& f) -> std::optional<std::string> {
      if (f.is_null())
        return std::nullopt;
      return f.as<std::string>();
    };
    recorded[row[0].as<std::int64_t>()] = versions{opt(row[1]), opt(row[2])};
  }
  std::vector<const agents::outbox_event*> events;
  std::set<std::int64_t> event_projects;
  for (std::size_t i = 0; i < w.connections.size(); ++i) {
    const auto& cw = w.connections[i];
    if (!cw.seen.agent_id || !known.count(*cw.seen.agent_id))
      continue; // the agent is gone: nothing to record
    auto& before = recorded[*cw.seen.agent_id];
    versions now{cw.seen.agent_version, cw.seen.kubernetes_version};
    const agents::outbox_event* e = nullptr;
    if (!before) {
      out.changes[i] = "registered";
      e = &cw.registered;
    } else if (*before != now) {
      out.changes[i] = "upgraded";
      e = &cw.upgraded;
    }
    before = now;
    if (e) {
      events.push_back(e);
      event_projects.insert(e->project_id);
    }
  }
  // Then write: the connections, and the events under their projects'
  // outbox locks.
  for (const auto& cw : w.connections) {
    if (!cw.seen.agent_id || !known.count(*cw.seen.agent_id))
      continue;
    const auto& s = cw.seen;
    tx.exec_params(
      "INSERT INTO cluster_agent_connections AS k (agent_id, project_id, "
      "agent_version, kubernetes_version, architecture, installation_method, "
      "helm_chart_version, first_seen_at, last_seen_at) VALUES ($1, $2, $3, "
      "$4, $5, $6, $7, now(), now()) ON CONFLICT (agent_id) DO UPDATE SET "
      "project_id = EXCLUDED.project_id, agent_version = "
      "EXCLUDED.agent_version, kubernetes_version = "
      "EXCLUDED.kubernetes_version, architecture = EXCLUDED.architecture, "
      "installation_method = EXCLUDED.installation_method, "
      "helm_chart_version = EXCLUDED.helm_chart_version, last_seen_at = now()",
      *s.agent_id, s.project_id, s.agent_version, s.kubernetes_version, s.architecture,
      s.installation_method, s.helm_chart_version);
  }
  bool wrote = false;
  if (!events.empty()) {
    lock_outbox(tx, event_projects);
    for (const auto* e : events)
      if (insert_event(tx, *e)) {
        wrote = true;
        notify_relays(tx, e->project_id);
      }
  }
  tx.commit();
  if (wrote && st.settings.on_events_committed)
    st.settings.on_events_committed();
  return out;
}

// -- config_push, usage_totals ------------------------------------------------

bool write_config_push(agent_store_state& st, pqxx::connection& c,
                       const agents::outbox_event& e) {
  pqxx::work tx{c, "agent_config_push"};
  lock_outbox(tx, {e.project_id});
  bool wrote = insert_event(tx, e);
  if (wrote)
    notify_relays(tx, e.project_id);
  tx.commit();
  if (wrote && st.settings.on_events_committed)
    st.settings.on_events_committed();
  return wrote;
}

agents::usage_totals read_totals(pqxx::connection& c) {
  agents::usage_totals out;
  pqxx::work tx{c, "agent_usage_totals"};
  auto month = std::to_string(agent_unique_id_retention.count()) + " hours";
  // Expired ids count nowhere; a bounded batch per call keeps the table
  // near 28 days of ids.
  tx.exec_params("DELETE FROM gatehouse_state.agent_unique_ids WHERE "
                 "(name, entity_id) IN (SELECT name, entity_id FROM "
                 "gatehouse_state.agent_unique_ids WHERE last_seen_at < now() "
                 "- $1::interval LIMIT $2)",
                 month, agent_unique_id_purge_batch);
  for (const auto& row :
       tx.exec("SELECT name, value FROM gatehouse_state.agent_usage_counters "
               "ORDER BY name"))
    out.counters.emplace_back(row[0].as<std::string>(),
                              row[1].as<std::int64_t>());
  for (const auto& row : tx.exec_params(
         "SELECT name, count(*) FILTER (WHERE last_seen_at >= now() - "
         "interval '7 days'), count(*) FROM gatehouse_state.agent_unique_ids "
         "WHERE last_seen_at >= now() - $1::interval GROUP BY name ORDER BY "
         "name",
         month)) {
    auto name = row[0].as<std::string>();
    out.unique_week.emplace_back(name, row[1].as<std::int64_t>());
    out.unique_month.emplace_back(std::move(name), row[2].as<std::int64_t>());
  }
  out.connected_agents
    = tx.exec("SELECT count(*) FROM cluster_agent_connections WHERE "
              "last_seen_at >= now() - interval '1 hour'")[0][0]
        .as<std::int64_t>();
  tx.commit();
  return out;
}

} // namespace

agent_store_actor::behavior_type agent_store(
  agent_store_actor::stateful_pointer<agent_store_state> self,
  agent_store_settings settings) {
  self->state.settings = std::move(settings);
  self->state.session = pg_session{self->state.settings.database_url,
                                   self->state.settings.statement_timeout};
  return {
    [=](atom::touch_agent_token, std::int64_t token_id) {
      // Best effort: a failure only delays the timestamp. The change log
      // ignores last_used_at (011), so no loader reloads for it.
      auto done = self->state.session.run(
        "touch_agent_token", [&](pqxx::connection& c) {
          pqxx::nontransaction tx{c, "touch_agent_token"};
          tx.exec_params("UPDATE cluster_agent_tokens SET last_used_at = "
                         "now() WHERE id = $1",
                         token_id);
          return true;
        });
      if (!done)
        log::warn("agent store: last use of a token not recorded",
                  {{"error", render(done.error())}});
    },
    [=](agents::configuration_write& w)
      -> caf::result<agents::configuration_written> {
      auto& st = self->state;
      return with_session<agents::configuration_written>(
        st, "agent_configuration",
        [&](pqxx::connection& c) { return write_configuration(st, c, w); });
    },
    [=](agents::usage_write& w) -> caf::result<agents::usage_written> {
      auto& st = self->state;
      return with_session<agents::usage_written>(
        st, "agent_usage",
        [&](pqxx::connection& c) { return write_usage(st, c, w); });
    },
    [=](atom::config_push,
        agents::outbox_event& e) -> caf::result<bool> {
      auto& st = self->state;
      return with_session<bool>(st, "agent_config_push",
                                [&](pqxx::connection& c) {
                                  return write_config_push(st, c, e);
                                });
    },
    [=](atom::usage_totals) -> caf::result<agents::usage_totals> {
      return with_session<agents::usage_totals>(self->state,
                                                "agent_usage_totals",
                                                read_totals);
    },
  };
}

} // namespace gatehouse::storage
