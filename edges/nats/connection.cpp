#include "edges/nats/connection.hpp"

#include "common/log.hpp"
#include "edges/nats/auth.hpp"
#include "edges/nats/handles.hpp"
#include "edges/nats/status_text.hpp"
#include "edges/nats/stream.hpp"

#include <caf/all.hpp>

#include <nats/nats.h>

#include <cstring>

namespace gatehouse::nats {

namespace {

// Errors the server reports on an open connection: a permissions violation
// (see the README's nats-server configuration), credentials refused on a
// reconnect, a slow consumer.
void log_async_error(natsConnection* nc, natsSubscription* sub, natsStatus s,
                     void*) {
  // nats.c hands this callback the error of its own event in the thread's
  // last error; the connection's last error may already be a later one
  // (fourteen subscription refusals were once all logged with the text of
  // a refused publish).
  const char* last = nats_GetLastError(nullptr);
  if (!last || !*last)
    natsConnection_GetLastError(nc, &last);
  nlohmann::json fields = {{"error", natsStatus_GetText(s)},
                           {"detail", std::string{last ? last : ""}}};
  if (const char* subject = sub ? natsSubscription_GetSubject(sub) : nullptr)
    fields["subject"] = subject;
  log::warn("nats error", fields);
}

} // namespace

connection::connection(nats_settings settings, system_status_actor status)
  : settings_(std::move(settings)), status_(std::move(status)) {
  // nop
}

connection::~connection() {
  stop();
}

bool connection::start(std::string& error) {
  natsStatus s = natsOptions_Create(&opts_);
  auto check = [&](natsStatus st, const char* what) {
    if (st == NATS_OK)
      return true;
    error = std::string{what} + ": " + status_text(st);
    return false;
  };
  if (!check(s, "nats options")
      || !check(natsOptions_SetServers(opts_, nullptr, 0), "nats servers"))
    return false;
  // natsOptions_SetURL accepts a comma-separated list of servers.
  if (!check(natsOptions_SetURL(opts_, settings_.url.c_str()),
             "GATEHOUSE_NATS_URL")
      || !check(natsOptions_SetName(opts_, "gatehouse"), "nats name")
      || !check(natsOptions_SetTimeout(opts_, 2000), "nats timeout")
      // Replies of the internal edge go out at once: nats.c's flusher
      // otherwise waits 1 ms per batch, and request/reply latency doubled.
      || !check(natsOptions_SetSendAsap(opts_, true), "nats send asap")
      || !check(natsOptions_SetMaxReconnect(opts_, -1), "nats reconnect")
      || !check(natsOptions_SetReconnectWait(opts_, 500), "nats reconnect")
      || !check(natsOptions_SetRetryOnFailedConnect(
                  opts_, true, &connection::on_connected, this),
                "nats retry")
      || !check(natsOptions_SetDisconnectedCB(
                  opts_, &connection::on_disconnected, this),
                "nats callbacks")
      || !check(
        natsOptions_SetReconnectedCB(opts_, &connection::on_connected, this),
        "nats callbacks")
      || !check(natsOptions_SetClosedCB(opts_, &connection::on_closed, this),
                "nats callbacks")
      || !check(natsOptions_SetErrorHandler(opts_, &log_async_error, nullptr),
                "nats callbacks"))
    return false;
  if (!apply_auth(opts_, settings_.creds_file, settings_.nkey_seed_file, error))
    return false;
  worker_ = std::thread{[this] {
    stream_loop();
  }};
  report("disconnected");
  natsConnection* nc = nullptr;
  s = natsConnection_Connect(&nc, opts_);
  conn_ = nc;
  if (s == NATS_OK) {
    on_connected(nc, this);
  } else if (s != NATS_NOT_YET_CONNECTED) {
    error = "GATEHOUSE_NATS_URL: " + status_text(s);
    return false;
  } else if (credentials_refused(nc, settings_.creds_file,
                                 settings_.nkey_seed_file, error)) {
    return false;
  } else {
    log::warn("nats not reachable yet; retrying in the background",
              {{"error", status_text(s)}});
  }
  return true;
}

void connection::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_)
      return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable())
    worker_.join();
  if (auto* nc = conn_.exchange(nullptr)) {
    natsConnection_Close(nc);
    // nats.c runs the closed callback later, on its own thread, and
    // natsConnection_Destroy does not wait for it: wait here, or it uses this
    // object after its destructor (ASan, outbox relay test). Bounded, should
    // nats.c ever skip the callback.
    {
      std::unique_lock<std::mutex> lock{mtx_};
      cv_.wait_for(lock, std::chrono::seconds(5), [this] { return closed_; });
    }
    natsConnection_Destroy(nc);
  }
  if (opts_) {
    natsOptions_Destroy(opts_);
    opts_ = nullptr;
  }
}

bool connection::stream_ready() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return stream_ready_;
}

// nats.c calls these on its own threads: only note the change and hand work
// to the worker thread.
void connection::on_connected(natsConnection*, void* self) {
  auto* c = static_cast<connection*>(self);
  c->report("connected");
  {
    std::lock_guard<std::mutex> guard{c->mtx_};
    c->need_stream_ = true;
    c->stream_ready_ = false;
  }
  c->cv_.notify_all();
}

void connection::on_disconnected(natsConnection*, void* self) {
  auto* c = static_cast<connection*>(self);
  {
    std::lock_guard<std::mutex> guard{c->mtx_};
    c->stream_ready_ = false;
  }
  c->report("disconnected");
}

void connection::on_closed(natsConnection* nc, void* self) {
  auto* c = static_cast<connection*>(self);
  bool stopping = false;
  {
    std::lock_guard<std::mutex> guard{c->mtx_};
    stopping = c->stopping_;
  }
  // Closed without stop(): nats.c gave up for good, as it does when the
  // server refuses the credentials. Say why.
  const char* last = nullptr;
  if (!stopping && nc && natsConnection_GetLastError(nc, &last) != NATS_OK
      && last && *last)
    log::error("nats connection closed", {{"error", std::string{last}}});
  c->report("closed");
  // The last touch of *c: stop() may destroy it once the lock is released.
  std::lock_guard<std::mutex> guard{c->mtx_};
  c->closed_ = true;
  c->cv_.notify_all();
}

void connection::report(const char* state) {
  log::info("nats connection", {{"state", state}});
  caf::anon_send(status_, atom::nats_state::value, std::string{state});
}

void connection::stream_loop() {
  std::unique_lock<std::mutex> lock{mtx_};
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || need_stream_; });
    if (stopping_)
      return;
    need_stream_ = false;
    lock.unlock();
    std::string error;
    bool ok = conn_ != nullptr && ensure_stream(error);
    lock.lock();
    if (ok) {
      stream_ready_ = true;
      log::info("jetstream stream ready", {{"stream", settings_.stream}});
    } else {
      log::warn("jetstream stream not ready; retrying",
                {{"stream", settings_.stream}, {"error", error}});
      // Retry while connected; a later connect also triggers a retry.
      if (cv_.wait_for(lock, std::chrono::seconds(2),
                       [this] { return stopping_; }))
        return;
      auto* nc = conn_.load();
      if (!nc || natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED)
        need_stream_ = true;
    }
  }
}

bool connection::ensure_stream(std::string& error) {
  jetstream_ptr js;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 5000;
  natsStatus s = create(js, natsConnection_JetStream, conn_.load(), &jo);
  if (s != NATS_OK) {
    error = status_text(s);
    return false;
  }
  events_stream_config stream;
  stream.name = settings_.stream;
  stream.subjects = settings_.stream_subjects;
  stream.duplicate_window = settings_.duplicate_window;
  stream.replicas = settings_.replicas;
  // The stream may exist with another configuration (an older Gatehouse, or
  // an operator's change): serve brings it to ours.
  jsErrCode jerr = static_cast<jsErrCode>(0);
  s = ensure_events_stream(js.get(), stream, true, jerr);
  if (s != NATS_OK) {
    error = status_text(s, jerr);
    return false;
  }
  return true;
}

} // namespace gatehouse::nats
