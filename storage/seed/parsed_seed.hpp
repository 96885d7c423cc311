#pragma once

// A seed document after validation: the rows the database needs, in the
// form the SQL of seed_apply.cpp reads (jsonb_to_recordset input).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace gatehouse::storage::seeding {

using json = nlohmann::json;

/// A reference from the document to an object that must exist.
struct reference {
  std::string kind; // "users", "namespaces", "projects", "storages"
  std::string key;  // id in decimal, or a storage name
  std::string path;
};

/// Everything the database needs from a valid document.
struct parsed_seed {
  std::set<std::string> present;  // top-level keys present
  json settings = json::object(); // settings keys given, without messages
  bool broadcast_present = false;
  json broadcast_messages = json::array();
  json storages = json::array();
  json users = json::array();
  json keys = json::array();        // personal keys
  json deploy_keys = json::array(); // deploy keys
  json deploy_links = json::array();
  json namespaces = json::array();
  std::map<std::int64_t, std::string> namespace_paths; // id -> json path
  json projects = json::array();
  json redirects = json::array();
  json project_members = json::array();
  json namespace_members = json::array();
  json protected_branches = json::array();
  json protected_tags = json::array();
  json personal_access_tokens = json::array();
  json cluster_agents = json::array();
  json cluster_agent_tokens = json::array();
  json pages_domains = json::array();
  json pages_deployments = json::array();
  json zoekt_nodes = json::array();
  json webhooks = json::array();
  std::vector<reference> references;
  // Ids and names the document defines, per referenced kind.
  std::map<std::string, std::set<std::string>> defined;
};

} // namespace gatehouse::storage::seeding
