#pragma once

// Loads the access-control read model (messages/read_model.hpp) from
// PostgreSQL and keeps it fresh through LISTEN/NOTIFY.

#include "messages/interfaces.hpp"
#include "storage/database.hpp"

#include <caf/typed_response_promise.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::storage {

/// Reads one consistent snapshot of every read-model table in a single
/// REPEATABLE READ, read-only transaction. Path and username keys are
/// lower-cased; times are unix seconds. Throws pqxx/std exceptions.
///
/// With a `helper` connection, the key tables load on it at the same time,
/// in a transaction that imports the first one's snapshot
/// (pg_export_snapshot): the same rows as one transaction reads, sooner.
snapshot load_snapshot(pqxx::connection& conn,
                       pqxx::connection* helper = nullptr);

/// The channel the seed loader (and any other writer of read-model tables)
/// notifies after a commit.
inline constexpr const char* change_channel = "gatehouse_changes";

/// Settings of the read-model loader, fixed at spawn.
struct read_model_loader_settings {
  /// libpq connection URL.
  std::string database_url;
  /// Server-side statement_timeout; a load runs one query per table.
  std::chrono::milliseconds statement_timeout{30000};
  /// How often to look for notifications (a non-blocking read in between
  /// mailbox messages, so `get` and `subscribe` never wait on the socket).
  std::chrono::milliseconds poll_interval{100};
  /// Look for writes without a notification after this long: the safety
  /// net for writers that forget to NOTIFY. Reloads when PostgreSQL's
  /// statistics show a write to a read-model table since the last load,
  /// and every tenth time regardless.
  std::chrono::milliseconds refresh_interval{60000};
  /// First delay before reconnecting after a failure; doubles per failure.
  std::chrono::milliseconds min_backoff{250};
  /// Upper bound of the reconnect delay.
  std::chrono::milliseconds max_backoff{10000};
};

/// A LISTENing connection; defined in the .cpp (it holds libpqxx types).
struct listen_session;

struct read_model_loader_state {
  static inline constexpr const char* name = "read-model-loader";
  read_model_loader_settings settings;
  /// Null while disconnected. Dropped on any failure and rebuilt by a later
  /// tick; the rebuild reloads, since notifications may have been missed.
  std::shared_ptr<listen_session> session;
  /// The newest snapshot; null before the first successful load.
  snapshot_ptr current;
  /// Snapshots it replaced, until every other holder has let go; then
  /// the loader frees them and gives their memory back to the system.
  std::vector<snapshot_ptr> retired;
  /// Who gets every new snapshot.
  std::vector<caf::actor> subscribers;
  /// `get` requests that arrived before the first load.
  std::vector<caf::typed_response_promise<snapshot_ptr>> waiting;
  /// Why the last connect or load failed; empty after a success.
  std::string last_error;
  /// Whether a connect-and-load was tried at least once.
  bool attempted = false;
  /// When `current` was loaded.
  std::chrono::steady_clock::time_point loaded;
  /// Delay before the next reconnect attempt.
  std::chrono::milliseconds backoff{0};
  /// The generation of the one tick in flight.
  std::uint64_t tick_generation = 0;
  /// Successful loads so far.
  std::uint64_t loads = 0;
  /// PostgreSQL's record of writes to the read-model tables, read right
  /// before the last load; the refresh skips the reload while it holds,
  /// nine times in a row at most.
  std::optional<std::string> writes_at_load;
  int refreshes_skipped = 0;
};

/// The loader actor. Blocks on libpqxx: the wiring must spawn it detached,
/// and send it an exit message at shutdown (its ticks keep it alive).
read_model_loader_actor::behavior_type read_model_loader(
  read_model_loader_actor::stateful_pointer<read_model_loader_state> self,
  read_model_loader_settings settings);

} // namespace gatehouse::storage
