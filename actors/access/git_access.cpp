// GitLab's /allowed decision (Gitlab::GitAccess and its per-ref checks) as
// pure functions over a read-model snapshot. Written from the contract
// (shell-gitaly §2.1, §3, §4) and the behaviour of upstream GitLab; every
// place where the read model cannot express GitLab's data carries a comment
// saying which behaviour was chosen.

#include "actors/access/git_access.hpp"

#include "actors/access/allowed_messages.hpp"
#include "actors/access/project_policy.hpp"
#include "actors/gitlab_paths.hpp"
#include "common/ascii.hpp"
#include "common/ids.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>

namespace gatehouse::access {

using gitlab::branch_name;
using gitlab::ssh_url_root;
using gitlab::strip_trailing_slashes;

namespace {

constexpr const char* git_upload_pack = "git-upload-pack";
constexpr const char* git_upload_archive = "git-upload-archive";
constexpr const char* git_receive_pack = "git-receive-pack";

constexpr unix_time expiring_soon_window = 7 * 24 * 3600;

// -- small string helpers
// -------------------------------------------------------

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
  return s.size() >= suffix.size()
    && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
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
  auto id = parse_id(s);
  if (!id || *id <= 0) {
    return std::nullopt;
  }
  return id;
}

// -- actor
// -----------------------------------------------------------------------

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

// Rails' GitAccessActor.from_identifier (Gitlab::Identifier): "user-<id>"
// is that user; "key-<id>" is the user who owns that personal key (acting
// as the user, not as the key), else that deploy key; anything else, or an
// id that names nothing, is nobody.
void resolve_identifier(const snapshot& snap, const std::string& identifier,
                        actor_info& a) {
  if (starts_with(identifier, "user-")) {
    a.user = find_user(snap, parse_positive_id(identifier.substr(5)));
    a.identity = a.user;
    if (a.user != nullptr) {
      a.identity_str = "user-" + std::to_string(a.user->id);
    }
    return;
  }
  if (!starts_with(identifier, "key-")) {
    return;
  }
  const auto id = parse_positive_id(identifier.substr(4));
  const auto it = id ? snap.keys.find(*id) : snap.keys.end();
  if (it == snap.keys.end()) {
    return;
  }
  const key_record& key = it->second;
  if (!key.deploy) {
    a.user = find_user(snap, key.user_id);
    a.identity = a.user;
    if (a.user != nullptr) {
      a.identity_str = "user-" + std::to_string(a.user->id);
    }
    return;
  }
  a.key = &key;
  a.identity = find_user(snap, key.user_id);
  a.identity_str = "key-" + std::to_string(key.id);
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
  } else if (p.identifier) {
    resolve_identifier(snap, *p.identifier, a);
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

// -- repository
// ------------------------------------------------------------------

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
  auto ref = gitlab::parse_gl_repository(glr);
  if (!ref) {
    return t; // malformed: answered as a missing project (Rails raises)
  }
  switch (ref->kind) {
    case gitlab::repository_kind::group_wiki:
      // EE group wikis are not in the read model.
      t.type = repo_type::group_wiki;
      return t;
    case gitlab::repository_kind::snippet:
      t.type = repo_type::snippet;
      return t; // snippets are not in the read model
    case gitlab::repository_kind::design:
      t.type = repo_type::design;
      return t; // design repositories are not in the read model
    case gitlab::repository_kind::wiki:
      t.type = repo_type::wiki;
      break;
    case gitlab::repository_kind::project:
      break;
  }
  t.project = find_project_by_id(snap, ref->id);
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

// -- outcome pieces
// --------------------------------------------------------------

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
  const std::string full
    = wiki ? t.project->full_path + ".wiki" : t.project->full_path;
  return std::string(wiki ? "Project wiki" : "Project") + " '"
    + *t.redirected_path + "' was moved to '" + full
    + "'.\n\nPlease update your Git remote:\n\n  git remote set-url origin "
    + url_to_repo(snap.settings, protocol, full) + "\n";
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
  const project_policy pol(snap, project);
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
  const project_policy pol(snap, project);
  if (a.deploy_key() && deploy_key_enabled(*a.key, project)
      && (wiki || !pol.repository_disabled())) {
    return true;
  }
  if (a.user != nullptr
      && (wiki ? pol.download_wiki_code(a.user) : pol.download_code(a.user))) {
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
  return action == git_upload_pack || action == git_upload_archive
    || action == git_receive_pack;
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
  s.gl_repository = (wiki ? "wiki-" : "project-") + std::to_string(project.id);
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
  s.git_config_options
    = {"uploadpack.allowFilter=true", "uploadpack.allowAnySHA1InWant=true"};
  if (snap.settings.receive_max_input_size_mb > 0) {
    s.git_config_options.push_back(
      "receive.maxInputSize="
      + std::to_string(snap.settings.receive_max_input_size_mb * 1048576));
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
  if (a.key != nullptr && a.key->expires_at && *a.key->expires_at > now
      && *a.key->expires_at < now + expiring_soon_window) {
    s.gl_console_messages.push_back(msg_expiring_soon);
  }
  return s;
}

} // namespace

// -- public functions
// -------------------------------------------------------------

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
        return (!d.empty() && d.front() == '/') ? d
                                                : join_path(loc.repo_dir, d);
      };
      const auto obj = env.find("GIT_OBJECT_DIRECTORY_RELATIVE");
      if (obj != env.end() && obj->is_string()
          && !obj->get<std::string>().empty()) {
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
  ask_ref_questions(snap, project, u, a.deploy_key(), changes, q);
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
  const std::string& allowed_protocol
    = snap.settings.enabled_git_access_protocol;
  if (p.protocol != "web" && !allowed_protocol.empty()
      && allowed_protocol != "all" && allowed_protocol != p.protocol) {
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
                  msg_deactivated_prefix
                    + strip_trailing_slashes(snap.settings.external_url));
    }
    return deny(std::move(o), 401, msg_blocked);
  }

  // 4. what the credential allows (a token's scopes).
  if (p.abilities) {
    if (p.action == git_receive_pack) {
      if (!p.abilities->push_code)
        return deny(std::move(o), 401, msg_auth_upload);
    } else if (is_git_command(p.action) && !p.abilities->download_code) {
      return deny(std::move(o), 401, msg_auth_download);
    }
  }

  // 6. command known.
  if (!is_git_command(p.action)) {
    return deny(std::move(o), 401, msg_command_not_allowed);
  }

  // 9. container: namespace, existence (push-to-create is out of scope),
  // readability, moved message.
  if (t.type == repo_type::project && !t.by_gl_repository
      && !t.namespace_present) {
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
    const project_policy pol(snap, project);
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
      // Emptiness decides who may push at all: not knowing it because git
      // ran out of time is GitLab's timeout, not a guess.
      if (facts.ran_out(git_check::emptiness)) {
        return deny(std::move(o), 503, timed_out_message(facts));
      }
      // Unknown emptiness (no local path, a git error) counts as "not
      // empty".
      const bool empty = facts.repository_empty.value_or(false);
      const ref_push push{snap,  project, u,         a.deploy_key(),
                          empty, facts,   p.protocol};
      if (auto r = check_ref_changes(push, changes)) {
        return deny(std::move(o), r->status, std::move(r->message));
      }
    }
  }

  o.status = 200;
  o.message.clear();
  o.success = success_body(snap, p, a, t, now);
  return o;
}

bool http_download_allowed(const snapshot& snap, const std::string& project) {
  const std::string& allowed_protocol
    = snap.settings.enabled_git_access_protocol;
  if (!allowed_protocol.empty() && allowed_protocol != "all"
      && allowed_protocol != "http")
    return false;
  allowed_params p;
  p.action = "git-upload-pack";
  p.project = project;
  p.protocol = "http";
  const actor_info anonymous = resolve_actor(snap, p);
  const repo_target t = resolve_repo(snap, p);
  return t.project != nullptr && readable(snap, anonymous, *t.project)
    && can_download(snap, anonymous, *t.project, t.type == repo_type::wiki);
}

} // namespace gatehouse::access
