#pragma once

// The webhook consumer: a durable JetStream pull consumer on the push
// events, delivering each event to its project's hooks.
//
// Per message: the project's enabled hooks are read from PostgreSQL; a hook
// with a stored outcome for the event is skipped (a redelivery); otherwise
// the outcome (delivered, failed, skipped_disabled, skipped_bulk,
// skipped_not_subscribed) is stored, with the auto-disable transition, before
// the next hook; the message is acknowledged (AckSync) once all are stored.
// Delivery is therefore at least once per (event, hook): a crash between a
// receiver's 2xx and the commit of its outcome repeats that delivery, with
// the same Idempotency-Key. A stop lets the HTTP attempt in flight finish,
// stores its outcome if it settled the delivery, and leaves the rest of the
// message unacknowledged (Nak) for a later run. `gatehouse webhooks` exits at
// the latest 4 s after the stop signal, whatever this still waits for (NATS,
// PostgreSQL, a receiver): an outcome's transaction then never commits, the
// message is never acknowledged, and JetStream delivers it again. A new
// durable consumer starts at the beginning of the stream (DeliverAll), so
// events published before its first start are delivered too.

#include "webhooks/delivery.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace gatehouse::webhooks {

/// A stop request shared by the signal thread and the consumer.
class stop_flag {
public:
  void request() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stopped_ = true;
    }
    cv_.notify_all();
  }

  bool requested() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return stopped_;
  }

  /// Waits `d`; false when a stop was requested (at once or meanwhile).
  bool pause(std::chrono::milliseconds d) const {
    std::unique_lock<std::mutex> lock{mtx_};
    return !cv_.wait_for(lock, d, [this] { return stopped_; });
  }

private:
  mutable std::mutex mtx_;
  mutable std::condition_variable cv_;
  bool stopped_ = false;
};

struct consumer_settings {
  std::string nats_url = "nats://127.0.0.1:4222";
  std::string nats_creds_file;
  std::string nats_nkey_seed_file;
  std::string database_url;
  /// Same stream configuration as `gatehouse serve` (edges/nats).
  std::string stream = "GATEHOUSE_EVENTS";
  std::string stream_subjects = "gitlab.events.>";
  std::chrono::minutes duplicate_window{10};
  int replicas = 1;
  std::string durable = "gatehouse-webhooks";
  /// Messages per Fetch.
  int batch = 16;
  delivery_policy policy;
  std::chrono::milliseconds backoff_base{60000};
  /// See webhooks/heartbeat.hpp; empty for none.
  std::string heartbeat_file;
};

/// The kind of a message of the event stream for webhooks: its
/// Gatehouse-Event header, else the <kind> of gitlab.events.<kind>.<id>, when
/// that is push or tag_push; nullopt for every other message. Other kinds
/// share the stream (the agent registry's gitlab.events.agent_configuration,
/// agent_connection and agent_config_push): the consumer acknowledges them
/// without a word.
std::optional<event_kind> webhook_event_kind(
  std::string_view subject, const std::optional<std::string>& kind_header);

/// Runs until `stop` is requested: connects to NATS (retrying forever),
/// ensures the stream and the durable consumer, and handles messages one at
/// a time. PostgreSQL or NATS being away only delays it. Returns the exit
/// code: 0 after a stop, 2 for unusable settings.
int run_consumer(const consumer_settings& settings, const stop_flag& stop);

} // namespace gatehouse::webhooks
