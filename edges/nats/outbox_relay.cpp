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
  /// and the stream is ready; null otherwise.
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
    if (create(js, natsConnection_JetStream, nc, &jo) != NATS_OK) {
      js.reset();
      return nullptr;
    }
    js_conn = nc;
    return js.get();
  }

  publish_outcome publish(jsCtx* ctx, const outbox_row& row,
                          std::string& error) {
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
    if (s != NATS_OK) {
      error = "building the message: " + status_text(s);
      return publish_outcome::message_failed;
    }
    jsPubOptions opts;
    jsPubOptions_Init(&opts);
    opts.MaxWait = static_cast<int64_t>(settings.publish_timeout.count());
    pub_ack_ptr ack;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = create(ack, js_PublishMsg, ctx, msg.get(), &opts, &jerr);
    msg.reset();
    if (s == NATS_OK) {
      if (ack && ack->Stream && settings.stream != ack->Stream) {
        // Another stream captured the subject: not where consumers look.
        error = std::string{"acknowledged by stream "} + ack->Stream
          + " instead of " + settings.stream;
        return publish_outcome::nats_failed;
      }
      if (ack && ack->Duplicate)
        ++duplicates;
      return publish_outcome::ok;
    }
    error = status_text(s, jerr);
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

  /// What publishing one project's rows came to.
  struct project_outcome {
    /// Rows published and marked.
    std::size_t published = 0;
    /// NATS itself failed (every project waits); the error.
    std::optional<std::string> nats_failure;
  };

  /// Publishes `rows` (one project's, in seq order) until the first
  /// failure, marks what JetStream acknowledged and records the failure.
  caf::expected<project_outcome> relay_project(jsCtx* ctx,
                                               const outbox_row* rows,
                                               std::size_t n) {
    auto project = rows[0].project_id;
    project_outcome result;
    std::vector<std::int64_t> done;
    std::optional<std::pair<std::int64_t, std::string>> failed;
    bool first_refusal = false;
    for (std::size_t i = 0; i < n && !stopping; ++i) {
      std::string error;
      auto outcome = publish(ctx, rows[i], error);
      if (outcome == publish_outcome::ok) {
        done.push_back(rows[i].seq);
        continue;
      }
      failed.emplace(rows[i].seq, error);
      if (outcome == publish_outcome::nats_failed)
        result.nats_failure = error;
      else
        first_refusal = backoff_project(project);
      break; // the rest of this project waits: order
    }
    if (!done.empty()) {
      // Only acknowledged rows.
      if (auto err = outbox->mark_published(done))
        return err;
      published += done.size();
      result.published = done.size();
    }
    if (failed) {
      // Every attempt is in the row (attempts, last_error); the log names a
      // refused event once, until its project moves again.
      if (auto err = outbox->record_failure(failed->first, failed->second))
        return err;
      ++failures;
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
    return result;
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
    bool any_published = false;
    std::optional<std::string> nats_failure;
    for (std::size_t i = 0; i < rows->size();) {
      auto end = i;
      while (end < rows->size()
             && (*rows)[end].project_id == (*rows)[i].project_id)
        ++end;
      // After a NATS failure or stop(), the rest is left for a later pass,
      // in order.
      if (!nats_failure && !stopping) {
        auto outcome = relay_project(ctx, rows->data() + i, end - i);
        if (!outcome)
          return outbox_failed(std::move(outcome.error()));
        any_published = any_published || outcome->published > 0;
        nats_failure = outcome->nats_failure;
      }
      i = end;
    }
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
    while (!stopping) {
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
