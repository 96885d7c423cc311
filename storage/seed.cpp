#include "storage/seed.hpp"

#include "storage/seed/parsed_seed.hpp"
#include "storage/seed/seed_apply.hpp"
#include "storage/seed/ssh_key.hpp"

#include "common/ascii.hpp"
#include "common/base64.hpp"
#include "common/time.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <istream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gatehouse::storage {

using json = nlohmann::json;
using seeding::parse_ssh_key;
using seeding::parsed_seed;
using seeding::reference;

namespace {

// Gitlab::PathTraversal.check_path_traversal!'s pattern, plus absolute
// paths and NUL: whether `path` stays below the directory it is joined to.
bool safe_relative_path(const std::string& path) {
  if (path.empty() || path.front() == '/' || path.front() == '\\'
      || path.find('\n') != std::string::npos
      || path.find('\0') != std::string::npos)
    return false;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find_first_of("/\\", start);
    if (end == std::string::npos)
      end = path.size();
    auto segment = path.substr(start, end - start);
    if (segment == "." || segment == "..")
      return false;
    start = end + 1;
  }
  return true;
}

// -- times and dates
// -----------------------------------------------------------

/// A YYYY-MM-DD date that PostgreSQL can store (it has no year 0).
bool valid_date(std::string_view s) {
  return parse_date(s) && s.compare(0, 4, "0000") != 0;
}

/// Accepts YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00) and returns it with a
/// "Z" suffix; nullopt when it is not such a UTC time. Stricter than what
/// the read model accepts back (parse_timestamp): no leap second, no other
/// zone, at most nanoseconds.
std::optional<std::string> normalize_time(std::string_view s) {
  auto f = split_timestamp(s);
  if (!f || !valid_date(s.substr(0, 10)) || f->separator != 'T' || f->hour > 23
      || f->minute > 59 || f->second > 59)
    return std::nullopt;
  // A '.' needs 1 to 9 digits after it.
  if (f->fraction.size() == 1 || f->fraction.size() > 10)
    return std::nullopt;
  if (f->zone != "Z" && f->zone != "+00:00")
    return std::nullopt;
  return std::string(s.substr(0, 19 + f->fraction.size())) + "Z";
}

// -- problems and field checks
// -------------------------------------------------

std::string in_quotes(const std::string& s) {
  return json(s).dump();
}

std::string index_path(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

/// A path segment of a namespace or project: GitLab's rules, simplified.
bool valid_path_segment(const std::string& s) {
  if (s.empty() || s[0] == '-' || s[0] == '.')
    return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
          || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return false;
  auto ends_with = [&](std::string_view suffix) {
    return s.size() >= suffix.size()
      && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return !ends_with(".git") && !ends_with(".atom");
}

constexpr const char* path_rule
  = "must be a path of letters, digits, '_', '-' and '.' (not starting with "
    "'-' or '.', not ending in .git or .atom)";

bool valid_full_path(const std::string& s) {
  std::size_t begin = 0;
  int segments = 0;
  while (true) {
    auto slash = s.find('/', begin);
    if (!valid_path_segment(s.substr(begin, slash - begin)))
      return false;
    ++segments;
    if (slash == std::string::npos)
      break;
    begin = slash + 1;
  }
  return segments >= 2;
}

bool is_http_url(const std::string& s) {
  return (s.rfind("http://", 0) == 0 && s.size() > 7)
    || (s.rfind("https://", 0) == 0 && s.size() > 8);
}

bool is_uuid(const std::string& s) {
  if (s.size() != 36)
    return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
      || (c >= 'A' && c <= 'F');
    if (dash ? c != '-' : !hex)
      return false;
  }
  return true;
}

using problem_list = std::vector<std::string>;

/// Reads the fields of one JSON object, records a problem for every
/// missing, mistyped or unknown field, and builds the normalized row that
/// goes to the database (defaults filled in).
class fields {
public:
  fields(const json& object, std::string path, problem_list& problems)
    : object_(object), path_(std::move(path)), problems_(problems) {}

  const std::string& path() const {
    return path_;
  }

  std::string at(const std::string& key) const {
    return path_ + "." + key;
  }

  void problem(const std::string& key, const std::string& message) {
    problems_.push_back(at(key) + ": " + message);
  }

  /// Marks `key` as known and returns its value, or nullptr when absent.
  const json* find(const char* key) {
    known_.insert(key);
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  /// A positive 64-bit integer id (or reference).
  std::optional<std::int64_t> id(const char* key, bool required = true,
                                 bool nullable = false) {
    const json* v = find(key);
    if (!v || v->is_null()) {
      row[key] = nullptr;
      if (required)
        problem(key, v ? "must be a positive integer" : "is required");
      else if (v && !nullable)
        problem(key, "must be a positive integer");
      return std::nullopt;
    }
    std::int64_t value = 0;
    if (v->is_number_unsigned()) {
      auto u = v->get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(
            std::numeric_limits<std::int64_t>::max()))
        value = static_cast<std::int64_t>(u);
    } else if (v->is_number_integer()) {
      value = v->get<std::int64_t>();
    }
    if (value <= 0) {
      problem(key, "must be a positive integer");
      return std::nullopt;
    }
    row[key] = value;
    return value;
  }

  /// A string; `fallback` is used when the key is absent (required when
  /// there is no fallback).
  std::optional<std::string> text(const char* key,
                                  std::optional<std::string> fallback,
                                  bool non_empty = false) {
    const json* v = find(key);
    if (!v) {
      if (!fallback)
        problem(key, "is required");
      else
        row[key] = *fallback;
      return fallback;
    }
    if (!v->is_string()) {
      problem(key, "must be a string");
      return std::nullopt;
    }
    auto s = v->get<std::string>();
    if (non_empty && s.empty()) {
      problem(key, "must not be empty");
      return std::nullopt;
    }
    row[key] = s;
    return s;
  }

  std::optional<std::string> required_text(const char* key) {
    return text(key, std::nullopt, true);
  }

  /// A string or null (the default when absent is `fallback`).
  std::optional<std::string> nullable_text(const char* key,
                                           std::optional<std::string> fallback
                                           = std::nullopt) {
    const json* v = find(key);
    if (!v || v->is_null()) {
      auto value = v ? std::nullopt : fallback;
      row[key] = value ? json(*value) : json(nullptr);
      return value;
    }
    if (!v->is_string()) {
      problem(key, "must be a string or null");
      return std::nullopt;
    }
    row[key] = v->get<std::string>();
    return v->get<std::string>();
  }

  bool flag(const char* key, bool fallback) {
    const json* v = find(key);
    if (!v) {
      row[key] = fallback;
      return fallback;
    }
    if (!v->is_boolean()) {
      problem(key, "must be true or false");
      return fallback;
    }
    row[key] = v->get<bool>();
    return v->get<bool>();
  }

  /// An integer >= 0.
  std::int64_t count(const char* key, std::int64_t fallback) {
    const json* v = find(key);
    if (!v) {
      row[key] = fallback;
      return fallback;
    }
    if (!(v->is_number_integer()
          && (v->is_number_unsigned() || v->get<std::int64_t>() >= 0)
          && !(v->is_number_unsigned()
               && v->get<std::uint64_t>() > static_cast<std::uint64_t>(
                    std::numeric_limits<std::int64_t>::max())))) {
      problem(key, "must be an integer >= 0");
      return fallback;
    }
    row[key] = v->get<std::int64_t>();
    return v->get<std::int64_t>();
  }

  std::optional<std::string> one_of(const char* key,
                                    std::initializer_list<const char*> values,
                                    const char* fallback) {
    const json* v = find(key);
    if (!v) {
      if (!fallback) {
        problem(key, "is required");
        return std::nullopt;
      }
      row[key] = fallback;
      return std::string(fallback);
    }
    if (v->is_string())
      for (const char* allowed : values)
        if (v->get<std::string>() == allowed) {
          row[key] = allowed;
          return std::string(allowed);
        }
    std::string list;
    for (const char* allowed : values)
      list += (list.empty() ? "" : ", ") + std::string(allowed);
    problem(key, "must be one of " + list);
    return std::nullopt;
  }

  std::optional<int> level(const char* key, std::initializer_list<int> values,
                           std::optional<int> fallback) {
    const json* v = find(key);
    if (!v) {
      if (!fallback) {
        problem(key, "is required");
        return std::nullopt;
      }
      row[key] = *fallback;
      return fallback;
    }
    if (v->is_number_integer())
      for (int allowed : values)
        if (v->get<std::int64_t>() == allowed) {
          row[key] = allowed;
          return allowed;
        }
    std::string list;
    for (int allowed : values)
      list += (list.empty() ? "" : ", ") + std::to_string(allowed);
    problem(key, "must be one of " + list);
    return std::nullopt;
  }

  /// An ISO-8601 UTC time or null; absent means null.
  void time(const char* key) {
    const json* v = find(key);
    row[key] = nullptr;
    if (!v || v->is_null())
      return;
    std::optional<std::string> t;
    if (v->is_string())
      t = normalize_time(v->get<std::string>());
    if (!t) {
      problem(key,
              "must be an ISO-8601 UTC time like 2026-01-01T00:00:00Z "
              "or null");
      return;
    }
    row[key] = *t;
  }

  /// A YYYY-MM-DD date or null; absent means null.
  void date(const char* key) {
    const json* v = find(key);
    row[key] = nullptr;
    if (!v || v->is_null())
      return;
    if (!v->is_string() || !valid_date(v->get<std::string>())) {
      problem(key, "must be a date like 2027-12-31 or null");
      return;
    }
    row[key] = v->get<std::string>();
  }

  /// An array (absent: nullptr, no problem). Wrong type: a problem, nullptr.
  const json* list(const char* key) {
    const json* v = find(key);
    if (v && !v->is_array()) {
      problem(key, "must be an array");
      return nullptr;
    }
    return v;
  }

  /// Reports every key that no getter asked for.
  void finish() {
    for (const auto& item : object_.items())
      if (!known_.count(item.key()))
        problems_.push_back(path_ + ": unknown key " + in_quotes(item.key()));
  }

  json row = json::object();

private:
  const json& object_;
  std::string path_;
  problem_list& problems_;
  std::set<std::string> known_;
};

/// Remembers which path first used a value, to report duplicates.
class first_use {
public:
  /// Returns the earlier path when `value` was seen before.
  std::optional<std::string> claim(const std::string& value,
                                   const std::string& path) {
    auto [it, inserted] = seen_.emplace(value, paths_.size());
    if (!inserted)
      return paths_[it->second];
    paths_.push_back(path);
    return std::nullopt;
  }

  bool contains(const std::string& value) const {
    return seen_.count(value) > 0;
  }

private:
  // A seed of a million keys claims millions of values: the paths share
  // one buffer instead of a string each.
  std::unordered_map<std::string, std::uint32_t> seen_;
  seeding::text_list paths_;
};

// -- the parsed document
// ---------------------------------------------------------

// parsed_seed and reference: storage/seed/parsed_seed.hpp.

/// The keys a seed document may have, in the order the loader handles them.
const std::vector<std::string>& seed_kinds() {
  static const std::vector<std::string> kinds{"settings",
                                              "storages",
                                              "users",
                                              "keys",
                                              "deploy_keys",
                                              "namespaces",
                                              "projects",
                                              "members",
                                              "protected_branches",
                                              "protected_tags",
                                              "personal_access_tokens",
                                              "cluster_agents",
                                              "runners",
                                              "pages_domains",
                                              "pages_deployments",
                                              "zoekt_nodes",
                                              "zoekt_enabled_namespaces",
                                              "webhooks"};
  return kinds;
}

class parser {
public:
  parser(parsed_seed& out, problem_list& problems)
    : out_(out), problems_(problems) {}

  /// Checks a document read from `in` one array element at a time: each
  /// element becomes its row as soon as it ends and is then dropped, so
  /// memory holds the rows, never the document. Problems come in document
  /// order. Throws json::exception on text that is not JSON.
  void parse(std::istream& in) {
    using event = json::parse_event_t;
    std::string kind;    // the top-level key being read; "" when skipped
    bool listed = false; // its value is an array of rows
    std::map<std::string, std::size_t> next_index;
    json doc = json::parse(
      in, [&](int depth, event e, json& parsed) {
        if (depth == 0)
          return e != event::array_start; // not an object: reported below
        if (depth == 1) {
          if (e == event::key) {
            kind = parsed.get<std::string>();
            listed = false;
            if (!known_kind(kind)) {
              problems_.push_back("document: unknown key " + in_quotes(kind));
              kind.clear();
              return false;
            }
            if (!out_.present.insert(kind).second) {
              problems_.push_back("document: key " + in_quotes(kind)
                                  + " is given more than once");
              kind.clear();
              return false;
            }
          } else if (e == event::array_start) {
            listed = !kind.empty() && kind != "settings";
          }
          return true;
        }
        if (depth != 2 || !listed || e == event::object_start)
          return true;
        // The end of one element of a top-level array: an object ends, or
        // something else starts.
        auto path = index_path(kind, next_index[kind]++);
        if (e == event::object_end)
          element(kind, parsed, std::move(path));
        else
          problems_.push_back(path + ": must be an object");
        return false;
      });
    if (!doc.is_object()) {
      problems_.push_back("document: must be a JSON object");
      return;
    }
    for (const auto& item : doc.items()) {
      if (item.key() == "settings")
        parse_settings(item.value());
      else if (!item.value().is_array())
        problems_.push_back(item.key() + ": must be an array");
    }
    check_namespace_tree();
    check_zoekt_namespaces_are_top_level();
  }

private:
  static bool known_kind(const std::string& kind) {
    const auto& kinds = seed_kinds();
    return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
  }

  /// Checks one element of the top-level array `kind` and keeps its row.
  void element(const std::string& kind, const json& value, std::string path) {
    if (!value.is_object()) {
      problems_.push_back(path + ": must be an object");
      return;
    }
    using handler = void (parser::*)(fields&);
    static const std::map<std::string, handler> handlers{
      {"storages", &parser::storage},
      {"users", &parser::user},
      {"keys", &parser::personal_key},
      {"deploy_keys", &parser::deploy_key},
      {"namespaces", &parser::namespace_},
      {"projects", &parser::project},
      {"members", &parser::member},
      {"protected_branches", &parser::branch},
      {"protected_tags", &parser::tag},
      {"personal_access_tokens", &parser::token},
      {"cluster_agents", &parser::agent},
      {"runners", &parser::runner},
      {"pages_domains", &parser::domain},
      {"pages_deployments", &parser::deployment},
      {"zoekt_nodes", &parser::zoekt_node},
      {"zoekt_enabled_namespaces", &parser::zoekt_enabled_namespace},
      {"webhooks", &parser::webhook}};
    fields f{value, std::move(path), problems_};
    (this->*handlers.at(kind))(f);
    f.finish();
  }

  /// Runs `handle` on every element of the array `list` at `path`.
  template <class F>
  void each_in(const json& list, const std::string& path, F&& handle) {
    if (!list.is_array()) {
      problems_.push_back(path + ": must be an array");
      return;
    }
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto element_path = index_path(path, i);
      if (!list[i].is_object()) {
        problems_.push_back(element_path + ": must be an object");
        continue;
      }
      fields f{list[i], element_path, problems_};
      handle(f);
      f.finish();
    }
  }

  void personal_key(fields& f) {
    key(f, false);
  }

  void deploy_key(fields& f) {
    key(f, true);
  }

  /// Checks the object id for duplicates within `space` and records it as
  /// defined for references of `kind`.
  std::optional<std::int64_t> object_id(fields& f, const std::string& space,
                                        const char* kind = nullptr) {
    auto id = f.id("id");
    if (!id)
      return id;
    if (auto earlier = ids_[space].claim(std::to_string(*id), f.path()))
      f.problem("id",
                "id " + std::to_string(*id) + " is also used by " + *earlier);
    if (kind)
      out_.defined[kind].insert(std::to_string(*id));
    return id;
  }

  void refer(fields& f, const char* key, const char* kind,
             std::optional<std::int64_t> id) {
    if (id)
      out_.references.push_back({kind, std::to_string(*id),
                                 out_.reference_paths.push_back(f.at(key))});
  }

  void parse_settings(const json& settings) {
    if (!settings.is_object()) {
      problems_.push_back("settings: must be an object");
      return;
    }
    fields f{settings, "settings", problems_};
    if (f.find("external_url")) {
      auto url = f.text("external_url", std::nullopt);
      if (url && !is_http_url(*url))
        f.problem("external_url", "must be an http:// or https:// URL");
    }
    if (f.find("ssh_clone_url_root"))
      f.text("ssh_clone_url_root", std::nullopt);
    if (f.find("enabled_git_access_protocol"))
      f.one_of("enabled_git_access_protocol", {"all", "ssh", "http"}, nullptr);
    if (f.find("receive_max_input_size_mb"))
      f.count("receive_max_input_size_mb", 0);
    if (f.find("gitlab_version"))
      f.text("gitlab_version", std::nullopt, true);
    if (f.find("pages_host"))
      f.text("pages_host", std::nullopt);
    if (f.find("gitlab_shell_operation_limit"))
      f.count("gitlab_shell_operation_limit", 0);
    if (f.find("allow_local_requests_from_web_hooks_and_services"))
      f.flag("allow_local_requests_from_web_hooks_and_services", false);
    // GitLab's pages.access_control and force_pages_access_control.
    for (const char* key : {"pages_access_control", "force_pages_access_control"})
      if (f.find(key))
        f.flag(key, false);
    search_settings(f);
    if (auto messages = f.list("broadcast_messages")) {
      out_.broadcast_present = true;
      each_in(*messages, "settings.broadcast_messages", [this](fields& m) {
        object_id(m, "broadcast_messages");
        m.required_text("message");
        m.nullable_text("target_path");
        m.time("starts_at");
        m.time("ends_at");
        out_.broadcast_messages.push_back(std::move(m.row));
      });
    }
    f.finish();
    out_.settings = std::move(f.row);
  }

  /// GitLab's search settings (messages/read_model.hpp search_settings);
  /// each only when given, so an absent one keeps what the table holds.
  void search_settings(fields& f) {
    for (const char* key : {"zoekt_indexing_paused", "elasticsearch_indexing"})
      if (f.find(key))
        f.flag(key, false);
    // GitLab refuses 0 for these: a task needs a worker, files, a limit.
    for (const char* key :
         {"zoekt_indexing_parallelism", "zoekt_maximum_files",
          "elasticsearch_indexed_file_size_limit_kb"})
      if (const json* v = f.find(key)) {
        // (JSON's 0 parses as an unsigned number.)
        bool positive = v->is_number_unsigned()
          ? v->get<std::uint64_t>() >= 1
          : v->is_number_integer() && v->get<std::int64_t>() >= 1;
        if (positive)
          f.count(key, 1); // the range check past int64 is count's
        else
          f.problem(key, "must be an integer >= 1");
      }
    if (f.find("zoekt_indexing_timeout_seconds"))
      f.count("zoekt_indexing_timeout_seconds", 0);
    // A number, not only an integer: 0.5 task per CPU is a valid ratio.
    if (const json* ratio = f.find("zoekt_cpu_to_tasks_ratio")) {
      if (!ratio->is_number() || ratio->get<double>() < 0)
        f.problem("zoekt_cpu_to_tasks_ratio", "must be a number >= 0");
      else
        f.row["zoekt_cpu_to_tasks_ratio"] = ratio->get<double>();
    }
  }

  void storage(fields& f) {
    auto name = f.required_text("name");
    if (name) {
      if (auto earlier = ids_["storages"].claim(*name, f.path()))
        f.problem("name",
                  "storage " + in_quotes(*name) + " is also defined by "
                    + *earlier);
      out_.defined["storages"].insert(*name);
    }
    f.required_text("gitaly_address");
    f.text("gitaly_token", "");
    f.nullable_text("path");
    out_.storages.push_back(std::move(f.row));
  }

  void user(fields& f) {
    object_id(f, "users", "users");
    auto username = f.required_text("username");
    if (username) {
      if (auto earlier = usernames_.claim(ascii_lower(*username), f.path()))
        f.problem("username",
                  "username " + in_quotes(*username) + " is also used by "
                    + *earlier);
    }
    f.text("name", username.value_or(""));
    f.text("email", "");
    f.text("public_email", "");
    f.one_of("state",
             {"active", "blocked", "deactivated", "blocked_pending_approval",
              "banned"},
             "active");
    f.flag("admin", false);
    f.flag("external", false);
    f.flag("can_create_project", true);
    f.flag("two_factor_enabled", false);
    out_.users.push_back(std::move(f.row));
  }

  /// keys[] and deploy_keys[]: one table, one id space.
  void key(fields& f, bool deploy) {
    auto id = object_id(f, "keys");
    refer(f, "user_id", "users", f.id("user_id", !deploy, true));
    f.text("title", "");
    if (auto line = f.required_text("key")) {
      std::string error;
      if (auto parsed = parse_ssh_key(*line, error)) {
        if (auto earlier = fingerprints_.claim(parsed->fingerprint, f.path()))
          f.problem("key",
                    "same key as " + *earlier + " (" + parsed->fingerprint
                      + ")");
        f.row["key"] = parsed->text;
        f.row["key_type"] = parsed->type;
        f.row["key_blob"] = parsed->blob;
        f.row["fingerprint_sha256"] = parsed->fingerprint;
      } else {
        f.problem("key", error);
      }
    }
    if (deploy) {
      f.row["usage_type"] = "auth";
    } else {
      f.one_of("usage_type", {"auth", "signing", "auth_and_signing"},
               "auth_and_signing");
    }
    f.time("expires_at");
    f.row["kind"] = deploy ? "deploy" : "personal";
    if (deploy) {
      if (auto projects = f.list("projects")) {
        first_use linked;
        each_in(*projects, f.at("projects"), [&](fields& link) {
          auto project = link.id("project_id");
          refer(link, "project_id", "projects", project);
          if (project) {
            if (auto earlier
                = linked.claim(std::to_string(*project), link.path()))
              link.problem("project_id",
                           "project " + std::to_string(*project)
                             + " is also listed by " + *earlier);
          }
          link.flag("can_push", false);
          if (id)
            link.row["key_id"] = *id;
          out_.deploy_links.push_back(std::move(link.row));
        });
      }
      out_.deploy_keys.push_back(std::move(f.row));
    } else {
      out_.keys.push_back(std::move(f.row));
    }
  }

  void namespace_(fields& f) {
    auto id = object_id(f, "namespaces", "namespaces");
    auto path = f.required_text("path");
    if (path && !valid_path_segment(*path))
      f.problem("path", path_rule);
    f.text("name", path.value_or(""));
    auto kind = f.one_of("kind", {"group", "user"}, "group");
    auto parent = f.id("parent_id", false, true);
    if (parent && kind == std::string("user"))
      f.problem("parent_id", "a user namespace cannot have a parent");
    refer(f, "parent_id", "namespaces", parent);
    f.flag("force_pages_access_control", false);
    if (id
        && namespace_info_
             .emplace(*id,
                      namespace_info{parent, path.value_or(""), f.path(),
                                     out_.namespaces.size()})
             .second) {
      namespace_order_.push_back(*id);
      out_.namespace_paths[*id] = f.at("parent_id");
    }
    out_.namespaces.push_back(std::move(f.row));
  }

  /// Reports parent cycles within the document and computes each
  /// namespace's path relative to its first ancestor outside the document
  /// (the loader prefixes that ancestor's full path in SQL).
  void check_namespace_tree() {
    first_use siblings;
    for (auto id : namespace_order_) {
      const auto& info = namespace_info_.at(id);
      std::vector<std::string> chain{info.path};
      std::set<std::int64_t> seen{id};
      auto parent = info.parent;
      std::optional<std::int64_t> root_parent;
      bool cycle = false;
      while (parent) {
        auto it = namespace_info_.find(*parent);
        if (it == namespace_info_.end()) {
          root_parent = parent;
          break;
        }
        if (!seen.insert(*parent).second) {
          cycle = *parent == id;
          if (!cycle)
            chain.clear(); // the loop is above us; reported for its members
          break;
        }
        chain.push_back(it->second.path);
        parent = it->second.parent;
      }
      if (cycle) {
        problems_.push_back(info.where + ".parent_id: namespace "
                            + std::to_string(id)
                            + " would be its own ancestor");
        continue;
      }
      auto sibling_key = std::to_string(info.parent.value_or(0)) + "/"
        + ascii_lower(info.path);
      if (auto earlier = siblings.claim(sibling_key, info.where))
        problems_.push_back(info.where + ".path: path " + in_quotes(info.path)
                            + " is also used by " + *earlier
                            + " under the same parent");
      std::string rel;
      for (auto it = chain.rbegin(); it != chain.rend(); ++it)
        rel += (rel.empty() ? "" : "/") + *it;
      auto& row = out_.namespaces[info.index];
      row["rel_path"] = rel;
      row["root_parent"] = root_parent ? json(*root_parent) : json(nullptr);
    }
  }

  void project(fields& f) {
    auto id = object_id(f, "projects", "projects");
    auto ns = f.id("namespace_id");
    refer(f, "namespace_id", "namespaces", ns);
    auto path = f.required_text("path");
    if (path && !valid_path_segment(*path))
      f.problem("path", path_rule);
    if (path && ns) {
      auto key = std::to_string(*ns) + "/" + ascii_lower(*path);
      if (auto earlier = project_paths_.claim(key, f.path()))
        f.problem("path",
                  "path " + in_quotes(*path) + " is also used by " + *earlier
                    + " in the same namespace");
    }
    f.text("name", path.value_or(""));
    f.text("description", "");
    f.one_of("visibility", {"private", "internal", "public"}, "private");
    f.flag("archived", false);
    if (auto branch = f.nullable_text("default_branch", "main");
        branch && branch->empty())
      f.problem("default_branch", "must not be empty");
    auto storage = f.text("storage", "default", true);
    if (storage)
      out_.references.push_back(
        {"storages", *storage,
         out_.reference_paths.push_back(f.at("storage"))});
    std::string hashed;
    if (id) {
      auto h = token_digest(std::to_string(*id));
      hashed = "@hashed/" + h.substr(0, 2) + "/" + h.substr(2, 2) + "/" + h;
    }
    // The path below the storage root that git runs in: GitLab refuses a
    // path that climbs out of its directory (Gitlab::PathTraversal's
    // pattern: ".", "..", a "../" or "/.." segment, a line break) or that
    // starts at the file system root.
    if (auto disk_path = f.text("disk_path", hashed, true);
        disk_path && !safe_relative_path(*disk_path))
      f.problem("disk_path", "Invalid path: must stay below the storage root");
    f.one_of("repository_access_level", {"enabled", "private", "disabled"},
             "enabled");
    f.flag("merge_requests_enabled", true);
    f.flag("lfs_enabled", true);
    f.flag("repository_exists", true);
    // Not a reference: GitLab keeps a fork a fork after its source is gone.
    if (auto source = f.id("forked_from_project_id", false, true);
        source && id && *source == *id)
      f.problem("forked_from_project_id", "a project cannot fork itself");
    project_pages(f);
    if (auto redirects = f.list("redirects")) {
      for (std::size_t i = 0; i < redirects->size(); ++i) {
        auto at = index_path(f.at("redirects"), i);
        const auto& r = (*redirects)[i];
        if (!r.is_string() || !valid_full_path(r.get<std::string>())) {
          problems_.push_back(at
                              + ": must be a full path like "
                                "\"group/project\"");
          continue;
        }
        auto redirect = r.get<std::string>();
        if (auto earlier = redirects_.claim(ascii_lower(redirect), at)) {
          problems_.push_back(at + ": redirect " + in_quotes(redirect)
                              + " is also listed at " + *earlier);
          continue;
        }
        if (id)
          out_.redirects.push_back({{"path", redirect}, {"project_id", *id}});
      }
    }
    out_.projects.push_back(std::move(f.row));
  }

  /// A project's Pages fields (GitLab's project_setting and
  /// project_feature), with GitLab's defaults.
  void project_pages(fields& f) {
    f.flag("pages_https_only", true);
    f.one_of("pages_access_level", {"enabled", "private", "public", "disabled"},
             "enabled");
    auto enabled = f.flag("pages_unique_domain_enabled", false);
    auto unique = f.nullable_text("pages_unique_domain");
    if (unique) {
      // One DNS label: it becomes "<label>.<pages_host>".
      bool label = !unique->empty() && unique->size() <= 63
        && unique->front() != '-' && unique->back() != '-'
        && std::all_of(unique->begin(), unique->end(), [](char c) {
             return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
               || (c >= '0' && c <= '9') || c == '-';
           });
      if (!label)
        f.problem("pages_unique_domain",
                  "must be a DNS label of letters, digits and '-'");
      else if (auto earlier = unique_domains_.claim(ascii_lower(*unique),
                                                    f.path()))
        f.problem("pages_unique_domain",
                  "unique domain " + in_quotes(*unique) + " is also used by "
                    + *earlier);
    } else if (enabled) {
      f.problem("pages_unique_domain_enabled",
                "needs a pages_unique_domain");
    }
    if (auto primary = f.nullable_text("pages_primary_domain");
        primary && !is_http_url(*primary))
      f.problem("pages_primary_domain", "must be an http:// or https:// URL");
    f.flag("pages_multiple_versions_enabled", false);
  }

  void member(fields& f) {
    auto user = f.id("user_id");
    refer(f, "user_id", "users", user);
    auto project = f.id("project_id", false, true);
    auto ns = f.id("namespace_id", false, true);
    refer(f, "project_id", "projects", project);
    refer(f, "namespace_id", "namespaces", ns);
    bool has_project = f.find("project_id") && !f.find("project_id")->is_null();
    bool has_ns = f.find("namespace_id") && !f.find("namespace_id")->is_null();
    if (has_project == has_ns)
      problems_.push_back(f.path()
                          + ": exactly one of project_id or namespace_id is "
                            "required");
    f.level("access_level", {10, 20, 30, 40, 50}, std::nullopt);
    if (user && (project || ns) && has_project != has_ns) {
      auto key = std::to_string(*user)
        + (project ? " project " + std::to_string(*project)
                   : " namespace " + std::to_string(*ns));
      if (auto earlier = members_.claim(key, f.path()))
        problems_.push_back(f.path() + ": user " + std::to_string(*user)
                            + " is already a member there in " + *earlier);
    }
    if (project) {
      f.row.erase("namespace_id");
      out_.project_members.push_back(std::move(f.row));
    } else if (ns) {
      f.row.erase("project_id");
      out_.namespace_members.push_back(std::move(f.row));
    }
  }

  /// protected_branches / protected_tags: unique name per project.
  void protected_ref(fields& f, const char* kind, first_use& names) {
    object_id(f, kind);
    auto project = f.id("project_id");
    refer(f, "project_id", "projects", project);
    auto name = f.required_text("name");
    if (project && name) {
      if (auto earlier
          = names.claim(std::to_string(*project) + " " + *name, f.path()))
        f.problem("name",
                  in_quotes(*name) + " is also protected by " + *earlier);
    }
  }

  void branch(fields& f) {
    protected_ref(f, "protected_branches", branch_names_);
    f.level("push_access_level", {0, 30, 40, 60}, 40);
    f.level("merge_access_level", {0, 30, 40, 60}, 40);
    f.flag("allow_force_push", false);
    out_.protected_branches.push_back(std::move(f.row));
  }

  void tag(fields& f) {
    protected_ref(f, "protected_tags", tag_names_);
    f.level("create_access_level", {0, 30, 40, 60}, 40);
    out_.protected_tags.push_back(std::move(f.row));
  }

  /// Replaces the clear token with its digest in the row.
  void digest_token(fields& f, first_use& seen) {
    auto token = f.required_text("token");
    f.row.erase("token");
    if (!token)
      return;
    auto digest = token_digest(*token);
    if (auto earlier = seen.claim(digest, f.path()))
      f.problem("token", "same token as " + *earlier);
    f.row["token_digest"] = digest;
  }

  void token(fields& f) {
    object_id(f, "personal_access_tokens");
    refer(f, "user_id", "users", f.id("user_id"));
    f.required_text("name");
    digest_token(f, pat_digests_);
    json scopes = json::array();
    if (auto list = f.list("scopes")) {
      first_use seen;
      for (std::size_t i = 0; i < list->size(); ++i) {
        auto at = index_path(f.at("scopes"), i);
        const auto& s = (*list)[i];
        if (!s.is_string() || s.get<std::string>().empty()) {
          problems_.push_back(at + ": must be a non-empty string");
          continue;
        }
        if (auto earlier = seen.claim(s.get<std::string>(), at)) {
          problems_.push_back(at + ": scope " + s.dump() + " is also listed at "
                              + *earlier);
          continue;
        }
        scopes.push_back(s);
      }
    }
    f.row["scopes"] = scopes;
    f.date("expires_at");
    f.flag("revoked", false);
    out_.personal_access_tokens.push_back(std::move(f.row));
  }

  void agent(fields& f) {
    auto id = object_id(f, "cluster_agents");
    auto project = f.id("project_id");
    refer(f, "project_id", "projects", project);
    auto name = f.required_text("name");
    if (project && name) {
      if (auto earlier = agent_names_.claim(
            std::to_string(*project) + " " + *name, f.path()))
        f.problem("name",
                  "agent " + in_quotes(*name) + " is also defined by "
                    + *earlier);
    }
    if (auto tokens = f.list("tokens")) {
      each_in(*tokens, f.at("tokens"), [&](fields& t) {
        object_id(t, "cluster_agent_tokens");
        digest_token(t, agent_digests_);
        t.flag("revoked", false);
        if (id)
          t.row["agent_id"] = *id;
        out_.cluster_agent_tokens.push_back(std::move(t.row));
      });
    }
    // Both optional: absent, what KAS last stored (agent_configuration)
    // stays.
    if (const json* config = f.find("configuration")) {
      if (!config->is_object())
        f.problem("configuration", "must be an object");
      else if (id)
        out_.agent_configs.push_back({{"agent_id", *id}, {"config", *config}});
    }
    if (const json* auth = f.find("authorizations"))
      agent_authorizations(f, *auth, id);
    out_.cluster_agents.push_back(std::move(f.row));
  }

  /// cluster_agents[].authorizations: {ci_access, user_access}, each with
  /// optional lists of projects and groups; a list left out is empty.
  void agent_authorizations(fields& f, const json& value,
                            std::optional<std::int64_t> agent) {
    if (!value.is_object()) {
      f.problem("authorizations", "must be an object");
      return;
    }
    if (agent)
      out_.agents_with_authorizations.push_back(*agent);
    fields a{value, f.at("authorizations"), problems_};
    for (const char* access : {"ci_access", "user_access"}) {
      const json* v = a.find(access);
      if (!v)
        continue;
      if (!v->is_object()) {
        a.problem(access, "must be an object");
        continue;
      }
      bool user = std::string_view(access) == "user_access";
      fields lists{*v, a.at(access), problems_};
      if (auto projects = lists.list("projects"))
        authorization_list(*projects, lists.at("projects"), "project_id",
                           "projects", agent,
                           user ? out_.user_access_projects
                                : out_.ci_access_projects);
      if (auto groups = lists.list("groups"))
        authorization_list(*groups, lists.at("groups"), "namespace_id",
                           "namespaces", agent,
                           user ? out_.user_access_groups
                                : out_.ci_access_groups);
      lists.finish();
    }
    a.finish();
  }

  /// One authorization list: {<key>: id, config: object (default {})}.
  void authorization_list(const json& list, const std::string& path,
                          const char* key, const char* kind,
                          std::optional<std::int64_t> agent,
                          seeding::row_list& out) {
    first_use listed;
    each_in(list, path, [&](fields& e) {
      auto target = e.id(key);
      refer(e, key, kind, target);
      if (target) {
        if (auto earlier = listed.claim(std::to_string(*target), e.path()))
          e.problem(key,
                    std::string(std::string_view(kind) == "projects"
                                  ? "project "
                                  : "namespace ")
                      + std::to_string(*target) + " is also listed by "
                      + *earlier);
      }
      json config = json::object();
      if (const json* c = e.find("config")) {
        if (!c->is_object())
          e.problem("config", "must be an object");
        else
          config = *c;
      }
      if (agent && target)
        out.push_back(
          {{"agent_id", *agent}, {"target_id", *target}, {"config", config}});
    });
  }

  /// runners[]: a CI runner known by its token (KAS's runner info call).
  void runner(fields& f) {
    object_id(f, "runners");
    digest_token(f, runner_digests_);
    f.text("description", "");
    f.flag("active", true);
    out_.runners.push_back(std::move(f.row));
  }

  void domain(fields& f) {
    object_id(f, "pages_domains");
    refer(f, "project_id", "projects", f.id("project_id"));
    if (auto domain = f.required_text("domain")) {
      if (auto earlier = domains_.claim(ascii_lower(*domain), f.path()))
        f.problem("domain",
                  "domain " + in_quotes(*domain) + " is also used by "
                    + *earlier);
    }
    f.flag("enabled", true);
    f.nullable_text("certificate");
    f.nullable_text("key");
    f.flag("https_only", false);
    out_.pages_domains.push_back(std::move(f.row));
  }

  void deployment(fields& f) {
    object_id(f, "pages_deployments");
    refer(f, "project_id", "projects", f.id("project_id"));
    f.text("path_prefix", "");
    f.text("root_directory", "public");
    f.required_text("source_path");
    f.text("sha256", "");
    f.count("file_size", 0);
    f.count("file_count", 0);
    f.flag("access_control", false);
    out_.pages_deployments.push_back(std::move(f.row));
  }

  void zoekt_node(fields& f) {
    object_id(f, "zoekt_nodes");
    if (auto uuid = f.required_text("uuid")) {
      if (!is_uuid(*uuid))
        f.problem("uuid",
                  "must be a UUID like "
                  "3869fe21-36d1-4612-9676-0b783ef2dcd7");
      else if (auto earlier = uuids_.claim(ascii_lower(*uuid), f.path()))
        f.problem("uuid", "uuid is also used by " + *earlier);
    }
    f.text("name", "");
    if (auto url = f.required_text("url"); url && !is_http_url(*url))
      f.problem("url", "must be an http:// or https:// URL");
    out_.zoekt_nodes.push_back(std::move(f.row));
  }

  /// zoekt_enabled_namespaces[]: a top-level namespace, listed once.
  void zoekt_enabled_namespace(fields& f) {
    auto ns = f.id("namespace_id");
    refer(f, "namespace_id", "namespaces", ns);
    if (ns) {
      if (auto earlier = zoekt_namespaces_.claim(std::to_string(*ns), f.path()))
        f.problem("namespace_id", "namespace " + std::to_string(*ns)
                                    + " is also listed by " + *earlier);
      zoekt_namespace_paths_.emplace_back(*ns, f.at("namespace_id"));
    }
    out_.zoekt_enabled_namespaces.push_back(std::move(f.row));
  }

  /// A sub-group defined by the document cannot be enabled (the loader
  /// checks those already in the database).
  void check_zoekt_namespaces_are_top_level() {
    for (const auto& [ns, where] : zoekt_namespace_paths_) {
      auto it = namespace_info_.find(ns);
      if (it != namespace_info_.end() && it->second.parent)
        problems_.push_back(where + ": "
                            + seeding::zoekt_sub_group_message(ns));
    }
  }

  void webhook(fields& f) {
    object_id(f, "webhooks");
    refer(f, "project_id", "projects", f.id("project_id"));
    if (auto url = f.required_text("url"); url && !is_http_url(*url))
      f.problem("url", "must be an http:// or https:// URL");
    f.text("token", "");
    f.flag("push_events", true);
    f.flag("tag_push_events", false);
    f.flag("enabled", true);
    out_.webhooks.push_back(std::move(f.row));
  }

  struct namespace_info {
    std::optional<std::int64_t> parent;
    std::string path;
    std::string where; // json path of the namespace
    std::size_t index; // in out_.namespaces
  };

  parsed_seed& out_;
  problem_list& problems_;
  std::map<std::string, first_use> ids_;
  first_use usernames_, fingerprints_, project_paths_, redirects_, members_,
    branch_names_, tag_names_, pat_digests_, agent_digests_, agent_names_, runner_digests_,
    domains_, uuids_, unique_domains_, zoekt_namespaces_;
  std::map<std::int64_t, namespace_info> namespace_info_;
  /// (namespace id, where) of each zoekt_enabled_namespaces element.
  std::vector<std::pair<std::int64_t, std::string>> zoekt_namespace_paths_;
  std::vector<std::int64_t> namespace_order_;
};

std::string missing_message(const reference& r) {
  if (std::string_view(r.kind) == "storages")
    return "no storage named " + in_quotes(r.key);
  static const std::map<std::string, std::string> nouns{
    {"users", "user"}, {"namespaces", "namespace"}, {"projects", "project"}};
  return "no " + nouns.at(r.kind) + " with id " + r.key;
}

/// Reports references that neither the document nor `lookup` resolves.
void check_references(const parsed_seed& seed, const seed_lookup* lookup,
                      problem_list& problems) {
  std::map<std::string, std::set<std::string>> unresolved;
  for (const auto& r : seed.references) {
    auto it = seed.defined.find(r.kind);
    if (it == seed.defined.end() || !it->second.count(r.key))
      unresolved[r.kind].insert(r.key);
  }
  std::map<std::string, std::set<std::string>> existing;
  if (lookup && *lookup)
    for (const auto& [kind, keys] : unresolved)
      existing[kind] = (*lookup)(kind, keys);
  for (const auto& r : seed.references) {
    auto it = unresolved.find(r.kind);
    if (it == unresolved.end() || !it->second.count(r.key))
      continue;
    if (existing[r.kind].count(r.key))
      continue;
    problems.push_back(seed.reference_paths[r.path] + ": "
                       + missing_message(r));
  }
}

/// Serialises concurrent seed runs ("gh-seed" in ASCII).
constexpr long long seed_lock_key = 0x67682d7365656400LL;

} // namespace

namespace {

/// Checks references against the document and the database, then writes
/// `seed` in one transaction; on any problem nothing changes.
seed_report write_parsed(pqxx::connection& conn, const parsed_seed& seed,
                         const seed_options& opts, seed_report report) {
  try {
    pqxx::work tx{conn, "seed"};
    tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(seed_lock_key)
            + ")");
    // Objects of a kind the document prunes must be in the document.
    seed_lookup lookup
      = [&](const std::string& kind, const std::set<std::string>& keys) {
          std::set<std::string> found;
          if (opts.prune && seed.present.count(kind))
            return found;
          auto sql = kind == "storages"
            ? std::string("SELECT name FROM storages WHERE name IN (SELECT "
                          "jsonb_array_elements_text($1::jsonb))")
            : "SELECT id::text FROM " + tx.quote_name(kind)
              + " WHERE id IN (SELECT v::bigint FROM "
                "jsonb_array_elements_text($1::jsonb) AS v)";
          json list = json::array();
          for (const auto& k : keys)
            list.push_back(k);
          for (const auto& row : tx.exec_params(sql, list.dump()))
            found.insert(row[0].as<std::string>());
          return found;
        };
    check_references(seed, &lookup, report.problems);
    if (!report.problems.empty())
      return report; // tx rolls back
    seeding::write_seed(tx, seed, opts, report);
    if (!report.problems.empty())
      return report; // tx rolls back
    tx.commit();
  } catch (const std::exception& e) {
    report.upserted.clear();
    report.pruned.clear();
    report.problems.push_back("database: " + seeding::db_message(e));
  }
  return report;
}

} // namespace

namespace {

/// Parses `in` into `seed`; false (and a problem) when it is not JSON.
bool parse_stream(std::istream& in, parsed_seed& seed,
                  problem_list& problems) {
  auto before = problems.size();
  try {
    parser{seed, problems}.parse(in);
    return true;
  } catch (const json::exception& e) {
    // parse_error, or out_of_range for a number past a double's range.
    // What the elements before the error said is moot: one problem.
    problems.resize(before);
    problems.push_back(std::string("document: not valid JSON: ") + e.what());
    return false;
  }
}

} // namespace

std::vector<std::string> validate_seed(std::istream& in,
                                       const seed_lookup& existing) {
  problem_list problems;
  parsed_seed seed;
  if (parse_stream(in, seed, problems))
    check_references(seed, &existing, problems);
  return problems;
}

seed_report apply_seed(pqxx::connection& conn, std::istream& in,
                       const seed_options& opts) {
  seed_report report;
  parsed_seed seed;
  if (!parse_stream(in, seed, report.problems))
    return report;
  return write_parsed(conn, seed, opts, std::move(report));
}

} // namespace gatehouse::storage
