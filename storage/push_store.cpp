#include "storage/push_store.hpp"

#include "common/log.hpp"
#include "messages/errors.hpp"
#include "storage/database.hpp"
#include "storage/pg_session.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <optional>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace gatehouse::storage {

namespace {

using json = nlohmann::json;

/// Expired counters are purged on every this many pre_receive calls (an
/// expired row already counts as absent; this only bounds the table).
constexpr std::uint32_t purge_every = 256;

/// Every failure is logged and answered errc::unavailable, whatever the
/// session made of it (push_store.hpp): the rows were built by Gatehouse, so
/// what PostgreSQL refuses is no fault of the caller's request.
caf::error store_failure(const char* what, const caf::error& err) {
  log::warn("push store: database error",
            {{"operation", what}, {"error", render(err)}});
  return caf::error{static_cast<std::uint8_t>(errc::unavailable),
                    err.category(), err.context()};
}

/// Runs `fn` on the actor's session; a failure as store_failure.
template <class T, class F>
caf::expected<T> with_session(push_store_state& st, const char* what, F fn) {
  caf::expected<T> result = st.session.run(what, fn);
  if (result)
    return result;
  return store_failure(what, result.error());
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

/// Counts one push in `tx`; `request_id` empty: no retry protection (the
/// HTTP edge).
bool count_in(pqxx::work& tx, const std::string& gl_repository,
              const std::string& request_id) {
  if (!request_id.empty()) {
    if (!claim_request(tx, request_id, "pre_receive")) {
      auto outcome = recorded_outcome(tx, request_id, "pre_receive");
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
  return true;
}

/// Counts `batch` (request ids distinct) in one transaction, so with one
/// WAL flush; the results in batch order. The rows are locked in
/// (gl_repository, request id) order, the same in every session, so two
/// batches cannot deadlock.
std::vector<bool> count_batch(pqxx::connection& c,
                              const std::vector<const queued_count*>& batch,
                              bool purge) {
  std::vector<std::size_t> order(batch.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::tie(batch[a]->gl_repository, batch[a]->id)
           < std::tie(batch[b]->gl_repository, batch[b]->id);
  });
  pqxx::work tx{c, "pre_receive"};
  std::vector<bool> out(batch.size(), true);
  for (auto i : order)
    out[i] = count_in(tx, batch[i]->gl_repository, batch[i]->id);
  if (purge)
    tx.exec("DELETE FROM gatehouse_state.reference_counters "
            "WHERE expires_at < now() - interval '1 hour'");
  tx.commit();
  return out;
}

/// The arguments of post_receive_batch() (007_push_batch.sql).
struct batch_arguments {
  /// The pushes and their events, without the bodies.
  std::string pushes;
  /// Every event body, one after the other.
  std::string bodies;
};

batch_arguments
batch_json(const std::vector<const post_receive_write*>& batch) {
  batch_arguments out;
  std::size_t size = 0;
  for (const auto* w : batch)
    for (const auto& e : w->events)
      size += e.body.size();
  out.bodies.reserve(size);
  json pushes = json::array();
  for (const auto* w : batch) {
    json events = json::array();
    for (const auto& e : w->events) {
      events.push_back({{"event_id", e.event_id},
                        {"project_id", e.project_id},
                        {"subject", e.subject},
                        {"kind", e.kind},
                        {"bulk", e.bulk},
                        {"commits_unavailable", e.commits_unavailable},
                        {"body_at", out.bodies.size()},
                        {"body_bytes", e.body.size()}});
      // libpq sends a text parameter up to its first NUL. JSON text has
      // none (a serializer escapes control characters).
      if (e.body.find('\0') != std::string::npos)
        throw std::invalid_argument{"event " + e.event_id
                                    + ": body contains a NUL byte"};
      out.bodies += e.body;
    }
    pushes.push_back({{"gl_repository", w->gl_repository},
                      {"user_id", w->user_id},
                      {"project_id", w->project_id},
                      {"request_id", w->request_id},
                      {"events", std::move(events)}});
  }
  out.pushes = pushes.dump(-1, ' ', false, json::error_handler_t::replace);
  return out;
}

/// Writes `batch` in one statement, so in one transaction (autocommit: no
/// BEGIN and COMMIT round trips); the results in batch order.
std::vector<post_receive_written>
write_batch(pqxx::connection& c,
            const std::vector<const post_receive_write*>& batch) {
  pqxx::nontransaction tx{c, "post_receive"};
  auto args = batch_json(batch);
  auto rows = run_prepared(
    tx, "post_receive_batch",
    "SELECT ordinal, was_retry, counter_decreased, moved_message "
    "FROM gatehouse_state.post_receive_batch($1::jsonb, $2, $3)",
    args.pushes, args.bodies, outbox_insert_lock_class);
  std::vector<post_receive_written> out(batch.size());
  for (const auto& row : rows) {
    auto i = row[0].as<std::size_t>() - 1;
    out.at(i).counter_decreased = row[2].as<bool>();
    out.at(i).moved_message = row[3].as<std::string>();
    if (row[1].as<bool>())
      log::info("post_receive retry: committed once already",
                {{"gl_repository", batch[i]->gl_repository},
                 {"request_id", batch[i]->request_id}});
  }
  if (rows.size() != batch.size())
    throw std::logic_error{"post_receive_batch answered "
                           + std::to_string(rows.size()) + " rows for "
                           + std::to_string(batch.size()) + " pushes"};
  return out;
}

/// Whether PostgreSQL certainly rolled a failed batch back and the
/// connection is usable, so that its pushes may be written again one by
/// one. Not after a statement timeout: each push alone could take as long.
bool rolled_back_cleanly(const std::exception& e, pqxx::connection& c) {
  // Refused before anything was sent.
  if (dynamic_cast<const std::invalid_argument*>(&e))
    return true;
  if (!c.is_open())
    return false;
  if (dynamic_cast<const pqxx::deadlock_detected*>(&e)
      || dynamic_cast<const pqxx::serialization_failure*>(&e))
    return true;
  const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
  return sql != nullptr && sql->sqlstate() != "57014";
}

/// Wakes the outbox relays after a commit with events: this replica's in
/// process, the others' with a NOTIFY, at most one per notify_interval
/// (they also poll). The NOTIFY runs in a transaction of its own: inside
/// the push's transaction it would take PostgreSQL's global notify lock
/// before the commit and hold it through the commit's WAL flush, so every
/// commit would wait for the previous one's fsync. A notify-only
/// transaction writes no WAL. Its failure changes nothing that was
/// committed.
void wake_relays(push_store_state& st, std::int64_t project) {
  if (st.settings.on_events_committed)
    st.settings.on_events_committed();
  auto now = std::chrono::steady_clock::now();
  if (now - st.last_notify < st.settings.notify_interval)
    return;
  st.last_notify = now;
  auto sent = st.session.run("outbox_notify", [&](pqxx::connection& c) {
    pqxx::nontransaction tx{c, "outbox_notify"};
    run_prepared(tx, "wake_relays", "SELECT pg_notify($1, $2)",
                 std::string{outbox_channel}, std::to_string(project));
    return true;
  });
  if (!sent)
    log::warn("outbox relays of other replicas not woken; they poll instead",
              {{"error", render(sent.error())}});
}

/// Writes one batch (request ids distinct) and answers each of its pushes.
void write_and_answer(push_store_state& st, std::vector<queued_push*>& batch) {
  std::vector<const post_receive_write*> writes;
  for (auto* q : batch)
    writes.push_back(&q->write);
  using attempt = std::optional<std::vector<post_receive_written>>;
  auto written
    = st.session.run("post_receive", [&](pqxx::connection& c) -> attempt {
        try {
          return write_batch(c, writes);
        } catch (const std::exception& e) {
          if (dynamic_cast<const pqxx::broken_connection*>(&e))
            // Autocommit: the statement may have committed before the
            // connection broke. The callers are told it failed.
            log::error("database commit outcome unknown",
                       {{"operation", "post_receive"},
                        {"pushes", writes.size()},
                        {"error", one_line(e.what())}});
          if (writes.size() == 1 || !rolled_back_cleanly(e, c))
            throw;
          log::info("post_receive batch rolled back; writing its pushes one "
                    "by one",
                    {{"pushes", writes.size()}, {"error", one_line(e.what())}});
          return std::nullopt;
        }
      });
  if (written && *written) {
    const post_receive_write* with_events = nullptr;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      batch[i]->promise.deliver((**written)[i]);
      if (!batch[i]->write.events.empty())
        with_events = &batch[i]->write;
    }
    // Retries wrote nothing; waking the relay for them costs only a look.
    if (with_events != nullptr)
      wake_relays(st, with_events->events.front().project_id);
    return;
  }
  if (!written) {
    auto err = store_failure("post_receive", written.error());
    for (auto* q : batch)
      q->promise.deliver(err);
    return;
  }
  for (auto* q : batch) {
    auto one = with_session<post_receive_written>(
      st, "post_receive", [&](pqxx::connection& c) {
        return write_batch(c, {&q->write}).front();
      });
    if (one)
      q->promise.deliver(*one);
    else
      q->promise.deliver(one.error());
    if (one && !q->write.events.empty())
      wake_relays(st, q->write.events.front().project_id);
  }
}

/// Counts one batch (request ids distinct) and answers each call. A failed
/// count answers false, as GitLab does when Redis fails.
void count_and_answer(push_store_state& st,
                      const std::vector<queued_count*>& batch) {
  bool purge = false;
  st.since_purge += static_cast<std::uint32_t>(batch.size());
  if (st.since_purge >= purge_every) {
    st.since_purge = 0;
    purge = true;
  }
  std::vector<const queued_count*> counts(batch.begin(), batch.end());
  using attempt = std::optional<std::vector<bool>>;
  auto counted
    = st.session.run("pre_receive", [&](pqxx::connection& c) -> attempt {
        try {
          return count_batch(c, counts, purge);
        } catch (const std::exception& e) {
          if (counts.size() == 1 || !rolled_back_cleanly(e, c))
            throw;
          log::info("pre_receive batch rolled back; counting its pushes one "
                    "by one",
                    {{"pushes", counts.size()}, {"error", one_line(e.what())}});
          return std::nullopt;
        }
      });
  if (counted && *counted) {
    for (std::size_t i = 0; i < batch.size(); ++i)
      batch[i]->promise.deliver(static_cast<bool>((**counted)[i]));
    return;
  }
  if (!counted) {
    // GitLab answers {"reference_counter_increased": false} when its
    // counter store fails.
    store_failure("pre_receive", counted.error());
    for (auto* q : batch)
      q->promise.deliver(false);
    return;
  }
  for (auto* q : batch) {
    auto one
      = with_session<bool>(st, "pre_receive", [&](pqxx::connection& c) {
          return static_cast<bool>(count_batch(c, {q}, false).front());
        });
    q->promise.deliver(one ? *one : false);
  }
}

/// Splits `queue` into batches of at most `limit` entries whose request ids
/// are distinct (a second call with the same id waits for the next batch,
/// where it finds the first one's outcome) and hands each to `write`.
template <class Queued, class Write>
void in_batches(std::vector<Queued>& queue, std::size_t limit, Write write) {
  std::vector<Queued*> rest;
  for (auto& q : queue)
    rest.push_back(&q);
  limit = std::max<std::size_t>(1, limit);
  while (!rest.empty()) {
    std::vector<Queued*> batch;
    std::vector<Queued*> later;
    std::set<std::string> ids;
    for (auto* q : rest) {
      const auto& id = q->request_id();
      if (batch.size() >= limit || (!id.empty() && !ids.insert(id).second))
        later.push_back(q);
      else
        batch.push_back(q);
    }
    write(batch);
    rest = std::move(later);
  }
}

/// Writes everything queued: the counts, then the pushes.
void flush(push_store_state& st) {
  st.flush_queued = false;
  auto counts = std::move(st.queued_counts);
  st.queued_counts.clear();
  auto pushes = std::move(st.queued);
  st.queued.clear();
  in_batches(counts, st.settings.max_batch,
             [&](std::vector<queued_count*>& b) { count_and_answer(st, b); });
  in_batches(pushes, st.settings.max_batch,
             [&](std::vector<queued_push*>& b) { write_and_answer(st, b); });
}

/// Makes sure a flush follows whatever is in the mailbox now: the calls
/// that arrive during a commit all go into the next one.
void schedule_flush(push_store_actor::stateful_pointer<push_store_state> self) {
  if (!self->state.flush_queued) {
    self->state.flush_queued = true;
    self->send(self, atom::flush_pushes::value);
  }
}

} // namespace

push_store_actor::behavior_type push_store(
  push_store_actor::stateful_pointer<push_store_state> self,
  push_store_settings settings) {
  self->state.settings = std::move(settings);
  self->state.session = pg_session{self->state.settings.database_url,
                                   self->state.settings.statement_timeout};
  auto count = [=](std::string& gl_repository, std::string& request_id) {
    auto promise = self->make_response_promise<bool>();
    self->state.queued_counts.push_back(
      queued_count{std::move(gl_repository), std::move(request_id), promise});
    schedule_flush(self);
    return promise;
  };
  return {
    [=](atom::pre_receive, std::string& gl_repository) -> caf::result<bool> {
      std::string none;
      return count(gl_repository, none);
    },
    [=](atom::pre_receive, std::string& gl_repository,
        std::string& request_id) -> caf::result<bool> {
      return count(gl_repository, request_id);
    },
    [=](atom::post_receive,
        post_receive_write& w) -> caf::result<post_receive_written> {
      auto promise = self->make_response_promise<post_receive_written>();
      self->state.queued.push_back(queued_push{std::move(w), promise});
      schedule_flush(self);
      return promise;
    },
    [=](atom::flush_pushes) { flush(self->state); },
  };
}

} // namespace gatehouse::storage
