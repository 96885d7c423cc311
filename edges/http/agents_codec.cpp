// The HTTP codec of KAS's calls (contract other-callers §1.2, §2.2, §2.3):
// the agent token from its headers, Grape's coercion and validation of the
// declared parameters (lib/api/internal/kubernetes.rb, autoflow.rb), and the
// answers in GitLab's key order. Every rule beyond the wire's types lives in
// actors/agents/.

#include "edges/http/codec.hpp"
#include "edges/http/grape_params.hpp"

#include "common/ascii.hpp"

#include "messages/errors.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gatehouse::http {

namespace {

using ordered = nlohmann::ordered_json;

using namespace grape;

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
