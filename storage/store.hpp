#pragma once

#include "messages/interfaces.hpp"
#include "storage/pg_session.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace gatehouse::storage {

/// Settings of a store actor, fixed at spawn.
struct store_settings {
  /// libpq connection URL.
  std::string database_url;
  /// Server-side statement_timeout for every query on this connection.
  std::chrono::milliseconds statement_timeout{5000};
};

struct store_state {
  static inline constexpr const char* name = "store";
  store_settings settings;
  /// Opened lazily and dropped on a broken connection, so the next request
  /// reconnects: PostgreSQL may restart under a running Gatehouse.
  pg_session session;
};

/// The store actor. Blocks on libpqxx: the wiring must spawn it detached.
store_actor::behavior_type store(
  store_actor::stateful_pointer<store_state> self, store_settings settings);

} // namespace gatehouse::storage
