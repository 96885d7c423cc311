#pragma once

// The replies the NATS edge gave to requests carrying a Gatehouse-Request-Id
// (gatehouse_state.requests, storage/schema/005_requests.sql), shared by
// every replica, so that a retry reaching another replica gets the same
// answer. The rows of pre_receive and post_receive are created by the push
// store in the transaction that applies them (storage/push_store.hpp); this
// actor reads the recorded replies, records new ones, and purges rows older
// than the retry window.

#include "messages/interfaces.hpp"
#include "storage/pg_session.hpp"

#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace gatehouse {

namespace storage {

/// Settings of the request store, fixed at spawn.
struct request_store_settings {
  /// libpq connection URL.
  std::string database_url;
  /// Server-side statement_timeout of every query.
  std::chrono::milliseconds statement_timeout{5000};
  /// How long a recorded reply is kept (the retry window, at least 10 min).
  std::chrono::seconds retention{600};
  /// How often old rows are purged.
  std::chrono::seconds purge_interval{60};
};

struct request_store_state {
  static inline constexpr const char* name = "request-store";
  request_store_settings settings;
  pg_session session;
};

request_store_actor::behavior_type request_store(
  request_store_actor::stateful_pointer<request_store_state> self,
  request_store_settings settings);

} // namespace storage

} // namespace gatehouse
