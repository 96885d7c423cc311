#pragma once

// The NATS edge of the internal API: GitLab's /api/v4/internal/* calls as
// NATS request/reply with Protobuf bodies, answered by the very domain
// actors that answer the HTTP edge.
//
// Wire contract (messages/proto/gatehouse/internal/v1/README.md):
// - subject gatehouse.internal.v1.<call>, <call> being the HTTP path after
//   /api/v4/internal/ with '/' replaced by '.'; every replica subscribes in
//   the queue group "gatehouse", so each request is served once;
// - the request body is the call's <Call>Request message; the reply carries
//   `Gatehouse-Status: <HTTP-equivalent status>` and the call's response
//   message, or an Error with GitLab's message text when not 2xx;
// - an optional `Gatehouse-Request-Id` header makes retries idempotent for
//   at least 10 minutes (internal_bridge.hpp).
// No JWT here: NATS authorization decides who may publish to
// gatehouse.internal.>.
//
// Threading: nats.c delivers each subscription's messages on a thread of
// its own; the callback only copies the message into a nats_inbound and
// anon_sends it to the subscription's bridge actor. Replies are published
// from the bridges (nats.c's publish only buffers).

#include "edges/nats/internal_bridge.hpp"
#include "messages/calls.hpp"
#include "messages/interfaces.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

struct __natsConnection;
struct __natsSubscription;
struct __natsMsg;

namespace gatehouse::nats {

/// Settings of the internal edge, fixed at construction.
struct internal_edge_settings {
  /// Subjects are this prefix plus the call name.
  std::string subject_prefix = "gatehouse.internal.v1.";
  /// Every replica subscribes in this queue group.
  std::string queue_group = "gatehouse";
  /// How long one request may take inside the actor system.
  std::chrono::milliseconds request_timeout{10000};
  /// Per-subscription pending limits: beyond them nats.c drops requests
  /// (a slow consumer, logged and counted) rather than queueing work whose
  /// callers have long given up. 20 000 requests is seconds of work.
  int pending_msgs_limit = 20000;
  int pending_bytes_limit = 64 * 1024 * 1024;
  /// How long stop() lets pending requests drain and answers go out.
  std::chrono::milliseconds drain_timeout{5000};
  /// How often slow-consumer drops are looked for.
  std::chrono::milliseconds monitor_interval{2000};
  /// Replies kept in memory per call for retries (bridge_settings).
  std::size_t replay_capacity = 65536;
  /// Queue subscriptions per call, all feeding the call's one bridge: nats.c
  /// delivers each subscription's messages on one thread, so one
  /// subscription serializes a call's requests up to the bridge. 0: one per
  /// core, at most 8.
  int subscriptions_per_call = 0;
};

/// The actors the edge needs.
struct internal_edge_deps {
  caf::actor_system* sys = nullptr;
  domain_actors domains;
  request_store_actor requests;
};

/// The edge: queue subscriptions and one bridge actor per call.
class internal_edge {
public:
  internal_edge(internal_edge_settings settings, internal_edge_deps deps);
  ~internal_edge();

  internal_edge(const internal_edge&) = delete;
  internal_edge& operator=(const internal_edge&) = delete;

  /// Spawns the bridges and subscribes on `nc`, which may still be
  /// connecting (nats.c sends the subscriptions once it is connected, and
  /// again after every reconnect). False with `error` set on failure.
  bool start(__natsConnection* nc, std::string& error);

  /// Drains the subscriptions (pending requests are still answered), waits
  /// for answers in flight, then stops publishing and ends the bridges.
  /// Call before the connection closes.
  void stop();

  /// Prometheus text for /metrics.
  std::string metrics() const;

private:
  /// What a subscription callback may touch: owned by the edge, alive until
  /// the edge is destroyed (after the connection closed).
  struct subscription {
    internal_edge* edge = nullptr;
    call_id call = call_id::allowed;
    caf::actor bridge;
    __natsSubscription* sub = nullptr;
    std::atomic<bool> closed{false};
    std::atomic<bool> completed{false};
    std::int64_t dropped_seen = 0;
  };

  static void on_message(__natsConnection* nc, __natsSubscription* sub,
                         __natsMsg* msg, void* closure);
  static void on_complete(void* closure);
  void publish(const std::string& subject, const std::string& request_id,
               const wire_reply& reply);
  void monitor_loop();

  internal_edge_settings settings_;
  internal_edge_deps deps_;
  std::shared_ptr<edge_stats> stats_;
  std::vector<std::unique_ptr<subscription>> subs_;
  /// Replies go out through this connection until stop() clears it.
  mutable std::shared_mutex publish_mtx_;
  __natsConnection* nc_ = nullptr;
  std::thread monitor_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool started_ = false;
};

} // namespace gatehouse::nats
