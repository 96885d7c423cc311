#pragma once

// The access-control domain actor: owns every decision of GitLab Shell's and
// Gitaly's access calls, their validation and their texts. Decides from an
// in-memory read-model snapshot (replaced whenever PostgreSQL announces a
// change), asks the git actors for facts a decision needs, and hands writes
// to the access store. Never blocks. Its interface is
// access_control_actor (messages/interfaces.hpp).

#include "messages/interfaces.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gatehouse {

/// Unix seconds now; tests inject their own clock.
using clock_fn = std::function<unix_time()>;

/// The system clock as unix seconds.
unix_time system_now();

/// Settings of the access-control actor, fixed at spawn.
struct access_control_settings {
  /// How long one git inspection may take, waiting for a git actor
  /// included: the access check's time budget (GitLab's 50 s
  /// INTERNAL_TIMEOUT). Past it the answer is GitLab's 503.
  std::chrono::milliseconds git_timeout{5000};
  /// The first `cheap_git_workers` actors of `git` answer only inspections
  /// of at most `cheap_git_questions` questions, the others only larger
  /// ones: an expensive check waits behind expensive ones, never in front
  /// of an ordinary push. 0 (or all of them): every actor takes any.
  std::size_t cheap_git_workers = 0;
  std::size_t cheap_git_questions = 4;
  /// How long one write to the access store may take.
  std::chrono::milliseconds store_timeout{5000};
  /// Where Workhorse stores uploads (GATEHOUSE_UPLOADS_DIR): what
  /// authorize_upload answers lives below it.
  std::string uploads_dir = "/var/lib/gatehouse/uploads";
  /// The clock of rate-limit windows, key expiry and token dates.
  clock_fn now = system_now;
};

struct access_control_state {
  static inline constexpr const char* name = "access-control";
  access_control_settings settings;
  snapshot_ptr snap;
  std::vector<git_actor> git;
  std::size_t next_git = 0;
  std::size_t next_cheap_git = 0;
  access_store_actor store;
  /// The HS256 key of LFS tokens, fetched from the store once.
  std::string lfs_key;
  /// gitlab_shell_operation counters: scope -> (window start, count).
  std::unordered_map<std::string, std::pair<std::int64_t, std::int64_t>>
    operations;
  std::int64_t operations_swept_at = 0;
  /// Keys whose last_used_at was written this day (GitLab's once-a-day rule),
  /// so that repeated use does not even reach the store.
  std::unordered_map<std::int64_t, std::int64_t> touched_day;
};

/// The actor. `loader` delivers snapshots; `git` answers git questions
/// (round-robin); `store` takes writes.
access_control_actor::behavior_type access_control(
  access_control_actor::stateful_pointer<access_control_state> self,
  access_control_settings settings, read_model_loader_actor loader,
  std::vector<git_actor> git, access_store_actor store);

} // namespace gatehouse
