#pragma once

// The per-ref rules of GitLab's /allowed decision: parsing `changes`, ref
// names and protected-ref patterns, and the checks every pushed ref passes
// (Gitlab::Checks::BranchCheck and TagCheck, with Gitlab::UserAccess /
// DeployKeyAccess). Pure functions; git_access.cpp calls them for
// git-receive-pack, push processing (actors/push) reuses the helpers.

#include "messages/git.hpp"
#include "messages/read_model.hpp"

#include <optional>
#include <string>
#include <vector>

namespace gatehouse::access {

/// Parses `changes` as Rails does (lines, stripped, blanks dropped, split on
/// whitespace); "_any" and malformed lines yield no entries.
std::vector<ref_change> parse_changes(const std::string& changes);

/// Whether `name` matches a protected-ref pattern with '*' wildcards.
bool ref_pattern_matches(const std::string& pattern, const std::string& name);

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

// -- the per-ref checks
// ----------------------------------------------------------

/// Why a pushed ref is refused: the status and GitLab's text.
struct ref_refusal {
  int status = 401;
  std::string message;
};

/// The push the per-ref checks judge.
struct ref_push {
  const snapshot& snap;
  const project_record& project;
  /// The pushing user, or for a deploy key its creator (GitLab evaluates
  /// deploy keys' ref permissions through the creator).
  const user_record* user = nullptr;
  bool deploy_key = false;
  /// Whether the repository has no branches (unknown counts as not empty).
  bool empty_repository = false;
  const git_facts& facts;
  /// "ssh", "http" or "web": protected refs are only created and deleted on
  /// the web.
  const std::string& protocol;
};

/// GitLab's 503 text when the access check ran out of time
/// (Gitlab::GitAccess::LOG_HEADER and the TimedLogger lines): the header,
/// then one line per kind of git question with the time it took,
/// "(cancelled after N ms)" for the one that ran out and "(cancelled)" for
/// those never started.
std::string timed_out_message(const git_facts& facts);

/// Adds the git facts check_ref_changes will need for `changes` to `q`:
/// ancestry for updates of protected branches, the branches containing a
/// new protected branch's commit (when only the merge permission could
/// allow it), and whether the repository is empty where that decides.
/// `user` and `deploy_key` as in ref_push.
void ask_ref_questions(const snapshot& snap, const project_record& project,
                       const user_record* user, bool deploy_key,
                       const std::vector<ref_change>& changes,
                       git_questions& q);

/// For each change in order: may the actor push to the ref at all, then
/// the branch or tag checks. The first refusal, or nullopt when every
/// change may go ahead. Refs other than branches and tags pass.
std::optional<ref_refusal> check_ref_changes(
  const ref_push& push, const std::vector<ref_change>& changes);

} // namespace gatehouse::access
