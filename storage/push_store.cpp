#include "storage/push_store.hpp"

#include "common/log.hpp"
#include "messages/errors.hpp"
#include "storage/database.hpp"
#include "storage/pg_session.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <set>
#include <utility>

namespace gatehouse::storage {

namespace {

using json = nlohmann::json;

/// Expired counters are purged on every this many pre_receive calls (an
/// expired row already counts as absent; this only bounds the table).
constexpr std::uint32_t purge_every = 256;

/// Runs `fn` on the actor's session. Every failure is logged and answered
/// errc::unavailable, whatever the session made of it (push_store.hpp): the
/// rows were built by Gatehouse, so what PostgreSQL refuses is no fault of
/// the caller's request.
template <class T, class F>
caf::expected<T> with_session(push_store_state& st, const char* what, F fn) {
  caf::expected<T> result = st.session.run(what, fn);
  if (result)
    return result;
  const auto& err = result.error();
  log::warn("push store: database error",
            {{"operation", what}, {"error", render(err)}});
  return caf::error{static_cast<std::uint8_t>(errc::unavailable),
                    err.category(), err.context()};
}

/// Runs `sql` as the prepared statement `name` on the transaction's
/// connection. A push runs the same few statements thousands of times a
/// second; prepared, PostgreSQL parses and plans each once per session.
/// libpqxx registers it with the server on first use on each connection (a
/// reconnect prepares again) and takes a repeated identical definition as
/// a no-op.
template <class... Args>
pqxx::result run_prepared(pqxx::transaction_base& tx, const char* name,
                          const char* sql, Args&&... args) {
  tx.conn().prepare(name, sql);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

/// Records (request_id, call) in `tx` unless it is recorded already: true
/// when this transaction claimed it. A concurrent transaction holding the
/// same id makes the INSERT wait for its outcome, so two retries racing on
/// two replicas still apply once.
bool claim_request(pqxx::work& tx, const std::string& request_id,
                   const char* call) {
  auto rows = run_prepared(
    tx, "claim_request",
    "INSERT INTO gatehouse_state.requests (request_id, call) VALUES ($1, $2) "
    "ON CONFLICT (request_id, call) DO NOTHING RETURNING 1",
    request_id, std::string{call});
  return !rows.empty();
}

/// The outcome the first write with this id committed; null when none
/// (purged meanwhile).
json recorded_outcome(pqxx::work& tx, const std::string& request_id,
                      const char* call) {
  auto rows = run_prepared(tx, "recorded_outcome",
                           "SELECT outcome::text FROM gatehouse_state.requests "
                           "WHERE request_id = $1 AND call = $2",
                           request_id, std::string{call});
  if (rows.empty() || rows[0][0].is_null())
    return nullptr;
  return json::parse(rows[0][0].as<std::string>(), nullptr, false);
}

void record_outcome(pqxx::work& tx, const std::string& request_id,
                    const char* call, const json& outcome) {
  run_prepared(tx, "record_outcome",
               "UPDATE gatehouse_state.requests SET outcome = $3::jsonb "
               "WHERE request_id = $1 AND call = $2",
               request_id, std::string{call}, outcome.dump());
}

/// `request_id` empty: no retry protection (the HTTP edge).
bool increment(pqxx::connection& c, const std::string& gl_repository,
               const std::string& request_id, bool purge) {
  pqxx::work tx{c, "pre_receive"};
  if (!request_id.empty()) {
    if (!claim_request(tx, request_id, "pre_receive")) {
      auto outcome = recorded_outcome(tx, request_id, "pre_receive");
      tx.commit();
      log::info("pre_receive retry: counted once already",
                {{"gl_repository", gl_repository}, {"request_id", request_id}});
      return outcome.is_object() ? outcome.value("counted", true) : true;
    }
    record_outcome(tx, request_id, "pre_receive", json{{"counted", true}});
  }
  // An expired row counts as absent: the new value starts from 1, as an
  // INCR on a Redis key that has expired would.
  run_prepared(
    tx, "count_push",
    "INSERT INTO gatehouse_state.reference_counters AS r "
    "(gl_repository, value, expires_at) "
    "VALUES ($1, 1, now() + make_interval(secs => $2)) "
    "ON CONFLICT (gl_repository) DO UPDATE SET "
    "value = CASE WHEN r.expires_at > now() THEN r.value + 1 ELSE 1 END, "
    "expires_at = EXCLUDED.expires_at",
    gl_repository, static_cast<long>(reference_counter_ttl.count()));
  if (purge)
    tx.exec("DELETE FROM gatehouse_state.reference_counters "
            "WHERE expires_at < now() - interval '1 hour'");
  tx.commit();
  return true;
}

/// GitLab: DECR; a value below 0 deletes the key. The expiry stays what the
/// last increment set. A missing or expired counter would go to -1: its
/// (expired) row is deleted. Either way the decrement "succeeded".
bool decrement(pqxx::work& tx, const std::string& gl_repository) {
  auto r = run_prepared(tx, "decrement",
                        "UPDATE gatehouse_state.reference_counters "
                        "SET value = value - 1 "
                        "WHERE gl_repository = $1 AND expires_at > now() "
                        "RETURNING value",
                        gl_repository);
  if (r.empty() || r[0][0].as<long>() < 0)
    run_prepared(tx, "drop_counter",
                 "DELETE FROM gatehouse_state.reference_counters "
                 "WHERE gl_repository = $1",
                 gl_repository);
  return true;
}

std::string take_moved(pqxx::work& tx, std::int64_t user_id,
                       std::int64_t project_id) {
  auto rows = run_prepared(tx, "take_moved",
                           "DELETE FROM gatehouse_state.project_moved_messages "
                           "WHERE user_id = $1 AND project_id = $2 "
                           "RETURNING message, expires_at > now()",
                           user_id, project_id);
  if (rows.empty() || !rows[0][1].as<bool>())
    return {};
  return rows[0][0].as<std::string>();
}

/// Writes the events to the outbox; returns the projects they belong to.
std::set<std::int64_t> insert_events(pqxx::work& tx,
                                     const std::vector<outbox_event>& events) {
  std::set<std::int64_t> projects;
  json rows = json::array();
  for (const auto& e : events) {
    projects.insert(e.project_id);
    rows.push_back({{"event_id", e.event_id},
                    {"project_id", e.project_id},
                    {"subject", e.subject},
                    {"kind", e.kind},
                    {"bulk", e.bulk},
                    {"commits_unavailable", e.commits_unavailable},
                    {"body", e.body}});
  }
  // Serialise inserts per project until commit, in a fixed order (no
  // deadlock between two writes), so that seq order is commit order and the
  // relay never sees seq n+1 committed before seq n of the same project.
  for (auto project : projects)
    run_prepared(tx, "lock_project_outbox",
                 "SELECT pg_advisory_xact_lock($1, ($2::bigint % "
                 "2147483647)::int)",
                 outbox_insert_lock_class, project);
  // One statement for all events, inserted (and numbered) in list order.
  run_prepared(
    tx, "insert_events",
    "INSERT INTO gatehouse_state.outbox (event_id, project_id, subject, kind, "
    "bulk, commits_unavailable, body) "
    "SELECT (e->>'event_id')::uuid, (e->>'project_id')::bigint, "
    "e->>'subject', e->>'kind', (e->>'bulk')::boolean, "
    "(e->>'commits_unavailable')::boolean, e->>'body' "
    "FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(e, n) "
    "ORDER BY n",
    rows.dump(-1, ' ', false, json::error_handler_t::replace));
  return projects;
}

/// Wakes the outbox relays after the commit, in a transaction of its own.
/// A NOTIFY inside the push's transaction would take PostgreSQL's global
/// notify lock before the commit and hold it through the commit's WAL
/// flush, so every push would wait for the previous push's fsync: one
/// commit at a time, whatever the number of sessions. A notify-only
/// transaction writes no WAL. Its failure changes nothing that was
/// committed; the relays find the rows at their next poll.
void wake_relays(pqxx::connection& c, const std::set<std::int64_t>& projects,
                 const std::string& gl_repository) {
  if (projects.empty())
    return;
  try {
    pqxx::nontransaction tx{c, "outbox_notify"};
    for (auto project : projects)
      run_prepared(tx, "wake_relays", "SELECT pg_notify($1, $2)",
                   std::string{outbox_channel}, std::to_string(project));
  } catch (const std::exception& e) {
    log::warn("outbox relays not woken after a commit; they poll instead",
              {{"gl_repository", gl_repository}, {"error", e.what()}});
  }
}

post_receive_written write_push(pqxx::connection& c,
                                const post_receive_write& w) {
  pqxx::work tx{c, "post_receive"};
  post_receive_written out;
  bool tracked = !w.request_id.empty();
  if (tracked && !claim_request(tx, w.request_id, "post_receive")) {
    // A retry: the first write's counter change, moved message and events
    // are committed; answer what it committed and change nothing.
    auto outcome = recorded_outcome(tx, w.request_id, "post_receive");
    tx.commit();
    out.counter_decreased = true;
    if (outcome.is_object()) {
      out.counter_decreased = outcome.value("counter_decreased", true);
      out.moved_message = outcome.value("moved_message", std::string{});
    }
    log::info(
      "post_receive retry: committed once already",
      {{"gl_repository", w.gl_repository}, {"request_id", w.request_id}});
    return out;
  }
  out.counter_decreased = decrement(tx, w.gl_repository);
  if (w.user_id != 0 && w.project_id != 0)
    out.moved_message = take_moved(tx, w.user_id, w.project_id);
  std::set<std::int64_t> projects;
  if (!w.events.empty())
    projects = insert_events(tx, w.events);
  if (tracked)
    record_outcome(tx, w.request_id, "post_receive",
                   json{{"counter_decreased", out.counter_decreased},
                        {"moved_message", out.moved_message}});
  tx.commit();
  wake_relays(c, projects, w.gl_repository);
  return out;
}

bool count_push(push_store_state& st, const std::string& gl_repository,
                const std::string& request_id) {
  bool purge = ++st.since_purge >= purge_every;
  if (purge)
    st.since_purge = 0;
  auto counted
    = with_session<bool>(st, "pre_receive", [&](pqxx::connection& c) {
        return increment(c, gl_repository, request_id, purge);
      });
  // GitLab answers {"reference_counter_increased": false} when its counter
  // store fails; the failure is logged in with_session.
  return counted ? *counted : false;
}

} // namespace

push_store_actor::behavior_type push_store(
  push_store_actor::stateful_pointer<push_store_state> self,
  push_store_settings settings) {
  self->state.settings = std::move(settings);
  self->state.session = pg_session{self->state.settings.database_url,
                                   self->state.settings.statement_timeout};
  return {
    [=](atom::pre_receive, std::string& gl_repository) -> caf::result<bool> {
      return count_push(self->state, gl_repository, std::string{});
    },
    [=](atom::pre_receive, std::string& gl_repository,
        std::string& request_id) -> caf::result<bool> {
      return count_push(self->state, gl_repository, request_id);
    },
    [=](atom::post_receive,
        post_receive_write& w) -> caf::result<post_receive_written> {
      return with_session<post_receive_written>(
        self->state, "post_receive",
        [&](pqxx::connection& c) { return write_push(c, w); });
    },
  };
}

} // namespace gatehouse::storage
