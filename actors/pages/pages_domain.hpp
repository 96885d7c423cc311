#pragma once

// The pages domain actor: answers GitLab Pages' calls (contract
// other-callers §3). Per lookup it asks the pages store for the settings,
// then for the rows of the host's keys, and applies the rules of
// actors/pages/rules.hpp. Never blocks; every store request has a deadline.
// Its interface is pages_actor (messages/interfaces.hpp).

#include "messages/interfaces.hpp"

#include <chrono>
#include <cstddef>
#include <vector>

namespace gatehouse {

/// Settings of the pages actor, fixed at spawn.
struct pages_settings {
  /// How long one lookup may wait on the store, both reads together; past
  /// it the answer is 503 (Pages retries, and keeps serving what it cached).
  std::chrono::milliseconds store_timeout{5000};
};

struct pages_state {
  static inline constexpr const char* name = "pages";
  pages_settings settings;
  /// Each store owns one PostgreSQL connection; lookups take turns, both
  /// reads of one lookup on the same store.
  std::vector<pages_store_actor> stores;
  std::size_t next_store = 0;
};

/// The actor; `stores` (at least one) read the rows.
pages_actor::behavior_type pages_domain(
  pages_actor::stateful_pointer<pages_state> self, pages_settings settings,
  std::vector<pages_store_actor> stores);

} // namespace gatehouse
