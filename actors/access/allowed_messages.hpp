#pragma once

// The texts of GitLab's /allowed answers, byte for byte GitLab's
// (Gitlab::GitAccess, Gitlab::Checks::BranchCheck and TagCheck): GitLab
// Shell prints them to the user, and tests compare them verbatim. Used by
// actors/access/git_access.cpp and actors/access/ref_rules.cpp only.

namespace gatehouse::access {

inline constexpr const char* msg_project_not_found
  = "The project you were looking for could not be found or you don't have "
    "permission to view it.";
inline constexpr const char* msg_wiki_not_found
  = "The wiki you were looking for could not be found.";
inline constexpr const char* msg_snippet_not_found
  = "The snippet you were looking for could not be found.";
inline constexpr const char* msg_namespace_not_found
  = "The namespace you were looking for could not be found.";
inline constexpr const char* msg_command_not_allowed
  = "The command you're trying to execute is not allowed.";
inline constexpr const char* msg_auth_download
  = "You are not allowed to download code.";
inline constexpr const char* msg_auth_upload
  = "You are not allowed to upload code.";
inline constexpr const char* msg_key_expired = "Your SSH key has expired.";
inline constexpr const char* msg_auth_mechanism
  = "The authentication mechanism is not supported.";
inline constexpr const char* msg_pending_approval
  = "Your account is pending approval from your administrator and hence "
    "blocked.";
inline constexpr const char* msg_deactivated_prefix
  = "Your account has been deactivated by your administrator. Please log back "
    "in from a web browser to reactivate your account at ";
inline constexpr const char* msg_blocked = "Your account has been blocked.";
inline constexpr const char* msg_no_repo
  = "A repository for this project does not exist yet.";
inline constexpr const char* msg_no_wiki_repo
  = "A repository for this wiki does not exist yet.";
inline constexpr const char* msg_download
  = "You are not allowed to download code from this project.";
inline constexpr const char* msg_wiki_download
  = "You are not allowed to download files from this wiki.";
inline constexpr const char* msg_archived
  = "You can't push code to an archived project.";
inline constexpr const char* msg_deploy_key_upload
  = "This deploy key does not have write access to this project.";
inline constexpr const char* msg_upload
  = "You are not allowed to upload code for this project.";
inline constexpr const char* msg_push_code
  = "You are not allowed to push code to this project.";
inline constexpr const char* msg_write_to_wiki
  = "You are not allowed to write to this project's wiki.";
inline constexpr const char* msg_expiring_soon
  = "INFO: Your SSH key is expiring soon. Please generate a new key.";

// Gitlab::GitAccess::LOG_HEADER: the start of the 503 answer when the
// access check ran out of time; the timing lines follow.
inline constexpr const char* msg_push_timed_out_header
  = "Push operation timed out\n\nTiming information for debugging "
    "purposes:\n";

// BranchCheck
inline constexpr const char* msg_delete_default_branch
  = "The default branch of a project cannot be deleted.";
inline constexpr const char* msg_sha_branch_name
  = "You cannot create a branch with a SHA-1 or SHA-256 branch name.";
inline constexpr const char* msg_invalid_branch_name
  = "You cannot create a branch with an invalid name.";
inline constexpr const char* msg_force_push_protected
  = "You are not allowed to force push code to a protected branch on this "
    "project.";
inline constexpr const char* msg_delete_protected_branch
  = "You are not allowed to delete protected branches from this project. Only "
    "a project maintainer or owner can delete a protected branch.";
inline constexpr const char* msg_delete_protected_branch_non_web
  = "You can only delete protected branches using the web interface.";
inline constexpr const char* msg_push_protected_branch
  = "You are not allowed to push code to protected branches on this project.";
inline constexpr const char* msg_create_protected_branch
  = "You are not allowed to create protected branches on this project.";
inline constexpr const char* msg_invalid_commit_protected_branch
  = "You can only use an existing protected branch ref as the basis of a new "
    "protected branch.";
inline constexpr const char* msg_create_protected_branch_non_web
  = "You can only create protected branches using the web interface and API.";

// TagCheck
inline constexpr const char* msg_change_existing_tags
  = "You are not allowed to change existing tags on this project.";
inline constexpr const char* msg_update_protected_tag
  = "Protected tags cannot be updated.";
inline constexpr const char* msg_delete_protected_tag
  = "You are not allowed to delete protected tags from this project. Only a "
    "project maintainer or owner can delete a protected tag.";
inline constexpr const char* msg_delete_protected_tag_non_web
  = "You can only delete protected tags using the web interface.";
inline constexpr const char* msg_create_protected_tag
  = "You are not allowed to create this tag as it is protected.";
inline constexpr const char* msg_default_branch_tag
  = "You cannot use default branch name to create a tag";
inline constexpr const char* msg_prohibited_tag_name
  = "You cannot create a tag with a prohibited pattern.";
inline constexpr const char* msg_sha_tag_name
  = "You cannot create a tag with a SHA-1 or SHA-256 tag name.";
inline constexpr const char* msg_tag_encoding
  = "Tag names must be valid when converted to UTF-8 encoding";

} // namespace gatehouse::access
