#pragma once

// A small read model for the indexer tests. Groups: 9970 (top level,
// Zoekt-enabled) > 123 (sub-group); 50 (top level, not enabled).
// Projects: 1 in 9970, 2 in 123 (public, forked), 3 in 50. Storage
// "default" on unix:/gitaly.socket.

#include "messages/indexer.hpp"
#include "messages/read_model.hpp"

#include <memory>
#include <optional>
#include <string>

namespace gatehouse::indexer::test {

inline snapshot indexer_world() {
  snapshot s;
  s.storages["default"] = {"default", "unix:/gitaly.socket", "secret", ""};
  auto ns = [&s](std::int64_t id, std::string path,
                 std::optional<std::int64_t> parent = std::nullopt) {
    namespace_record n;
    n.id = id;
    n.parent_id = parent;
    n.path = n.full_path = path;
    s.namespaces[id] = n;
  };
  ns(9970, "gitlab-org");
  ns(123, "gitlab-org/search", 9970);
  ns(50, "other");
  auto project = [&s](std::int64_t id, std::int64_t namespace_id,
                      std::string full_path) -> project_record& {
    project_record p;
    p.id = id;
    p.namespace_id = namespace_id;
    p.full_path = full_path;
    p.path = full_path.substr(full_path.rfind('/') + 1);
    p.default_branch = "main";
    p.disk_path
      = "@hashed/00/0" + std::to_string(id) + "/p" + std::to_string(id);
    s.projects[id] = p;
    return s.projects[id];
  };
  project(1, 9970, "gitlab-org/gitlab");
  auto& forked = project(2, 123, "gitlab-org/search/zoekt");
  forked.visibility = "public";
  forked.forked = true;
  project(3, 50, "other/x");
  s.zoekt_enabled_namespaces = {9970};
  return s;
}

inline node_row node(std::int64_t id, std::int64_t total, std::int64_t used,
                     unix_time last_seen) {
  node_row n;
  n.id = id;
  n.uuid = "node-" + std::to_string(id);
  n.name = n.uuid;
  n.total_bytes = total;
  n.used_bytes = used;
  n.schema_version = 2531;
  n.last_seen_at = last_seen;
  return n;
}

inline repository_row repository(std::int64_t project_id,
                                 std::optional<std::int64_t> node_id,
                                 std::string state = "ready",
                                 std::int64_t size = 0) {
  return repository_row{project_id, node_id, std::move(state), size};
}

} // namespace gatehouse::indexer::test
