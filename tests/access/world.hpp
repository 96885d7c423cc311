#pragma once

// A small builder of read-model snapshots for the access tests.

#include "actors/access/git_access.hpp"

#include <algorithm>
#include <cctype>
#include <string>

namespace gatehouse::access::test {

inline std::string lowered(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  return s;
}

/// Revisions used by the change lines.
inline const std::string A(40, 'a');
inline const std::string B(40, 'b');
inline const std::string C(40, 'c');
inline const std::string Z(40, '0');
inline const std::string Z64(64, '0');

inline constexpr unix_time now = 1'800'000'000;
inline constexpr unix_time day = 24 * 3600;

struct world {
  snapshot s;

  world() {
    s.settings.external_url = "https://gitlab.example.com";
    storage("default", "unix:/var/opt/gitlab/gitaly/gitaly.socket", "",
            "/var/opt/gitlab/git-data/repositories");
  }

  storage_record& storage(const std::string& name, const std::string& address,
                          const std::string& token, const std::string& path) {
    auto& st = s.storages[name];
    st.name = name;
    st.gitaly_address = address;
    st.gitaly_token = token;
    st.path = path;
    return st;
  }

  namespace_record& ns(std::int64_t id, const std::string& full_path,
                       std::optional<std::int64_t> parent = std::nullopt,
                       const std::string& kind = "group") {
    auto& n = s.namespaces[id];
    n.id = id;
    n.full_path = full_path;
    n.path = full_path.substr(
      full_path.rfind('/') == std::string::npos ? 0 : full_path.rfind('/') + 1);
    n.parent_id = parent;
    n.kind = kind;
    return n;
  }

  user_record& user(std::int64_t id, const std::string& username) {
    auto& u = s.users[id];
    u.id = id;
    u.username = username;
    u.name = username;
    u.email = username + "@example.com";
    s.user_by_username[lowered(username)] = id;
    return u;
  }

  project_record& project(std::int64_t id, std::int64_t ns_id,
                          const std::string& path,
                          const std::string& visibility = "private") {
    auto& p = s.projects[id];
    p.id = id;
    p.namespace_id = ns_id;
    p.path = path;
    p.full_path = s.namespaces.at(ns_id).full_path + "/" + path;
    p.name = path;
    p.visibility = visibility;
    p.default_branch = "master";
    p.disk_path = "@hashed/4a/44/4a44dc15" + std::to_string(id);
    s.project_by_path[lowered(p.full_path)] = id;
    return p;
  }

  void redirect(const std::string& old_path, std::int64_t project_id) {
    s.redirects[lowered(old_path)] = project_id;
  }

  void member(std::int64_t user_id, std::int64_t project_id, int level) {
    s.project_members[{user_id, project_id}] = level;
  }

  void ns_member(std::int64_t user_id, std::int64_t ns_id, int level) {
    s.namespace_members[{user_id, ns_id}] = level;
  }

  key_record& key(std::int64_t id, std::optional<std::int64_t> user_id) {
    auto& k = s.keys[id];
    k.id = id;
    k.user_id = user_id;
    k.deploy = false;
    k.title = "key " + std::to_string(id);
    k.key_type = "ssh-ed25519";
    k.usage_type = "auth_and_signing";
    return k;
  }

  key_record& deploy_key(std::int64_t id, std::optional<std::int64_t> creator) {
    auto& k = key(id, creator);
    k.deploy = true;
    k.usage_type = "auth";
    return k;
  }

  protected_branch_record& protect_branch(std::int64_t project_id,
                                          const std::string& name,
                                          int push = 40, int merge = 40,
                                          bool force = false) {
    auto& list = s.protected_branches[project_id];
    protected_branch_record pb;
    pb.id = static_cast<std::int64_t>(list.size() + 1);
    pb.project_id = project_id;
    pb.name = name;
    pb.push_access_level = push;
    pb.merge_access_level = merge;
    pb.allow_force_push = force;
    list.push_back(pb);
    return list.back();
  }

  protected_tag_record& protect_tag(std::int64_t project_id,
                                    const std::string& name, int create = 40) {
    auto& list = s.protected_tags[project_id];
    protected_tag_record pt;
    pt.id = static_cast<std::int64_t>(list.size() + 1);
    pt.project_id = project_id;
    pt.name = name;
    pt.create_access_level = create;
    list.push_back(pt);
    return list.back();
  }
};

inline allowed_params by_key(std::int64_t key_id, const std::string& path,
                             const std::string& action = "git-upload-pack",
                             const std::string& changes = "_any") {
  allowed_params p;
  p.action = action;
  p.project = path;
  p.changes = changes;
  p.protocol = "ssh";
  p.key_id = key_id;
  return p;
}

inline allowed_params by_user(std::int64_t user_id, const std::string& path,
                              const std::string& action = "git-upload-pack",
                              const std::string& changes = "_any") {
  allowed_params p;
  p.action = action;
  p.project = path;
  p.changes = changes;
  p.protocol = "ssh";
  p.user_id = user_id;
  return p;
}

inline allowed_params anonymous(const std::string& path,
                                const std::string& action = "git-upload-pack") {
  allowed_params p;
  p.action = action;
  p.project = path;
  p.protocol = "http";
  return p;
}

/// Gitaly's pre-receive form: gl_repository, real changes.
inline allowed_params hook(std::int64_t user_id, std::int64_t project_id,
                           const std::string& changes,
                           const std::string& protocol = "ssh") {
  allowed_params p;
  p.action = "git-receive-pack";
  p.gl_repository = "project-" + std::to_string(project_id);
  p.project = "/var/opt/gitlab/git-data/repositories/whatever.git";
  p.changes = changes;
  p.protocol = protocol;
  p.user_id = user_id;
  return p;
}

inline git_facts plain_facts() {
  git_facts f;
  f.repository_empty = false;
  return f;
}

inline std::string change(const std::string& oldrev, const std::string& newrev,
                          const std::string& ref) {
  return oldrev + " " + newrev + " " + ref + "\n";
}

} // namespace gatehouse::access::test
