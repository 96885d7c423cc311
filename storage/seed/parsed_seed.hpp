#pragma once

// A seed document after validation: the rows the database needs, in the
// form the SQL of seed_apply.cpp reads (jsonb_to_recordset input).

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::storage::seeding {

using json = nlohmann::json;

/// Strings kept end to end in one buffer: millions of short strings
/// without an allocation each.
class text_list {
public:
  /// Appends `text` and returns its index.
  std::uint32_t push_back(std::string_view text) {
    text_.append(text);
    ends_.push_back(text_.size());
    return static_cast<std::uint32_t>(ends_.size() - 1);
  }

  std::uint32_t size() const {
    return static_cast<std::uint32_t>(ends_.size());
  }

  std::string operator[](std::uint32_t i) const {
    auto from = i == 0 ? 0 : ends_[i - 1];
    return text_.substr(from, ends_[i] - from);
  }

private:
  std::string text_;
  std::vector<std::size_t> ends_;
};

/// The rows of one table, each kept as its JSON text. A million rows held
/// as json objects take gigabytes; as text they take about what the
/// document did.
class row_list {
public:
  void push_back(const json& row) {
    if (!ends_.empty())
      text_ += ',';
    text_ += row.dump();
    ends_.push_back(text_.size());
  }

  std::size_t size() const {
    return ends_.size();
  }

  bool empty() const {
    return ends_.empty();
  }

  /// Rows [begin, end) as the text of one JSON array.
  std::string array(std::size_t begin, std::size_t end) const {
    if (begin >= end)
      return "[]";
    auto from = begin == 0 ? 0 : ends_[begin - 1] + 1;
    return "[" + text_.substr(from, ends_[end - 1] - from) + "]";
  }

  std::string array() const {
    return "[" + text_ + "]";
  }

  /// The rows joined by commas, without brackets.
  const std::string& text() const {
    return text_;
  }

  /// Calls `f` with each row parsed back (for the few columns --prune needs).
  template <class F>
  void each(F&& f) const {
    std::size_t from = 0;
    for (auto end : ends_) {
      f(json::parse(text_.begin() + static_cast<std::ptrdiff_t>(from),
                    text_.begin() + static_cast<std::ptrdiff_t>(end)));
      from = end + 1;
    }
  }

private:
  std::string text_;
  std::vector<std::size_t> ends_; // end of each row in text_
};

/// A reference from the document to an object that must exist.
struct reference {
  const char* kind; // "users", "namespaces", "projects", "storages"
  std::string key;  // id in decimal, or a storage name
  std::uint32_t path; // in parsed_seed::reference_paths
};

/// Everything the database needs from a valid document.
struct parsed_seed {
  std::set<std::string> present;  // top-level keys present
  json settings = json::object(); // settings keys given, without messages
  bool broadcast_present = false;
  json broadcast_messages = json::array();
  row_list storages;
  row_list users;
  row_list keys;        // personal keys
  row_list deploy_keys; // deploy keys
  row_list deploy_links;
  json namespaces = json::array();
  std::map<std::int64_t, std::string> namespace_paths; // id -> json path
  row_list projects;
  row_list redirects;
  row_list project_members;
  row_list namespace_members;
  row_list protected_branches;
  row_list protected_tags;
  row_list personal_access_tokens;
  row_list cluster_agents;
  row_list cluster_agent_tokens;
  /// {agent_id, config}: agents whose document gives a configuration.
  row_list agent_configs;
  /// Agents whose document gives authorizations: their four lists are
  /// replaced by the rows below ({agent_id, target_id, config} each).
  json agents_with_authorizations = json::array();
  row_list ci_access_projects;
  row_list ci_access_groups;
  row_list user_access_projects;
  row_list user_access_groups;
  row_list runners;
  row_list pages_domains;
  row_list pages_deployments;
  row_list zoekt_nodes;
  /// {namespace_id}, in document order.
  row_list zoekt_enabled_namespaces;
  row_list webhooks;
  std::vector<reference> references;
  text_list reference_paths;
  // Ids and names the document defines, per referenced kind.
  std::map<std::string, std::set<std::string>> defined;
};

/// Why a zoekt_enabled_namespaces element naming a sub-group is refused
/// (the parser and the loader both say it).
inline std::string zoekt_sub_group_message(std::int64_t namespace_id) {
  return "namespace " + std::to_string(namespace_id)
    + " is a sub-group; Zoekt is enabled for top-level namespaces only";
}

} // namespace gatehouse::storage::seeding
