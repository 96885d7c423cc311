// GitLab's /allowed decision (Gitlab::GitAccess and its per-ref checks) as
// pure functions over a read-model snapshot. Written from the contract
// (shell-gitaly §2.1, §3, §4) and the behaviour of upstream GitLab; every
// place where the read model cannot express GitLab's data carries a comment
// saying which behaviour was chosen.

#include "actors/access/git_access.hpp"

#include "actors/gitlab_paths.hpp"
#include "common/ascii.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>

namespace gatehouse::access {

using gitlab::branch_name;
using gitlab::ssh_url_root;
using gitlab::strip_trailing_slashes;
using gitlab::tag_name;

namespace {

// -- texts (byte for byte GitLab's) ---------------------------------------------

constexpr const char* msg_project_not_found =
  "The project you were looking for could not be found or you don't have "
  "permission to view it.";
constexpr const char* msg_wiki_not_found =
  "The wiki you were looking for could not be found.";
constexpr const char* msg_snippet_not_found =
  "The snippet you were looking for could not be found.";
constexpr const char* msg_namespace_not_found =
  "The namespace you were looking for could not be found.";
constexpr const char* msg_command_not_allowed =
  "The command you're trying to execute is not allowed.";
constexpr const char* msg_key_expired = "Your SSH key has expired.";
constexpr const char* msg_auth_mechanism =
  "The authentication mechanism is not supported.";
constexpr const char* msg_pending_approval =
  "Your account is pending approval from your administrator and hence "
  "blocked.";
constexpr const char* msg_deactivated_prefix =
  "Your account has been deactivated by your administrator. Please log back "
  "in from a web browser to reactivate your account at ";
constexpr const char* msg_blocked = "Your account has been blocked.";
constexpr const char* msg_no_repo =
  "A repository for this project does not exist yet.";
constexpr const char* msg_no_wiki_repo =
  "A repository for this wiki does not exist yet.";
constexpr const char* msg_download =
  "You are not allowed to download code from this project.";
constexpr const char* msg_wiki_download =
  "You are not allowed to download files from this wiki.";
constexpr const char* msg_archived =
  "You can't push code to an archived project.";
constexpr const char* msg_deploy_key_upload =
  "This deploy key does not have write access to this project.";
constexpr const char* msg_upload =
  "You are not allowed to upload code for this project.";
constexpr const char* msg_push_code =
  "You are not allowed to push code to this project.";
constexpr const char* msg_write_to_wiki =
  "You are not allowed to write to this project's wiki.";
constexpr const char* msg_expiring_soon =
  "INFO: Your SSH key is expiring soon. Please generate a new key.";

// BranchCheck
constexpr const char* msg_delete_default_branch =
  "The default branch of a project cannot be deleted.";
constexpr const char* msg_sha_branch_name =
  "You cannot create a branch with a SHA-1 or SHA-256 branch name.";
constexpr const char* msg_invalid_branch_name =
  "You cannot create a branch with an invalid name.";
constexpr const char* msg_force_push_protected =
  "You are not allowed to force push code to a protected branch on this "
  "project.";
constexpr const char* msg_delete_protected_branch =
  "You are not allowed to delete protected branches from this project. Only "
  "a project maintainer or owner can delete a protected branch.";
constexpr const char* msg_delete_protected_branch_non_web =
  "You can only delete protected branches using the web interface.";
constexpr const char* msg_push_protected_branch =
  "You are not allowed to push code to protected branches on this project.";
constexpr const char* msg_create_protected_branch =
  "You are not allowed to create protected branches on this project.";
constexpr const char* msg_invalid_commit_protected_branch =
  "You can only use an existing protected branch ref as the basis of a new "
  "protected branch.";
constexpr const char* msg_create_protected_branch_non_web =
  "You can only create protected branches using the web interface and API.";

// TagCheck
constexpr const char* msg_change_existing_tags =
  "You are not allowed to change existing tags on this project.";
constexpr const char* msg_update_protected_tag =
  "Protected tags cannot be updated.";
constexpr const char* msg_delete_protected_tag =
  "You are not allowed to delete protected tags from this project. Only a "
  "project maintainer or owner can delete a protected tag.";
constexpr const char* msg_delete_protected_tag_non_web =
  "You can only delete protected tags using the web interface.";
constexpr const char* msg_create_protected_tag =
  "You are not allowed to create this tag as it is protected.";
constexpr const char* msg_default_branch_tag =
  "You cannot use default branch name to create a tag";
constexpr const char* msg_prohibited_tag_name =
  "You cannot create a tag with a prohibited pattern.";
constexpr const char* msg_sha_tag_name =
  "You cannot create a tag with a SHA-1 or SHA-256 tag name.";
constexpr const char* msg_tag_encoding =
  "Tag names must be valid when converted to UTF-8 encoding";

constexpr const char* git_upload_pack = "git-upload-pack";
constexpr const char* git_upload_archive = "git-upload-archive";
constexpr const char* git_receive_pack = "git-receive-pack";

constexpr int level_guest = 10;
constexpr int level_reporter = 20;
constexpr int level_developer = 30;
constexpr int level_maintainer = 40;
constexpr int level_admin = 60;

constexpr unix_time expiring_soon_window = 7 * 24 * 3600;

// -- small string helpers -------------------------------------------------------

std::string upper(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return s;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join_path(const std::string& dir, const std::string& rel) {
  if (dir.empty()) {
    return rel;
  }
  if (dir.back() == '/') {
    return dir + rel;
  }
  return dir + "/" + rel;
}

/// A relative path that cannot leave its base directory.
bool safe_relative_path(const std::string& rel) {
  if (rel.empty() || rel.front() == '/') {
    return false;
  }
  std::size_t start = 0;
  while (start <= rel.size()) {
    auto slash = rel.find('/', start);
    if (slash == std::string::npos) {
      slash = rel.size();
    }
    if (rel.compare(start, slash - start, "..") == 0 && slash - start == 2) {
      return false;
    }
    start = slash + 1;
  }
  return true;
}

/// Strict positive base-10 integer ("12"; not "+12", "012" is fine).
std::optional<std::int64_t> parse_positive_id(const std::string& s) {
  if (s.empty() || s.size() > 18) {
    return std::nullopt;
  }
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + (c - '0');
  }
  if (v <= 0) {
    return std::nullopt;
  }
  return v;
}

// -- actor -----------------------------------------------------------------------

struct actor_info {
  /// The authenticating key (personal or deploy), if the actor is a key.
  const key_record* key = nullptr;
  /// GitAccess#user: the user the checks run for. nullptr for deploy keys
  /// (GitLab treats a deploy key as having no user) and anonymous actors.
  const user_record* user = nullptr;
  /// actor.user: the key's owner / deploy key's creator, or the user; used
  /// for gl_id and gl_username only.
  const user_record* identity = nullptr;
  std::string identity_str;

  bool deploy_key() const {
    return key != nullptr && key->deploy;
  }
};

const user_record* find_user(const snapshot& snap,
                             std::optional<std::int64_t> id) {
  if (!id) {
    return nullptr;
  }
  const auto it = snap.users.find(*id);
  return it == snap.users.end() ? nullptr : &it->second;
}

// Rails' GitAccessActor.from_params: the first present parameter decides;
// an id that names nothing (or a signing-only key, which Key.auth excludes)
// yields no actor at all, i.e. an anonymous request. That is how an unknown
// `key_id: 0` on a private project ends in the 404 not-found text, while a
// public project stays readable.
actor_info resolve_actor(const snapshot& snap, const allowed_params& p) {
  actor_info a;
  if (p.key_id) {
    const auto it = snap.keys.find(*p.key_id);
    if (it != snap.keys.end() && it->second.can_authenticate()) {
      a.key = &it->second;
      a.identity = find_user(snap, a.key->user_id);
      a.user = a.key->deploy ? nullptr : a.identity;
      a.identity_str = "key-" + std::to_string(a.key->id);
    }
  } else if (p.user_id) {
    a.user = find_user(snap, p.user_id);
    a.identity = a.user;
    if (a.user != nullptr) {
      a.identity_str = "user-" + std::to_string(a.user->id);
    }
  } else if (p.username) {
    const auto it = snap.user_by_username.find(ascii_lower(*p.username));
    if (it != snap.user_by_username.end()) {
      a.user = find_user(snap, it->second);
      a.identity = a.user;
      if (a.user != nullptr) {
        a.identity_str = "user-" + std::to_string(a.user->id);
      }
    }
  }
  return a;
}

// -- repository ------------------------------------------------------------------

enum class repo_type { project, wiki, snippet, design, group_wiki };

struct repo_target {
  repo_type type = repo_type::project;
  const project_record* project = nullptr;
  /// The path as typed (normalised), when it was reached through a redirect.
  std::optional<std::string> redirected_path;
  bool by_gl_repository = false;
  /// Whether the repository path has a namespace part (project type only).
  bool namespace_present = true;
};

const project_record* find_project_by_id(const snapshot& snap,
                                         std::int64_t id) {
  const auto it = snap.projects.find(id);
  return it == snap.projects.end() ? nullptr : &it->second;
}

/// Project.find_by_full_path(path, follow_redirects: true): exact or
/// case-insensitive route, then a redirect route. `redirected` is set when
/// the project's full path differs from `path` other than by case.
const project_record* find_project_by_path(const snapshot& snap,
                                           const std::string& path,
                                           bool& redirected) {
  redirected = false;
  if (path.empty()) {
    return nullptr;
  }
  const std::string key = ascii_lower(path);
  auto it = snap.project_by_path.find(key);
  const project_record* found = nullptr;
  if (it != snap.project_by_path.end()) {
    found = find_project_by_id(snap, it->second);
  }
  if (found == nullptr) {
    it = snap.redirects.find(key);
    if (it != snap.redirects.end()) {
      found = find_project_by_id(snap, it->second);
    }
  }
  if (found != nullptr) {
    redirected = ascii_lower(found->full_path) != key;
  }
  return found;
}

repo_target resolve_gl_repository(const snapshot& snap,
                                  const std::string& glr) {
  repo_target t;
  t.by_gl_repository = true;
  // "group-<id>-wiki" (EE group wiki): not in the read model.
  if (starts_with(glr, "group-") && ends_with(glr, "-wiki")) {
    t.type = repo_type::group_wiki;
    return t;
  }
  const auto dash = glr.rfind('-');
  if (dash == std::string::npos) {
    return t; // malformed: answered as a missing project (Rails raises)
  }
  const std::string kind = glr.substr(0, dash);
  const auto id = parse_positive_id(glr.substr(dash + 1));
  if (kind == "wiki") {
    t.type = repo_type::wiki;
  } else if (kind == "snippet") {
    t.type = repo_type::snippet;
    return t; // snippets are not in the read model
  } else if (kind == "design") {
    t.type = repo_type::design;
    return t; // design repositories are not in the read model
  } else if (kind != "project") {
    return t;
  }
  if (id) {
    t.project = find_project_by_id(snap, *id);
  }
  return t;
}

// Gitlab::RepoPath.parse: strip one trailing ".git" and one leading '/', then
// try the types in order: project (no suffix), wiki (".wiki"), snippet
// ("snippets/<id>", "<project>/snippets/<id>"), design (".design"). Snippets
// and design repositories are not in the read model, so those paths find no
// container and, as in GitLab, fall back to the project type without one
// (hence the project not-found text, after the namespace check).
repo_target resolve_path(const snapshot& snap, const std::string& typed) {
  repo_target t;
  std::string path = typed;
  if (ends_with(path, ".git")) {
    path.resize(path.size() - 4);
  }
  if (starts_with(path, "/")) {
    path.erase(0, 1);
  }

  bool redirected = false;
  if (const auto* proj = find_project_by_path(snap, path, redirected)) {
    t.project = proj;
    if (redirected) {
      t.redirected_path = path;
    }
    return t;
  }
  if (ends_with(path, ".wiki")) {
    const std::string base = path.substr(0, path.size() - 5);
    if (const auto* proj = find_project_by_path(snap, base, redirected)) {
      t.type = repo_type::wiki;
      t.project = proj;
      if (redirected) {
        t.redirected_path = path; // the typed path, ".wiki" included
      }
      return t;
    }
  }
  // No container: project type. Namespace part = everything before the last
  // '/' (GitLab matches "<namespace>/<project>.git").
  const auto slash = path.rfind('/');
  t.namespace_present = slash != std::string::npos && slash > 0;
  return t;
}

repo_target resolve_repo(const snapshot& snap, const allowed_params& p) {
  if (p.gl_repository && !p.gl_repository->empty()) {
    return resolve_gl_repository(snap, *p.gl_repository);
  }
  if (p.project) {
    return resolve_path(snap, *p.project);
  }
  repo_target t;
  t.namespace_present = false;
  return t;
}

const char* not_found_text(repo_type type) {
  switch (type) {
  case repo_type::wiki:
  case repo_type::group_wiki:
    return msg_wiki_not_found;
  case repo_type::snippet:
    return msg_snippet_not_found;
  case repo_type::project:
  case repo_type::design:
    break;
  }
  return msg_project_not_found;
}

// -- abilities -------------------------------------------------------------------
//
// The project policy reduced to what the read model holds. Admins are
// treated as in admin mode (the internal API bypasses the admin-mode
// session), except that a disabled repository feature blocks them too
// (DeclarativePolicy's `prevent` wins over admin rules).

bool user_active(const user_record* u) {
  return u != nullptr && u->state == "active";
}

class policy {
public:
  policy(const snapshot& snap, const project_record& project)
    : snap_(snap), project_(project) {}

  int level(const user_record* u) const {
    return u == nullptr ? 0 : access_level(snap_, u->id, project_);
  }

  bool is_public() const {
    return project_.visibility == "public";
  }

  bool repository_disabled() const {
    return project_.repository_access_level == "disabled";
  }

  bool repository_private() const {
    return project_.repository_access_level == "private";
  }

  /// read_project: public to anyone; internal to signed-in non-external
  /// users; private to members (Guest and up); admins read everything.
  bool read_project(const user_record* u) const {
    if (u == nullptr) {
      return is_public();
    }
    if (u->admin || is_public()) {
      return true;
    }
    if (project_.visibility == "internal" && !u->external) {
      return true;
    }
    return level(u) >= level_guest;
  }

  /// download_code. Repository feature "private" means project members with
  /// at least Reporter (and admins); "disabled" blocks everyone.
  bool download_code(const user_record* u) const {
    if (repository_disabled()) {
      return false;
    }
    if (u == nullptr) {
      return is_public() && !repository_private();
    }
    if (u->admin) {
      return true;
    }
    const int lvl = level(u);
    if (repository_private()) {
      return lvl >= level_reporter;
    }
    if (is_public()) {
      return true;
    }
    if (project_.visibility == "internal" && !u->external) {
      return true;
    }
    return lvl >= level_reporter;
  }

  /// download_wiki_code: whoever can read the project (the wiki feature
  /// level is not in the read model and is taken as enabled).
  bool download_wiki_code(const user_record* u) const {
    return read_project(u);
  }

  /// push_code: Developer and up, or admin; never into a disabled
  /// repository feature or an archived project.
  bool push_code(const user_record* u) const {
    if (u == nullptr || repository_disabled() || project_.archived) {
      return false;
    }
    return u->admin || level(u) >= level_developer;
  }

  /// admin_tag (changing existing tags): Developer and up, or admin.
  bool admin_tag(const user_record* u) const {
    return u != nullptr && (u->admin || level(u) >= level_developer);
  }

  /// create_wiki: Developer and up, or admin.
  bool create_wiki(const user_record* u) const {
    return u != nullptr && !project_.archived &&
           (u->admin || level(u) >= level_developer);
  }

  /// maintainer_access / admin_project / push_to_delete_protected_branch.
  bool maintainer(const user_record* u) const {
    return u != nullptr && (u->admin || level(u) >= level_maintainer);
  }

  /// One role-based access level of a protected branch or tag: 0 no one,
  /// 60 admins only, otherwise push_code plus a membership level at least
  /// that high. Admins pass every level but "no one" (admins can push where
  /// maintainers can).
  bool role_allows(const user_record* u, int required) const {
    if (u == nullptr || required <= 0) {
      return false;
    }
    if (required >= level_admin) {
      return u->admin;
    }
    if (u->admin) {
      return true;
    }
    return push_code(u) && level(u) >= required;
  }

private:
  const snapshot& snap_;
  const project_record& project_;
};

// -- per-ref checks --------------------------------------------------------------

struct refusal {
  int status = 401;
  std::string message;
};

/// Gitlab::UserAccess / DeployKeyAccess for one project. `user` is the
/// pushing user, or for a deploy key its creator (GitLab evaluates deploy
/// keys' ref permissions through the creator, and the read model has no
/// deploy-key entries in protected-ref access lists).
class ref_access {
public:
  ref_access(const snapshot& snap, const project_record& project,
             const user_record* user, bool deploy_key, bool empty_repo)
    : snap_(snap), project_(project), pol_(snap, project), user_(user),
      deploy_key_(deploy_key), empty_(empty_repo) {}

  const std::vector<protected_branch_record>& branches() const {
    static const std::vector<protected_branch_record> none;
    const auto it = snap_.protected_branches.find(project_.id);
    return it == snap_.protected_branches.end() ? none : it->second;
  }

  const std::vector<protected_tag_record>& tags() const {
    static const std::vector<protected_tag_record> none;
    const auto it = snap_.protected_tags.find(project_.id);
    return it == snap_.protected_tags.end() ? none : it->second;
  }

  /// Matches one of the project's protected branch patterns.
  bool matches_protected_branch(const std::string& name) const {
    for (const auto& pb : branches()) {
      if (ref_pattern_matches(pb.name, name)) {
        return true;
      }
    }
    return false;
  }

  /// ProtectedBranch.protected?: every branch counts as protected in an
  /// empty repository. The read model has no default-branch-protection
  /// setting: GitLab's default ("fully protected": maintainers make the
  /// initial push) is assumed.
  bool branch_protected(const std::string& name) const {
    return empty_ || matches_protected_branch(name);
  }

  bool allow_force_push(const std::string& name) const {
    for (const auto& pb : branches()) {
      if (pb.allow_force_push && ref_pattern_matches(pb.name, name)) {
        return true;
      }
    }
    return false;
  }

  bool can_access_git() const {
    return user_active(user_);
  }

  bool can_push_for_ref(const std::string& ref) const {
    if (deploy_key_) {
      // DeployKeyAccess#can_push_for_ref? checks the full ref name.
      return can_push_to_branch(ref);
    }
    return can_access_git() && pol_.push_code(user_);
  }

  bool can_push_to_branch(const std::string& name) const {
    if (!can_access_git() || !can_collaborate()) {
      return false;
    }
    if (!branch_protected(name)) {
      return true;
    }
    return protected_branch_accessible(name, /*push=*/true);
  }

  bool can_merge_to_branch(const std::string& name) const {
    if (!can_access_git()) {
      return false;
    }
    if (branch_protected(name)) {
      return protected_branch_accessible(name, /*push=*/false);
    }
    return pol_.push_code(user_);
  }

  bool can_delete_branch(const std::string& name) const {
    if (!can_access_git()) {
      return false;
    }
    if (branch_protected(name)) {
      return pol_.maintainer(user_);
    }
    return pol_.push_code(user_);
  }

  bool tag_protected(const std::string& name) const {
    for (const auto& pt : tags()) {
      if (ref_pattern_matches(pt.name, name)) {
        return true;
      }
    }
    return false;
  }

  bool can_create_tag(const std::string& name) const {
    if (!can_access_git()) {
      return false;
    }
    if (tag_protected(name)) {
      for (const auto& pt : tags()) {
        if (ref_pattern_matches(pt.name, name) &&
            pol_.role_allows(user_, pt.create_access_level)) {
          return true;
        }
      }
      return false;
    }
    return pol_.admin_tag(user_);
  }

  bool admin_tag() const {
    return can_access_git() && pol_.admin_tag(user_);
  }

  bool maintainer() const {
    return pol_.maintainer(user_);
  }

  bool empty() const {
    return empty_;
  }

private:
  bool can_collaborate() const {
    if (deploy_key_) {
      // The creator must still read the project; the key's write access was
      // checked before the per-ref checks.
      return pol_.read_project(user_);
    }
    return pol_.push_code(user_);
  }

  bool protected_branch_accessible(const std::string& name, bool push) const {
    if (empty_ && user_ != nullptr && (user_->admin || pol_.maintainer(user_))) {
      return true; // maintainers and admins create the default branch
    }
    for (const auto& pb : branches()) {
      if (!ref_pattern_matches(pb.name, name)) {
        continue;
      }
      const int required = push ? pb.push_access_level : pb.merge_access_level;
      if (pol_.role_allows(user_, required)) {
        return true;
      }
    }
    return false;
  }

  const snapshot& snap_;
  const project_record& project_;
  policy pol_;
  const user_record* user_;
  bool deploy_key_;
  bool empty_;
};

std::string project_members_url(const snapshot& snap,
                                const project_record& project) {
  return strip_trailing_slashes(snap.settings.external_url) + "/" +
         project.full_path + "/-/project_members";
}

std::string empty_project_push_message(const snapshot& snap,
                                       const project_record& project) {
  return "\nA default branch (e.g. master) does not yet exist for " +
         project.full_path +
         "\nAsk a project Owner or Maintainer to create a default branch:\n\n"
         "  " +
         project_members_url(snap, project) + "\n\n";
}

bool storage_has_path(const snapshot& snap, const project_record& project) {
  const auto it = snap.storages.find(project.storage);
  return it != snap.storages.end() && !it->second.path.empty();
}

/// Our own text for a decision that needs git facts nobody could provide.
std::string facts_unavailable(const snapshot& snap,
                              const project_record& project,
                              const git_facts& facts, const std::string& what) {
  std::string why = storage_has_path(snap, project)
                      ? "git could not answer"
                      : "the repository storage has no local path";
  const std::string reason =
    facts.unavailable_reason.empty() ? "no reason given"
                                     : facts.unavailable_reason;
  return what + " is unavailable because " + why + " (" + reason +
         "), so this push to a protected branch is refused.";
}

struct ref_context {
  const snapshot& snap;
  const project_record& project;
  const ref_access& access;
  const git_facts& facts;
  const std::string& protocol;
};

std::optional<refusal> branch_check(const ref_context& c,
                                    const ref_change& ch,
                                    const std::string& branch) {
  const bool creation = is_blank_rev(ch.oldrev);
  const bool deletion = is_blank_rev(ch.newrev);

  if (deletion && branch == c.project.default_branch) {
    return refusal{401, msg_delete_default_branch};
  }
  if (!deletion) {
    if (starts_with_full_sha(branch)) {
      return refusal{401, msg_sha_branch_name};
    }
    if (!valid_ref_name(branch)) {
      return refusal{401, msg_invalid_branch_name};
    }
  }
  if (!c.access.branch_protected(branch)) {
    return std::nullopt;
  }

  // Force push: both revisions real, repository not empty, old not an
  // ancestor of new, unless a matching protection allows force pushes.
  if (!c.access.empty() && !creation && !deletion &&
      !c.access.allow_force_push(branch)) {
    const auto it = c.facts.is_ancestor.find({ch.oldrev, ch.newrev});
    if (it == c.facts.is_ancestor.end()) {
      return refusal{
        401, facts_unavailable(c.snap, c.project, c.facts,
                               "Force-push detection for protected branch '" +
                                 branch + "'")};
    }
    if (!it->second) {
      return refusal{401, msg_force_push_protected};
    }
  }

  auto push_checks = [&]() -> std::optional<refusal> {
    // No merge-request data in the read model: a pushed commit is never the
    // in-progress merge of an open merge request.
    if (!c.access.can_push_to_branch(branch)) {
      if (c.access.empty()) {
        return refusal{401, empty_project_push_message(c.snap, c.project)};
      }
      return refusal{401, msg_push_protected_branch};
    }
    return std::nullopt;
  };

  if (c.access.empty()) {
    return push_checks();
  }
  if (creation) {
    if (c.access.can_push_to_branch(branch)) {
      return std::nullopt;
    }
    if (!c.access.can_merge_to_branch(branch)) {
      return refusal{401, msg_create_protected_branch};
    }
    const auto it = c.facts.branches_containing.find(ch.newrev);
    if (it == c.facts.branches_containing.end()) {
      return refusal{
        401, facts_unavailable(c.snap, c.project, c.facts,
                               "Checking the basis of new protected branch '" +
                                 branch + "'")};
    }
    bool safe = false;
    for (const auto& b : it->second) {
      if (c.access.matches_protected_branch(b)) {
        safe = true;
        break;
      }
    }
    if (!safe) {
      return refusal{401, msg_invalid_commit_protected_branch};
    }
    if (c.protocol != "web") {
      return refusal{401, msg_create_protected_branch_non_web};
    }
    return std::nullopt;
  }
  if (deletion) {
    if (!c.access.can_delete_branch(branch)) {
      return refusal{401, msg_delete_protected_branch};
    }
    if (c.protocol != "web") {
      return refusal{401, msg_delete_protected_branch_non_web};
    }
    return std::nullopt;
  }
  return push_checks();
}

std::optional<refusal> tag_check(const ref_context& c, const ref_change& ch,
                                 const std::string& tag) {
  const bool creation = is_blank_rev(ch.oldrev);
  const bool deletion = is_blank_rev(ch.newrev);
  const bool update = !creation && !deletion;
  // Tag existence is not in the read model: a change with a real old
  // revision names an existing tag.
  const bool tag_exists = !creation;

  if (tag_exists && !c.access.admin_tag()) {
    return refusal{401, msg_change_existing_tags};
  }
  if (creation && tag == c.project.default_branch) {
    return refusal{401, msg_default_branch_tag};
  }
  if (!deletion) {
    if (!valid_utf8(tag)) {
      return refusal{401, msg_tag_encoding};
    }
    if (!valid_ref_name(tag) || starts_with(tag, "refs/tags/")) {
      return refusal{401, msg_prohibited_tag_name};
    }
    if (starts_with_full_sha(tag)) {
      return refusal{401, msg_sha_tag_name};
    }
  }
  if (!c.access.tag_protected(tag)) {
    return std::nullopt;
  }
  if (update) {
    return refusal{401, msg_update_protected_tag};
  }
  if (deletion) {
    if (!c.access.maintainer()) {
      return refusal{401, msg_delete_protected_tag};
    }
    if (c.protocol != "web") {
      return refusal{401, msg_delete_protected_tag_non_web};
    }
  }
  // As in GitLab, the create permission is also required for a web deletion.
  if (!c.access.can_create_tag(tag)) {
    return refusal{401, msg_create_protected_tag};
  }
  return std::nullopt;
}

std::optional<refusal> change_checks(const ref_context& c,
                                     const std::vector<ref_change>& changes) {
  for (const auto& ch : changes) {
    if (!c.access.can_push_for_ref(ch.ref)) {
      return refusal{401, msg_push_code};
    }
    if (const auto branch = branch_name(ch.ref)) {
      if (auto r = branch_check(c, ch, *branch)) {
        return r;
      }
    } else if (const auto tag = tag_name(ch.ref)) {
      if (auto r = tag_check(c, ch, *tag)) {
        return r;
      }
    }
  }
  return std::nullopt;
}

// -- outcome pieces --------------------------------------------------------------

std::string url_to_repo(const settings_record& s, const std::string& protocol,
                        const std::string& repo_full_path) {
  if (protocol == "ssh") {
    return ssh_url_root(s) + repo_full_path + ".git";
  }
  return strip_trailing_slashes(s.external_url) + "/" + repo_full_path + ".git";
}

std::string moved_message(const snapshot& snap, const repo_target& t,
                          const std::string& protocol) {
  const bool wiki = t.type == repo_type::wiki;
  const std::string full =
    wiki ? t.project->full_path + ".wiki" : t.project->full_path;
  return std::string(wiki ? "Project wiki" : "Project") + " '" +
         *t.redirected_path + "' was moved to '" + full +
         "'.\n\nPlease update your Git remote:\n\n  git remote set-url origin " +
         url_to_repo(snap.settings, protocol, full) + "\n";
}

bool deploy_key_enabled(const key_record& key, const project_record& project) {
  return key.deploy_projects.count(project.id) != 0;
}

bool deploy_key_can_push(const key_record& key, const project_record& project) {
  const auto it = key.deploy_projects.find(project.id);
  return it != key.deploy_projects.end() && it->second;
}

/// check_project_accessibility!: deploy key enabled for the project, user
/// that can read it, or anyone for a public project.
bool readable(const snapshot& snap, const actor_info& a,
              const project_record& project) {
  const policy pol(snap, project);
  if (a.deploy_key() && deploy_key_enabled(*a.key, project)) {
    return true;
  }
  if (a.user != nullptr && pol.read_project(a.user)) {
    return true;
  }
  return pol.is_public();
}

bool can_download(const snapshot& snap, const actor_info& a,
                  const project_record& project, bool wiki) {
  const policy pol(snap, project);
  if (a.deploy_key() && deploy_key_enabled(*a.key, project) &&
      (wiki || !pol.repository_disabled())) {
    return true;
  }
  if (a.user != nullptr &&
      (wiki ? pol.download_wiki_code(a.user) : pol.download_code(a.user))) {
    return true;
  }
  return wiki ? pol.download_wiki_code(nullptr) : pol.download_code(nullptr);
}

/// The user whose permissions the per-ref checks use.
const user_record* ref_user(const snapshot& snap, const actor_info& a) {
  if (a.deploy_key()) {
    return find_user(snap, a.key->user_id);
  }
  return a.user;
}

bool is_git_command(const std::string& action) {
  return action == git_upload_pack || action == git_upload_archive ||
         action == git_receive_pack;
}

allowed_outcome deny(allowed_outcome o, int status, std::string message) {
  o.status = status;
  o.message = std::move(message);
  o.success.reset();
  return o;
}

allowed_success success_body(const snapshot& snap, const allowed_params& p,
                             const actor_info& a, const repo_target& t,
                             unix_time now) {
  const project_record& project = *t.project;
  const bool wiki = t.type == repo_type::wiki;
  allowed_success s;
  s.gl_repository =
    (wiki ? "wiki-" : "project-") + std::to_string(project.id);
  s.gl_project_path = wiki ? project.full_path + ".wiki" : project.full_path;
  s.gl_project_id = project.id;
  s.gl_root_namespace_id = root_namespace_id(snap, project);
  if (a.identity != nullptr) {
    s.gl_id = "user-" + std::to_string(a.identity->id);
    s.gl_username = a.identity->username;
  }
  if (a.key != nullptr) {
    s.gl_key_type = a.key->deploy ? "deploy_key" : "key";
    s.gl_key_id = a.key->id;
  }
  s.git_config_options = {"uploadpack.allowFilter=true",
                          "uploadpack.allowAnySHA1InWant=true"};
  if (snap.settings.receive_max_input_size_mb > 0) {
    s.git_config_options.push_back(
      "receive.maxInputSize=" +
      std::to_string(snap.settings.receive_max_input_size_mb * 1048576));
  }
  if (is_git_command(p.action)) {
    gitaly_info g;
    g.storage_name = project.storage;
    g.relative_path = project.disk_path + (wiki ? ".wiki.git" : ".git");
    g.gl_repository = s.gl_repository;
    g.gl_project_path = s.gl_project_path;
    const auto it = snap.storages.find(project.storage);
    if (it != snap.storages.end()) {
      g.address = it->second.gitaly_address;
      // Gitlab::GitalyClient.token uses `.presence`: empty becomes null.
      if (!it->second.gitaly_token.empty()) {
        g.token = it->second.gitaly_token;
      }
    }
    s.gitaly = std::move(g);
  }
  // Gitlab::Auth::KeyStatusChecker, for personal and deploy keys alike.
  if (a.key != nullptr && a.key->expires_at && *a.key->expires_at > now &&
      *a.key->expires_at < now + expiring_soon_window) {
    s.gl_console_messages.push_back(msg_expiring_soon);
  }
  return s;
}

} // namespace

// -- public functions -------------------------------------------------------------

int access_level(const snapshot& snap, std::int64_t user_id,
                 const project_record& project) {
  int best = 0;
  const auto direct = snap.project_members.find({user_id, project.id});
  if (direct != snap.project_members.end()) {
    best = std::max(best, direct->second);
  }
  std::optional<std::int64_t> ns = project.namespace_id;
  std::size_t guard = 0;
  while (ns && guard++ < 1000) {
    const auto m = snap.namespace_members.find({user_id, *ns});
    if (m != snap.namespace_members.end()) {
      best = std::max(best, m->second);
    }
    const auto it = snap.namespaces.find(*ns);
    if (it == snap.namespaces.end()) {
      break;
    }
    ns = it->second.parent_id;
  }
  return best;
}

std::int64_t root_namespace_id(const snapshot& snap,
                               const project_record& project) {
  std::int64_t id = project.namespace_id;
  std::size_t guard = 0;
  while (guard++ < 1000) {
    const auto it = snap.namespaces.find(id);
    if (it == snap.namespaces.end() || !it->second.parent_id) {
      break;
    }
    id = *it->second.parent_id;
  }
  return id;
}

git_questions questions_for(const snapshot& snap, const allowed_params& p) {
  git_questions q;
  if (p.action != git_receive_pack) {
    return q;
  }
  const repo_target t = resolve_repo(snap, p);
  if (t.project == nullptr || t.type != repo_type::project) {
    return q; // wiki pushes have no per-ref checks
  }
  const auto changes = parse_changes(p.changes);
  if (changes.empty()) {
    return q;
  }
  const project_record& project = *t.project;

  const auto storage = snap.storages.find(project.storage);
  if (storage != snap.storages.end() && !storage->second.path.empty()) {
    repo_location loc;
    // Gitaly's relative_path names the repository its quarantine directories
    // are relative to (a transaction snapshot when transactions are on); it
    // is used when it stays inside the storage, else the project's disk path.
    const std::string rel = safe_relative_path(p.relative_path)
                              ? p.relative_path
                              : project.disk_path + ".git";
    loc.repo_dir = join_path(storage->second.path, rel);
    const auto env = nlohmann::json::parse(p.env, nullptr, false);
    if (env.is_object()) {
      const auto absolute = [&](const std::string& d) {
        return (!d.empty() && d.front() == '/') ? d : join_path(loc.repo_dir, d);
      };
      const auto obj = env.find("GIT_OBJECT_DIRECTORY_RELATIVE");
      if (obj != env.end() && obj->is_string() &&
          !obj->get<std::string>().empty()) {
        loc.object_directory = absolute(obj->get<std::string>());
      }
      const auto alt = env.find("GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE");
      if (alt != env.end() && alt->is_array()) {
        for (const auto& d : *alt) {
          if (d.is_string() && !d.get<std::string>().empty()) {
            loc.alternate_object_directories.push_back(
              absolute(d.get<std::string>()));
          }
        }
      }
    }
    q.location = std::move(loc);
  }

  const actor_info a = resolve_actor(snap, p);
  const user_record* u = ref_user(snap, a);
  const ref_access access(snap, project, u, a.deploy_key(), false);
  const bool maintainer_or_admin = access.maintainer();
  for (const auto& ch : changes) {
    // For a deploy key whose creator is not a maintainer, even the push
    // check of a tag depends on whether the repository is empty.
    if (a.deploy_key() && !maintainer_or_admin) {
      q.ask_empty = true;
    }
    const auto branch = branch_name(ch.ref);
    if (!branch) {
      continue;
    }
    const bool creation = is_blank_rev(ch.oldrev);
    const bool deletion = is_blank_rev(ch.newrev);
    const bool protected_branch = access.matches_protected_branch(*branch);
    // An empty repository protects every branch: it matters for protected
    // branches, and for anyone who could not make the initial push.
    if (protected_branch || !maintainer_or_admin) {
      q.ask_empty = true;
    }
    if (!protected_branch) {
      continue;
    }
    if (!creation && !deletion) {
      q.ancestry.insert({ch.oldrev, ch.newrev});
    } else if (creation && !deletion && !access.can_push_to_branch(*branch) &&
               access.can_merge_to_branch(*branch)) {
      q.branches_containing.insert(ch.newrev);
    }
  }
  return q;
}

allowed_outcome check_allowed(const snapshot& snap, const allowed_params& p,
                              const git_facts& facts, unix_time now) {
  allowed_outcome o;
  const actor_info a = resolve_actor(snap, p);
  o.actor_identity = a.identity_str;
  if (a.key != nullptr) {
    o.used_key_id = a.key->id;
  }
  const repo_target t = resolve_repo(snap, p);
  if (t.project != nullptr) {
    o.project_id = t.project->id;
  }

  // 1. protocol ("web" always; blank or "all" means every protocol).
  const std::string& allowed_protocol =
    snap.settings.enabled_git_access_protocol;
  if (p.protocol != "web" && !allowed_protocol.empty() &&
      allowed_protocol != "all" && allowed_protocol != p.protocol) {
    return deny(std::move(o), 401,
                "Git access over " + upper(p.protocol) + " is not allowed");
  }

  // 2. key validity (personal and deploy keys). Snippet repositories accept
  // users and personal keys only.
  if (t.type == repo_type::snippet && a.deploy_key()) {
    return deny(std::move(o), 401, msg_auth_mechanism);
  }
  if (a.key != nullptr && a.key->expires_at && *a.key->expires_at <= now) {
    return deny(std::move(o), 401, msg_key_expired);
  }

  // 3. user state.
  if (a.user != nullptr && a.user->state != "active") {
    const std::string& state = a.user->state;
    if (state == "blocked_pending_approval") {
      return deny(std::move(o), 401, msg_pending_approval);
    }
    if (state == "deactivated") {
      return deny(std::move(o), 401,
                  msg_deactivated_prefix +
                    strip_trailing_slashes(snap.settings.external_url));
    }
    return deny(std::move(o), 401, msg_blocked);
  }

  // 6. command known.
  if (!is_git_command(p.action)) {
    return deny(std::move(o), 401, msg_command_not_allowed);
  }

  // 9. container: namespace, existence (push-to-create is out of scope),
  // readability, moved message.
  if (t.type == repo_type::project && !t.by_gl_repository &&
      !t.namespace_present) {
    return deny(std::move(o), 404, msg_namespace_not_found);
  }
  if (t.project == nullptr) {
    return deny(std::move(o), 404, not_found_text(t.type));
  }
  const project_record& project = *t.project;
  const bool wiki = t.type == repo_type::wiki;
  if (!readable(snap, a, project)) {
    return deny(std::move(o), 404, not_found_text(t.type));
  }
  // Stored for /post_receive even when a later check refuses, as GitLab
  // does; only for requests with a user (never for deploy keys).
  if (t.redirected_path && a.user != nullptr) {
    o.moved_message = moved_message(snap, t, p.protocol);
    o.moved_user_id = a.user->id;
    o.moved_project_id = project.id;
  }

  // 10. repository exists. The read model has no separate flag for the
  // wiki repository: the project's flag stands for both.
  if (!project.repository_exists) {
    return deny(std::move(o), 404, wiki ? msg_no_wiki_repo : msg_no_repo);
  }

  if (p.action != git_receive_pack) {
    // 11d. download.
    if (!can_download(snap, a, project, wiki)) {
      return deny(std::move(o), 401, wiki ? msg_wiki_download : msg_download);
    }
  } else {
    // 11p. push.
    if (project.archived) {
      return deny(std::move(o), 401, msg_archived);
    }
    if (a.deploy_key()) {
      if (!deploy_key_can_push(*a.key, project)) {
        return deny(std::move(o), 401, msg_deploy_key_upload);
      }
    } else if (a.user == nullptr) {
      return deny(std::move(o), 401, msg_upload);
    }

    const user_record* u = ref_user(snap, a);
    const policy pol(snap, project);
    if (wiki) {
      if (!user_active(u) || !pol.create_wiki(u)) {
        return deny(std::move(o), 401, msg_write_to_wiki);
      }
    } else if (p.changes == "_any") {
      if (!a.deploy_key() && !pol.push_code(a.user)) {
        return deny(std::move(o), 401, msg_push_code);
      }
    } else {
      const auto changes = parse_changes(p.changes);
      // Unknown emptiness counts as "not empty".
      const bool empty = facts.repository_empty.value_or(false);
      const ref_access access(snap, project, u, a.deploy_key(), empty);
      const ref_context ctx{snap, project, access, facts, p.protocol};
      if (auto r = change_checks(ctx, changes)) {
        return deny(std::move(o), r->status, std::move(r->message));
      }
    }
  }

  o.status = 200;
  o.message.clear();
  o.success = success_body(snap, p, a, t, now);
  return o;
}

} // namespace gatehouse::access
