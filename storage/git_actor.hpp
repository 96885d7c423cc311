#pragma once

// The git actor: answers git_questions with git_facts, and the commit
// questions of push events with commit_facts, by running the git binary
// (storage/git_repository.hpp). Its interface is git_actor
// (messages/interfaces.hpp).

#include "messages/interfaces.hpp"

#include <chrono>

namespace gatehouse::storage {

/// Settings of a git actor, fixed at spawn.
struct git_settings {
  /// Upper bound of each git process; a request runs several.
  std::chrono::milliseconds per_call_timeout{5000};
  /// The nice value of this actor's thread, inherited by its git processes
  /// (0: unchanged). The lane of expensive inspections runs niced, so that
  /// its git processes yield the CPU to cheap ones.
  int niceness = 0;
};

struct git_state {
  static inline constexpr const char* name = "git";
  git_settings settings;
  /// The nice value has been applied to the actor's thread.
  bool niced = false;
};

/// The git actor. Blocks while git runs: the wiring must spawn it detached.
git_actor::behavior_type git(git_actor::stateful_pointer<git_state> self,
                             git_settings settings);

} // namespace gatehouse::storage
