#pragma once

// GitLab's project policy (ProjectPolicy) reduced to what the read model
// holds, shared by the /allowed decision (actors/access/git_access.cpp) and
// its per-ref checks (actors/access/ref_rules.cpp). Pure; no CAF, no I/O.

#include "actors/access/git_access.hpp"
#include "messages/read_model.hpp"

namespace gatehouse::access {

// Gitlab::Access levels.
inline constexpr int level_guest = 10;
inline constexpr int level_reporter = 20;
inline constexpr int level_developer = 30;
inline constexpr int level_maintainer = 40;
inline constexpr int level_admin = 60;

inline bool user_active(const user_record* u) {
  return u != nullptr && u->state == "active";
}

/// The abilities /allowed asks about. Admins are treated as in admin mode
/// (the internal API bypasses the admin-mode session), except that a
/// disabled repository feature blocks them too (DeclarativePolicy's
/// `prevent` wins over admin rules).
class project_policy {
public:
  project_policy(const snapshot& snap, const project_record& project)
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
    return u != nullptr && !project_.archived
      && (u->admin || level(u) >= level_developer);
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

} // namespace gatehouse::access
