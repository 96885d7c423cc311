#pragma once

// GitLab's access decision for /allowed (contract shell-gitaly §2.1, §3, §4),
// as pure functions over a read-model snapshot. No CAF, no I/O: the
// access-control actor gathers the git facts these functions ask for (from
// a detached git actor) and calls them; tests call them directly.

#include "messages/read_model.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::access {

/// The /allowed request as the edge decoded it (ids arrive as JSON strings
/// or numbers; the edge turns them into integers and refuses non-numeric ones
/// with a 400 before we get here).
struct allowed_params {
  /// git-upload-pack, git-receive-pack, git-upload-archive; may be empty.
  std::string action;
  /// Repository path as typed (e.g. "group/proj.git", "/group/proj.wiki.git").
  std::optional<std::string> project;
  /// "project-12", "wiki-12", ...; preferred over `project`.
  std::optional<std::string> gl_repository;
  /// "_any" or lines "<old> <new> <ref>".
  std::string changes = "_any";
  /// ssh, http or web.
  std::string protocol = "ssh";
  std::optional<std::int64_t> key_id;
  std::optional<std::int64_t> user_id;
  std::optional<std::string> username;
  /// Gitaly's quarantine environment (JSON text), relative to the repo.
  std::string env;
  /// Gitaly's relative_path (may name a transaction snapshot).
  std::string relative_path;
  std::vector<std::string> push_options;
};

/// One parsed line of `changes`.
struct ref_change {
  std::string oldrev;
  std::string newrev;
  /// Full ref name, e.g. "refs/heads/main".
  std::string ref;
};

/// Parses `changes` as Rails does (lines, stripped, blanks dropped, split on
/// whitespace); "_any" and malformed lines yield no entries.
std::vector<ref_change> parse_changes(const std::string& changes);

/// Where the repository's objects can be read, when its storage has a local
/// path: the repository directory and Gitaly's quarantine directories
/// (absolute), so that objects of a push still in quarantine are visible.
struct repo_location {
  std::string repo_dir;
  /// GIT_OBJECT_DIRECTORY for git, or empty.
  std::string object_directory;
  /// GIT_ALTERNATE_OBJECT_DIRECTORIES entries (absolute).
  std::vector<std::string> alternate_object_directories;
};

/// What the decision needs from git, asked before deciding.
struct git_questions {
  /// nullopt when the storage has no local path: questions cannot be asked.
  std::optional<repo_location> location;
  /// Is `first` an ancestor of `second`? (force-push detection on protected
  /// branches; old, new)
  std::set<std::pair<std::string, std::string>> ancestry;
  /// Which branches (short names, e.g. "main") contain this commit?
  /// (creating a protected branch from an existing protected one)
  std::set<std::string> branches_containing;
  /// Does the repository have no branches at all (empty repository)?
  bool ask_empty = false;

  bool empty() const {
    return ancestry.empty() && branches_containing.empty() && !ask_empty;
  }
};

/// Answers to git_questions. A missing answer means git could not tell
/// (no local path, an error, a timeout).
struct git_facts {
  std::map<std::pair<std::string, std::string>, bool> is_ancestor;
  std::map<std::string, std::vector<std::string>> branches_containing;
  std::optional<bool> repository_empty;
  /// Why answers are missing, for the refusal message.
  std::string unavailable_reason;
};

/// The Gitaly part of a success answer.
struct gitaly_info {
  std::string storage_name;
  /// "@hashed/...git"
  std::string relative_path;
  std::string gl_repository;
  std::string gl_project_path;
  std::string address;
  /// nullopt serialises as JSON null.
  std::optional<std::string> token;
};

/// The success body of /allowed (§2.1), null keys left out by the encoder.
struct allowed_success {
  std::string gl_repository;
  std::string gl_project_path;
  std::optional<std::int64_t> gl_project_id;
  std::optional<std::int64_t> gl_root_namespace_id;
  /// "user-<id>" or "".
  std::string gl_id;
  std::optional<std::string> gl_username;
  /// "key" or "deploy_key".
  std::optional<std::string> gl_key_type;
  std::optional<std::int64_t> gl_key_id;
  std::vector<std::string> git_config_options;
  /// Present for the three git actions only.
  std::optional<gitaly_info> gitaly;
  std::vector<std::string> gl_console_messages;
};

/// The decision.
struct allowed_outcome {
  /// 200 success; 401 forbidden class; 404 not-found class; 422; 503.
  int status = 200;
  /// The user-facing message of a denial, byte for byte GitLab's.
  std::string message;
  std::optional<allowed_success> success;
  /// Set when the repository was reached through a redirect: the
  /// "Project '<old>' was moved to '<new>'..." text that /post_receive must
  /// print, to be kept per (user, project) for 5 minutes.
  std::optional<std::string> moved_message;
  std::optional<std::int64_t> moved_user_id;
  std::optional<std::int64_t> moved_project_id;
  /// The key to mark used (key actors).
  std::optional<std::int64_t> used_key_id;
  /// For the rate limiter: "key-<id>", "user-<id>" or "" (anonymous).
  std::string actor_identity;
  /// The resolved project id, if any.
  std::optional<std::int64_t> project_id;
};

/// Phase 1: which git facts the decision will need. Cheap; no I/O. An empty
/// result means check_allowed can run with empty facts.
git_questions questions_for(const snapshot& snap, const allowed_params& p);

/// Phase 2: the decision, with every check of §4.1 that the read model can
/// express, in GitLab's order, and the per-ref checks of §4.2 for real
/// changes. `now` is unix seconds (key expiry, broadcast windows).
allowed_outcome check_allowed(const snapshot& snap, const allowed_params& p,
                              const git_facts& facts, unix_time now);

// -- pieces shared with the other endpoints -------------------------------------

/// Whether `name` matches a protected-ref pattern with '*' wildcards.
bool ref_pattern_matches(const std::string& pattern, const std::string& name);

/// The access level of `user` on `project`: the highest of the direct
/// project membership and memberships of the project's namespace and all
/// its ancestors; 0 when none. (Admins are handled by callers.)
int access_level(const snapshot& snap, std::int64_t user_id,
                 const project_record& project);

/// The top-level namespace id of `project`.
std::int64_t root_namespace_id(const snapshot& snap,
                               const project_record& project);

// -- ref helpers (actors/access/ref_rules.cpp) ---------------------------------

/// A revision of 40 or 64 zeros (creation / deletion marker).
bool is_blank_rev(const std::string& rev);

/// Gitlab::GitRefValidator: `name` (a short branch or tag name) is refused
/// when it starts with "refs/heads/", "refs/remotes/" or "-", is "HEAD", or
/// "refs/heads/<name>" breaks git check-ref-format rules.
bool valid_ref_name(const std::string& name);

/// Whether `name` starts with a full SHA-1 (40 hex digits; SHA-256 names
/// start with one too).
bool starts_with_full_sha(const std::string& name);

/// Whether `s` is valid UTF-8.
bool valid_utf8(const std::string& s);

} // namespace gatehouse::access
