#pragma once

// The indexer coordination: answers Zoekt indexer nodes (contract
// other-callers §6), turns push events into Zoekt index tasks and
// Elasticsearch index requests (§7), and assigns repositories of enabled
// namespaces to nodes in rounds. Every decision is a rule of
// actors/indexer/rules.hpp over the read-model snapshot; the indexer store
// only reads and writes. Never blocks; every store request has a deadline
// and a failed one is errc::unavailable (503 at the edges, a redelivery
// for the feed). Its interface is indexer_actor (messages/interfaces.hpp).

#include "actors/indexer/rules.hpp"
#include "messages/interfaces.hpp"

#include <caf/actor_clock.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <vector>

namespace gatehouse {

struct indexer_coordination_settings {
  /// How long a node's or a push's store request may take; past it the
  /// answer is 503 (the node polls again, the feed redelivers).
  std::chrono::milliseconds store_timeout{5000};
  /// How long an assignment round's read and write may each take: the
  /// index state holds every node and repository.
  std::chrono::milliseconds round_timeout{30000};
  /// How often an assignment round runs.
  std::chrono::seconds assign_interval{60};
  /// How soon a round follows a snapshot that changed the enabled
  /// namespaces (coalesces a burst of snapshots into one round).
  std::chrono::milliseconds assign_after_change{1000};
  /// A node not seen this long has its repositories moved; zero never.
  /// GitLab's lost_node_threshold defaults to 12 hours: moving a
  /// repository re-indexes it from scratch elsewhere, so a node that is
  /// restarted, upgraded or briefly cut off must not trigger it.
  std::chrono::seconds lost_after{std::chrono::hours{12}};
  /// At most this many repository changes per round.
  std::size_t max_changes_per_round = 1000;
};

struct indexer_coordination_state {
  static inline constexpr const char* name = "indexer-coordination";
  indexer_coordination_settings settings;
  snapshot_ptr snap;
  indexer_store_actor store;
  /// The nodes' room as the last round read it: where a pushed project's
  /// new repository goes. Read from the store when no round has read it
  /// yet. Not charged by pushes: spreading is the rounds' work, and a push
  /// only places a project the rounds have not reached yet.
  std::optional<indexer::node_room> room;
  /// A round is reading or writing; an assign arriving meanwhile sets
  /// `round_again` instead of starting a second one.
  bool round_running = false;
  bool round_again = false;
  /// When the self-sent assigns in flight are due: a round is scheduled
  /// only when none is due by then, and the periodic one is re-armed only
  /// when none is in flight, so extra rounds never multiply the schedule.
  /// Holds at most two entries (the periodic and a change's).
  std::vector<caf::actor_clock::time_point> rounds_due;
  /// Rounds completed (tests and logs).
  std::size_t rounds_done = 0;
};

/// The actor. Subscribes to `loader` for snapshots.
indexer_actor::behavior_type indexer_coordination(
  indexer_actor::stateful_pointer<indexer_coordination_state> self,
  indexer_coordination_settings settings, read_model_loader_actor loader,
  indexer_store_actor store);

} // namespace gatehouse
