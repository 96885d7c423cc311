#pragma once

// Loads the access-control read model (messages/read_model.hpp) from
// PostgreSQL and keeps it fresh through LISTEN/NOTIFY.

#include "messages/interfaces.hpp"
#include "storage/database.hpp"

#include <caf/typed_response_promise.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gatehouse::storage {

/// Reads one consistent snapshot of every read-model table in a single
/// REPEATABLE READ, read-only transaction. Path and username keys are
/// lower-cased; times are unix seconds. Throws pqxx/std exceptions.
///
/// With a `helper` connection, the key tables load on it at the same time,
/// in a transaction that imports the first one's snapshot
/// (pg_export_snapshot): the same rows as one transaction reads, sooner.
/// `as_of`, when given, receives the transaction's pg_snapshot (as text):
/// the change log's rows it does not see came after the load.
snapshot load_snapshot(pqxx::connection& conn,
                       pqxx::connection* helper = nullptr,
                       std::string* as_of = nullptr);

/// Whether a change of this kind (a change notification's "kinds" entry,
/// named after its table) concerns the read model; unknown kinds may.
bool kind_concerns_read_model(std::string_view kind);

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
  /// Read the change log after this long even without a notification
  /// (one lost with a connection), and look for rows to prune as often.
  std::chrono::milliseconds refresh_interval{60000};
  /// How long change-log rows stay after their transaction ended.
  std::chrono::milliseconds change_log_retention{3600000};
  /// First delay before reconnecting after a failure; doubles per failure.
  std::chrono::milliseconds min_backoff{250};
  /// Upper bound of the reconnect delay.
  std::chrono::milliseconds max_backoff{10000};
};

/// A LISTENing connection; defined in the .cpp (it holds libpqxx types).
struct listen_session;

/// A model the loader replaced, kept until nobody else holds it.
struct retired_model {
  snapshot_ptr model;
  /// Replaced by a full load: its pages are worth giving back.
  bool trim = false;
};

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
  std::vector<retired_model> retired;
  /// Who gets every new snapshot.
  std::vector<caf::actor> subscribers;
  /// `get` requests that arrived before the first load.
  std::vector<caf::typed_response_promise<snapshot_ptr>> waiting;
  /// Why the last connect or load failed; empty after a success.
  std::string last_error;
  /// Whether a connect-and-load was tried at least once.
  bool attempted = false;
  /// PostgreSQL's snapshot (pg_snapshot as text) `current` is exact for:
  /// the change log's rows it does not see are the changes still to read.
  std::string as_of;
  /// When the change log was last read (or the model loaded).
  std::chrono::steady_clock::time_point synced;
  /// When the change log was last pruned.
  std::chrono::steady_clock::time_point pruned;
  /// (when, xmin of PostgreSQL's snapshot then): rows of transactions
  /// older than a sample's xmin go once the sample is retention-old.
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>>
    xmin_samples;
  /// Delay before the next reconnect attempt.
  std::chrono::milliseconds backoff{0};
  /// The generation of the one tick in flight.
  std::uint64_t tick_generation = 0;
  /// Successful full loads so far.
  std::uint64_t loads = 0;
  /// Models built from the change log so far.
  std::uint64_t updates = 0;
};

/// The loader actor. Blocks on libpqxx: the wiring must spawn it detached,
/// and send it an exit message at shutdown (its ticks keep it alive).
read_model_loader_actor::behavior_type read_model_loader(
  read_model_loader_actor::stateful_pointer<read_model_loader_state> self,
  read_model_loader_settings settings);

} // namespace gatehouse::storage
