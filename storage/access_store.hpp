#pragma once

// The writes of the access-control endpoints: key usage, "project moved"
// messages, the LFS signing key, 2FA recovery codes and personal access
// tokens. Only a new token sends a NOTIFY (kind personal_access_tokens,
// which the access read model ignores); key usage never does.

#include "messages/interfaces.hpp"
#include "storage/pg_session.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace gatehouse::storage {

/// Settings of an access store actor, fixed at spawn.
struct access_store_settings {
  /// libpq connection URL.
  std::string database_url;
  /// Server-side statement_timeout for every query on this connection.
  std::chrono::milliseconds statement_timeout{5000};
};

struct access_store_state {
  static inline constexpr const char* name = "access-store";
  access_store_settings settings;
  /// Opened lazily and dropped on a broken connection, so the next request
  /// reconnects.
  pg_session session;
  /// Signing secrets read so far, by name. They are created once by
  /// `gatehouse migrate` and never change.
  std::map<std::string, std::string> signing_keys;
};

/// The access store actor. Blocks on libpqxx: the wiring must spawn it
/// detached (one connection per instance; several may run side by side).
access_store_actor::behavior_type access_store(
  access_store_actor::stateful_pointer<access_store_state> self,
  access_store_settings settings);

} // namespace gatehouse::storage
