#pragma once

// The push-processing domain actor: counts pushes in flight (pre_receive) and
// turns each accepted push into durable push domain events (post_receive):
// commit facts from a git actor, the event bodies, then one transaction that
// decrements the counter, takes the moved message and writes the events to
// the outbox. The answer leaves only after that commit.

#include "actors/access/git_messages.hpp"
#include "actors/push/push_events.hpp"
#include "messages/interfaces.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace gatehouse {

namespace push {

/// The /post_receive answer.
struct post_receive_answer {
  std::vector<post_message> messages;
  bool reference_counter_decreased = false;
};

} // namespace push

/// The push-processing actor.
using push_processing_actor = caf::typed_actor<
  // Count a push in flight: {"reference_counter_increased": …}.
  caf::replies_to<atom::pre_receive, std::string>::with<bool>,
  // The same with a request id (gl_repository, id): a retry counts nothing.
  caf::replies_to<atom::pre_receive, std::string, std::string>::with<bool>,
  // Commit the push's events and answer the messages to print.
  caf::replies_to<atom::post_receive, push::post_receive_params>::with<
    push::post_receive_answer>,
  // The read-model loader delivers a new snapshot.
  caf::reacts_to<atom::snapshot, snapshot_ptr>>;

/// Settings of the push-processing actor, fixed at spawn.
struct push_processing_settings {
  /// How long listing the commits of a push may take.
  std::chrono::milliseconds git_timeout{5000};
  /// How long the post_receive transaction may take.
  std::chrono::milliseconds store_timeout{5000};
};

struct push_processing_state {
  static inline constexpr const char* name = "push-processing";
  push_processing_settings settings;
  snapshot_ptr snap;
  std::vector<git_actor> git;
  std::size_t next_git = 0;
  push_store_actor store;
};

push_processing_actor::behavior_type push_processing(
  push_processing_actor::stateful_pointer<push_processing_state> self,
  push_processing_settings settings, read_model_loader_actor loader,
  std::vector<git_actor> git, push_store_actor store);

} // namespace gatehouse

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::post_receive_params)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::post_receive_answer)
