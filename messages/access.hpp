#pragma once

// The access-control calls of GitLab Shell and Gitaly (contract shell-gitaly
// §2.1–§2.10, §2.13): each call's request as the edges decode it and its
// answer as the access-control actor gives it. Validation and every GitLab
// text live in the domain; the edges only map fields. Failures the caller
// reads as an error (a missing field, the rate limit, a 404 resource) come
// back as errc plus message instead of an answer.

#include "messages/git.hpp"

#include <caf/allowed_unsafe_message_type.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::access {

// -- /allowed
// -------------------------------------------------------------------

/// GitLab's authentication abilities that bear on git (Gitlab::Auth's
/// abilities_for_scopes): what a credential may do at most.
struct git_abilities {
  bool download_code = false;
  bool push_code = false;
};

/// The /allowed request (§2.1). Ids arrive as JSON strings or numbers; the
/// HTTP codec turns them into integers and refuses non-numeric ones.
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
  /// An id that names no record (sent empty, or not a number) is 0: GitLab
  /// looks it up as given, finds nothing, and the request is anonymous.
  std::optional<std::int64_t> key_id;
  std::optional<std::int64_t> user_id;
  /// Rails' identifier ("user-<id>", "key-<id>"): the actor when neither
  /// key_id nor user_id is given; before username.
  std::optional<std::string> identifier;
  std::optional<std::string> username;
  /// Gitaly's quarantine environment (JSON text), relative to the repo.
  std::string env;
  /// Gitaly's relative_path (may name a transaction snapshot).
  std::string relative_path;
  std::vector<std::string> push_options;
  /// Base64 of a JSON object (Gitaly's client context); validated by the
  /// domain, 400 when malformed.
  std::optional<std::string> gitaly_client_context_bin;
  /// What the credential allows (a personal access token's scopes); nullopt
  /// for Shell's callers, whose keys and users carry no such limit.
  std::optional<git_abilities> abilities;
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

/// The decision of /allowed.
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

// -- /shellhorse/git_audit_event
// --------------------------------------------------

/// The git audit event (§2.13): an access check of the operation. The
/// domain checks the required fields (`action`, `protocol`, `gl_repository`,
/// `changes`) in GitLab's order.
struct audit_query {
  std::optional<std::string> action;
  std::optional<std::string> protocol;
  std::optional<std::string> gl_repository;
  std::optional<std::string> changes;
  std::optional<std::string> project;
  std::optional<std::int64_t> key_id;
  std::optional<std::int64_t> user_id;
  std::optional<std::string> username;
  std::vector<std::string> push_options;
};

/// The audit answer: always {"status":false,"message":…}, with `status` as
/// the HTTP status (200 when no audit event is needed, a denial's status
/// otherwise).
struct audit_answer {
  int status = 200;
  std::string message;
};

// -- /authorized_keys
// -------------------------------------------------------------

/// An /authorized_keys lookup by the key's base64 blob.
struct key_query {
  std::string key;
};

/// The SSHKey entity GitLab answers (§2.2). An unknown key is errc::not_found
/// "Key".
struct authorized_key {
  std::int64_t id = 0;
  std::string title;
  /// ISO-8601, e.g. "2026-01-01T00:00:00.000Z".
  std::string created_at;
  std::optional<std::string> expires_at;
  /// "<type> <blob> <user name> (<gitlab host>)": the comment replaced so
  /// that no email address leaks.
  std::string key;
  std::string usage_type;
};

// -- /discover
// ----------------------------------------------------------------------

/// A /discover query; exactly the identifiers the caller sent.
struct discover_query {
  std::optional<std::int64_t> key_id;
  std::optional<std::int64_t> user_id;
  std::optional<std::string> username;
  /// Rails' identifier: "key-<n>" or "user-<n>", used for the ids not given.
  std::optional<std::string> identifier;
};

struct discovered_user {
  std::int64_t id = 0;
  std::string username;
  std::string name;
};

/// The answer of /discover: nullopt is `null`.
struct discover_answer {
  std::optional<discovered_user> user;
};

// -- 2FA recovery codes, personal access tokens, OTP, LFS
// ------------------------

/// The caller's identity as GitLab Shell sends it to the 2FA, PAT and LFS
/// calls.
struct shell_caller {
  std::optional<std::int64_t> key_id;
  std::optional<std::int64_t> user_id;
};

/// A /two_factor_recovery_codes request.
struct recovery_query {
  shell_caller caller;
};

/// A /personal_access_token request.
struct pat_query {
  shell_caller caller;
  std::optional<std::string> name;
  std::optional<std::vector<std::string>> scopes;
  std::optional<std::string> expires_at;
};

/// Either OTP check (/two_factor_manual_otp_check, /two_factor_push_otp_check).
struct otp_query {
  shell_caller caller;
};

/// The {"success":…} answers of the 2FA, OTP and token calls (always 200).
struct shell_answer {
  bool success = false;
  std::string message;
  std::vector<std::string> recovery_codes;
  std::string token;
  std::vector<std::string> scopes;
  std::string expires_at;
};

/// A /lfs_authenticate request.
struct lfs_query {
  shell_caller caller;
  std::string project;
  std::string operation;
};

/// The answer of /lfs_authenticate; a status other than 200 answers
/// {"message": message}.
struct lfs_answer {
  int status = 200;
  std::string message;
  std::string username;
  std::string lfs_token;
  std::string repository_http_path;
  std::int64_t expires_in = 7200;
};

// -- git over HTTP and LFS uploads, through Workhorse's pre-authorization
// ---

/// An end user's HTTP Basic credentials as the git client sent them.
struct basic_credentials {
  /// An Authorization header with the Basic scheme was sent.
  bool provided = false;
  std::string login;
  std::string password;
};

/// The smart-HTTP request Workhorse pre-authorizes (other-callers §4.2).
enum class git_http_action : std::uint8_t {
  info_refs,
  upload_pack,
  receive_pack
};

/// A git client's request as Workhorse forwards it for pre-authorization.
struct git_http_query {
  git_http_action action = git_http_action::info_refs;
  /// The repository path of the URL without ".git": "group/project",
  /// "group/project.wiki".
  std::string repository_path;
  /// info/refs' `service` parameter; nullopt when absent.
  std::optional<std::string> service;
  basic_credentials credentials;
  /// Why Workhorse's own token was refused (ruby-jwt's text); GitLab checks
  /// it after the end user's credentials.
  std::optional<std::string> workhorse_refusal;
};

/// The answer to a git client's pre-authorization: the Workhorse response
/// on success, else a status and GitLab's plain text for the git client.
struct git_http_answer {
  int status = 200;
  /// The plain-text body of a refusal.
  std::string message;
  /// A 401 that carries GitLab's Basic challenge.
  bool challenge = false;
  /// Set on success.
  std::optional<allowed_success> success;
  /// Workhorse's GitConfigOptions.
  std::vector<std::string> git_config_options;
};

/// An LFS object upload's pre-authorization or its finalization, which
/// Workhorse sends once it has stored the body (other-callers §4.3).
struct lfs_upload_query {
  /// false: PUT …/authorize; true: the re-sent PUT with the stored file.
  bool finalize = false;
  std::string repository_path;
  /// The URL's oid and size as given.
  std::string oid;
  std::string size;
  basic_credentials credentials;
  std::optional<std::string> workhorse_refusal;
  /// Finalize: Workhorse's signed upload parameters (the
  /// `file.gitlab-workhorse-upload` JWT) and the signed list of rewritten
  /// fields (the Gitlab-Workhorse-Multipart-Fields header).
  std::optional<std::string> upload_token;
  std::optional<std::string> multipart_fields_token;
};

/// The answer to an LFS upload's pre-authorization or finalization.
struct lfs_upload_answer {
  int status = 200;
  /// How a refusal is shaped: plain text, or Git LFS's JSON error
  /// ({"message", "documentation_url"}).
  enum class shape : std::uint8_t { plain, lfs_json };
  shape refusal_shape = shape::plain;
  std::string message;
  std::string documentation_url;
  bool challenge = false;
  /// Authorize's success: where Workhorse stores the body.
  std::string temp_path;
  std::string oid;
  std::int64_t size = 0;
};

/// Workhorse's lazy pre-authorization of a multipart upload
/// (POST /api/v4/internal/workhorse/authorize_upload, other-callers §4.4):
/// the end user's API token from the forwarded request.
struct upload_query {
  /// PRIVATE-TOKEN header, private_token parameter or Bearer token, in the
  /// order GitLab reads them; nullopt when none.
  std::optional<std::string> token;
};

/// Where Workhorse stores the upload's file parts.
struct upload_answer {
  std::string temp_path;
};

// -- partitions
// -------------------------------------------------------------------

/// The caller an /allowed decision counts against, GitLab's
/// gitlab_shell_operation rate-limit scope: "key-<id>", "user-<id>", the
/// identifier, "username-<name>", or "" (anonymous), in that order.
inline std::string caller_identity(const allowed_params& p) {
  if (p.key_id)
    return "key-" + std::to_string(*p.key_id);
  if (p.user_id)
    return "user-" + std::to_string(*p.user_id);
  if (p.identifier)
    return *p.identifier;
  if (p.username)
    return "username-" + *p.username;
  return "";
}

/// The access domain runs in partitions, each an actor with a slice of the
/// per-caller state: operation counts and the keys marked used today. A
/// request whose answer touches that state goes to the partition its caller
/// hashes to, so one caller's calls always meet the same counts, as they
/// would in one actor; partition_hash gives that hash. nullopt: the answer
/// depends on the read model alone and any partition may give it.
inline std::optional<std::size_t> partition_hash(const allowed_params& p) {
  return std::hash<std::string>{}(caller_identity(p));
}

/// As the /allowed decision the audit event runs (its scope has no
/// identifier).
inline std::optional<std::size_t> partition_hash(const audit_query& q) {
  allowed_params p;
  p.key_id = q.key_id;
  p.user_id = q.user_id;
  p.username = q.username;
  return partition_hash(p);
}

/// A Shell caller: its key, which these calls mark used, else its user; as
/// /allowed hashes the same caller.
inline std::optional<std::size_t> partition_hash(const shell_caller& c) {
  allowed_params p;
  p.key_id = c.key_id;
  p.user_id = c.user_id;
  return partition_hash(p);
}

inline std::optional<std::size_t> partition_hash(const lfs_query& q) {
  return partition_hash(q.caller);
}

inline std::optional<std::size_t> partition_hash(const recovery_query& q) {
  return partition_hash(q.caller);
}

inline std::optional<std::size_t> partition_hash(const pat_query& q) {
  return partition_hash(q.caller);
}

inline std::optional<std::size_t> partition_hash(const key_query&) {
  return std::nullopt;
}

inline std::optional<std::size_t> partition_hash(const discover_query&) {
  return std::nullopt;
}

inline std::optional<std::size_t> partition_hash(const otp_query&) {
  return std::nullopt;
}

/// A git client's requests count in one partition per credential (the
/// /allowed rate limit runs there); anonymous ones anywhere.
inline std::optional<std::size_t> partition_hash(const basic_credentials& c) {
  if (!c.provided)
    return std::nullopt;
  return std::hash<std::string>{}(c.password);
}

inline std::optional<std::size_t> partition_hash(const git_http_query& q) {
  return partition_hash(q.credentials);
}

inline std::optional<std::size_t> partition_hash(const lfs_upload_query& q) {
  return partition_hash(q.credentials);
}

inline std::optional<std::size_t> partition_hash(const upload_query&) {
  return std::nullopt;
}

} // namespace gatehouse::access

// Local messages between the edges and the access-control actor, never
// serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::allowed_params)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::allowed_outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::audit_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::audit_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::key_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::authorized_key)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::discover_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::discover_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::recovery_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::pat_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::otp_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::shell_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::lfs_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::lfs_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::git_http_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::git_http_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::lfs_upload_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::lfs_upload_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::upload_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::upload_answer)
