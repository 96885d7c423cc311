#pragma once

// GitLab's access decision for /allowed (contract shell-gitaly §2.1, §3, §4),
// as pure functions over a read-model snapshot. No CAF, no I/O: the
// access-control actor gathers the git facts these functions ask for (from
// a detached git actor) and calls them; tests call them directly.

#include "actors/access/ref_rules.hpp"
#include "messages/access.hpp"
#include "messages/git.hpp"
#include "messages/read_model.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::access {

/// Phase 1: which git facts the decision will need. Cheap; no I/O. An empty
/// result means check_allowed can run with empty facts.
git_questions questions_for(const snapshot& snap, const allowed_params& p);

/// Phase 2: the decision, with every check of §4.1 that the read model can
/// express, in GitLab's order, and the per-ref checks of §4.2 for real
/// changes. `now` is unix seconds (key expiry, broadcast windows).
allowed_outcome check_allowed(const snapshot& snap, const allowed_params& p,
                              const git_facts& facts, unix_time now);

// -- pieces shared with the other endpoints
// -------------------------------------

/// The access level of `user` on `project`: the highest of the direct
/// project membership and memberships of the project's namespace and all
/// its ancestors; 0 when none. (Admins are handled by callers.)
int access_level(const snapshot& snap, std::int64_t user_id,
                 const project_record& project);

/// GitLab's http_download_allowed?: whether an anonymous git client may
/// clone `project` (a repository path as a client names it) over HTTP.
bool http_download_allowed(const snapshot& snap, const std::string& project);

/// The top-level namespace id of `project`.
std::int64_t root_namespace_id(const snapshot& snap,
                               const project_record& project);

} // namespace gatehouse::access
