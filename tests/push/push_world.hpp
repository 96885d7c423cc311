#pragma once

// A small read-model snapshot for the push tests: one group "acme" with the
// project "acme/widgets" (id 10, default branch main), users, keys.

#include "actors/push/push_events.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace gatehouse::push::test {

inline const std::string A(40, 'a');
inline const std::string B(40, 'b');
inline const std::string C(40, 'c');
inline const std::string D(40, 'd');
inline const std::string Z(40, '0');
inline const std::string Z64(64, '0');

inline constexpr unix_time now = 1'800'000'000;
inline constexpr unix_time day = 24 * 3600;

inline std::string line(const std::string& oldrev, const std::string& newrev,
                        const std::string& ref) {
  return oldrev + " " + newrev + " " + ref + "\n";
}

struct world {
  snapshot s;

  world() {
    s.settings.external_url = "https://gitlab.example.com/";
    auto& st = s.storages["default"];
    st.name = "default";
    st.path = "/var/opt/gitlab/git-data/repositories/";
    ns(5, "acme", "acme");
    ns(6, "other", "other");
    auto& p = project(10, 5, "widgets", "Widgets");
    p.default_branch = "main";
    p.disk_path = "@hashed/4a/44/4a44dc15";
    project(11, 6, "thing", "Thing").visibility = "public";
    user(1, "root", "Administrator");
    user(2, "alice", "Alice Liddell");
    key(1, 1, false);
    key(100, 1, true);            // deploy key created by root
    key(101, std::nullopt, true); // orphaned deploy key
    protect_branch(10, "main");
    protect_branch(10, "release/*");
    protect_tag(10, "v*");
  }

  void ns(std::int64_t id, const std::string& path,
          const std::string& full_path) {
    auto& n = s.namespaces[id];
    n.id = id;
    n.path = path;
    n.full_path = full_path;
  }

  project_record& project(std::int64_t id, std::int64_t ns_id,
                          const std::string& path, const std::string& name) {
    auto& p = s.projects[id];
    p.id = id;
    p.namespace_id = ns_id;
    p.path = path;
    p.full_path = s.namespaces.at(ns_id).full_path + "/" + path;
    p.name = name;
    p.default_branch = "master";
    p.disk_path = "@hashed/" + std::to_string(id);
    s.project_by_path[p.full_path] = id;
    return p;
  }

  user_record& user(std::int64_t id, const std::string& username,
                    const std::string& name) {
    auto& u = s.users[id];
    u.id = id;
    u.username = username;
    u.name = name;
    u.email = username + "@private.example.com";
    s.user_by_username[username] = id;
    return u;
  }

  void key(std::int64_t id, std::optional<std::int64_t> user_id, bool deploy) {
    auto& k = s.keys[id];
    k.id = id;
    k.user_id = user_id;
    k.deploy = deploy;
  }

  void protect_branch(std::int64_t project_id, const std::string& name) {
    protected_branch_record r;
    r.project_id = project_id;
    r.name = name;
    s.protected_branches[project_id].push_back(r);
  }

  void protect_tag(std::int64_t project_id, const std::string& name) {
    protected_tag_record r;
    r.project_id = project_id;
    r.name = name;
    s.protected_tags[project_id].push_back(r);
  }

  broadcast_message_record& banner(std::int64_t id, const std::string& text,
                                   std::optional<std::string> target = {}) {
    broadcast_message_record m;
    m.id = id;
    m.message = text;
    m.target_path = std::move(target);
    m.starts_at = now - day;
    m.ends_at = now + day;
    s.settings.broadcast_messages.push_back(m);
    return s.settings.broadcast_messages.back();
  }
};

inline post_receive_params params(const std::string& gl_repository,
                                  const std::string& identifier,
                                  const std::string& changes,
                                  std::vector<std::string> options = {}) {
  post_receive_params p;
  p.gl_repository = gl_repository;
  p.identifier = identifier;
  p.changes = changes;
  p.push_options = std::move(options);
  return p;
}

/// Deterministic event ids: "uuid-1", "uuid-2", ...
inline int uuid_counter = 0;
inline std::string counting_uuid() {
  return "uuid-" + std::to_string(++uuid_counter);
}

} // namespace gatehouse::push::test
