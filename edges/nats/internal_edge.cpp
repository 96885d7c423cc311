#include "edges/nats/internal_edge.hpp"

#include "common/log.hpp"
#include "edges/nats/handles.hpp"
#include "edges/nats/status_text.hpp"
#include "edges/inline_unit.hpp"

#include <caf/all.hpp>

#include <nats/nats.h>

#include <algorithm>

namespace gatehouse::nats {

namespace {

constexpr const char* request_id_header = "Gatehouse-Request-Id";
constexpr const char* status_header = "Gatehouse-Status";

// The execution unit of this nats.c delivery thread (inline_unit.hpp).
inline_unit& delivery_unit(caf::actor_system& sys) {
  thread_local std::unique_ptr<inline_unit> unit;
  thread_local caf::actor_system* owner = nullptr;
  if (!unit || owner != &sys) {
    unit = std::make_unique<inline_unit>(sys);
    owner = &sys;
  }
  return *unit;
}

} // namespace

internal_edge::internal_edge(internal_edge_settings settings,
                             internal_edge_deps deps)
  : settings_(std::move(settings)), deps_(std::move(deps)),
    stats_(std::make_shared<edge_stats>()) {
  // nop
}

internal_edge::~internal_edge() {
  stop();
  for (auto& s : subs_)
    if (s->sub)
      natsSubscription_Destroy(s->sub);
}

bool internal_edge::start(natsConnection* nc, std::string& error) {
  if (!nc || !deps_.sys) {
    error = "nats internal edge: no connection";
    return false;
  }
  {
    std::unique_lock<std::shared_mutex> guard{publish_mtx_};
    nc_ = nc;
  }
  started_ = true;
  auto publish
    = [this](const std::string& subject, const std::string& request_id,
             const wire_reply& reply) {
        this->publish(subject, request_id, reply);
      };
  bridge_deps bdeps{deps_.domains, deps_.requests};
  int per_call = settings_.subscriptions_per_call;
  if (per_call <= 0)
    per_call = std::clamp(static_cast<int>(std::thread::hardware_concurrency()),
                          1, 8);
  for (const auto& spec : call_table) {
    if (!spec.over_nats)
      continue;
    bridge_settings bs;
    bs.call = spec.id;
    bs.request_timeout = settings_.request_timeout;
    bs.replay_capacity = settings_.replay_capacity;
    // One bridge per call, whatever the subscriptions: it keeps the call's
    // replies for retries.
    auto bridge = deps_.sys->spawn(internal_bridge, bs, bdeps, publish, stats_);
    auto subject = settings_.subject_prefix + spec.name;
    for (int i = 0; i < per_call; ++i) {
      auto s = std::make_unique<subscription>();
      s->edge = this;
      s->call = spec.id;
      s->bridge = bridge;
      natsStatus st = natsConnection_QueueSubscribe(
        &s->sub, nc, subject.c_str(), settings_.queue_group.c_str(),
        &internal_edge::on_message, s.get());
      if (st == NATS_OK)
        st = natsSubscription_SetOnCompleteCB(
          s->sub, &internal_edge::on_complete, s.get());
      if (st == NATS_OK)
        st = natsSubscription_SetPendingLimits(
          s->sub, settings_.pending_msgs_limit, settings_.pending_bytes_limit);
      subs_.push_back(std::move(s));
      if (st != NATS_OK) {
        error = "nats subscribe " + subject + ": " + status_text(st);
        return false;
      }
    }
  }
  monitor_ = std::thread{[this] {
    monitor_loop();
  }};
  log::info("nats internal edge subscribed",
            {{"subjects", settings_.subject_prefix + "*"},
             {"queue_group", settings_.queue_group},
             {"calls", nats_call_count()},
             {"subscriptions_per_call", per_call}});
  return true;
}

void internal_edge::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_ || !started_)
      return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (monitor_.joinable())
    monitor_.join();
  // Drain: no new requests reach this replica (the queue group sends them
  // to the others), and the ones nats.c already holds are still answered.
  // A drain ends with a flush to the server, so without a connection it
  // could only wait out drain_timeout (with NATS and PostgreSQL gone, the
  // stop then missed its deadline); nothing could be answered then anyway.
  bool connected = false;
  {
    std::shared_lock<std::shared_mutex> guard{publish_mtx_};
    connected = nc_ && natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
  }
  for (auto& s : subs_) {
    if (!s->sub)
      continue;
    if (!connected) {
      natsSubscription_Unsubscribe(s->sub);
      s->completed = true;
      continue;
    }
    if (natsSubscription_DrainTimeout(
          s->sub, static_cast<int64_t>(settings_.drain_timeout.count()))
          != NATS_OK
        && natsSubscription_Unsubscribe(s->sub) != NATS_OK)
      s->completed = true; // closed already: nothing more will arrive
  }
  auto deadline = std::chrono::steady_clock::now() + settings_.drain_timeout;
  auto all_completed = [this] {
    for (auto& s : subs_)
      if (s->sub && !s->completed)
        return false;
    return true;
  };
  while (!all_completed() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (auto& s : subs_)
    s->closed = true;
  // Requests in the bridges end within the request timeout (each has one).
  auto answered_by = std::chrono::steady_clock::now()
    + settings_.request_timeout + std::chrono::milliseconds(500);
  while (stats_->in_flight.load() > 0
         && std::chrono::steady_clock::now() < answered_by)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (auto left = stats_->in_flight.load(); left > 0)
    log::warn("nats internal edge stopped with requests unanswered",
              {{"requests", left}});
  {
    std::unique_lock<std::shared_mutex> guard{publish_mtx_};
    nc_ = nullptr;
  }
  for (auto& s : subs_)
    caf::anon_send_exit(s->bridge, caf::exit_reason::user_shutdown);
  log::info("nats internal edge stopped");
}

std::string internal_edge::metrics() const {
  return stats_->render();
}

// nats.c's delivery thread of one subscription: copy, hand over to the
// bridge, and run the bridge here if that woke it, with the actors it wakes
// in turn (the domain actor, then the bridge again with the answer): no
// scheduler worker is woken for a request (inline_unit.hpp).
void internal_edge::on_message(natsConnection*, natsSubscription*, natsMsg* raw,
                               void* closure) {
  msg_ptr msg{raw};
  auto* s = static_cast<subscription*>(closure);
  nats_inbound in;
  if (const char* subject = natsMsg_GetSubject(msg.get()))
    in.subject = subject;
  if (const char* reply = natsMsg_GetReply(msg.get()))
    in.reply = reply;
  if (const char* data = natsMsg_GetData(msg.get()))
    in.payload.assign(
      data, static_cast<std::size_t>(natsMsg_GetDataLength(msg.get())));
  const char* id = nullptr;
  if (natsMsgHeader_Get(msg.get(), request_id_header, &id) == NATS_OK && id)
    in.request_id = id;
  msg.reset();
  if (s->closed.load())
    return;
  ++s->edge->stats_->in_flight;
  auto& unit = delivery_unit(*s->edge->deps_.sys);
  caf::actor_cast<caf::abstract_actor*>(s->bridge)
    ->enqueue(caf::make_mailbox_element(nullptr, caf::make_message_id(), {},
                                        std::move(in)),
              &unit);
  unit.run_kept();
}

void internal_edge::on_complete(void* closure) {
  static_cast<subscription*>(closure)->completed = true;
}

void internal_edge::publish(const std::string& subject,
                            const std::string& request_id,
                            const wire_reply& reply) {
  std::shared_lock<std::shared_mutex> guard{publish_mtx_};
  if (!nc_) {
    stats_->publish_failed();
    return;
  }
  msg_ptr msg;
  natsStatus st
    = create(msg, natsMsg_Create, subject.c_str(), nullptr, reply.body.data(),
             static_cast<int>(reply.body.size()));
  if (st == NATS_OK)
    st = natsMsgHeader_Set(msg.get(), status_header,
                           std::to_string(reply.status).c_str());
  if (st == NATS_OK && !request_id.empty())
    st = natsMsgHeader_Set(msg.get(), request_id_header, request_id.c_str());
  if (st == NATS_OK)
    st = natsConnection_PublishMsg(nc_, msg.get());
  msg.reset();
  if (st != NATS_OK) {
    // The caller times out and retries (with the same id, if it follows
    // the retry contract).
    stats_->publish_failed();
    log::warn("nats reply not published", {{"error", status_text(st)}});
  }
}

// Slow consumers: nats.c drops what exceeds a subscription's pending limits
// and reports it only through an asynchronous error; the drop counters are
// read here instead, logged and exported.
void internal_edge::monitor_loop() {
  std::unique_lock<std::mutex> lock{mtx_};
  while (!cv_.wait_for(lock, settings_.monitor_interval,
                       [this] { return stopping_; })) {
    for (auto& s : subs_) {
      int64_t dropped = 0;
      if (!s->sub || natsSubscription_GetDropped(s->sub, &dropped) != NATS_OK)
        continue;
      if (dropped > s->dropped_seen) {
        int msgs = 0;
        int bytes = 0;
        natsSubscription_GetPending(s->sub, &msgs, &bytes);
        stats_->dropped(s->call, dropped - s->dropped_seen);
        log::warn("nats slow consumer: requests dropped",
                  {{"call", call_name(s->call)},
                   {"dropped", dropped - s->dropped_seen},
                   {"pending", msgs},
                   {"pending_limit", settings_.pending_msgs_limit}});
        s->dropped_seen = dropped;
      }
    }
  }
}

} // namespace gatehouse::nats
