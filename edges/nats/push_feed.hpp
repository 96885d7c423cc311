#pragma once

// The agent registry's push feed: a durable JetStream pull consumer on the
// branch push events (gitlab.events.push.>) that hands each event to the
// agent registry as agents::pushed_paths, so that a push touching an
// agent's .gitlab/agents/<name>/config.yaml becomes a notice for KAS-side
// consumers.
//
// Every replica runs one; they share the durable consumer, so each event is
// handled by one of them. An event is acknowledged only after the registry
// answered pushed_paths_done (its notices are durable then); a failure or a
// timeout asks JetStream to redeliver it later (NakWithDelay, doubled per
// delivery), forever. A message that is not a usable push event (no
// Nats-Msg-Id, a body that is not the push event JSON, or larger than
// max_body) is terminated and logged once: it would fail the same way on
// every delivery.
//
// Wiring (app/serve.cpp), after the NATS connection started and the
// registry was spawned:
//
//   nats::push_feed_settings fs;
//   fs.stream.name = nats_cfg.stream;            // the serve's stream config
//   fs.stream.subjects = nats_cfg.stream_subjects;
//   fs.stream.duplicate_window = nats_cfg.duplicate_window;
//   fs.stream.replicas = nats_cfg.replicas;
//   fs.request_timeout = request_timeout;
//   nats::push_feed feed{fs, system, registry, nats_connection};
//   feed.start();
//   ...                                   // metrics: feed.stats()
//   feed.stop();                          // before the connection stops

#include "edges/nats/stream.hpp"
#include "messages/agents.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <cstddef>
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

/// Settings of the feed, fixed at construction.
struct push_feed_settings {
  /// The event stream; created with this configuration when missing (an
  /// existing one is left as `gatehouse serve` configured it).
  events_stream_config stream;
  /// The durable consumer every replica shares.
  std::string durable = "gatehouse-agent-registry";
  /// Branch pushes only: tags never carry agent configurations.
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
  /// How long the registry may take to answer one event.
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

/// What the feed has done since it started, for /metrics.
struct push_feed_stats {
  /// Events the registry handled and the feed acknowledged.
  std::uint64_t handled = 0;
  /// Of those, notices the registry reported (pushed_paths_done::notices).
  std::uint64_t notices = 0;
  /// Events handed back for redelivery: the registry failed or timed out.
  std::uint64_t retried = 0;
  /// Unusable messages terminated.
  std::uint64_t terminated = 0;
  /// Failed NATS round trips (setup, fetch, ack).
  std::uint64_t nats_failures = 0;
  /// Whether the feed is bound to its durable consumer now.
  bool consuming = false;
};

/// The feed. Runs on a thread of its own (nats.c calls block; never on a
/// CAF scheduler thread) and uses the process's NATS connection, waiting
/// while it is not connected. After a NATS restart it resumes on the same
/// subscription, or re-creates the durable (and the stream) when the server
/// lost them.
class push_feed {
public:
  /// `registry` must be valid; `nats` must outlive the feed (stop the feed
  /// first). `system` spawns one short-lived actor per event for the
  /// registry's answer, so that a stop never waits for it.
  push_feed(push_feed_settings settings, caf::actor_system& system,
            agent_registry_actor registry, const connection& nats);
  ~push_feed();

  push_feed(const push_feed&) = delete;
  push_feed& operator=(const push_feed&) = delete;

  /// Starts the feed's thread; a second call does nothing.
  void start();

  /// Hands the events it holds back for redelivery (Nak, no delay: another
  /// replica may take them at once), abandons a registry answer in flight
  /// and joins the thread, within about a second. Idempotent.
  void stop();

  /// A snapshot of the counters; thread-safe.
  push_feed_stats stats() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// The body of a push event (messages/push_event.schema.json) as the
/// registry wants it: ref, before, after, project_id, the union of the
/// commits' added, modified and removed paths (sorted, each once), and
/// complete=false when total_commits_count exceeds the listed commits or
/// `commits_unavailable` (header Gatehouse-Commits: unavailable). nullopt
/// with `why` when the body is not such an event. Exposed for tests.
std::optional<agents::pushed_paths>
parse_pushed_paths(std::string_view event_id, std::string_view body,
                   bool commits_unavailable, std::string& why);

} // namespace gatehouse::nats
