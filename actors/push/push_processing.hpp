#pragma once

// The push-processing domain actor: counts pushes in flight (pre_receive) and
// turns each accepted push into durable push domain events (post_receive):
// commit facts from a git actor, the event bodies, then one transaction that
// decrements the counter, takes the moved message and writes the events to
// the outbox. The answer leaves only after that commit. Its interface is
// push_processing_actor (messages/interfaces.hpp).

#include "messages/interfaces.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace gatehouse {

/// Settings of the push-processing actor, fixed at spawn.
struct push_processing_settings {
  /// How long listing the commits of a push may take.
  std::chrono::milliseconds git_timeout{5000};
};

struct push_processing_state {
  static inline constexpr const char* name = "push-processing";
  push_processing_settings settings;
  snapshot_ptr snap;
  std::vector<git_actor> git;
  std::size_t next_git = 0;
  /// PostgreSQL sessions for the writes: pushes commit in parallel, so
  /// PostgreSQL can flush several commits with one fsync.
  std::vector<push_store_actor> stores;
  /// Calls sent to each store and not answered yet.
  std::vector<std::size_t> in_flight;
  std::size_t next_store = 0;

  /// The store with the fewest calls in flight, in turn among equals: a
  /// call does not queue behind one session's batch while another session
  /// has less to do. Counted until release(i).
  std::size_t pick_store() {
    if (in_flight.size() != stores.size())
      in_flight.assign(stores.size(), 0);
    auto best = next_store++ % stores.size();
    for (std::size_t k = 1; k < stores.size(); ++k) {
      auto i = (best + k) % stores.size();
      if (in_flight[i] < in_flight[best])
        best = i;
    }
    ++in_flight[best];
    return best;
  }

  void release(std::size_t i) {
    if (i < in_flight.size() && in_flight[i] > 0)
      --in_flight[i];
  }
};

push_processing_actor::behavior_type push_processing(
  push_processing_actor::stateful_pointer<push_processing_state> self,
  push_processing_settings settings, read_model_loader_actor loader,
  std::vector<git_actor> git, std::vector<push_store_actor> stores);

} // namespace gatehouse
