#pragma once

// The bridge actor of one internal call over NATS: takes the requests the
// subscription callback copied out of nats.c (nats_inbound), decodes them
// with the call's codec (internal_codec.hpp) into the request type of the
// call table (messages/calls.hpp), asks the call's domain actor with a
// finite timeout, encodes the answer and publishes the reply through an
// injected sink. It always replies. Event-based: nothing here blocks, and
// nats.c's threads only ever anon_send to it.
//
// Retries (Gatehouse-Request-Id): the bridge keeps its recent replies in
// memory (10 minutes, bounded) and answers a repeated id from there. For
// pre_receive and post_receive, which change shared state, it also asks the
// request store (PostgreSQL, shared by every replica) before deciding and
// records its reply there afterwards, and passes the id on to the push
// actor, whose store applies a push once per id in the same transaction as
// its effects (storage/push_store.hpp). A retry that reaches another
// replica therefore changes nothing twice and gets the same answer.

#include "edges/nats/internal_codec.hpp"
#include "messages/calls.hpp"
#include "messages/interfaces.hpp"

#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/stateful_actor.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace gatehouse::nats {

// -- calls
// ------------------------------------------------------------------------

/// The call's name: the HTTP path after /api/v4/internal/ with '/'
/// replaced by '.' ("allowed", "shellhorse.git_audit_event").
inline const char* call_name(call_id call) {
  return spec_of(call).name;
}

// -- messages
// -----------------------------------------------------------------------

/// One request as the subscription callback copied it out of nats.c.
struct nats_inbound {
  std::string subject;
  /// The reply subject; empty for a publish that expects no answer.
  std::string reply;
  std::string payload;
  /// The Gatehouse-Request-Id header; empty when absent.
  std::string request_id;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, nats_inbound& x) {
  return f(caf::meta::type_name("gatehouse.nats_inbound"), x.subject, x.reply,
           x.payload, x.request_id);
}

/// Publishes a reply: (reply subject, request id, reply). Thread-safe;
/// never blocks for long (a publish only buffers).
using publish_fn = std::function<void(const std::string&, const std::string&,
                                      const wire_reply&)>;

// -- statistics
// -------------------------------------------------------------------

/// What the NATS edge has answered, for /metrics. Shared by the bridges and
/// the edge; thread-safe.
class edge_stats {
public:
  /// One request answered: its reply is handed to the publisher.
  void answered(call_id call, int status, bool replayed);
  /// Messages nats.c dropped for a slow consumer (pending limits).
  void dropped(call_id call, std::int64_t n);
  /// A reply (already counted by answered()) that could not be published.
  void publish_failed();

  /// Requests received and not answered yet.
  std::atomic<std::int64_t> in_flight{0};

  /// Prometheus text: gatehouse_nats_requests_total{call,status},
  /// gatehouse_nats_replays_total{call}, gatehouse_nats_dropped_total{call},
  /// gatehouse_nats_publish_failures_total.
  std::string render() const;

private:
  mutable std::mutex mtx_;
  std::map<std::pair<std::string, int>, std::uint64_t> answered_;
  std::map<std::string, std::uint64_t> replays_;
  std::map<std::string, std::uint64_t> dropped_;
  std::uint64_t publish_failures_ = 0;
};

// -- the bridge
// ---------------------------------------------------------------------

/// The actors a bridge talks to.
struct bridge_deps {
  /// The actors that answer the calls.
  domain_actors domains;
  /// Recorded replies of state-changing calls (PostgreSQL).
  request_store_actor requests;
};

/// Settings of one bridge, fixed at spawn.
struct bridge_settings {
  call_id call = call_id::allowed;
  /// How long one request may take inside the actor system.
  std::chrono::milliseconds request_timeout{10000};
  /// How long a reply is kept for retries with the same id.
  std::chrono::milliseconds replay_window{std::chrono::minutes(10)};
  /// At most this many replies are kept in memory; the oldest go first.
  std::size_t replay_capacity = 65536;
};

/// Where a request's reply goes and what it answers.
struct request_origin {
  std::string reply;
  std::string request_id;
  std::chrono::steady_clock::time_point start;
};

/// A request whose domain actor has not answered yet.
struct awaited_answer {
  request_origin origin;
  /// When the request's time is up (the actor clock's).
  std::chrono::steady_clock::time_point deadline;
};

/// A reply kept for retries.
struct kept_reply {
  wire_reply reply;
  std::chrono::steady_clock::time_point at;
};

struct bridge_state {
  static inline constexpr const char* name = "nats-bridge";
  bridge_settings settings;
  bridge_deps deps;
  publish_fn publish;
  std::shared_ptr<edge_stats> stats;
  /// Recent replies by request id.
  std::unordered_map<std::string, kept_reply> kept;
  /// Replies published so far (an exception that escapes before its reply
  /// is answered with a 500, never left to the caller's timeout).
  std::uint64_t replies = 0;
  /// Request ids in the order they were kept (expiry and eviction).
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>>
    kept_order;
  /// Requests awaiting their domain actor, by arrival: with one timeout
  /// for all, also by deadline.
  std::map<std::uint64_t, awaited_answer> awaited;
  std::uint64_t next_awaited = 0;
  /// A tick is scheduled for the earliest deadline.
  bool deadline_armed = false;
};

using bridge_actor_ptr = caf::stateful_actor<bridge_state>*;

/// The bridge of `settings.call`. Handles nats_inbound.
caf::behavior internal_bridge(bridge_actor_ptr self, bridge_settings settings,
                              bridge_deps deps, publish_fn publish,
                              std::shared_ptr<edge_stats> stats);

} // namespace gatehouse::nats
