// The HTTP codec of KAS's calls (contract other-callers §1.2, §2.2, §2.3):
// the agent token from its headers, Grape's coercion and validation of the
// declared parameters (lib/api/internal/kubernetes.rb, autoflow.rb), and the
// answers in GitLab's key order. Every rule beyond the wire's types lives in
// actors/agents/.

#include "edges/http/codec.hpp"

#include "common/ascii.hpp"

#include "messages/errors.hpp"

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gatehouse::http {

namespace {

using ordered = nlohmann::ordered_json;

// -- Grape's coercion ---------------------------------------------------------

// Grape's validation errors of one request: grouped by parameter in the
// order each parameter first failed, duplicates dropped, joined with ", "
// (Grape::Exceptions::ValidationErrors#full_messages).
class grape_errors {
public:
  void add(const std::string& name, const char* what) {
    auto text = name + ' ' + what;
    for (auto& [param, texts] : by_param_) {
      if (param == name) {
        for (auto& t : texts)
          if (t == text)
            return;
        texts.push_back(std::move(text));
        return;
      }
    }
    by_param_.push_back({name, {std::move(text)}});
  }

  bool empty() const {
    return by_param_.empty();
  }

  caf::error error() const {
    std::string out;
    for (auto& [param, texts] : by_param_)
      for (auto& t : texts) {
        if (!out.empty())
          out += ", ";
        out += t;
      }
    return caf::make_error(errc::invalid_params, out);
  }

  template <class T>
  caf::expected<T> result(T value) const {
    if (!empty())
      return error();
    return value;
  }

private:
  std::vector<std::pair<std::string, std::vector<std::string>>> by_param_;
};

// A coerced value: nullopt when the parameter is nil after coercion; `ok`
// false when Grape answers "<name> is invalid".
template <class T>
struct coerced {
  std::optional<T> value;
  bool ok = true;
};

// Ruby's Integer(text, 10), which dry-types' Params::Integer calls for a
// string: optional blanks around, a sign, digits with single underscores
// between them. Ruby has big integers; beyond int64 we answer invalid.
std::optional<std::int64_t> ruby_integer(std::string_view text) {
  auto blank = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f'
      || c == '\r';
  };
  while (!text.empty() && blank(text.front()))
    text.remove_prefix(1);
  while (!text.empty() && blank(text.back()))
    text.remove_suffix(1);
  bool negative = false;
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty() || text.front() == '_' || text.back() == '_')
    return std::nullopt;
  // Accumulate as a negative number: its range holds int64's minimum.
  std::int64_t value = 0;
  constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
  char previous = 0;
  for (char c : text) {
    if (c == '_') {
      if (previous == '_')
        return std::nullopt;
    } else if (c < '0' || c > '9') {
      return std::nullopt;
    } else {
      int digit = c - '0';
      if (value < (lowest + digit) / 10)
        return std::nullopt;
      value = value * 10 - digit;
    }
    previous = c;
  }
  if (negative)
    return value;
  if (value == lowest)
    return std::nullopt;
  return -value;
}

// Grape's Integer: JSON integers; floats truncated (Ruby's Integer(5.5) is
// 5); strings as Ruby parses them, "" being nil; null nil; anything else
// invalid.
coerced<std::int64_t> integer_of(const json& v) {
  if (v.is_null())
    return {};
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (u
        > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return {std::nullopt, false};
    return {static_cast<std::int64_t>(u)};
  }
  if (v.is_number_integer())
    return {v.get<std::int64_t>()};
  if (v.is_number_float()) {
    auto d = std::trunc(v.get<double>());
    // 2^63 is exactly representable; it and beyond do not fit.
    if (!std::isfinite(d) || d >= 9223372036854775808.0
        || d < -9223372036854775808.0)
      return {std::nullopt, false};
    return {static_cast<std::int64_t>(d)};
  }
  if (v.is_string()) {
    const auto& text = v.get_ref<const std::string&>();
    if (text.empty())
      return {};
    if (auto n = ruby_integer(text))
      return {n};
  }
  return {std::nullopt, false};
}

// Grape's String: a string as is; numbers and booleans as their text;
// arrays and hashes invalid; null nil.
coerced<std::string> string_of(const json& v) {
  if (v.is_null())
    return {};
  if (v.is_string())
    return {v.get<std::string>()};
  if (v.is_array() || v.is_object())
    return {std::nullopt, false};
  return {dump(v)};
}

// A member of a JSON object, nullptr when absent (or when `params` is not
// an object: Grape skips the optional members of a value it could not
// coerce to a hash).
const json* member(const json& params, const char* name) {
  if (!params.is_object())
    return nullptr;
  auto it = params.find(name);
  return it == params.end() ? nullptr : &*it;
}

// An Integer parameter: `required` adds "is missing" when absent.
std::optional<std::int64_t> integer_param(const json& params, const char* name,
                                          const std::string& full_name,
                                          bool required, grape_errors& errors) {
  auto* v = member(params, name);
  if (!v) {
    if (required)
      errors.add(full_name, "is missing");
    return std::nullopt;
  }
  auto out = integer_of(*v);
  if (!out.ok)
    errors.add(full_name, "is invalid");
  return out.value;
}

std::optional<std::string> text_param(const json& params, const char* name,
                                      const std::string& full_name,
                                      bool required, grape_errors& errors) {
  auto* v = member(params, name);
  if (!v) {
    if (required)
      errors.add(full_name, "is missing");
    return std::nullopt;
  }
  auto out = string_of(*v);
  if (!out.ok)
    errors.add(full_name, "is invalid");
  return out.value;
}

// A Hash parameter: null is {}, anything but an object invalid. Returns the
// object to read nested parameters from, nullptr when there is none.
const json* hash_param(const json& params, const char* name,
                       const std::string& full_name, grape_errors& errors) {
  auto* v = member(params, name);
  if (!v || v->is_null())
    return nullptr;
  if (!v->is_object()) {
    errors.add(full_name, "is invalid");
    return nullptr;
  }
  return v;
}

// An Array parameter with a block (elements are hashes): null is [],
// anything but an array of objects invalid.
const json* array_of_hashes(const json& params, const char* name,
                            const std::string& full_name,
                            grape_errors& errors) {
  auto* v = member(params, name);
  if (!v || v->is_null())
    return nullptr;
  if (!v->is_array()) {
    errors.add(full_name, "is invalid");
    return nullptr;
  }
  for (auto& item : *v)
    if (!item.is_object()) {
      errors.add(full_name, "is invalid");
      return nullptr;
    }
  return v;
}

std::string nested(const std::string& outer, const std::string& inner) {
  return outer + '[' + inner + ']';
}

// Grape's JSON type (Grape::Validations::Types::Json): a hash or an array of
// hashes as is; a string is parsed and must give one of those; nil and a
// blank string are nil. Returns the JSON text, "null" for nil.
coerced<std::string> json_of(const json& v) {
  auto acceptable = [](const json& j) {
    if (j.is_object())
      return true;
    if (!j.is_array())
      return false;
    for (auto& item : j)
      if (!item.is_object())
        return false;
    return true;
  };
  if (v.is_null())
    return {std::string{"null"}};
  if (v.is_string()) {
    const auto& text = v.get_ref<const std::string&>();
    if (text.find_first_not_of(" \t\r\n\v\f") == std::string::npos)
      return {std::string{"null"}};
    auto parsed = json::parse(text, nullptr, false);
    if (parsed.is_discarded() || !acceptable(parsed))
      return {std::nullopt, false};
    return {dump(parsed)};
  }
  if (!acceptable(v))
    return {std::nullopt, false};
  return {dump(v)};
}

// -- the agent token ----------------------------------------------------------

// The first present of Gitlab-Agentk-Api-Request, Gitlab-Agent-Api-Request
// and Authorization: Bearer (§1.2): newest Rails reads the first two, KAS up
// to v16 sends the third. A present header counts even when empty.
std::optional<std::string> agent_token_of(const request_view& in) {
  for (const char* name :
       {"Gitlab-Agentk-Api-Request", "Gitlab-Agent-Api-Request"})
    if (in.http.has_header(name))
      return in.header(name);
  auto auth = in.header("Authorization");
  if (auth.size() >= 7 && ascii_lower(auth.substr(0, 7)) == "bearer ")
    return auth.substr(7);
  return std::nullopt;
}

// -- answers ------------------------------------------------------------------

reply json_reply(int status, const ordered& body) {
  // Invalid UTF-8 in seeded text is replaced, as dump() does elsewhere.
  return reply{status,
               {},
               "application/json",
               body.dump(-1, ' ', false, ordered::error_handler_t::replace)};
}

reply empty_reply(int status) {
  return reply{status, {}, "", std::string{}};
}

// A refusal as GitLab renders it: render_api_error!'s {"message": …}, or
// Rack::OAuth2's bearer-token error (API::APIGuard), whose 401 carries the
// challenge; Rack::OAuth2 names the error in the challenge only for the
// bearer scheme's own error codes.
reply refusal_reply(const agents::refusal& r) {
  if (!r.oauth_error)
    return json_reply(r.status, ordered{{"message", r.message}});
  ordered body = {{"error", *r.oauth_error}};
  if (!r.message.empty())
    body["error_description"] = r.message;
  if (r.scope)
    body["scope"] = *r.scope;
  auto out = json_reply(r.status, body);
  if (r.status == 401) {
    std::string challenge = R"(Bearer realm="Protected by OAuth 2.0")";
    const auto& e = *r.oauth_error;
    if (e == "invalid_request" || e == "invalid_token"
        || e == "insufficient_scope") {
      challenge += ", error=\"" + e + '"';
      if (!r.message.empty())
        challenge += ", error_description=\"" + r.message + '"';
    }
    out.headers.emplace_back("WWW-Authenticate", std::move(challenge));
  }
  return out;
}

// gitaly_info (connection data, then the feature flags) and
// gitaly_repository (Gitaly's Repository message in field order).
void put_repository(ordered& body, const agents::repository_view& r) {
  ordered info
    = {{"address", r.gitaly_address},
       {"token", r.gitaly_token ? ordered(*r.gitaly_token) : ordered(nullptr)}};
  if (r.with_features) {
    ordered features = ordered::object();
    for (auto& [name, value] : r.gitaly_features)
      features[name] = value;
    info["features"] = std::move(features);
  }
  body["gitaly_info"] = std::move(info);
  body["gitaly_repository"]
    = {{"storage_name", r.storage_name},
       {"relative_path", r.relative_path},
       {"git_object_directory", ""},
       {"git_alternate_object_directories", ordered::array()},
       {"gl_repository", r.gl_repository},
       {"gl_project_path", r.gl_project_path}};
  body["default_branch"] = r.default_branch;
}

reply project_reply(const agents::project_answer& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  ordered body = {{"project_id", a.repository.project_id}};
  put_repository(body, a.repository);
  return json_reply(200, body);
}

reply no_content_reply(const agents::no_content& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  return empty_reply(204);
}

// project_info and verify_project_access declare no parameters: `id` goes
// to find_project as sent (a number as its text).
agents::project_query project_query_of(const request_view& in) {
  agents::project_query q;
  q.token = agent_token_of(in);
  if (auto* v = member(in.params, "id"); v && !v->is_null())
    q.id = v->is_string() ? v->get<std::string>() : dump(*v);
  return q;
}

agents::agent_info_query agent_info_query_of(const request_view& in) {
  return agents::agent_info_query{agent_token_of(in)};
}

reply agent_info_reply(const agents::agent_info_answer& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  ordered body = {{"project_id", a.repository.project_id},
                  {"agent_id", a.agent_id},
                  {"agent_name", a.agent_name}};
  put_repository(body, a.repository);
  return json_reply(200, body);
}

} // namespace

// -- K1, K2: agent_info -------------------------------------------------------

caf::expected<agents::agent_info_query> decode(
  call_tag<call_id::agentk_agent_info>, const request_view& in) {
  return agent_info_query_of(in);
}

reply encode(call_tag<call_id::agentk_agent_info>,
             const agents::agent_info_answer& a) {
  return agent_info_reply(a);
}

caf::expected<agents::agent_info_query> decode(
  call_tag<call_id::kubernetes_agent_info>, const request_view& in) {
  return agent_info_query_of(in);
}

reply encode(call_tag<call_id::kubernetes_agent_info>,
             const agents::agent_info_answer& a) {
  return agent_info_reply(a);
}

// -- K3, K4: project_info, verify_project_access ------------------------------

caf::expected<agents::project_query> decode(
  call_tag<call_id::kubernetes_project_info>, const request_view& in) {
  return project_query_of(in);
}

reply encode(call_tag<call_id::kubernetes_project_info>,
             const agents::project_answer& a) {
  return project_reply(a);
}

caf::expected<agents::project_query> decode(
  call_tag<call_id::kubernetes_verify_project_access>, const request_view& in) {
  return project_query_of(in);
}

reply encode(call_tag<call_id::kubernetes_verify_project_access>,
             const agents::project_answer& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  return empty_reply(204);
}

// -- K5: agent_configuration --------------------------------------------------

// requires :agent_id, type: Integer; requires :agent_config, type: JSON. A
// null agent_id passes Grape and finds no agent (0 is no agent's id).
caf::expected<agents::configuration_query> decode(
  call_tag<call_id::kubernetes_agent_configuration>, const request_view& in) {
  grape_errors errors;
  agents::configuration_query q;
  q.agent_id = integer_param(in.params, "agent_id", "agent_id", true, errors)
                 .value_or(0);
  if (auto* v = member(in.params, "agent_config")) {
    auto config = json_of(*v);
    if (config.ok)
      q.config = std::move(*config.value);
    else
      errors.add("agent_config", "is invalid");
  } else {
    errors.add("agent_config", "is missing");
  }
  return errors.result(std::move(q));
}

reply encode(call_tag<call_id::kubernetes_agent_configuration>,
             const agents::no_content& a) {
  return no_content_reply(a);
}

// -- K6: authorize_proxy_user -------------------------------------------------

// requires agent_id (Integer), access_type (String, one of two values),
// access_key (String); given access_type == "session_cookie", requires
// csrf_token (String, allow_blank: false). Grape runs every validator of a
// parameter, so a missing access_type is also not a valid value, and a
// missing csrf_token also empty.
caf::expected<agents::proxy_user_query> decode(
  call_tag<call_id::kubernetes_authorize_proxy_user>, const request_view& in) {
  const json& params = in.params;
  grape_errors errors;
  agents::proxy_user_query q;
  q.agent_id
    = integer_param(params, "agent_id", "agent_id", true, errors).value_or(0);

  auto* type = member(params, "access_type");
  if (!type)
    errors.add("access_type", "is missing");
  else if (!string_of(*type).ok)
    errors.add("access_type", "is invalid");
  // The values check sees the value as sent (Array.wrap), nil as [nil].
  auto valid_type = [](const json* v) {
    if (v && v->is_string())
      return *v == "session_cookie" || *v == "personal_access_token";
    if (v && v->is_array() && !v->empty()) {
      for (auto& item : *v)
        if (!(item.is_string()
              && (item == "session_cookie" || item == "personal_access_token")))
          return false;
      return true;
    }
    return false;
  };
  if (!valid_type(type))
    errors.add("access_type", "does not have a valid value");
  if (type && type->is_string())
    q.access_type = type->get<std::string>();

  q.access_key
    = text_param(params, "access_key", "access_key", true, errors).value_or("");

  if (type && type->is_string() && *type == "session_cookie") {
    auto csrf = text_param(params, "csrf_token", "csrf_token", true, errors);
    // allow_blank: false: nil, "" and blanks only are empty.
    auto* raw = member(params, "csrf_token");
    bool blank = !raw || raw->is_null()
      || (raw->is_string()
          && raw->get_ref<const std::string&>().find_first_not_of(" \t\r\n\v\f")
            == std::string::npos)
      || (raw->is_array() && raw->empty())
      || (raw->is_object() && raw->empty());
    if (blank)
      errors.add("csrf_token", "is empty");
    q.csrf_token = std::move(csrf);
  }
  return errors.result(std::move(q));
}

reply encode(call_tag<call_id::kubernetes_authorize_proxy_user>,
             const agents::proxy_user_answer& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  ordered body = {
    {"agent",
     {{"id", a.agent_id}, {"config_project", {{"id", a.config_project_id}}}}},
    {"user", {{"id", a.user_id}, {"username", a.username}}},
    {"access_as", {{"agent", ordered::object()}}}};
  return json_reply(200, body);
}

// -- K7: usage_metrics --------------------------------------------------------

// Grape validates the counters it declares (every known one but the legacy
// gitops_sync, which GitLab slices without declaring: coerced here the same
// way, and left out when it is not an integer). Unknown names are ignored,
// nil values are left out.
caf::expected<agents::usage_query> decode(
  call_tag<call_id::kubernetes_usage_metrics>, const request_view& in) {
  grape_errors errors;
  agents::usage_query q;
  if (auto* counters = hash_param(in.params, "counters", "counters", errors)) {
    for (const char* name : agents::known_counters) {
      auto* v = member(*counters, name);
      if (!v)
        continue;
      auto n = integer_of(*v);
      if (!n.ok && std::string_view{name} != "gitops_sync")
        errors.add(nested("counters", name), "is invalid");
      if (n.ok && n.value)
        q.counters.emplace_back(name, *n.value);
    }
  }
  if (auto* unique
      = hash_param(in.params, "unique_counters", "unique_counters", errors)) {
    for (const char* name : agents::known_unique_counters) {
      auto* v = member(*unique, name);
      if (!v || v->is_null())
        continue;
      bool declared = std::string_view{name} != "agent_users_using_ci_tunnel";
      // Array[Integer]: an array whose elements coerce; nil elements
      // (null, "") are dropped.
      std::vector<std::int64_t> ids;
      bool ok = v->is_array();
      if (ok) {
        for (auto& item : *v) {
          auto n = integer_of(item);
          if (!n.ok) {
            ok = false;
            break;
          }
          if (n.value)
            ids.push_back(*n.value);
        }
      } else if (v->is_string() && v->get_ref<const std::string&>().empty()) {
        ok = true; // "" is an empty array for Grape
      }
      if (!ok) {
        if (declared)
          errors.add(nested("unique_counters", name), "is invalid");
        continue;
      }
      q.unique_counters.emplace_back(name, std::move(ids));
    }
  }
  return errors.result(std::move(q));
}

reply encode(call_tag<call_id::kubernetes_usage_metrics>,
             const agents::no_content& a) {
  return no_content_reply(a);
}

// -- K8: agent_events ---------------------------------------------------------

// events (Hash): three lists of {user_id, project_id} (Integer) and
// register_agent_at_kas, a list of {project_id (Integer), agent_version,
// architecture (String), agent_id (Integer), kubernetes_version (String),
// extra_telemetry_data (Hash) {installation_method, helm_chart_version
// (String)}}. Grape checks one declared field at a time across every
// element, in declaration order.
caf::expected<agents::events_query> decode(
  call_tag<call_id::kubernetes_agent_events>, const request_view& in) {
  grape_errors errors;
  agents::events_query q;
  auto* events = hash_param(in.params, "events", "events", errors);
  if (!events)
    return errors.result(std::move(q));
  auto element = [](const std::string& list, std::size_t i, const char* f) {
    return list + '[' + std::to_string(i) + "][" + f + ']';
  };
  for (const char* name : agents::known_user_events) {
    auto list_name = nested("events", name);
    auto* list = array_of_hashes(*events, name, list_name, errors);
    if (!list)
      continue;
    std::vector<agents::user_event> out(list->size());
    for (std::size_t i = 0; i < list->size(); ++i)
      out[i].user_id = integer_param(
        (*list)[i], "user_id", element(list_name, i, "user_id"), false, errors);
    for (std::size_t i = 0; i < list->size(); ++i)
      out[i].project_id
        = integer_param((*list)[i], "project_id",
                        element(list_name, i, "project_id"), false, errors);
    q.user_events.emplace_back(name, std::move(out));
  }
  auto list_name = nested("events", "register_agent_at_kas");
  if (auto* list
      = array_of_hashes(*events, "register_agent_at_kas", list_name, errors)) {
    auto n = list->size();
    std::vector<agents::kas_registration> out(n);
    auto at = [&](std::size_t i) -> const json& {
      return (*list)[i];
    };
    for (std::size_t i = 0; i < n; ++i)
      out[i].project_id
        = integer_param(at(i), "project_id",
                        element(list_name, i, "project_id"), false, errors);
    for (std::size_t i = 0; i < n; ++i)
      out[i].agent_version
        = text_param(at(i), "agent_version",
                     element(list_name, i, "agent_version"), false, errors);
    for (std::size_t i = 0; i < n; ++i)
      out[i].architecture
        = text_param(at(i), "architecture",
                     element(list_name, i, "architecture"), false, errors);
    for (std::size_t i = 0; i < n; ++i)
      out[i].agent_id = integer_param(
        at(i), "agent_id", element(list_name, i, "agent_id"), false, errors);
    for (std::size_t i = 0; i < n; ++i)
      out[i].kubernetes_version = text_param(
        at(i), "kubernetes_version",
        element(list_name, i, "kubernetes_version"), false, errors);
    std::vector<const json*> extra(n, nullptr);
    for (std::size_t i = 0; i < n; ++i)
      extra[i]
        = hash_param(at(i), "extra_telemetry_data",
                     element(list_name, i, "extra_telemetry_data"), errors);
    for (std::size_t i = 0; i < n; ++i)
      if (extra[i])
        out[i].installation_method
          = text_param(*extra[i], "installation_method",
                       nested(element(list_name, i, "extra_telemetry_data"),
                              "installation_method"),
                       false, errors);
    for (std::size_t i = 0; i < n; ++i)
      if (extra[i])
        out[i].helm_chart_version
          = text_param(*extra[i], "helm_chart_version",
                       nested(element(list_name, i, "extra_telemetry_data"),
                              "helm_chart_version"),
                       false, errors);
    q.registrations = std::move(out);
  }
  return errors.result(std::move(q));
}

reply encode(call_tag<call_id::kubernetes_agent_events>,
             const agents::no_content& a) {
  return no_content_reply(a);
}

// -- K9: autoflow/repository_info ---------------------------------------------

// requires :id, type: String; no agent token.
caf::expected<agents::project_query> decode(
  call_tag<call_id::autoflow_repository_info>, const request_view& in) {
  grape_errors errors;
  agents::project_query q;
  q.autoflow = true;
  // A present null passes `requires` and finds no project: "" says so.
  if (member(in.params, "id"))
    q.id = text_param(in.params, "id", "id", true, errors).value_or("");
  else
    errors.add("id", "is missing");
  return errors.result(std::move(q));
}

reply encode(call_tag<call_id::autoflow_repository_info>,
             const agents::project_answer& a) {
  return project_reply(a);
}

// -- K10: ci/agents/runner/info -----------------------------------------------

// GitLab reads the runner token from Gitlab-Agent-Api-Request only.
caf::expected<agents::runner_query> decode(call_tag<call_id::ci_runner_info>,
                                           const request_view& in) {
  agents::runner_query q;
  if (in.http.has_header("Gitlab-Agent-Api-Request"))
    q.token = in.header("Gitlab-Agent-Api-Request");
  return q;
}

reply encode(call_tag<call_id::ci_runner_info>,
             const agents::runner_answer& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  return json_reply(200, ordered{{"runner_id", a.runner_id}});
}

} // namespace gatehouse::http
