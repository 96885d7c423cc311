#pragma once

// The engine of a reader of push events inside `gatehouse serve` (the agent
// registry's push feed, the indexer's feed): a durable JetStream pull
// consumer (pull_consumer.hpp) whose every message becomes one request to a
// domain actor, acknowledged only after the actor answered.
//
// Every replica runs one per reader; they share the durable consumer, so
// each event is handled by one of them. A failure or a timeout asks
// JetStream to redeliver the event later (NakWithDelay, doubled per
// delivery), forever. A message that is not a usable event (no
// Nats-Msg-Id, a body the reader's parser refuses, or larger than max_body)
// is terminated and logged once: it would fail the same way on every
// delivery. What a message means and whom to ask is the reader's part: an
// event_parser.

#include "edges/nats/stream.hpp"

#include <nats/nats.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace caf {
class actor_system;
class event_based_actor;
} // namespace caf

namespace gatehouse::nats {

class connection;

/// Settings of a feed, fixed at construction.
struct event_feed_settings {
  /// The event stream; created with this configuration when missing (an
  /// existing one is left as `gatehouse serve` configured it).
  events_stream_config stream;
  /// The durable consumer every replica shares.
  std::string durable;
  /// Its description, shown by `nats consumer info`.
  std::string description;
  std::string filter_subject = "gitlab.events.push.>";
  /// Messages per Fetch: with max_body, bounds what the feed holds.
  int batch = 16;
  /// Larger bodies are terminated as unusable. A push event lists at most
  /// 20 commits; NATS's default max_payload is 1 MiB.
  std::size_t max_body = 8 * 1024 * 1024;
  /// How long one Fetch waits for messages; bounds how long stop() waits.
  std::chrono::milliseconds fetch_wait{250};
  /// How long a JetStream API call (stream, consumer, ack) may take; also
  /// bounds stop().
  std::chrono::milliseconds api_timeout{500};
  /// How long the actor may take to answer one event.
  std::chrono::milliseconds request_timeout{10000};
  /// Redelivery of an unacknowledged event; raised to twice the
  /// request_timeout when below. The rest of a batch is kept alive
  /// (InProgress) while earlier events of it are handled.
  std::chrono::milliseconds ack_wait{30000};
  /// Redelivery delay after a failure: doubled per delivery, capped.
  std::chrono::milliseconds retry_delay{1000};
  std::chrono::milliseconds max_retry_delay{60000};
  /// Pause after NATS failures (not connected, no stream, a failed fetch):
  /// doubled per failure, capped, reset on success.
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  /// How often an idle feed checks that its durable still exists (it is
  /// re-created when the server lost it).
  std::chrono::milliseconds consumer_check_interval{30000};
};

/// How a feed names itself and its actor in the log ("push feed", "the
/// agent registry").
struct event_feed_names {
  std::string feed;
  std::string actor;
};

/// The counters every feed keeps, for /metrics.
struct event_feed_stats {
  /// Events the actor handled and the feed acknowledged.
  std::uint64_t handled = 0;
  /// Events handed back for redelivery: the actor failed or timed out.
  std::uint64_t retried = 0;
  /// Unusable messages terminated.
  std::uint64_t terminated = 0;
  /// Failed NATS round trips (setup, fetch, ack).
  std::uint64_t nats_failures = 0;
  /// Whether the feed is bound to its durable consumer now.
  bool consuming = false;
};

/// The actor's answer to one event, shared between the feed's thread and
/// the short-lived actor that receives it: the actor may answer after the
/// feed gave up on it (stop, deadline), so neither owns it alone. The first
/// outcome wins; later ones (a late answer) are dropped.
class event_reply {
public:
  enum class state { waiting, answered, failed, cancelled };

  /// The event is handled. `count` runs on the feed's thread when the feed
  /// takes the answer (adds the answer's figures to the reader's stats).
  void answered(std::function<void()> count);

  void failed(std::string error);

  void cancel();

  /// Waits until an outcome or `deadline`; `waiting` means past it. `count`
  /// and `error` are copied out (a late answer may still write the slot).
  state wait_until(std::chrono::steady_clock::time_point deadline,
                   std::function<void()>& count, std::string& error);

private:
  void finish(state s, std::function<void()> count, std::string error);

  std::mutex mtx_;
  std::condition_variable cv_;
  state state_ = state::waiting;
  std::function<void()> count_;
  std::string error_;
};

/// Sends one event's request from `self`, a short-lived actor the feed
/// spawned, with `timeout`, and reports the outcome to `reply`.
using event_request
  = std::function<void(caf::event_based_actor* self,
                       std::chrono::milliseconds timeout,
                       const std::shared_ptr<event_reply>& reply)>;

/// One message as a parser sees it.
struct event_message {
  /// Nats-Msg-Id ("" when missing): the parser refuses an unusable one.
  std::string_view event_id;
  /// At most max_body bytes.
  std::string_view body;
  /// For other headers (message_header); valid during the call.
  natsMsg* raw = nullptr;
};

/// Turns a message into its request; an empty function with `why` when the
/// message is not a usable event.
using event_parser
  = std::function<event_request(const event_message& msg, std::string& why)>;

/// A header's value; nullopt when the message has none.
std::optional<std::string> message_header(natsMsg* m, const char* name);

/// The feed. Runs on a thread of its own (nats.c calls block; never on a
/// CAF scheduler thread) and uses the process's NATS connection, waiting
/// while it is not connected. After a NATS restart it resumes on the same
/// subscription, or re-creates the durable (and the stream) when the server
/// lost them.
class event_feed {
public:
  /// `nats` must outlive the feed (stop the feed first). `system` spawns
  /// one short-lived actor per event for the actor's answer, so that a stop
  /// never waits for it.
  event_feed(event_feed_settings settings, event_feed_names names,
             caf::actor_system& system, const connection& nats,
             event_parser parse);
  ~event_feed();

  event_feed(const event_feed&) = delete;
  event_feed& operator=(const event_feed&) = delete;

  /// Starts the feed's thread; a second call does nothing.
  void start();

  /// Hands the events it holds back for redelivery (Nak, no delay: another
  /// replica may take them at once), abandons an answer in flight and joins
  /// the thread, within about a second. Idempotent.
  void stop();

  /// A snapshot of the counters; thread-safe.
  event_feed_stats stats() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace gatehouse::nats
