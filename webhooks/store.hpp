#pragma once

// The webhook consumer's PostgreSQL side: the project's hooks with their
// auto-disable state, the settings a delivery needs, and the delivery
// outcomes (gatehouse_state.webhook_deliveries / webhook_states, see
// storage/schema/004_webhooks.sql). Not thread-safe: one per thread.

#include "storage/database.hpp"
#include "webhooks/delivery.hpp"
#include "webhooks/hook_state.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::webhooks {

enum class outcome_kind {
  delivered,
  failed,
  skipped_disabled,
  skipped_bulk,
  skipped_not_subscribed
};

const char* to_string(outcome_kind kind);

struct outcome {
  outcome_kind kind = outcome_kind::delivered;
  /// The last HTTP status; 0 is stored as NULL.
  int status = 0;
  int attempts = 0;
  /// Empty is stored as NULL.
  std::string error;
};

struct hook_row {
  hook_target target;
  bool push_events = true;
  bool tag_push_events = false;
  hook_state state;
  /// An outcome for (event, hook) is stored already: a redelivery.
  bool recorded = false;
};

struct event_context {
  instance_settings settings;
  /// The project's enabled hooks, by id.
  std::vector<hook_row> hooks;
  /// PostgreSQL's clock, milliseconds since the epoch.
  std::int64_t now_ms = 0;
};

class store {
public:
  explicit store(std::string database_url);
  ~store();

  store(const store&) = delete;
  store& operator=(const store&) = delete;

  /// Everything needed to handle event `event_id` (a UUID) of
  /// `project_id`. Connects on first use; throws on any database error
  /// (call disconnect() and retry later).
  event_context load(std::int64_t project_id, const std::string& event_id);

  /// Stores `result` for (event, hook) and, for delivered/failed, applies
  /// the auto-disable transition under a row lock, in one transaction.
  /// Returns the hook's state afterwards; nullopt when an outcome was
  /// stored already (or the hook was deleted meanwhile), in which case
  /// nothing changes. Throws on database errors.
  std::optional<hook_state> record(const std::string& event_id,
                                   std::int64_t hook_id, const outcome& result,
                                   std::chrono::milliseconds backoff_base);

  /// Whether the consumer could work: connects when needed and reads
  /// nothing from the outcome table (exists, readable). Throws on database
  /// errors.
  void probe();

  /// Drops the connection (after an error); the next call reconnects.
  void disconnect();

private:
  pqxx::connection& conn();

  std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
};

} // namespace gatehouse::webhooks
