#pragma once

// The access-control domain actor: owns every decision of GitLab Shell's and
// Gitaly's calls. Decides from an in-memory read-model snapshot (replaced
// whenever PostgreSQL announces a change), asks the git actors for facts a
// decision needs, and hands writes to the access store. Never blocks.

#include "actors/access/git_access.hpp"
#include "actors/access/git_messages.hpp"
#include "actors/access/shell_calls.hpp"
#include "messages/interfaces.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace gatehouse {

namespace atom {
/// POST /internal/allowed (and the audit call's access check).
using allowed = caf::atom_constant<caf::atom("allowed")>;
/// GET /internal/authorized_keys
using find_key = caf::atom_constant<caf::atom("findkey")>;
/// GET /internal/discover
using discover = caf::atom_constant<caf::atom("discover")>;
/// POST /internal/lfs_authenticate
using lfs_auth = caf::atom_constant<caf::atom("lfsauth")>;
/// POST /internal/two_factor_recovery_codes
using recovery = caf::atom_constant<caf::atom("recovery")>;
/// POST /internal/personal_access_token
using make_pat = caf::atom_constant<caf::atom("makepat")>;
} // namespace atom

namespace access {

/// The answer of /authorized_keys: nullopt is 404 Key.
struct key_answer {
  std::optional<authorized_key> key;
};

/// The answer of /discover: nullopt is `null`.
struct discover_answer {
  std::optional<discovered_user> user;
};

/// A /discover query; exactly the identifiers the caller sent.
struct discover_query {
  std::optional<std::int64_t> key_id;
  std::optional<std::int64_t> user_id;
  std::optional<std::string> username;
};

/// A /lfs_authenticate request.
struct lfs_query {
  shell_actor actor;
  std::string project;
  std::string operation;
};

/// The answer of /lfs_authenticate.
struct lfs_answer {
  int status = 200;
  std::string message;
  std::string username;
  std::string lfs_token;
  std::string repository_http_path;
  std::int64_t expires_in = 7200;
};

/// A /personal_access_token request.
struct pat_query {
  shell_actor actor;
  std::optional<std::string> name;
  std::optional<std::vector<std::string>> scopes;
  std::optional<std::string> expires_at;
};

/// The {"success":…} answers of the 2FA and token calls (always 200).
struct shell_answer {
  bool success = false;
  std::string message;
  std::vector<std::string> recovery_codes;
  std::string token;
  std::vector<std::string> scopes;
  std::string expires_at;
};

} // namespace access

/// The access-control actor.
using access_control_actor = caf::typed_actor<
  // Decide /allowed: a success body, or GitLab's status and message.
  caf::replies_to<atom::allowed, access::allowed_params>::with<
    access::allowed_outcome>,
  // Find an authentication-capable key by its base64 blob.
  caf::replies_to<atom::find_key, std::string>::with<access::key_answer>,
  // Say whose key, user id or username this is.
  caf::replies_to<atom::discover, access::discover_query>::with<
    access::discover_answer>,
  // Mint an LFS token for a project.
  caf::replies_to<atom::lfs_auth, access::lfs_query>::with<access::lfs_answer>,
  // Regenerate a user's 2FA recovery codes.
  caf::replies_to<atom::recovery, access::shell_actor>::with<
    access::shell_answer>,
  // Create a personal access token.
  caf::replies_to<atom::make_pat, access::pat_query>::with<access::shell_answer>,
  // The read-model loader delivers a new snapshot.
  caf::reacts_to<atom::snapshot, snapshot_ptr>>;

/// Settings of the access-control actor, fixed at spawn.
struct access_control_settings {
  /// How long one git inspection may take.
  std::chrono::milliseconds git_timeout{5000};
  /// How long one write to the access store may take.
  std::chrono::milliseconds store_timeout{5000};
};

struct access_control_state {
  static inline constexpr const char* name = "access-control";
  access_control_settings settings;
  snapshot_ptr snap;
  std::vector<git_actor> git;
  std::size_t next_git = 0;
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
access_control_actor::behavior_type
access_control(access_control_actor::stateful_pointer<access_control_state> self,
               access_control_settings settings, read_model_loader_actor loader,
               std::vector<git_actor> git, access_store_actor store);

} // namespace gatehouse

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::allowed_params)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::allowed_outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::key_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::discover_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::discover_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::lfs_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::lfs_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::shell_actor)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::pat_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::shell_answer)
