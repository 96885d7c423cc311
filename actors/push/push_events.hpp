#pragma once

// Push processing as pure functions (contract shell-gitaly §2.11, §2.12, §7):
// the messages /post_receive prints, and the push domain events - GitLab's
// Push Hook / Tag Push Hook payloads - that go to NATS JetStream through the
// transactional outbox. No CAF, no I/O: the push actor gathers commit facts
// from a git actor and the moved message from the store, then calls these.

#include "actors/access/git_access.hpp"
#include "messages/git.hpp"
#include "messages/push.hpp"
#include "messages/read_model.hpp"
#include "messages/types.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::push {

/// One push domain event, ready for the outbox (messages/types.hpp). The
/// bulk flag: more than 3 refs of this kind (branch/tag) and action
/// (created/removed/pushed) in one push, for which GitLab fires no per-ref
/// webhook (Git::ProcessRefChangesService). The body: GitLab's Push Hook / Tag
/// Push Hook JSON (messages/push_event.schema.json).
using push_event = gatehouse::outbox_event;

/// The resolved parties of a /post_receive, or why they could not be
/// resolved (unknown repository or user: GitLab logs and emits nothing).
struct push_context {
  const project_record* project = nullptr;
  const user_record* user = nullptr;
  /// The key the identifier named, if any.
  std::optional<std::int64_t> key_id;
  bool wiki = false;
};

/// Resolves gl_repository and identifier against the snapshot.
push_context resolve(const snapshot& snap, const post_receive_params& p);

/// What to ask git for the events of this push.
commit_questions questions_for(const snapshot& snap, const push_context& ctx,
                               const post_receive_params& p);

/// The /post_receive messages in GitLab's order (alerts first): the current
/// broadcast banner (target_path matching the project path), the push-options
/// warning, "To create a merge request for <branch>, visit:" for pushed
/// non-default branches, then `moved_message` when given.
std::vector<post_message> post_receive_messages(
  const snapshot& snap, const push_context& ctx, const post_receive_params& p,
  const std::string& moved_message, unix_time now,
  bool repository_empty = false);

/// One event per pushed ref (branches "push", tags "tag_push"; branches
/// first, each kind grouped by action as GitLab processes them), the bulk
/// flag per kind and action, bodies per §7.2. A ref git should have answered
/// but facts lack is marked commits_unavailable (deletions never are). No
/// events for wikis or without project and user. `new_uuid` makes event ids
/// (tests pass a deterministic one).
std::vector<push_event> build_events(const snapshot& snap,
                                     const push_context& ctx,
                                     const post_receive_params& p,
                                     const commit_facts& facts,
                                     std::string (*new_uuid)());

/// A random UUID v4 (lower-case, hyphenated).
std::string random_uuid();

} // namespace gatehouse::push
