#include "edges/nats/outbox_relay.hpp"

#include "common/log.hpp"
#include "edges/nats/connection.hpp"
#include "edges/nats/handles.hpp"
#include "edges/nats/status_text.hpp"
#include "messages/errors.hpp"

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace gatehouse::nats {

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

enum class publish_outcome {
  /// JetStream stored it (or had it already).
  ok,
  /// JetStream refused this message; NATS itself works.
  message_failed,
  /// NATS or the stream is unavailable (timeout, disconnect, no stream).
  nats_failed,
};

enum class pass_result {
  /// Nothing to publish, or nothing published.
  idle,
  /// Rows published; look again at once.
  worked,
  /// NATS is unavailable; back off.
  failed,
  /// An outbox call failed (see impl::outbox_error); reopen and back off.
  outbox_failed,
};

/// The retry schedule of a project whose head row JetStream refused.
struct project_retry {
  clock_type::time_point next;
  milliseconds backoff{0};
};

} // namespace

struct outbox_relay::impl {
  impl(outbox_relay_settings s, std::unique_ptr<outbox_port> o,
       const connection& n)
    : settings(std::move(s)), outbox(std::move(o)), nats(n) {
    wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }

  ~impl() {
    if (wake_fd >= 0)
      ::close(wake_fd);
  }

  outbox_relay_settings settings;
  /// Used from the worker thread only, except its interrupt().
  const std::unique_ptr<outbox_port> outbox;
  const connection& nats;
  std::mutex lifecycle;
  bool started = false;
  bool stopped = false;
  std::thread worker;
  std::atomic<bool> stopping{false};
  int wake_fd = -1;

  // -- worker thread only ---------------------------------------------------
  jetstream_ptr js;
  natsConnection* js_conn = nullptr;
  std::map<std::int64_t, project_retry> retries;
  clock_type::time_point next_count{};
  clock_type::time_point next_purge{};
  bool nats_down = false;
  bool db_down = false;
  /// Why the last outbox call failed (pass_result::outbox_failed).
  caf::error outbox_error;

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
    outbox->interrupt();
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

  // -- the outbox -----------------------------------------------------------

  pass_result outbox_failed(caf::error err) {
    outbox_error = std::move(err);
    return pass_result::outbox_failed;
  }

  caf::error open_outbox() {
    if (auto err = outbox->open())
      return err;
    db_connected = true;
    if (db_down) {
      db_down = false;
      log::info("outbox relay: reconnected to PostgreSQL");
    }
    return {};
  }

  /// Closes the session, which also releases every project lock it held.
  void close_outbox() {
    db_connected = false;
    outbox->close();
  }

  /// Counts the backlog once a second, purges old published rows once a
  /// minute.
  caf::error maintain() {
    auto now = clock_type::now();
    if (now >= next_count) {
      next_count = now + std::chrono::seconds(1);
      auto backlog = outbox->backlog();
      if (!backlog)
        return std::move(backlog.error());
      pending = backlog->pending;
      oldest_pending = backlog->oldest_seconds;
    }
    if (now >= next_purge) {
      next_purge = now + std::chrono::minutes(1);
      if (auto err = outbox->purge_published())
        return err;
    }
    return {};
  }

  // -- NATS -----------------------------------------------------------------

  /// The JetStream context of the current connection when it is connected
  /// and the stream is ready; null otherwise. Its PubAcks arrive in
  /// on_ack().
  jsCtx* jetstream() {
    auto* nc = nats.raw();
    if (!nc || natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED
        || !nats.stream_ready())
      return nullptr;
    if (js && js_conn == nc)
      return js.get();
    js.reset();
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = static_cast<int64_t>(settings.publish_timeout.count());
    jo.PublishAsync.AckHandler = &impl::on_ack;
    jo.PublishAsync.AckHandlerClosure = this;
    if (create(js, natsConnection_JetStream, nc, &jo) != NATS_OK) {
      js.reset();
      return nullptr;
    }
    js_conn = nc;
    return js.get();
  }

  /// What became of one publish.
  struct publish_result {
    publish_outcome outcome = publish_outcome::nats_failed;
    std::string error;
    bool duplicate = false;
  };

  /// The publishes of the current wave, by event id (Nats-Msg-Id): empty
  /// until its PubAck or failure arrives. Guarded by acks_mutex: on_ack runs
  /// on a nats.c thread.
  std::mutex acks_mutex;
  std::unordered_map<std::string, std::optional<publish_result>> awaited;

  /// nats.c's callback for the PubAck (or failure) of every asynchronous
  /// publish.
  static void on_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae,
                     void* closure) {
    auto* self = static_cast<impl*>(closure);
    const char* id_header = nullptr;
    std::string id;
    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id_header) == NATS_OK
        && id_header != nullptr)
      id = id_header;
    natsMsg_Destroy(msg);
    publish_result r;
    if (pa != nullptr) {
      if (pa->Stream && self->settings.stream != pa->Stream) {
        // Another stream captured the subject: not where consumers look.
        r.error = std::string{"acknowledged by stream "} + pa->Stream
          + " instead of " + self->settings.stream;
      } else {
        r.outcome = publish_outcome::ok;
        r.duplicate = pa->Duplicate;
      }
    } else if (pae != nullptr) {
      r.error = status_text(pae->Err, pae->ErrCode);
      // The server answered for this message: NATS works, only this
      // project waits.
      if (pae->ErrCode != 0 && pae->ErrCode != JSStreamNotFoundErr)
        r.outcome = publish_outcome::message_failed;
    }
    std::lock_guard<std::mutex> guard{self->acks_mutex};
    auto it = self->awaited.find(id);
    if (it != self->awaited.end() && !it->second)
      it->second = std::move(r);
  }

  /// Sends `row` without waiting for its PubAck. A failure to send is its
  /// result at once; otherwise on_ack records it.
  std::optional<publish_result> send(jsCtx* ctx, const outbox_row& row) {
    msg_ptr msg;
    natsStatus s = create(msg, natsMsg_Create, row.subject.c_str(), nullptr,
                          row.body.data(), static_cast<int>(row.body.size()));
    if (s == NATS_OK)
      s = natsMsgHeader_Set(msg.get(), "Nats-Msg-Id", row.event_id.c_str());
    if (s == NATS_OK)
      s = natsMsgHeader_Set(msg.get(), "Content-Type", "application/json");
    if (s == NATS_OK)
      s = natsMsgHeader_Set(msg.get(), "Gatehouse-Event", row.kind.c_str());
    if (s == NATS_OK && row.bulk)
      s = natsMsgHeader_Set(msg.get(), "Gatehouse-Bulk", "true");
    if (s == NATS_OK && row.commits_unavailable)
      s = natsMsgHeader_Set(msg.get(), "Gatehouse-Commits", "unavailable");
    if (s != NATS_OK)
      return publish_result{publish_outcome::message_failed,
                            "building the message: " + status_text(s)};
    {
      std::lock_guard<std::mutex> guard{acks_mutex};
      awaited[row.event_id].reset();
    }
    auto* raw = msg.release();
    s = js_PublishMsgAsync(ctx, &raw, nullptr);
    // On success the library owns the message and has cleared `raw`.
    natsMsg_Destroy(raw);
    if (s == NATS_OK)
      return std::nullopt;
    {
      std::lock_guard<std::mutex> guard{acks_mutex};
      awaited.erase(row.event_id);
    }
    // The client refused its size: NATS works, only this project waits.
    return publish_result{s == NATS_MAX_PAYLOAD
                            ? publish_outcome::message_failed
                            : publish_outcome::nats_failed,
                          status_text(s)};
  }

  /// Waits until every publish sent on `ctx` has its PubAck or failure, at
  /// most publish_timeout; those still without one are dropped (they time
  /// out). Afterwards no on_ack runs for any of them.
  void await_acks(jsCtx* ctx) {
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MaxWait = static_cast<int64_t>(settings.publish_timeout.count());
    if (js_PublishAsyncComplete(ctx, &opts) == NATS_OK)
      return;
    natsMsgList dropped{};
    if (js_PublishAsyncGetPendingList(&dropped, ctx) == NATS_OK)
      natsMsgList_Destroy(&dropped);
    // A callback already under way still counts as pending: let it end.
    js_PublishAsyncComplete(ctx, &opts);
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
        limit = std::min(limit,
                         std::chrono::duration_cast<milliseconds>(r.next - now)
                           + milliseconds(1));
    return limit;
  }

  /// One locked project's rows in a pass, and how far they got.
  struct project_queue {
    const outbox_row* rows = nullptr;
    std::size_t size = 0;
    /// Rows acknowledged: the first `next`.
    std::size_t next = 0;
    /// The row that failed and why; the rest of the project waits.
    std::optional<std::pair<std::int64_t, std::string>> failed;
    bool first_refusal = false;
  };

  /// Publishes the locked projects' rows (`rows`: by project, each in seq
  /// order) in waves: the next row of every project that has one, sent
  /// together, then all their PubAcks awaited together. A project stops at
  /// its first failure, so no row goes out before an earlier row of its
  /// project; a NATS failure or stop() ends the pass, leaving the rest for
  /// a later one. Then marks every acknowledged row in one update and
  /// records the failures. Returns the NATS failure, if any.
  caf::expected<std::optional<std::string>>
  relay_rows(jsCtx* ctx, const std::vector<outbox_row>& rows) {
    std::vector<project_queue> queues;
    for (std::size_t i = 0; i < rows.size();) {
      auto end = i;
      while (end < rows.size() && rows[end].project_id == rows[i].project_id)
        ++end;
      project_queue q;
      q.rows = rows.data() + i;
      q.size = end - i;
      queues.push_back(std::move(q));
      i = end;
    }
    std::optional<std::string> nats_failure;
    std::vector<project_queue*> wave;
    std::vector<std::optional<publish_result>> sent;
    while (!nats_failure && !stopping) {
      wave.clear();
      for (auto& q : queues)
        if (!q.failed && q.next < q.size)
          wave.push_back(&q);
      if (wave.empty())
        break;
      sent.clear();
      for (auto* q : wave)
        sent.push_back(send(ctx, q->rows[q->next]));
      await_acks(ctx);
      std::lock_guard<std::mutex> guard{acks_mutex};
      for (std::size_t k = 0; k < wave.size(); ++k) {
        auto& q = *wave[k];
        const auto& row = q.rows[q.next];
        auto result = std::move(sent[k]);
        if (!result) {
          auto it = awaited.find(row.event_id);
          if (it != awaited.end() && it->second)
            result = std::move(it->second);
          else
            result = publish_result{publish_outcome::nats_failed,
                                    "no PubAck within the publish timeout"};
        }
        if (result->outcome == publish_outcome::ok) {
          if (result->duplicate)
            ++duplicates;
          ++q.next;
          continue;
        }
        q.failed.emplace(row.seq, result->error);
        if (result->outcome == publish_outcome::nats_failed)
          nats_failure = result->error;
        else
          q.first_refusal = backoff_project(row.project_id);
      }
      awaited.clear();
    }

    std::vector<std::int64_t> done;
    for (const auto& q : queues)
      for (std::size_t i = 0; i < q.next; ++i)
        done.push_back(q.rows[i].seq);
    if (!done.empty()) {
      // Only acknowledged rows.
      if (auto err = outbox->mark_published(done))
        return err;
      published += done.size();
    }
    for (const auto& q : queues) {
      auto project = q.rows[0].project_id;
      if (q.failed) {
        // Every attempt is in the row (attempts, last_error); the log names
        // a refused event once, until its project moves again.
        if (auto err
            = outbox->record_failure(q.failed->first, q.failed->second))
          return err;
        ++failures;
        if (q.first_refusal)
          log::warn("outbox relay: JetStream refused an event; its project "
                    "waits and retries",
                    {{"project_id", project},
                     {"seq", q.failed->first},
                     {"error", q.failed->second}});
      } else if (q.next > 0 && retries.erase(project) > 0) {
        log::info("outbox relay: project publishing again",
                  {{"project_id", project}});
      }
    }
    return nats_failure;
  }

  pass_result pass() {
    // Projects with unpublished rows, except those waiting for a retry, and
    // those another replica relays.
    auto locked
      = outbox->lock_projects(settings.max_projects, waiting_projects());
    if (!locked)
      return outbox_failed(std::move(locked.error()));
    if (locked->empty())
      return pass_result::idle;

    auto* ctx = jetstream();
    if (!ctx) {
      // Each project's head row records the attempt.
      std::string error = "NATS not connected or stream not ready";
      if (auto err = outbox->record_head_failures(*locked, error))
        return outbox_failed(std::move(err));
      failures += locked->size();
      if (auto err = outbox->release(*locked))
        return outbox_failed(std::move(err));
      note_nats_down(error);
      return pass_result::failed;
    }

    auto rows = outbox->unpublished(*locked, settings.batch_size);
    if (!rows)
      return outbox_failed(std::move(rows.error()));
    auto published_before = published.load();
    auto relayed = relay_rows(ctx, *rows);
    if (!relayed)
      return outbox_failed(std::move(relayed.error()));
    bool any_published = published.load() > published_before;
    const auto& nats_failure = *relayed;
    // After the marks are committed, so the next holder sees them.
    if (auto err = outbox->release(*locked))
      return outbox_failed(std::move(err));
    if (nats_failure) {
      note_nats_down(*nats_failure);
      return pass_result::failed;
    }
    note_nats_up();
    return any_published ? pass_result::worked : pass_result::idle;
  }

  /// Opens the outbox when needed, keeps it, and relays one pass.
  pass_result step() {
    if (auto err = open_outbox())
      return outbox_failed(std::move(err));
    if (auto err = maintain())
      return outbox_failed(std::move(err));
    return pass();
  }

  // -- the thread -----------------------------------------------------------

  void run() {
    auto backoff = settings.min_backoff;
    auto grow = [&] {
      backoff = std::min(backoff * 2, settings.max_backoff);
    };
    clock_type::time_point last_pass{};
    while (!stopping) {
      auto due = last_pass + settings.min_pass_interval;
      if (auto now = clock_type::now(); now < due)
        sleep_for(std::chrono::duration_cast<milliseconds>(due - now)
                  + milliseconds(1));
      if (stopping)
        break;
      last_pass = clock_type::now();
      auto result = step();
      if (result == pass_result::idle) {
        backoff = settings.min_backoff;
        if (stopping)
          break;
        auto err
          = outbox->wait_for_work(until_next_retry(settings.poll_interval));
        if (!err)
          continue;
        result = outbox_failed(std::move(err));
      }
      if (result == pass_result::worked) {
        backoff = settings.min_backoff;
        continue;
      }
      if (result == pass_result::outbox_failed) {
        ++db_failures;
        if (!db_down) {
          db_down = true;
          log::warn("outbox relay: PostgreSQL unavailable; retrying",
                    {{"error", render(outbox_error)}});
        }
        // Releases every lock this relay held.
        close_outbox();
      }
      sleep_for(backoff);
      grow();
    }
    close_outbox();
    js.reset();
  }
};

outbox_relay::outbox_relay(outbox_relay_settings settings,
                           std::unique_ptr<outbox_port> outbox,
                           const connection& nats)
  : impl_(
    std::make_unique<impl>(std::move(settings), std::move(outbox), nats)) {
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
  impl_->worker = std::thread{[this] {
    impl_->run();
  }};
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

void outbox_relay::committed() {
  // Cuts short the idle wait only, not a backoff after a failure.
  impl_->outbox->interrupt();
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
