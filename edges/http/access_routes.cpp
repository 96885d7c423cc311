#include "edges/http/access_routes.hpp"

#include "actors/deadline_relay.hpp"
#include "common/base64.hpp"
#include "edges/http/bridge.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

namespace gatehouse::http {

namespace {

constexpr const char* rate_limit_text
  = "This endpoint has been requested too many times. Try again later.";

// A failed actor request: the status table decides.
void fail(call& c, const caf::error& err) {
  send_error(c.res, error_response(classify(err)));
}

// Grape's answer to a malformed typed parameter.
void invalid_params(call& c, const std::string& invalid) {
  send_json(c.res, 400, json{{"error", invalid}});
}

access::shell_actor decode_actor(const json& params, std::string& invalid) {
  access::shell_actor a;
  a.key_id = id_param(params, "key_id", invalid);
  a.user_id = id_param(params, "user_id", invalid);
  return a;
}

json encode_shell(const access::shell_answer& a) {
  if (!a.success)
    return {{"success", false}, {"message", a.message}};
  json out = {{"success", true}};
  if (!a.recovery_codes.empty())
    out["recovery_codes"] = a.recovery_codes;
  if (!a.token.empty()) {
    out["token"] = a.token;
    out["scopes"] = a.scopes;
    out["expires_at"] = a.expires_at;
  }
  return out;
}

} // namespace

access::allowed_params decode_allowed(const json& params, std::string& invalid) {
  access::allowed_params p;
  p.action = string_param(params, "action").value_or("");
  p.project = string_param(params, "project");
  p.gl_repository = string_param(params, "gl_repository");
  if (auto changes = string_param(params, "changes"))
    p.changes = *changes;
  if (auto protocol = string_param(params, "protocol"))
    p.protocol = *protocol;
  p.key_id = id_param(params, "key_id", invalid);
  p.user_id = id_param(params, "user_id", invalid);
  p.username = string_param(params, "username");
  // Gitaly sends `env` as a JSON string; a form caller may send an object.
  p.env = string_param(params, "env").value_or("");
  p.relative_path = string_param(params, "relative_path").value_or("");
  if (auto options = strings_param(params, "push_options"))
    p.push_options = *options;
  return p;
}

json encode_allowed(const access::allowed_outcome& o) {
  if (o.status == 429)
    return {{"message", {{"error", rate_limit_text}}}};
  if (o.status != 200 || !o.success)
    return {{"status", false}, {"message", o.message}};
  auto& s = *o.success;
  // GitLab compacts the hash: null values are left out.
  json out = {{"status", true},
              {"gl_repository", s.gl_repository},
              {"gl_project_path", s.gl_project_path},
              {"gl_id", s.gl_id},
              {"git_config_options", s.git_config_options},
              {"gl_console_messages", s.gl_console_messages},
              {"need_audit", false}};
  if (s.gl_project_id)
    out["gl_project_id"] = *s.gl_project_id;
  if (s.gl_root_namespace_id)
    out["gl_root_namespace_id"] = *s.gl_root_namespace_id;
  if (s.gl_username)
    out["gl_username"] = *s.gl_username;
  if (s.gl_key_type)
    out["gl_key_type"] = *s.gl_key_type;
  if (s.gl_key_id)
    out["gl_key_id"] = *s.gl_key_id;
  if (s.gitaly) {
    auto& g = *s.gitaly;
    out["gitaly"] = {
      {"repository",
       {{"storage_name", g.storage_name},
        {"relative_path", g.relative_path},
        {"git_object_directory", ""},
        {"git_alternate_object_directories", json::array()},
        {"gl_repository", g.gl_repository},
        {"gl_project_path", g.gl_project_path}}},
      {"address", g.address},
      {"token", g.token ? json(*g.token) : json(nullptr)},
      {"features", json::object()}};
  }
  return out;
}

access_routes::access_routes(caf::actor_system& sys,
                             access_control_actor access,
                             std::chrono::milliseconds timeout)
  : sys_(sys), access_(std::move(access)), timeout_(timeout) {
  allowed_relay_ = sys_.spawn(deadline_relay<access::allowed_outcome>);
  key_relay_ = sys_.spawn(deadline_relay<access::key_answer>);
  discover_relay_ = sys_.spawn(deadline_relay<access::discover_answer>);
  lfs_relay_ = sys_.spawn(deadline_relay<access::lfs_answer>);
  shell_relay_ = sys_.spawn(deadline_relay<access::shell_answer>);
}

access_routes::~access_routes() {
  for (auto& relay : {allowed_relay_, key_relay_, discover_relay_, lfs_relay_,
                      shell_relay_})
    caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
}

std::vector<route> access_routes::routes() {
  auto bind = [this](void (access_routes::*fn)(call&)) {
    return [this, fn](call& c) { (this->*fn)(c); };
  };
  auto otp_not_available = [](call& c) {
    // Community edition: GitLab answers this for both OTP checks (§2.10).
    send_json(c.res, 200,
              json{{"success", false}, {"message", "Feature is not available"}});
  };
  return {
    {"POST", "/api/v4/internal/allowed", auth_rule::shell,
     bind(&access_routes::allowed)},
    {"GET", "/api/v4/internal/authorized_keys", auth_rule::shell,
     bind(&access_routes::authorized_keys)},
    {"GET", "/api/v4/internal/discover", auth_rule::shell,
     bind(&access_routes::discover)},
    {"POST", "/api/v4/internal/lfs_authenticate", auth_rule::shell,
     bind(&access_routes::lfs_authenticate)},
    {"POST", "/api/v4/internal/two_factor_recovery_codes", auth_rule::shell,
     bind(&access_routes::recovery_codes)},
    {"POST", "/api/v4/internal/personal_access_token", auth_rule::shell,
     bind(&access_routes::personal_access_token)},
    {"POST", "/api/v4/internal/two_factor_manual_otp_check", auth_rule::shell,
     otp_not_available},
    {"POST", "/api/v4/internal/two_factor_push_otp_check", auth_rule::shell,
     otp_not_available},
    {"POST", "/api/v4/internal/shellhorse/git_audit_event",
     auth_rule::shell_or_workhorse, bind(&access_routes::git_audit_event)},
  };
}

void access_routes::allowed(call& c) {
  std::string invalid;
  auto p = decode_allowed(c.params, invalid);
  if (!invalid.empty())
    return invalid_params(c, invalid);
  if (auto bin = string_param(c.params, "gitaly_client_context_bin"))
    if (auto problem = access::gitaly_context_problem(*bin))
      return send_error(c.res, error_response(errc::bad_request, *problem));
  auto outcome = ask<access::allowed_outcome>(sys_, allowed_relay_, access_,
                                              timeout_, atom::allowed::value, p);
  if (!outcome)
    return fail(c, outcome.error());
  send_json(c.res, outcome->status, encode_allowed(*outcome));
}

void access_routes::authorized_keys(call& c) {
  auto key = string_param(c.params, "key");
  if (!key)
    return send_json(c.res, 400, json{{"error", "key is missing"}});
  auto answer = ask<access::key_answer>(sys_, key_relay_, access_, timeout_,
                                        atom::find_key::value, *key);
  if (!answer)
    return fail(c, answer.error());
  if (!answer->key)
    return send_error(c.res, error_response(errc::not_found, "Key"));
  auto& k = *answer->key;
  send_json(c.res, 200,
            json{{"id", k.id},
                 {"title", k.title},
                 {"created_at", k.created_at},
                 {"expires_at", k.expires_at ? json(*k.expires_at) : json(nullptr)},
                 {"key", k.key},
                 {"usage_type", k.usage_type}});
}

void access_routes::discover(call& c) {
  std::string invalid;
  access::discover_query q;
  q.key_id = id_param(c.params, "key_id", invalid);
  q.user_id = id_param(c.params, "user_id", invalid);
  q.username = string_param(c.params, "username");
  // Rails also takes identifier=key-<n>|user-<n>.
  if (auto identifier = string_param(c.params, "identifier")) {
    json id_params;
    if (identifier->rfind("key-", 0) == 0)
      id_params["key_id"] = identifier->substr(4);
    else if (identifier->rfind("user-", 0) == 0)
      id_params["user_id"] = identifier->substr(5);
    std::string ignored;
    if (!q.key_id)
      q.key_id = id_param(id_params, "key_id", ignored);
    if (!q.user_id)
      q.user_id = id_param(id_params, "user_id", ignored);
  }
  if (!invalid.empty())
    return invalid_params(c, invalid);
  auto answer = ask<access::discover_answer>(sys_, discover_relay_, access_,
                                             timeout_, atom::discover::value, q);
  if (!answer)
    return fail(c, answer.error());
  if (!answer->user)
    return send_json(c.res, 200, std::string{"null"});
  send_json(c.res, 200,
            json{{"id", answer->user->id},
                 {"username", answer->user->username},
                 {"name", answer->user->name}});
}

void access_routes::lfs_authenticate(call& c) {
  std::string invalid;
  access::lfs_query q;
  q.actor = decode_actor(c.params, invalid);
  q.project = string_param(c.params, "project").value_or("");
  q.operation = string_param(c.params, "operation").value_or("");
  if (!invalid.empty())
    return invalid_params(c, invalid);
  auto answer = ask<access::lfs_answer>(sys_, lfs_relay_, access_, timeout_,
                                        atom::lfs_auth::value, q);
  if (!answer)
    return fail(c, answer.error());
  if (answer->status != 200)
    return send_json(c.res, answer->status, json{{"message", answer->message}});
  send_json(c.res, 200,
            json{{"username", answer->username},
                 {"lfs_token", answer->lfs_token},
                 {"repository_http_path", answer->repository_http_path},
                 {"expires_in", answer->expires_in}});
}

void access_routes::recovery_codes(call& c) {
  std::string invalid;
  auto a = decode_actor(c.params, invalid);
  if (!invalid.empty())
    return invalid_params(c, invalid);
  auto answer = ask<access::shell_answer>(sys_, shell_relay_, access_, timeout_,
                                          atom::recovery::value, a);
  if (!answer)
    return fail(c, answer.error());
  send_json(c.res, 200, encode_shell(*answer));
}

void access_routes::personal_access_token(call& c) {
  std::string invalid;
  access::pat_query q;
  q.actor = decode_actor(c.params, invalid);
  if (!invalid.empty())
    return invalid_params(c, invalid);
  q.name = string_param(c.params, "name");
  q.scopes = strings_param(c.params, "scopes");
  q.expires_at = string_param(c.params, "expires_at");
  auto answer = ask<access::shell_answer>(sys_, shell_relay_, access_, timeout_,
                                          atom::make_pat::value, q);
  if (!answer)
    return fail(c, answer.error());
  send_json(c.res, 200, encode_shell(*answer));
}

void access_routes::git_audit_event(call& c) {
  std::string missing;
  for (auto name : {"action", "protocol", "gl_repository", "changes"})
    if (!string_param(c.params, name))
      missing += std::string{missing.empty() ? "" : ", "} + name + " is missing";
  if (!missing.empty())
    return send_json(c.res, 400, json{{"error", missing}});
  auto action = *string_param(c.params, "action");
  if (action != "git-upload-pack" && action != "git-receive-pack")
    return send_json(c.res, 400, json{{"status", false},
                                      {"message", "No valid action specified"}});
  std::string invalid;
  auto p = decode_allowed(c.params, invalid);
  if (!invalid.empty())
    return invalid_params(c, invalid);
  auto outcome = ask<access::allowed_outcome>(sys_, allowed_relay_, access_,
                                              timeout_, atom::allowed::value, p);
  if (!outcome)
    return fail(c, outcome.error());
  if (outcome->status != 200)
    return send_json(c.res, outcome->status, encode_allowed(*outcome));
  // Community edition: git audit streaming is never configured.
  send_json(c.res, 200,
            json{{"status", false}, {"message", "No git audit event needed"}});
}

} // namespace gatehouse::http
