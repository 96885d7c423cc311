#pragma once

// The agent registry: answers the GitLab agent server (KAS, contract
// other-callers §2). Token checks and lookups are decided from the
// read-model snapshot, so agent_info costs no PostgreSQL round trip and a
// revoked token stops working on every replica with the next snapshot.
// Reports and configurations go through the agent store, with their domain
// events in the same transaction. Never blocks; every store request has a
// deadline. Its interface is agent_registry_actor (messages/interfaces.hpp).

#include "actors/agents/usage_board.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

namespace gatehouse {

struct agent_registry_settings {
  /// Unix seconds now (token expiry, event times); tests inject their own.
  /// Empty: the system clock.
  std::function<unix_time()> now;
  /// How long a write may wait on the store; past it the answer is 503.
  std::chrono::milliseconds store_timeout{5000};
  /// A token's last_used_at is written at most this often (per replica).
  std::chrono::seconds touch_interval{60};
  /// How often the usage totals /metrics shows are read again.
  std::chrono::seconds totals_interval{15};
};

struct agent_registry_state {
  static inline constexpr const char* name = "agent-registry";
  agent_registry_settings settings;
  snapshot_ptr snap;
  agent_store_actor store;
  std::shared_ptr<agents::usage_board> board;
  /// When each token's use was last written. Bounded: cleared when large
  /// (a token then gets one extra write).
  std::unordered_map<std::int64_t, std::chrono::steady_clock::time_point>
    touched;
};

/// The actor. `board` (may be null) receives the usage totals.
agent_registry_actor::behavior_type agent_registry(
  agent_registry_actor::stateful_pointer<agent_registry_state> self,
  agent_registry_settings settings, read_model_loader_actor loader,
  agent_store_actor store, std::shared_ptr<agents::usage_board> board);

} // namespace gatehouse
