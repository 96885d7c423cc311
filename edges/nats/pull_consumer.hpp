#pragma once

// A durable JetStream pull consumer on the event stream, as every Gatehouse
// reader of push events runs one (the webhook consumer, `gatehouse
// webhooks`; the agent registry's push feed in `gatehouse serve`): the
// stream ensured the way its readers may (created when missing, never
// changed), the durable added or brought to the reader's configuration,
// a pull subscription bound to it, and a check that it still exists.
//
// The subscription is bound to a consumer the reader created itself, so
// destroying it (never Unsubscribe) leaves the durable in place for the
// other replicas and the next start (see toolchain.md, nats.c).

#include "edges/nats/handles.hpp"
#include "edges/nats/stream.hpp"

#include <nats/nats.h>

#include <chrono>
#include <string>

namespace gatehouse::nats {

/// The durable consumer of one reader.
struct durable_consumer_config {
  std::string durable;
  std::string description;
  /// One subject filter (nats-server 2.9 has no lists).
  std::string filter_subject;
  /// Redelivery after this long without an ack (or InProgress).
  std::chrono::milliseconds ack_wait{30000};
  /// Most messages delivered and not yet acknowledged, across replicas;
  /// 0 keeps the server's default.
  int max_ack_pending = 0;
};

/// Ensures `stream` (created with that configuration when missing; an
/// existing one is left as it is: `gatehouse serve` owns it), the durable
/// consumer (added; updated when it exists with another configuration; used
/// as it is, with a warning, when the update is refused), and binds a pull
/// subscription to it in `sub`. False with `error` otherwise (`sub` empty).
bool subscribe_durable(jsCtx* js, const events_stream_config& stream,
                       const durable_consumer_config& consumer,
                       subscription_ptr& sub, std::string& error);

/// Whether a durable consumer is still there.
enum class durable_state {
  exists,
  /// The consumer or its stream is gone (deleted, or a server that lost
  /// its store): subscribe again.
  gone,
  /// NATS did not answer; a kept subscription resumes after a reconnect.
  unknown,
};

/// Asks the server about `durable` on `stream`; `error` says why when gone.
durable_state check_durable(jsCtx* js, const std::string& stream,
                            const std::string& durable, std::string& error);

/// A recurring problem (NATS away, PostgreSQL away, a consumer gone) is
/// logged when it starts, when its text changes and every 30 s, not on every
/// retry; its end once. Used from one thread.
class problem_log {
public:
  explicit problem_log(const char* what) : what_(what) {}

  void report(const std::string& error);

  void resolved(const char* message);

private:
  const char* what_;
  std::string last_;
  std::chrono::steady_clock::time_point logged_{};
  bool active_ = false;
};

} // namespace gatehouse::nats
