#pragma once

// The indexer's feed: a durable JetStream pull consumer on the branch push
// events (gitlab.events.push.>) that hands each event to the INDEXER as
// indexer::pushed_ref, so that a push becomes a Zoekt index task and an
// Elasticsearch index request (issue 13). Tags are not read: Zoekt and the
// Elasticsearch indexer index the default branch.
//
// Built on event_feed, like the agent registry's push feed: every replica
// runs one and they share the durable; an event is acknowledged only after
// the INDEXER answered pushed_ref_done (its tasks and requests are durable
// then, and the event id makes a repeat harmless); a failure or a timeout
// redelivers it later (NakWithDelay, doubled per delivery), forever; a
// message that is not a usable push event is terminated and logged once.
//
// Wiring (app/serve.cpp), after the NATS connection started and the
// indexer was spawned:
//
//   nats::index_feed_settings ifs;
//   ifs.stream.name = nats_cfg.stream;           // the serve's stream config
//   ifs.stream.subjects = nats_cfg.stream_subjects;
//   ifs.stream.duplicate_window = nats_cfg.duplicate_window;
//   ifs.stream.replicas = nats_cfg.replicas;
//   ifs.request_timeout = request_timeout;
//   nats::index_feed index_feed{ifs, system, indexer, nats_connection};
//   index_feed.start();
//   ...                                   // metrics: index_feed.stats()
//   index_feed.stop();                    // before the connection stops

#include "edges/nats/event_feed.hpp"
#include "messages/indexer.hpp"
#include "messages/interfaces.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace caf {
class actor_system;
} // namespace caf

namespace gatehouse::nats {

class connection;

/// Settings of the feed, fixed at construction; see event_feed_settings.
struct index_feed_settings : event_feed_settings {
  index_feed_settings() {
    durable = "gatehouse-indexer";
    description = "gatehouse indexer: push events to index (Zoekt, "
                  "Elasticsearch)";
    // Branch pushes only.
    filter_subject = "gitlab.events.push.>";
  }
};

/// What the feed has done since it started, for /metrics.
struct index_feed_stats {
  /// Events the INDEXER handled and the feed acknowledged.
  std::uint64_t handled = 0;
  /// Of those, Zoekt tasks created (pushed_ref_done::zoekt_tasks).
  std::uint64_t zoekt_tasks = 0;
  /// Of those, Elasticsearch index requests written
  /// (pushed_ref_done::elastic_requests).
  std::uint64_t elastic_requests = 0;
  /// Events handed back for redelivery: the INDEXER failed or timed out.
  std::uint64_t retried = 0;
  /// Unusable messages terminated.
  std::uint64_t terminated = 0;
  /// Failed NATS round trips (setup, fetch, ack).
  std::uint64_t nats_failures = 0;
  /// Whether the feed is bound to its durable consumer now.
  bool consuming = false;
};

/// The feed. Runs on a thread of its own (nats.c calls block) and uses the
/// process's NATS connection, waiting while it is not connected; after a
/// NATS restart it resumes, or re-creates the durable (and the stream) when
/// the server lost them.
class index_feed {
public:
  /// `indexer` must be valid; `nats` must outlive the feed (stop the feed
  /// first). `system` spawns one short-lived actor per event for the
  /// INDEXER's answer, so that a stop never waits for it.
  index_feed(index_feed_settings settings, caf::actor_system& system,
             indexer_actor indexer, const connection& nats);
  ~index_feed();

  index_feed(const index_feed&) = delete;
  index_feed& operator=(const index_feed&) = delete;

  /// Starts the feed's thread; a second call does nothing.
  void start();

  /// Hands the events it holds back for redelivery, abandons an answer in
  /// flight and joins the thread, within about a second. Idempotent.
  void stop();

  /// A snapshot of the counters; thread-safe.
  index_feed_stats stats() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// The header that carries an event's correlation id, when one does (the
/// id the HTTP edge answers as X-Request-Id). The outbox relay sets none
/// yet; the INDEXER then gets "".
constexpr const char* correlation_header = "X-Request-Id";

/// A push event (messages/push_event.schema.json) as the INDEXER wants it:
/// `event_id` (Nats-Msg-Id), project_id, ref, before, after, and
/// `correlation_id` as given. nullopt with `why` when it is not such an
/// event: no event id (or one longer than 64 characters), a body that is
/// not a JSON object, a missing or mistyped field, a ref outside
/// refs/heads/. Exposed for tests.
std::optional<indexer::pushed_ref>
parse_pushed_ref(std::string_view event_id, std::string_view body,
                 std::string_view correlation_id, std::string& why);

} // namespace gatehouse::nats
