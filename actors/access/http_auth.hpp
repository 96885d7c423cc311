#pragma once

// How GitLab authenticates an end user's git client on the requests
// Workhorse pre-authorizes (contract other-callers §4.2, §4.3; GitLab's
// Gitlab::Auth.find_for_git_client): pure functions over a read-model
// snapshot. What the credential may then do is the /allowed decision's
// (git_access.hpp), with protocol "http" and the credential's abilities.

#include "messages/access.hpp"
#include "messages/read_model.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::access {

/// Who a git client's credentials name and what they allow.
struct git_client {
  bool authenticated = false;
  std::optional<std::int64_t> user_id;
  /// An LFS token minted for a deploy key ("lfs+deploy-key-<id>").
  std::optional<std::int64_t> deploy_key_id;
  git_abilities abilities;
};

/// What a token's scopes allow of git (GitLab's abilities_for_scopes).
git_abilities abilities_for_scopes(const std::vector<std::string>& scopes);

/// The user of an active personal access token (not revoked, not expired
/// at `now`, with a scope) whose user may sign in; the login is ignored, as
/// GitLab ignores it. Unauthenticated otherwise.
git_client authenticate_by_token(const snapshot& snap,
                                 const std::string& token, unix_time now);

/// The actor of an LFS token that access-control minted for
/// /lfs_authenticate (`lfs_key` signs them), when `login` is the name it
/// was minted for and it has not expired. GitLab accepts these on LFS
/// routes only.
git_client authenticate_by_lfs_token(const snapshot& snap,
                                     const std::string& login,
                                     const std::string& token,
                                     const std::string& lfs_key, unix_time now);

/// GitLab's 401 text for a git client (render_access_denied), with the help
/// page under the instance's external URL.
std::string http_basic_denied(const snapshot& snap);

/// The help root GitLab's Git LFS errors link to.
std::string lfs_documentation_url(const snapshot& snap);

} // namespace gatehouse::access
