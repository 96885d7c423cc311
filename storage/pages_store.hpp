#pragma once

// The reads of GitLab Pages' lookups: settings, projects with their pages
// fields and deployments, namespaces, custom domains, by key. Reads only,
// decides nothing (actors/pages/rules.hpp does).

#include "messages/interfaces.hpp"
#include "storage/pg_session.hpp"

#include <chrono>
#include <string>

namespace gatehouse::storage {

/// Settings of a pages store actor, fixed at spawn.
struct pages_store_settings {
  /// libpq connection URL.
  std::string database_url;
  /// Server-side statement_timeout for every query on this connection.
  std::chrono::milliseconds statement_timeout{5000};
};

struct pages_store_state {
  static inline constexpr const char* name = "pages-store";
  /// Opened lazily and dropped on a broken connection, so the next request
  /// reconnects.
  pg_session session;
};

/// The pages store actor. Blocks on libpqxx: the wiring must spawn it
/// detached.
pages_store_actor::behavior_type pages_store(
  pages_store_actor::stateful_pointer<pages_store_state> self,
  pages_store_settings settings);

} // namespace gatehouse::storage
