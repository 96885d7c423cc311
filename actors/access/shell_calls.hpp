#pragma once

// The answers of GitLab Shell's other calls (contract shell-gitaly §2.2,
// §2.4, §2.6–§2.10), as pure functions over the read model. Writes
// (recovery codes, tokens) are the actor's job: these functions validate and
// say what to write.

#include "messages/access.hpp"
#include "messages/read_model.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::access {

// -- /authorized_keys ---------------------------------------------------------

/// Looks up an authentication-capable key by its base64 blob, padded or not,
/// decoded as leniently as Ruby's Base64.decode64. nullopt: 404 Key.
std::optional<authorized_key> find_authorized_key(const snapshot& snap,
                                                  const std::string& blob_b64);

// -- /discover ----------------------------------------------------------------

/// Who a key, user id or username belongs to; a deploy key resolves to its
/// creator; signing-only keys resolve to nobody. nullopt answers `null`.
std::optional<discovered_user> discover(
  const snapshot& snap, std::optional<std::int64_t> key_id,
  std::optional<std::int64_t> user_id,
  const std::optional<std::string>& username);

// -- 2FA recovery codes, personal access tokens, OTP
// ---------------------------

/// A 200 answer of the {"success":…} family.
struct shell_verdict {
  bool success = false;
  std::string message;
  /// Set on success: whose codes or token to create.
  std::int64_t user_id = 0;
};

/// Validation of /two_factor_recovery_codes (§2.7), in GitLab's order.
shell_verdict check_recovery_codes(const snapshot& snap, const shell_caller& a);

/// The token scopes GitLab accepts, sorted.
const std::vector<std::string>& valid_token_scopes();

/// A validated /personal_access_token request.
struct pat_plan {
  shell_verdict verdict;
  std::string name;
  std::vector<std::string> scopes;
  /// YYYY-MM-DD; defaulted to today + 365 days.
  std::string expires_at;
};

/// Validation of /personal_access_token (§2.8), in GitLab's order. `today`
/// is the current UTC date as days since the epoch.
pat_plan check_personal_access_token(
  const snapshot& snap, const shell_caller& a,
  const std::optional<std::string>& name,
  const std::optional<std::vector<std::string>>& scopes,
  const std::optional<std::string>& expires_at, std::int64_t today);

// -- /lfs_authenticate
// ---------------------------------------------------------

/// A validated /lfs_authenticate request (§2.6).
struct lfs_plan {
  /// 200, or 404 with `message` ("404 Not Found" / "404 Not found").
  int status = 200;
  std::string message;
  /// The user's username, or "lfs+deploy-key-<id>".
  std::string username;
  std::string repository_http_path;
  /// "project-<id>" of the container.
  std::string gl_repository;
  std::optional<std::int64_t> key_id;
  std::optional<std::int64_t> user_id;
};

lfs_plan check_lfs_authenticate(const snapshot& snap, const shell_caller& a,
                                const std::string& project);

// -- /allowed input
// ------------------------------------------------------------

/// GitLab's 400 reason for a gitaly_client_context_bin that is not base64 of a
/// JSON object ("malformed gitaly_client_context_bin" or "Decoded
/// gitaly_client_context_bin is not a valid JSON object"); nullopt when fine.
std::optional<std::string> gitaly_context_problem(const std::string& bin);

} // namespace gatehouse::access
