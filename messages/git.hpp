#pragma once

// What the domain actors ask the git actors, and what git answers: the
// questions of an access decision (force pushes, protected-branch basis,
// empty repository) and the commits of pushed refs for push events. Local
// messages between actors of one process, never serialized: the
// whitelisting below keeps the structs free of CAF.

#include <caf/allowed_unsafe_message_type.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::access {

/// One parsed line of `changes`.
struct ref_change {
  std::string oldrev;
  std::string newrev;
  /// Full ref name, e.g. "refs/heads/main".
  std::string ref;
};

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
  /// The end of the access check's time budget (GitLab's
  /// Gitlab::GitAccess::INTERNAL_TIMEOUT): no git runs past it, and what is
  /// unanswered then stays unanswered, with git_facts::timed_out set.
  std::optional<std::chrono::steady_clock::time_point> deadline;

  /// How many git questions this is: what the access check's git lanes
  /// weigh.
  std::size_t count() const {
    return ancestry.size() + branches_containing.size() + (ask_empty ? 1 : 0);
  }

  bool empty() const {
    return ancestry.empty() && branches_containing.empty() && !ask_empty;
  }
};

/// The kinds of git question, for the timing of each (GitLab's
/// Gitlab::Checks::TimedLogger lines).
enum class git_check { emptiness, ancestry, branch_basis };

/// How long git spent on one kind of question.
struct git_step {
  git_check check = git_check::ancestry;
  std::chrono::microseconds elapsed{0};
  /// The time ran out while this kind was being answered.
  bool cancelled = false;
  /// The time ran out before this kind was started.
  bool skipped = false;
};

/// Answers to git_questions. A missing answer means git could not tell
/// (no local path, an error, a timeout).
struct git_facts {
  std::map<std::pair<std::string, std::string>, bool> is_ancestor;
  std::map<std::string, std::vector<std::string>> branches_containing;
  std::optional<bool> repository_empty;
  /// Why answers are missing, for the refusal message.
  std::string unavailable_reason;
  /// Answers are missing because git ran out of time (a call's timeout or
  /// the questions' deadline): GitLab's TimeoutError, a 503.
  bool timed_out = false;
  /// Each kind of question asked, in the order git answered them.
  std::vector<git_step> steps;

  /// Whether `check` was asked and ran out of time before it was answered.
  bool ran_out(git_check check) const {
    for (const auto& s : steps)
      if (s.check == check && (s.cancelled || s.skipped))
        return true;
    return false;
  }
};

} // namespace gatehouse::access

namespace gatehouse::push {

/// One commit as GitLab's webhook payload lists it.
struct commit {
  std::string id;
  /// The raw message, trailing newline included.
  std::string message;
  /// GitLab's Commit#title: the first line, "No commit message" for a blank
  /// message, cut at a word boundary to 78 characters + "..." when the line
  /// has 100 characters or more.
  std::string title;
  /// The committer date (GitLab's Commit#timestamp), strict ISO-8601 with
  /// the committer's offset: "2026-01-01T10:00:00+02:00".
  std::string timestamp;
  std::string author_name;
  std::string author_email;
  /// Paths changed against the first parent (the empty tree for a root
  /// commit), without rename detection: added, deleted, and everything else
  /// (modified, type changed).
  std::vector<std::string> added;
  std::vector<std::string> modified;
  std::vector<std::string> removed;
};

/// What git knows about one pushed ref.
struct ref_commits {
  /// The newest `limit` new commits, oldest first (GitLab's order). Tags:
  /// the tagged commit alone (GitLab's Git::TagHooksService).
  std::vector<commit> commits;
  /// How many new commits the push brought in all (tags: 1, or 0 for a tag
  /// of a tree or blob).
  std::size_t total = 0;
  /// Tags: the commit the tag points to (peeled; nullopt for a tree or
  /// blob) and the message as Gitaly gives it: an annotated tag's raw
  /// message, "" for a lightweight tag.
  std::optional<std::string> tag_target;
  std::optional<std::string> tag_message;
};

/// What the events need from git, asked before building them.
struct commit_questions {
  /// nullopt when the storage has no local path.
  std::optional<access::repo_location> location;
  std::vector<access::ref_change> changes;
  /// The project's default branch: new branches list the commits not on it,
  /// as GitLab does.
  std::string default_branch;
  std::size_t limit = 20;
};

/// Answers to commit_questions, by full ref name.
struct commit_facts {
  std::map<std::string, ref_commits> by_ref;
  /// False when git could not be asked (no local path, an error): events
  /// then carry no commits and the header Gatehouse-Commits: unavailable.
  bool available = false;
  std::string unavailable_reason;
};

} // namespace gatehouse::push

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::git_questions)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::git_facts)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::commit_questions)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::commit_facts)
