#pragma once

// KAS's own reading of GitLab's answers (contract other-callers §2.1, §2.3),
// written from the contract's tables so that a test can decode Gatehouse's
// agent_info, project_info and authorize_proxy_user bodies the way an
// unmodified KAS does, without a Go toolchain:
//
// 1. The answer must carry Content-Type application/json (parameters
//    allowed, media type case-insensitive), or KAS fails with "unexpected
//    Content-Type in response".
// 2. protojson with unknown fields discarded. KAS's messages declare
//    snake_case json_names, which are also the proto names, so only those
//    names bind a field; any other key (camelCase included) is unknown and
//    dropped. A field given as null is unset. int64 accepts a JSON number
//    with an integral value or a string of decimal digits; string fields
//    accept only strings; map<string,string> accepts only an object whose
//    values are strings; repeated fields accept only arrays without nulls;
//    message fields accept only objects; the members of a oneof may not be
//    set twice.
// 3. ValidateAll: the rules of §2.3's tables (project_id and agent_id > 0,
//    non-empty agent_name, gitaly_info.address, storage_name,
//    relative_path, gl_repository, gl_project_path and default_branch;
//    authorize_proxy_user: agent, agent.config_project, user with a
//    non-empty username, access_as with exactly one of agent or user). The
//    nested messages those rules read are required.
//
// Each decode_* answers the decoded message and every problem found; an
// answer KAS would accept has no problems.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace gatehouse::test::kas {

using json = nlohmann::json;

/// What KAS would make of one answer.
template <class Message>
struct decoded {
  Message message;
  std::vector<std::string> problems;

  bool ok() const {
    return problems.empty();
  }

  /// The problems on one line each, for test output.
  std::string report() const {
    std::string out;
    for (const auto& p : problems)
      out += p + "\n";
    return out;
  }
};

struct gitaly_info {
  std::string address;
  std::string token;
  std::map<std::string, std::string> features;
};

struct gitaly_repository {
  std::string storage_name;
  std::string relative_path;
  std::string git_object_directory;
  std::vector<std::string> git_alternate_object_directories;
  std::string gl_repository;
  std::string gl_project_path;
};

/// GetAgentInfoResponse; ProjectInfo is the same without agent_id and
/// agent_name (both stay 0 / empty there).
struct agent_info {
  std::int64_t project_id = 0;
  std::int64_t agent_id = 0;
  std::string agent_name;
  std::optional<gitaly_info> gitaly;
  std::optional<gitaly_repository> repository;
  std::string default_branch;
};

using project_info = agent_info;

struct proxy_user_response {
  struct config_project_t {
    std::int64_t id = 0;
  };
  struct agent_t {
    std::int64_t id = 0;
    std::optional<config_project_t> config_project;
  };
  struct user_t {
    std::int64_t id = 0;
    std::string username;
  };
  struct entity_roles {
    std::int64_t id = 0;
    std::vector<std::string> roles;
  };
  struct access_as_user_t {
    std::vector<entity_roles> projects;
    std::vector<entity_roles> groups;
  };
  struct access_as_t {
    /// The oneof: at most one of these is set.
    bool agent = false;
    std::optional<access_as_user_t> user;
  };
  std::optional<agent_t> agent;
  std::optional<user_t> user;
  std::optional<access_as_t> access_as;
};

// -- transport ------------------------------------------------------------------

/// Whether KAS's JSON handler accepts this Content-Type (mime's
/// ParseMediaType: the type before ';', trimmed, compared lower-case).
inline bool json_content_type(const std::string& value) {
  auto end = value.find(';');
  std::string type = value.substr(0, end);
  auto first = type.find_first_not_of(" \t");
  auto last = type.find_last_not_of(" \t");
  if (first == std::string::npos)
    return false;
  type = type.substr(first, last - first + 1);
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return type == "application/json";
}

// -- protojson ------------------------------------------------------------------

namespace detail {

/// Reads the fields of one JSON object as protojson does, collecting
/// problems under a path like "gitaly_info.features".
class reader {
public:
  reader(const json& object, std::string path,
         std::vector<std::string>& problems)
    : object_(object), path_(std::move(path)), problems_(problems) {
    // nop
  }

  /// The value bound to `name`, or nullptr when absent or null (unset).
  const json* field(const std::string& name) const {
    auto it = object_.find(name);
    if (it == object_.end() || it->is_null())
      return nullptr;
    return &*it;
  }

  std::string at(const std::string& name) const {
    return path_.empty() ? name : path_ + "." + name;
  }

  void problem(const std::string& name, const std::string& text) const {
    problems_.push_back(at(name) + ": " + text);
  }

  std::int64_t int64(const std::string& name) const {
    const auto* v = field(name);
    if (!v)
      return 0;
    if (v->is_number_integer())
      return v->get<std::int64_t>();
    if (v->is_number_unsigned()) {
      auto u = v->get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(
            std::numeric_limits<std::int64_t>::max())) {
        problem(name, "out of range for int64");
        return 0;
      }
      return static_cast<std::int64_t>(u);
    }
    if (v->is_number_float()) {
      auto d = v->get<double>();
      if (std::trunc(d) != d || std::fabs(d) > 9.2e18) {
        problem(name, "not an integer: " + v->dump());
        return 0;
      }
      return static_cast<std::int64_t>(d);
    }
    if (v->is_string()) {
      const auto& s = v->get_ref<const std::string&>();
      std::size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
      bool digits = s.size() > i
                    && std::all_of(s.begin() + static_cast<long>(i), s.end(),
                                   [](unsigned char c) {
                                     return std::isdigit(c) != 0;
                                   });
      if (!digits || s.size() - i > 19) {
        problem(name, "not an int64 string: " + v->dump());
        return 0;
      }
      try {
        return std::stoll(s);
      } catch (...) {
        problem(name, "out of range for int64");
        return 0;
      }
    }
    problem(name, "int64 must be a number or a decimal string, got "
                    + std::string(v->type_name()));
    return 0;
  }

  std::string string(const std::string& name) const {
    const auto* v = field(name);
    if (!v)
      return {};
    if (!v->is_string()) {
      problem(name, "string field got " + std::string(v->type_name()));
      return {};
    }
    return v->get<std::string>();
  }

  std::map<std::string, std::string> string_map(const std::string& name) const {
    std::map<std::string, std::string> out;
    const auto* v = field(name);
    if (!v)
      return out;
    if (!v->is_object()) {
      problem(name, "map field got " + std::string(v->type_name()));
      return out;
    }
    for (const auto& item : v->items()) {
      if (!item.value().is_string()) {
        problem(name, "map value of key \"" + item.key() + "\" must be a "
                        "string, got "
                        + std::string(item.value().type_name()));
        continue;
      }
      out[item.key()] = item.value().get<std::string>();
    }
    return out;
  }

  std::vector<std::string> strings(const std::string& name) const {
    std::vector<std::string> out;
    const auto* v = field(name);
    if (!v)
      return out;
    if (!v->is_array()) {
      problem(name, "repeated field got " + std::string(v->type_name()));
      return out;
    }
    for (std::size_t i = 0; i < v->size(); ++i) {
      const auto& e = (*v)[i];
      if (!e.is_string()) {
        problem(name + "[" + std::to_string(i) + "]",
                "string element got " + std::string(e.type_name()));
        continue;
      }
      out.push_back(e.get<std::string>());
    }
    return out;
  }

  /// A message field: nullptr when unset; a problem when not an object.
  const json* message(const std::string& name) const {
    const auto* v = field(name);
    if (!v)
      return nullptr;
    if (!v->is_object()) {
      problem(name, "message field got " + std::string(v->type_name()));
      return nullptr;
    }
    return v;
  }

  /// A repeated message field: its objects (problems for other elements).
  std::vector<const json*> messages(const std::string& name) const {
    std::vector<const json*> out;
    const auto* v = field(name);
    if (!v)
      return out;
    if (!v->is_array()) {
      problem(name, "repeated field got " + std::string(v->type_name()));
      return out;
    }
    for (std::size_t i = 0; i < v->size(); ++i) {
      const auto& e = (*v)[i];
      if (!e.is_object()) {
        problem(name + "[" + std::to_string(i) + "]",
                "message element got " + std::string(e.type_name()));
        continue;
      }
      out.push_back(&e);
    }
    return out;
  }

private:
  const json& object_;
  std::string path_;
  std::vector<std::string>& problems_;
};

/// The body as a JSON object, or a problem.
inline const json* top_object(const json& body,
                              std::vector<std::string>& problems) {
  if (body.is_discarded()) {
    problems.push_back("body: not JSON");
    return nullptr;
  }
  if (!body.is_object()) {
    problems.push_back("body: a message must be a JSON object, got "
                       + std::string(body.type_name()));
    return nullptr;
  }
  return &body;
}

inline void transport(const std::string& content_type,
                      std::vector<std::string>& problems) {
  if (!json_content_type(content_type))
    problems.push_back("unexpected Content-Type in response: \"" + content_type
                       + "\"");
}

inline gitaly_info read_gitaly_info(const json& o, const std::string& path,
                                    std::vector<std::string>& problems) {
  reader r{o, path, problems};
  gitaly_info g;
  g.address = r.string("address");
  g.token = r.string("token");
  g.features = r.string_map("features");
  return g;
}

inline gitaly_repository
read_gitaly_repository(const json& o, const std::string& path,
                       std::vector<std::string>& problems) {
  reader r{o, path, problems};
  gitaly_repository g;
  g.storage_name = r.string("storage_name");
  g.relative_path = r.string("relative_path");
  g.git_object_directory = r.string("git_object_directory");
  g.git_alternate_object_directories
    = r.strings("git_alternate_object_directories");
  g.gl_repository = r.string("gl_repository");
  g.gl_project_path = r.string("gl_project_path");
  return g;
}

/// The fields AgentInfo and ProjectInfo share, read and validated.
inline void read_repository_fields(const reader& r, agent_info& m,
                                   std::vector<std::string>& problems) {
  m.project_id = r.int64("project_id");
  if (const auto* g = r.message("gitaly_info"))
    m.gitaly = read_gitaly_info(*g, r.at("gitaly_info"), problems);
  if (const auto* g = r.message("gitaly_repository"))
    m.repository
      = read_gitaly_repository(*g, r.at("gitaly_repository"), problems);
  m.default_branch = r.string("default_branch");
}

inline void validate_repository_fields(const agent_info& m,
                                       std::vector<std::string>& problems) {
  if (m.project_id <= 0)
    problems.push_back("project_id: must be greater than 0");
  if (!m.gitaly) {
    problems.push_back("gitaly_info: value is required");
  } else if (m.gitaly->address.empty()) {
    problems.push_back("gitaly_info.address: value length must be at least 1");
  }
  if (!m.repository) {
    problems.push_back("gitaly_repository: value is required");
  } else {
    auto need = [&](const std::string& v, const char* name) {
      if (v.empty())
        problems.push_back(std::string("gitaly_repository.") + name
                           + ": value length must be at least 1");
    };
    need(m.repository->storage_name, "storage_name");
    need(m.repository->relative_path, "relative_path");
    need(m.repository->gl_repository, "gl_repository");
    need(m.repository->gl_project_path, "gl_project_path");
  }
  if (m.default_branch.empty())
    problems.push_back("default_branch: value length must be at least 1");
}

} // namespace detail

// -- the three answers -----------------------------------------------------------

/// agent_info (K1, K2) as KAS's GetAgentInfoResponse.
inline decoded<agent_info> decode_agent_info(const std::string& content_type,
                                             const std::string& body) {
  decoded<agent_info> out;
  detail::transport(content_type, out.problems);
  auto doc = json::parse(body, nullptr, false);
  const auto* o = detail::top_object(doc, out.problems);
  if (!o)
    return out;
  detail::reader r{*o, "", out.problems};
  detail::read_repository_fields(r, out.message, out.problems);
  out.message.agent_id = r.int64("agent_id");
  out.message.agent_name = r.string("agent_name");
  if (!out.problems.empty())
    return out; // protojson failed: ValidateAll never runs
  detail::validate_repository_fields(out.message, out.problems);
  if (out.message.agent_id <= 0)
    out.problems.push_back("agent_id: must be greater than 0");
  if (out.message.agent_name.empty())
    out.problems.push_back("agent_name: value length must be at least 1");
  return out;
}

/// project_info (K3) as KAS's GetProjectInfoResponse: agent_id and
/// agent_name are not fields of it (unknown, discarded).
inline decoded<project_info>
decode_project_info(const std::string& content_type, const std::string& body) {
  decoded<project_info> out;
  detail::transport(content_type, out.problems);
  auto doc = json::parse(body, nullptr, false);
  const auto* o = detail::top_object(doc, out.problems);
  if (!o)
    return out;
  detail::reader r{*o, "", out.problems};
  detail::read_repository_fields(r, out.message, out.problems);
  if (!out.problems.empty())
    return out;
  detail::validate_repository_fields(out.message, out.problems);
  return out;
}

/// authorize_proxy_user (K6) as KAS's AuthorizeProxyUserResponse.
inline decoded<proxy_user_response>
decode_proxy_user(const std::string& content_type, const std::string& body) {
  using R = proxy_user_response;
  decoded<R> out;
  auto& problems = out.problems;
  detail::transport(content_type, problems);
  auto doc = json::parse(body, nullptr, false);
  const auto* o = detail::top_object(doc, problems);
  if (!o)
    return out;
  detail::reader r{*o, "", problems};
  if (const auto* a = r.message("agent")) {
    detail::reader ar{*a, "agent", problems};
    R::agent_t agent;
    agent.id = ar.int64("id");
    if (const auto* cp = ar.message("config_project")) {
      detail::reader cr{*cp, "agent.config_project", problems};
      agent.config_project = R::config_project_t{cr.int64("id")};
    }
    out.message.agent = agent;
  }
  if (const auto* u = r.message("user")) {
    detail::reader ur{*u, "user", problems};
    out.message.user = R::user_t{ur.int64("id"), ur.string("username")};
  }
  if (const auto* aa = r.message("access_as")) {
    detail::reader ar{*aa, "access_as", problems};
    R::access_as_t access;
    const auto* as_agent = ar.message("agent");
    const auto* as_user = ar.message("user");
    if (as_agent && as_user)
      problems.push_back("access_as: oneof access_as is already set");
    access.agent = as_agent != nullptr;
    if (as_user) {
      detail::reader ur{*as_user, "access_as.user", problems};
      R::access_as_user_t user;
      auto roles_of = [&](const char* list) {
        std::vector<R::entity_roles> entries;
        auto items = ur.messages(list);
        for (std::size_t i = 0; i < items.size(); ++i) {
          detail::reader er{*items[i],
                            "access_as.user." + std::string(list) + "["
                              + std::to_string(i) + "]",
                            problems};
          entries.push_back({er.int64("id"), er.strings("roles")});
        }
        return entries;
      };
      user.projects = roles_of("projects");
      user.groups = roles_of("groups");
      access.user = user;
    }
    out.message.access_as = access;
  }
  if (!problems.empty())
    return out;
  const auto& m = out.message;
  if (!m.agent)
    problems.push_back("agent: value is required");
  else if (!m.agent->config_project)
    problems.push_back("agent.config_project: value is required");
  if (!m.user)
    problems.push_back("user: value is required");
  else if (m.user->username.empty())
    problems.push_back("user.username: value length must be at least 1");
  if (!m.access_as)
    problems.push_back("access_as: value is required");
  else if (!m.access_as->agent && !m.access_as->user)
    problems.push_back("access_as: exactly one of agent or user is required");
  return out;
}

} // namespace gatehouse::test::kas
