#pragma once

// The outbox relay: publishes the rows of the outbox to JetStream, in seq
// order per project, and marks each published only on its PubAck. Every
// replica runs one; the outbox port (messages/outbox.hpp, implemented in
// storage/outbox_store.hpp with a session-level advisory lock per project)
// makes sure that only one of them relays a project at a time.

#include "messages/outbox.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace gatehouse::nats {

class connection;

/// Settings of the relay, fixed at construction.
struct outbox_relay_settings {
  /// The stream every publish must land in (jsPubOptions.ExpectStream).
  std::string stream = "GATEHOUSE_EVENTS";
  /// Look for unpublished rows at least this often without a NOTIFY.
  std::chrono::milliseconds poll_interval{1000};
  /// How long one publish waits for its PubAck.
  std::chrono::milliseconds publish_timeout{2000};
  /// Retry delays after failures: doubled per failure, reset on success.
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  /// Rows published per project before the relay looks at other projects.
  int batch_size = 100;
  /// Projects locked and relayed in one pass.
  int max_projects = 64;
  /// Passes start at least this far apart. Under a steady stream of
  /// commits a pass would otherwise start after each one, paying its
  /// round trips (locks, read, mark, release, the PubAck wave) for a row
  /// or two; waiting a little lets the rows of many commits share a pass.
  /// It adds at most this much to an event's way to the stream.
  std::chrono::milliseconds min_pass_interval{20};
};

/// What the relay has done since it started, for metrics and readiness.
struct outbox_relay_stats {
  /// Rows this relay published and marked.
  std::uint64_t published = 0;
  /// Of those, PubAcks that said JetStream already had the message.
  std::uint64_t duplicates = 0;
  /// Failed publish attempts (including "NATS not connected").
  std::uint64_t failures = 0;
  /// Failed outbox (database) round trips (the relay reconnects after each).
  std::uint64_t db_failures = 0;
  /// Unpublished rows of every project at the last count (once a second);
  /// -1 before the first count.
  std::int64_t pending = -1;
  /// Age of the oldest unpublished row at the last count; 0 when none.
  double oldest_pending_seconds = 0;
  /// Whether the relay's outbox session (its PostgreSQL connection) is up.
  bool database_connected = false;
};

/// The relay. Runs on a thread of its own with an outbox session of its own
/// (woken by each commit, and looking every poll_interval anyway) and
/// publishes on the process's NATS connection when that is connected and
/// its stream is ready; until then it waits, recording the attempts.
///
/// Guarantees: a row is marked published only after JetStream acknowledged
/// it (a duplicate ack counts: JetStream had it); a marked row is never
/// published again; per project, rows go out in seq order, and a failure
/// stops that project's queue until it succeeds. A crash between a publish
/// and its mark republishes the row with the same Nats-Msg-Id, which
/// JetStream absorbs inside its duplicate window.
class outbox_relay {
public:
  /// `outbox` is the relay's own session, used from the relay's thread only;
  /// `nats` must outlive the relay (stop the relay first).
  outbox_relay(outbox_relay_settings settings,
               std::unique_ptr<outbox_port> outbox, const connection& nats);
  ~outbox_relay();

  outbox_relay(const outbox_relay&) = delete;
  outbox_relay& operator=(const outbox_relay&) = delete;

  /// Starts the relay's thread; a second call does nothing.
  void start();

  /// Finishes the publish in flight, marks what was acknowledged, releases
  /// the locks and joins the thread. Idempotent.
  void stop();

  /// Events were committed in this process: look at the outbox now (as on
  /// a NOTIFY, without its round trip through PostgreSQL). Thread-safe,
  /// never blocks; cheap enough to call after every commit.
  void committed();

  /// A snapshot of the counters; thread-safe.
  outbox_relay_stats stats() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace gatehouse::nats
