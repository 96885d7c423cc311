#pragma once

// Questions about git repositories on local disk, answered by the real `git`
// binary. Blocking functions, no CAF: the git actor (storage/git_actor.hpp)
// calls them on its own thread; tests call them directly.
//
// Safety rules every function here follows:
// - git runs through posix_spawnp with an argv vector, never a shell;
// - revisions must be full object ids (40 or 64 lower-case hex) and are
//   checked before git starts; `--end-of-options` precedes them;
// - git sees a fixed environment (no system or global config, no prompts)
//   and `-c safe.directory=*`, so repositories owned by another user work;
// - every call has a finite timeout: the process group is killed when it
//   runs out, and the child is always reaped.

#include "common/subprocess.hpp"
#include "messages/git.hpp"

#include <chrono>
#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::storage {

using access::git_facts;
using access::git_questions;
using access::git_check;
using access::git_step;
using access::repo_location;

// -- processes ----------------------------------------------------------------

// The process runner lives in common/subprocess.hpp; git's callers and tests
// keep reading it under these names.
using gatehouse::max_captured_error;
using gatehouse::max_captured_output;
using gatehouse::run_process;
using git_run_result = gatehouse::process_result;

/// Runs `git <args>` against `loc`: GIT_DIR is the repository,
/// GIT_OBJECT_DIRECTORY the quarantine directory when set, and
/// GIT_ALTERNATE_OBJECT_DIRECTORIES the alternates, plus the repository's
/// own objects directory when a quarantine is set (as Gitaly does), so
/// objects that existed before the push stay visible. `args` are passed
/// as-is: callers validate whatever came from outside. Paths in `loc` must
/// be absolute; alternates must not contain ':' (they are colon-joined);
/// otherwise git does not start (exit_code -1, reason in err). `input`,
/// when not empty, is git's stdin.
git_run_result run_git(const repo_location& loc,
                       const std::vector<std::string>& args,
                       std::chrono::milliseconds timeout,
                       std::string_view input = {});

// -- questions ----------------------------------------------------------------

/// Why a question got no answer.
struct git_failure {
  /// Short and free of paths and of caller input: fit for a user-facing
  /// refusal message.
  std::string reason;
  /// For logs: git's first line of stderr, or the system error.
  std::string detail;
  /// The call ran out of time (later calls against the same repository
  /// would likely too).
  bool timed_out = false;
};

/// A full object id: 40 (SHA-1) or 64 (SHA-256) lower-case hex digits.
bool is_object_id(std::string_view rev);

/// The all-zeros object id git uses for "no object" (branch created or
/// deleted).
bool is_blank_object_id(std::string_view rev);

/// A branch name (without "refs/heads/") that git accepts and that cannot
/// be read as revision syntax.
bool is_branch_name(std::string_view name);

/// Is `ancestor` an ancestor of (or equal to) `descendant`? Both must be
/// non-blank object ids. `git merge-base --is-ancestor`: exit 0 yes, 1 no,
/// anything else (missing object, not a commit, timeout) nullopt.
std::optional<bool> is_ancestor(const repo_location& loc,
                                const std::string& ancestor,
                                const std::string& descendant,
                                std::chrono::milliseconds timeout,
                                git_failure* failure = nullptr);

/// The branches (short names, e.g. "main", sorted) whose tip contains
/// `sha`. Names are the full ref names with "refs/heads/" removed, so a
/// tag of the same name cannot make them ambiguous.
std::optional<std::vector<std::string>> branches_containing(
  const repo_location& loc, const std::string& sha,
  std::chrono::milliseconds timeout, git_failure* failure = nullptr);

/// Which of `revs` (full object ids) the repository does not have, in one
/// `git cat-file --batch-check` fed the ids on stdin: one process for any
/// number of revisions, so that a push naming thousands of unknown objects
/// costs one git run rather than one each.
std::optional<std::set<std::string>> missing_objects(
  const repo_location& loc, const std::set<std::string>& revs,
  std::chrono::milliseconds timeout, git_failure* failure = nullptr);

/// Whether the repository has no branches at all.
std::optional<bool> repository_empty(const repo_location& loc,
                                     std::chrono::milliseconds timeout,
                                     git_failure* failure = nullptr);

/// The commit a branch points to; nullopt when the branch does not exist
/// (failure->reason then says so) or git fails. For push payloads of new
/// branches: GitLab lists the commits of `newrev` not on the default branch,
/// i.e. list_commits(loc, branch_commit(default branch), newrev, ...).
std::optional<std::string> branch_commit(const repo_location& loc,
                                         const std::string& branch,
                                         std::chrono::milliseconds timeout,
                                         git_failure* failure = nullptr);

/// The commits reachable from `newrev` and not from `oldrev`, newest first,
/// at most `limit` of them. `oldrev` may be blank: then every commit
/// reachable from `newrev` counts (GitLab's behaviour for a push that
/// creates the default branch; for other new branches pass the default
/// branch's commit as `oldrev`, see branch_commit). `newrev` must be a
/// non-blank object id. One `git rev-list` for the commits plus one
/// `git diff-tree` per commit for the file lists.
std::optional<std::vector<push::commit>> list_commits(
  const repo_location& loc, const std::string& oldrev,
  const std::string& newrev, std::size_t limit,
  std::chrono::milliseconds timeout, git_failure* failure = nullptr);

/// How many commits list_commits would return without a limit
/// (`git rev-list --count`).
std::optional<std::size_t> count_commits(const repo_location& loc,
                                         const std::string& oldrev,
                                         const std::string& newrev,
                                         std::chrono::milliseconds timeout,
                                         git_failure* failure = nullptr);

/// What a pushed tag names.
struct tag_info {
  /// The commit the tag peels to; nullopt when it names a tree or a blob.
  std::optional<std::string> target;
  /// An annotated tag's message as GitLab reads it (Gitaly's FindTag): the
  /// raw tag object body after its header, signature and trailing newline
  /// included; "" for a lightweight tag.
  std::string message;
  /// Whether `rev` is a tag object (annotated tag).
  bool annotated = false;
};

/// Describes the object a tag ref was pushed to (`rev`, a non-blank object
/// id): `git cat-file -t`, then `git cat-file tag` for a tag object and
/// `git rev-parse <rev>^{commit}` to peel it.
std::optional<tag_info> describe_tag(const repo_location& loc,
                                     const std::string& rev,
                                     std::chrono::milliseconds timeout,
                                     git_failure* failure = nullptr);

/// The commits one pushed ref brought, as GitLab's Git::BranchHooksService
/// and Git::TagHooksService list them for push payloads:
/// - branch update: oldrev..newrev;
/// - new branch: the commits of newrev not on the head of `default_branch`;
///   every commit reachable from newrev when the branch is the default
///   branch, when `default_branch` is empty, or when that branch does not
///   exist (empty repository);
/// - tag: the tagged commit alone (total 1), or nothing (total 0) when the
///   tag names a tree or a blob; tag_target and tag_message set;
/// - deletion: nothing (no git call).
/// The newest `limit` commits oldest first; `total` counts them all. Every
/// git call is bounded by `timeout`.
std::optional<push::ref_commits> ref_commits(const repo_location& loc,
                                             const access::ref_change& change,
                                             const std::string& default_branch,
                                             std::size_t limit,
                                             std::chrono::milliseconds timeout,
                                             git_failure* failure = nullptr);

/// Answers the commit questions of a push, each git call bounded by
/// `per_call_timeout`. Without a location nothing is answered (available
/// false, "the repository storage has no local path"). A ref whose listing
/// fails has no entry in by_ref, makes `available` false and sets
/// unavailable_reason (the first failure's); after a timeout the remaining
/// refs are skipped. Refs other than branches and tags are ignored.
push::commit_facts answer_commits(const push::commit_questions& q,
                                  std::chrono::milliseconds per_call_timeout);

/// Answers everything `q` asks, each git call bounded by `per_call_timeout`
/// and all of them by `q.deadline`. Without a location, nothing is answered
/// and unavailable_reason says "the repository storage has no local path".
/// A failed question leaves its answer missing and sets unavailable_reason
/// (the first failure's reason); after a timeout, or at the deadline, the
/// remaining questions are skipped and `timed_out` is set. Emptiness is
/// asked first (one cheap call); when more than one revision is asked
/// about, one batch call first finds those the repository lacks, and their
/// questions are left unanswered without running git for each.
git_facts answer(const git_questions& q,
                 std::chrono::milliseconds per_call_timeout);

} // namespace gatehouse::storage
