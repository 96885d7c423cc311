#pragma once

#include <nats/nats.h>

#include <chrono>
#include <string>

namespace gatehouse::nats {

/// The JetStream stream that carries push events, as every Gatehouse
/// process that may create it must configure it.
struct events_stream_config {
  std::string name = "GATEHOUSE_EVENTS";
  std::string subjects = "gitlab.events.>";
  /// JetStream's duplicate window: a republished event with the same
  /// Nats-Msg-Id inside it is absorbed.
  std::chrono::minutes duplicate_window{10};
  /// Replicas (3 on a NATS cluster for host-loss durability).
  int replicas = 1;
};

/// Creates the stream (file storage) when it does not exist. With
/// `update_existing`, a stream of that name with another configuration is
/// brought to this one (`gatehouse serve` owns it); without, it is left as
/// it is. Returns NATS_OK when the stream exists afterwards; `jerr` holds
/// JetStream's error code otherwise.
natsStatus ensure_events_stream(jsCtx* js, const events_stream_config& cfg,
                                bool update_existing, jsErrCode& jerr);

} // namespace gatehouse::nats
