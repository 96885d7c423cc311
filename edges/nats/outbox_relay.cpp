#include "edges/nats/outbox_relay.hpp"

#include "common/log.hpp"
#include "edges/nats/connection.hpp"
#include "storage/database.hpp"
#include "storage/push_store.hpp"

#include <nats/nats.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace gatehouse::nats {

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Remembers that post_receive committed events since the last look.
class outbox_receiver : public pqxx::notification_receiver {
public:
  explicit outbox_receiver(pqxx::connection& conn)
    : pqxx::notification_receiver(conn, storage::outbox_channel) {
    // nop
  }

  void operator()(const std::string&, int) override {
    pending = true;
  }

  bool pending = false;
};

/// A PostgreSQL bigint[] literal.
std::string pg_array(const std::vector<std::int64_t>& xs) {
  std::string out = "{";
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      out += ',';
    out += std::to_string(xs[i]);
  }
  out += '}';
  return out;
}

std::string nats_error(natsStatus s, jsErrCode jerr) {
  std::string out = natsStatus_GetText(s);
  if (jerr != 0)
    out += " (jetstream error " + std::to_string(static_cast<int>(jerr)) + ")";
  if (const char* last = nats_GetLastError(nullptr); last && *last)
    out += std::string{": "} + last;
  return out;
}

/// One outbox row, as the relay needs it.
struct outbox_row {
  std::int64_t seq = 0;
  std::string event_id;
  std::int64_t project_id = 0;
  std::string subject;
  std::string kind;
  bool bulk = false;
  bool commits_unavailable = false;
  std::string body;
};

enum class publish_outcome {
  /// JetStream stored it (or had it already).
  ok,
  /// JetStream refused this message; NATS itself works.
  message_failed,
  /// NATS or the stream is unavailable (timeout, disconnect, no stream).
  nats_failed,
};

enum class pass_result { idle, worked, failed };

/// The retry schedule of a project whose head row JetStream refused.
struct project_retry {
  clock_type::time_point next;
  milliseconds backoff{0};
};

// Folds a project id into the second key of a two-int advisory lock. Two
// projects that share a key merely share a lock.
constexpr const char* lock_key_sql = "(p % 2147483647)::int";

} // namespace

struct outbox_relay::impl {
  impl(outbox_relay_settings s, const connection& n)
    : settings(std::move(s)), nats(n) {
    wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }

  ~impl() {
    if (wake_fd >= 0)
      ::close(wake_fd);
  }

  outbox_relay_settings settings;
  const connection& nats;
  std::mutex lifecycle;
  bool started = false;
  bool stopped = false;
  std::thread worker;
  std::atomic<bool> stopping{false};
  int wake_fd = -1;

  // -- worker thread only ---------------------------------------------------
  std::unique_ptr<pqxx::connection> db;
  std::unique_ptr<outbox_receiver> receiver;
  jsCtx* js = nullptr;
  natsConnection* js_conn = nullptr;
  std::map<std::int64_t, project_retry> retries;
  clock_type::time_point next_count{};
  clock_type::time_point next_purge{};
  bool nats_down = false;
  bool db_down = false;

  // -- counters -------------------------------------------------------------
  std::atomic<std::uint64_t> published{0};
  std::atomic<std::uint64_t> duplicates{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> db_failures{0};
  std::atomic<std::int64_t> pending{-1};
  std::atomic<double> oldest_pending{0};
  std::atomic<bool> db_connected{false};

  void wake() {
    if (wake_fd >= 0) {
      std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof one);
    }
  }

  void drain_wake() {
    std::uint64_t value = 0;
    [[maybe_unused]] auto n = ::read(wake_fd, &value, sizeof value);
  }

  /// Sleeps up to `d`; returns early on stop().
  void sleep_for(milliseconds d) {
    if (stopping)
      return;
    pollfd fd{wake_fd, POLLIN, 0};
    if (::poll(&fd, 1, static_cast<int>(d.count())) > 0)
      drain_wake();
  }

  // -- PostgreSQL -----------------------------------------------------------

  void open_db() {
    db = storage::connect(settings.database_url, settings.statement_timeout);
    receiver = std::make_unique<outbox_receiver>(*db);
    // libpqxx 6 swallows a LISTEN that fails on a broken connection.
    if (!db->is_open())
      throw pqxx::broken_connection{"connection lost while subscribing to "
                                    + std::string{storage::outbox_channel}};
    db_connected = true;
    if (db_down) {
      db_down = false;
      log::info("outbox relay: reconnected to PostgreSQL");
    }
  }

  /// Closes the session, which also releases every advisory lock it held.
  void drop_db() {
    db_connected = false;
    // Closing first makes the receiver's destructor skip its UNLISTEN: on a
    // broken connection, libpqxx 6 would reconnect just to send it.
    if (db)
      db->disconnect();
    receiver.reset();
    db.reset();
  }

  /// Counts the backlog once a second, purges old published rows once a
  /// minute.
  void maintain() {
    auto now = clock_type::now();
    if (now >= next_count) {
      next_count = now + std::chrono::seconds(1);
      pqxx::nontransaction tx{*db};
      auto r = tx.exec(
        "SELECT count(*), coalesce(extract(epoch FROM now() - "
        "min(created_at)), 0)::float8 FROM gatehouse_state.outbox "
        "WHERE published_at IS NULL");
      pending = r[0][0].as<std::int64_t>();
      oldest_pending = std::max(0.0, r[0][1].as<double>());
    }
    if (settings.retention.count() > 0 && now >= next_purge) {
      next_purge = now + std::chrono::minutes(1);
      pqxx::nontransaction tx{*db};
      // Oldest first along the primary key; bounded per minute.
      tx.exec_params(
        "DELETE FROM gatehouse_state.outbox WHERE seq IN (SELECT seq FROM "
        "gatehouse_state.outbox WHERE published_at < now() - "
        "make_interval(hours => $1) ORDER BY seq LIMIT 10000)",
        static_cast<int>(settings.retention.count()));
    }
  }

  /// Waits for a NOTIFY, stop(), or `limit`.
  void wait_for_work(milliseconds limit) {
    if (stopping)
      return;
    // Notifications that arrived during the last queries are already in
    // libpq's buffer, where poll() cannot see them.
    if (db->get_notifs() > 0 || receiver->pending) {
      receiver->pending = false;
      return;
    }
    if (!db->is_open())
      throw pqxx::broken_connection{"connection to PostgreSQL lost"};
    pollfd fds[2] = {{db->sock(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
    auto n = ::poll(fds, 2, static_cast<int>(std::max<long>(0, limit.count())));
    if (n > 0 && (fds[1].revents & POLLIN))
      drain_wake();
    if (n > 0 && fds[0].revents != 0) {
      db->get_notifs();
      if (!db->is_open())
        throw pqxx::broken_connection{"connection to PostgreSQL lost"};
    }
    receiver->pending = false;
  }

  // -- NATS -----------------------------------------------------------------

  /// The JetStream context of the current connection when it is connected
  /// and the stream is ready; null otherwise.
  jsCtx* jetstream() {
    auto* nc = nats.raw();
    if (!nc || natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED
        || !nats.stream_ready())
      return nullptr;
    if (js && js_conn == nc)
      return js;
    if (js)
      jsCtx_Destroy(js);
    js = nullptr;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = static_cast<int64_t>(settings.publish_timeout.count());
    if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
      js = nullptr;
      return nullptr;
    }
    js_conn = nc;
    return js;
  }

  publish_outcome publish(jsCtx* ctx, const outbox_row& row,
                          std::string& error) {
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, row.subject.c_str(), nullptr,
                                  row.body.data(),
                                  static_cast<int>(row.body.size()));
    if (s == NATS_OK)
      s = natsMsgHeader_Set(msg, "Nats-Msg-Id", row.event_id.c_str());
    if (s == NATS_OK)
      s = natsMsgHeader_Set(msg, "Content-Type", "application/json");
    if (s == NATS_OK)
      s = natsMsgHeader_Set(msg, "Gatehouse-Event", row.kind.c_str());
    if (s == NATS_OK && row.bulk)
      s = natsMsgHeader_Set(msg, "Gatehouse-Bulk", "true");
    if (s == NATS_OK && row.commits_unavailable)
      s = natsMsgHeader_Set(msg, "Gatehouse-Commits", "unavailable");
    if (s != NATS_OK) {
      error = "building the message: " + nats_error(s, static_cast<jsErrCode>(0));
      natsMsg_Destroy(msg);
      return publish_outcome::message_failed;
    }
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MaxWait = static_cast<int64_t>(settings.publish_timeout.count());
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_PublishMsg(&ack, ctx, msg, &opts, &jerr);
    natsMsg_Destroy(msg);
    if (s == NATS_OK) {
      auto outcome = publish_outcome::ok;
      if (ack && ack->Stream && settings.stream != ack->Stream) {
        // Another stream captured the subject: not where consumers look.
        error = std::string{"acknowledged by stream "} + ack->Stream
                + " instead of " + settings.stream;
        outcome = publish_outcome::nats_failed;
      } else if (ack && ack->Duplicate) {
        ++duplicates;
      }
      jsPubAck_Destroy(ack);
      return outcome;
    }
    error = nats_error(s, jerr);
    if (ack)
      jsPubAck_Destroy(ack);
    // The server answered for this message (or the client refused its size):
    // NATS works, only this project waits.
    if ((jerr != 0 && jerr != JSStreamNotFoundErr) || s == NATS_MAX_PAYLOAD)
      return publish_outcome::message_failed;
    return publish_outcome::nats_failed;
  }

  void note_nats_down(const std::string& error) {
    if (!nats_down) {
      nats_down = true;
      log::warn("outbox relay: NATS unavailable; events wait in the outbox",
                {{"error", error}});
    }
  }

  void note_nats_up() {
    if (nats_down) {
      nats_down = false;
      log::info("outbox relay: publishing again");
    }
  }

  // -- one pass -------------------------------------------------------------

  void unlock(pqxx::nontransaction& tx, const std::vector<std::int64_t>& ps) {
    tx.exec_params(std::string{"SELECT pg_advisory_unlock($1, "} + lock_key_sql
                     + ") FROM unnest($2::bigint[]) AS t(p)",
                   outbox_relay::lock_class, pg_array(ps));
  }

  void record_failure(pqxx::nontransaction& tx, std::int64_t seq,
                      const std::string& error) {
    tx.exec_params("UPDATE gatehouse_state.outbox SET attempts = attempts + "
                   "1, last_error = $2 WHERE seq = $1",
                   seq, error);
    ++failures;
  }

  /// Schedules the project's next attempt; true on its first failure.
  bool backoff_project(std::int64_t project) {
    auto& r = retries[project];
    bool first = r.backoff.count() == 0;
    r.backoff = first ? settings.min_backoff
                      : std::min(r.backoff * 2, settings.max_backoff);
    r.next = clock_type::now() + r.backoff;
    return first;
  }

  /// The projects whose retry is not due yet.
  std::vector<std::int64_t> waiting_projects() {
    std::vector<std::int64_t> out;
    auto now = clock_type::now();
    for (auto& [project, r] : retries)
      if (r.next > now)
        out.push_back(project);
    return out;
  }

  /// How long until the next project retry is due, at most `limit`.
  milliseconds until_next_retry(milliseconds limit) {
    auto now = clock_type::now();
    for (auto& [project, r] : retries)
      if (r.next > now)
        limit = std::min(limit, std::chrono::duration_cast<milliseconds>(
                                  r.next - now)
                                  + milliseconds(1));
    return limit;
  }

  pass_result pass() {
    pqxx::nontransaction tx{*db};
    // Candidates: projects with unpublished rows, oldest first, except those
    // waiting for a retry; keep the ones whose lock no other replica holds.
    // The lock is taken on the subquery's rows only (LIMIT is a barrier).
    auto candidates = tx.exec_params(
      std::string{"SELECT p FROM (SELECT project_id AS p, min(seq) AS first "
                  "FROM gatehouse_state.outbox WHERE published_at IS NULL "
                  "AND project_id <> ALL($3::bigint[]) GROUP BY project_id "
                  "ORDER BY first LIMIT $2) c "
                  "WHERE pg_try_advisory_lock($1, "}
        + lock_key_sql + ")",
      outbox_relay::lock_class, settings.max_projects,
      pg_array(waiting_projects()));
    std::vector<std::int64_t> locked;
    for (const auto& row : candidates)
      locked.push_back(row[0].as<std::int64_t>());
    if (locked.empty())
      return pass_result::idle;

    auto* ctx = jetstream();
    if (!ctx) {
      // Each project's head row records the attempt.
      std::string error = "NATS not connected or stream not ready";
      tx.exec_params(
        "UPDATE gatehouse_state.outbox SET attempts = attempts + 1, "
        "last_error = $2 WHERE seq IN (SELECT min(seq) FROM "
        "gatehouse_state.outbox WHERE published_at IS NULL AND project_id = "
        "ANY($1::bigint[]) GROUP BY project_id)",
        pg_array(locked), error);
      failures += locked.size();
      unlock(tx, locked);
      note_nats_down(error);
      return pass_result::failed;
    }

    // Read after the locks: every mark of the previous holder is committed.
    auto result = tx.exec_params(
      "SELECT o.seq, o.event_id::text, o.project_id, o.subject, o.kind, "
      "coalesce(o.bulk, false), coalesce(o.commits_unavailable, false), "
      "o.body FROM unnest($1::bigint[]) AS p(id) CROSS JOIN LATERAL "
      "(SELECT * FROM gatehouse_state.outbox WHERE project_id = p.id AND "
      "published_at IS NULL ORDER BY seq LIMIT $2) o "
      "ORDER BY o.project_id, o.seq",
      pg_array(locked), settings.batch_size);
    std::vector<outbox_row> rows;
    rows.reserve(result.size());
    for (const auto& r : result) {
      outbox_row row;
      row.seq = r[0].as<std::int64_t>();
      row.event_id = r[1].as<std::string>();
      row.project_id = r[2].as<std::int64_t>();
      row.subject = r[3].as<std::string>();
      row.kind = r[4].as<std::string>();
      row.bulk = r[5].as<bool>();
      row.commits_unavailable = r[6].as<bool>();
      row.body = r[7].as<std::string>();
      rows.push_back(std::move(row));
    }

    bool any_published = false;
    std::optional<std::string> nats_failure;
    std::size_t i = 0;
    while (i < rows.size()) {
      auto project = rows[i].project_id;
      auto end = i;
      while (end < rows.size() && rows[end].project_id == project)
        ++end;
      if (nats_failure || stopping) {
        i = end; // left for the next pass, in order
        continue;
      }
      std::vector<std::int64_t> done;
      std::optional<std::pair<std::int64_t, std::string>> failed;
      bool first_refusal = false;
      for (; i < end && !stopping; ++i) {
        std::string error;
        auto outcome = publish(ctx, rows[i], error);
        if (outcome == publish_outcome::ok) {
          done.push_back(rows[i].seq);
          continue;
        }
        failed.emplace(rows[i].seq, error);
        if (outcome == publish_outcome::nats_failed)
          nats_failure = error;
        else
          first_refusal = backoff_project(project);
        break; // the rest of this project waits: order
      }
      i = end;
      if (!done.empty()) {
        // Only acknowledged rows; never a row someone else already marked.
        tx.exec_params("UPDATE gatehouse_state.outbox SET published_at = "
                       "now() WHERE seq = ANY($1::bigint[]) AND published_at "
                       "IS NULL",
                       pg_array(done));
        published += done.size();
        any_published = true;
      }
      if (failed) {
        // Every attempt is in the row (attempts, last_error); the log
        // names a refused event once, until its project moves again.
        record_failure(tx, failed->first, failed->second);
        if (first_refusal)
          log::warn("outbox relay: JetStream refused an event; its project "
                    "waits and retries",
                    {{"project_id", project},
                     {"seq", failed->first},
                     {"error", failed->second}});
      } else if (!done.empty() && retries.erase(project) > 0) {
        log::info("outbox relay: project publishing again",
                  {{"project_id", project}});
      }
    }
    // After the marks are committed, so the next holder sees them.
    unlock(tx, locked);
    if (nats_failure) {
      note_nats_down(*nats_failure);
      return pass_result::failed;
    }
    note_nats_up();
    return any_published ? pass_result::worked : pass_result::idle;
  }

  // -- the thread -----------------------------------------------------------

  void run() {
    auto backoff = settings.min_backoff;
    auto grow = [&] { backoff = std::min(backoff * 2, settings.max_backoff); };
    while (!stopping) {
      try {
        if (!db)
          open_db();
        maintain();
        auto result = pass();
        if (result == pass_result::worked) {
          backoff = settings.min_backoff;
          continue;
        }
        if (result == pass_result::failed) {
          sleep_for(backoff);
          grow();
          continue;
        }
        backoff = settings.min_backoff;
        wait_for_work(until_next_retry(settings.poll_interval));
      } catch (const std::exception& e) {
        ++db_failures;
        if (!db_down) {
          db_down = true;
          log::warn("outbox relay: PostgreSQL unavailable; retrying",
                    {{"error", storage::one_line(e.what())}});
        }
        drop_db();
        sleep_for(backoff);
        grow();
      }
    }
    drop_db();
    if (js)
      jsCtx_Destroy(js);
    js = nullptr;
  }
};

outbox_relay::outbox_relay(outbox_relay_settings settings,
                           const connection& nats)
  : impl_(std::make_unique<impl>(std::move(settings), nats)) {
  // nop
}

outbox_relay::~outbox_relay() {
  stop();
}

void outbox_relay::start() {
  std::lock_guard<std::mutex> guard{impl_->lifecycle};
  if (impl_->started || impl_->stopped)
    return;
  impl_->started = true;
  impl_->worker = std::thread{[this] { impl_->run(); }};
}

void outbox_relay::stop() {
  std::lock_guard<std::mutex> guard{impl_->lifecycle};
  if (impl_->stopped)
    return;
  impl_->stopped = true;
  impl_->stopping = true;
  impl_->wake();
  if (impl_->worker.joinable())
    impl_->worker.join();
}

outbox_relay_stats outbox_relay::stats() const {
  outbox_relay_stats s;
  s.published = impl_->published;
  s.duplicates = impl_->duplicates;
  s.failures = impl_->failures;
  s.db_failures = impl_->db_failures;
  s.pending = impl_->pending;
  s.oldest_pending_seconds = impl_->oldest_pending;
  s.database_connected = impl_->db_connected;
  return s;
}

} // namespace gatehouse::nats
