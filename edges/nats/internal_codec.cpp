#include "edges/nats/internal_codec.hpp"

#include "edges/error_status.hpp"

#include "gatehouse/internal/v1/access.pb.h"
#include "gatehouse/internal/v1/agents.pb.h"
#include "gatehouse/internal/v1/check.pb.h"
#include "gatehouse/internal/v1/error.pb.h"
#include "gatehouse/internal/v1/indexer.pb.h"
#include "gatehouse/internal/v1/push.pb.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <nlohmann/json.hpp>

#include <limits>
#include <optional>
#include <string_view>
#include <vector>

namespace gatehouse::nats {

namespace pb = gatehouse::internal::v1;

namespace {

wire_reply ok(const google::protobuf::MessageLite& msg) {
  wire_reply out;
  out.status = 200;
  msg.SerializeToString(&out.body);
  return out;
}

// Whether a string field of `msg`, or of a message inside it, holds a NUL
// byte. Bytes fields are binary and may. Protobuf's own recursion limit
// (100) bounds `msg`; these requests nest at most a level or two.
bool holds_nul(const google::protobuf::Message& msg) {
  using google::protobuf::FieldDescriptor;
  const auto* refl = msg.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(msg, &fields);
  auto nul = [](const std::string& s) {
    return s.find('\0') != std::string::npos;
  };
  for (const auto* f : fields) {
    const bool repeated = f->is_repeated();
    const int n = repeated ? refl->FieldSize(msg, f) : 1;
    for (int i = 0; i < n; ++i) {
      if (f->type() == FieldDescriptor::TYPE_STRING) {
        std::string scratch;
        const auto& value
          = repeated ? refl->GetRepeatedStringReference(msg, f, i, &scratch)
                     : refl->GetStringReference(msg, f, &scratch);
        if (nul(value))
          return true;
      } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        if (holds_nul(repeated ? refl->GetRepeatedMessage(msg, f, i)
                               : refl->GetMessage(msg, f)))
          return true;
      }
    }
  }
  return false;
}

// Parses `payload` into a `Message`, or the 400 of a malformed payload. A
// NUL byte in a string is refused as the HTTP edge refuses it (GitLab's
// HandleMalformedStrings): PostgreSQL and C strings downstream would cut
// the value at it.
template <class Message>
caf::expected<Message> parse(const std::string& payload) {
  Message msg;
  if (!msg.ParseFromString(payload))
    return caf::make_error(
      errc::bad_request,
      "malformed " + msg.GetTypeName().substr(msg.GetTypeName().rfind('.') + 1)
        + " payload");
  if (holds_nul(msg))
    return caf::make_error(errc::bad_request,
                           "a string field holds a NUL byte");
  return msg;
}

// Grape treats a blank string parameter as absent.
std::optional<std::string> present(bool has, const std::string& value) {
  if (!has || value.empty())
    return std::nullopt;
  return value;
}

std::optional<std::int64_t> id(bool has, std::int64_t value) {
  if (!has)
    return std::nullopt;
  return value;
}

template <class Request>
access::shell_caller caller_of(const Request& r) {
  return {id(r.has_key_id(), r.key_id()), id(r.has_user_id(), r.user_id())};
}

template <class Response>
wire_reply shell_reply(const access::shell_answer& a) {
  Response r;
  r.set_success(a.success);
  if (!a.success)
    r.set_message(a.message);
  return ok(r);
}

} // namespace

// -- errors -------------------------------------------------------------------

wire_reply error_reply(int status, const std::string& message) {
  pb::Error e;
  e.set_message(message);
  wire_reply out;
  out.status = status;
  e.SerializeToString(&out.body);
  return out;
}

wire_reply error_reply(errc code, const std::string& detail) {
  auto e = status_of(code, detail);
  return error_reply(e.status, e.message);
}

wire_reply failure_reply(const caf::error& err) {
  auto e = status_of(err);
  return error_reply(e.status, e.message);
}

// -- check
// ----------------------------------------------------------------------

caf::expected<check_query> decode(call_tag<call_id::check>,
                                  const std::string& payload) {
  auto r = parse<pb::CheckRequest>(payload);
  if (!r)
    return r.error();
  return check_query{};
}

wire_reply encode(call_tag<call_id::check>, const check_view& view) {
  pb::CheckResponse r;
  r.set_api_version("v4");
  r.set_gitlab_version(view.gitlab_version);
  r.set_gitlab_rev(view.gitlab_rev);
  r.set_redis(view.state_store_reachable);
  return ok(r);
}

// -- allowed
// ----------------------------------------------------------------------

caf::expected<access::allowed_params> decode(call_tag<call_id::allowed>,
                                             const std::string& payload) {
  auto r = parse<pb::AllowedRequest>(payload);
  if (!r)
    return r.error();
  access::allowed_params p;
  p.action = r->action();
  p.project = present(r->has_project(), r->project());
  p.gl_repository = present(r->has_gl_repository(), r->gl_repository());
  if (auto changes = present(r->has_changes(), r->changes()))
    p.changes = *changes;
  if (auto protocol = present(r->has_protocol(), r->protocol()))
    p.protocol = *protocol;
  p.key_id = id(r->has_key_id(), r->key_id());
  p.user_id = id(r->has_user_id(), r->user_id());
  p.identifier = present(r->has_identifier(), r->identifier());
  p.username = present(r->has_username(), r->username());
  p.env = r->env();
  p.relative_path = r->relative_path();
  p.push_options.assign(r->push_options().begin(), r->push_options().end());
  p.gitaly_client_context_bin = present(r->has_gitaly_client_context_bin(),
                                        r->gitaly_client_context_bin());
  return p;
}

wire_reply encode(call_tag<call_id::allowed>,
                  const access::allowed_outcome& o) {
  if (o.status != 200)
    return error_reply(o.status, o.message);
  pb::AllowedResponse r;
  if (!o.success) {
    r.set_status(false);
    r.set_message(o.message);
    return ok(r);
  }
  auto& s = *o.success;
  r.set_status(true);
  r.set_gl_repository(s.gl_repository);
  r.set_gl_project_path(s.gl_project_path);
  r.set_gl_id(s.gl_id);
  for (auto& opt : s.git_config_options)
    r.add_git_config_options(opt);
  for (auto& line : s.gl_console_messages)
    r.add_gl_console_messages(line);
  r.set_need_audit(false);
  if (s.gl_project_id)
    r.set_gl_project_id(*s.gl_project_id);
  if (s.gl_root_namespace_id)
    r.set_gl_root_namespace_id(*s.gl_root_namespace_id);
  if (s.gl_username)
    r.set_gl_username(*s.gl_username);
  if (s.gl_key_type)
    r.set_gl_key_type(*s.gl_key_type);
  if (s.gl_key_id)
    r.set_gl_key_id(*s.gl_key_id);
  if (s.gitaly) {
    auto& g = *s.gitaly;
    auto* gitaly = r.mutable_gitaly();
    auto* repo = gitaly->mutable_repository();
    repo->set_storage_name(g.storage_name);
    repo->set_relative_path(g.relative_path);
    repo->set_gl_repository(g.gl_repository);
    repo->set_gl_project_path(g.gl_project_path);
    gitaly->set_address(g.address);
    if (g.token)
      gitaly->set_token(*g.token);
  }
  return ok(r);
}

// -- authorized_keys
// --------------------------------------------------------------

caf::expected<access::key_query> decode(call_tag<call_id::authorized_keys>,
                                        const std::string& payload) {
  auto r = parse<pb::AuthorizedKeysRequest>(payload);
  if (!r)
    return r.error();
  return access::key_query{r->key()};
}

wire_reply encode(call_tag<call_id::authorized_keys>,
                  const access::authorized_key& k) {
  pb::AuthorizedKeysResponse r;
  r.set_id(k.id);
  r.set_title(k.title);
  r.set_created_at(k.created_at);
  if (k.expires_at)
    r.set_expires_at(*k.expires_at);
  r.set_key(k.key);
  r.set_usage_type(k.usage_type);
  return ok(r);
}

// -- discover
// ---------------------------------------------------------------------

caf::expected<access::discover_query> decode(call_tag<call_id::discover>,
                                             const std::string& payload) {
  auto r = parse<pb::DiscoverRequest>(payload);
  if (!r)
    return r.error();
  access::discover_query q;
  q.key_id = id(r->has_key_id(), r->key_id());
  q.user_id = id(r->has_user_id(), r->user_id());
  q.username = present(r->has_username(), r->username());
  q.identifier = present(r->has_identifier(), r->identifier());
  return q;
}

wire_reply encode(call_tag<call_id::discover>,
                  const access::discover_answer& a) {
  pb::DiscoverResponse r;
  if (a.user) {
    r.set_id(a.user->id);
    r.set_username(a.user->username);
    r.set_name(a.user->name);
  }
  return ok(r);
}

// -- lfs_authenticate
// -------------------------------------------------------------

caf::expected<access::lfs_query> decode(call_tag<call_id::lfs_authenticate>,
                                        const std::string& payload) {
  auto r = parse<pb::LfsAuthenticateRequest>(payload);
  if (!r)
    return r.error();
  return access::lfs_query{caller_of(*r), r->project(), r->operation()};
}

wire_reply encode(call_tag<call_id::lfs_authenticate>,
                  const access::lfs_answer& a) {
  if (a.status != 200)
    return error_reply(a.status, a.message);
  pb::LfsAuthenticateResponse r;
  r.set_username(a.username);
  r.set_lfs_token(a.lfs_token);
  r.set_repository_http_path(a.repository_http_path);
  r.set_expires_in(a.expires_in);
  return ok(r);
}

// -- two_factor_recovery_codes
// ----------------------------------------------------

caf::expected<access::recovery_query> decode(
  call_tag<call_id::two_factor_recovery_codes>, const std::string& payload) {
  auto r = parse<pb::TwoFactorRecoveryCodesRequest>(payload);
  if (!r)
    return r.error();
  return access::recovery_query{caller_of(*r)};
}

wire_reply encode(call_tag<call_id::two_factor_recovery_codes>,
                  const access::shell_answer& a) {
  pb::TwoFactorRecoveryCodesResponse r;
  r.set_success(a.success);
  if (!a.success)
    r.set_message(a.message);
  for (auto& code : a.recovery_codes)
    r.add_recovery_codes(code);
  return ok(r);
}

// -- personal_access_token
// ---------------------------------------------------------

caf::expected<access::pat_query> decode(
  call_tag<call_id::personal_access_token>, const std::string& payload) {
  auto r = parse<pb::PersonalAccessTokenRequest>(payload);
  if (!r)
    return r.error();
  access::pat_query q;
  q.caller = caller_of(*r);
  q.name = present(r->has_name(), r->name());
  // No scopes and an empty list are one case for GitLab.
  if (r->scopes_size() > 0)
    q.scopes = std::vector<std::string>(r->scopes().begin(), r->scopes().end());
  q.expires_at = present(r->has_expires_at(), r->expires_at());
  return q;
}

wire_reply encode(call_tag<call_id::personal_access_token>,
                  const access::shell_answer& a) {
  pb::PersonalAccessTokenResponse r;
  r.set_success(a.success);
  if (!a.success) {
    r.set_message(a.message);
    return ok(r);
  }
  if (!a.token.empty()) {
    r.set_token(a.token);
    for (auto& scope : a.scopes)
      r.add_scopes(scope);
    r.set_expires_at(a.expires_at);
  }
  return ok(r);
}

// -- OTP checks
// ---------------------------------------------------------------------

caf::expected<access::otp_query> decode(
  call_tag<call_id::two_factor_manual_otp_check>, const std::string& payload) {
  auto r = parse<pb::TwoFactorManualOtpCheckRequest>(payload);
  if (!r)
    return r.error();
  return access::otp_query{caller_of(*r)};
}

wire_reply encode(call_tag<call_id::two_factor_manual_otp_check>,
                  const access::shell_answer& a) {
  return shell_reply<pb::TwoFactorOtpCheckResponse>(a);
}

caf::expected<access::otp_query> decode(
  call_tag<call_id::two_factor_push_otp_check>, const std::string& payload) {
  auto r = parse<pb::TwoFactorPushOtpCheckRequest>(payload);
  if (!r)
    return r.error();
  return access::otp_query{caller_of(*r)};
}

wire_reply encode(call_tag<call_id::two_factor_push_otp_check>,
                  const access::shell_answer& a) {
  return shell_reply<pb::TwoFactorOtpCheckResponse>(a);
}

// -- pre_receive, post_receive
// -----------------------------------------------------

caf::expected<push::pre_receive_params> decode(call_tag<call_id::pre_receive>,
                                               const std::string& payload) {
  auto r = parse<pb::PreReceiveRequest>(payload);
  if (!r)
    return r.error();
  push::pre_receive_params p;
  p.gl_repository = r->gl_repository();
  return p;
}

wire_reply encode(call_tag<call_id::pre_receive>,
                  const push::pre_receive_answer& a) {
  pb::PreReceiveResponse r;
  r.set_reference_counter_increased(a.reference_counter_increased);
  return ok(r);
}

caf::expected<push::post_receive_params> decode(call_tag<call_id::post_receive>,
                                                const std::string& payload) {
  auto r = parse<pb::PostReceiveRequest>(payload);
  if (!r)
    return r.error();
  push::post_receive_params p;
  p.gl_repository = r->gl_repository();
  p.identifier = r->identifier();
  p.changes = r->changes();
  p.push_options.assign(r->push_options().begin(), r->push_options().end());
  return p;
}

wire_reply encode(call_tag<call_id::post_receive>,
                  const push::post_receive_answer& a) {
  pb::PostReceiveResponse r;
  for (auto& m : a.messages) {
    auto* line = r.add_messages();
    line->set_message(m.message);
    line->set_type(m.type);
  }
  r.set_reference_counter_decreased(a.reference_counter_decreased);
  return ok(r);
}

// -- shellhorse/git_audit_event
// ----------------------------------------------------

caf::expected<access::audit_query> decode(call_tag<call_id::git_audit_event>,
                                          const std::string& payload) {
  auto r = parse<pb::GitAuditEventRequest>(payload);
  if (!r)
    return r.error();
  access::audit_query q;
  q.action = present(true, r->action());
  q.protocol = present(true, r->protocol());
  q.gl_repository = present(true, r->gl_repository());
  q.changes = present(true, r->changes());
  q.project = present(r->has_project(), r->project());
  q.key_id = id(r->has_key_id(), r->key_id());
  q.user_id = id(r->has_user_id(), r->user_id());
  q.username = present(r->has_username(), r->username());
  q.push_options.assign(r->push_options().begin(), r->push_options().end());
  return q;
}

wire_reply encode(call_tag<call_id::git_audit_event>,
                  const access::audit_answer& a) {
  if (a.status != 200)
    return error_reply(a.status, a.message);
  pb::GitAuditEventResponse r;
  r.set_status(false);
  r.set_message(a.message);
  return ok(r);
}

// -- KAS's calls --------------------------------------------------------------

namespace {

// Grape's validation texts of one request, in the order the HTTP edge
// gives them (declaration order).
struct grape_texts {
  std::string text;

  void add(const std::string& name, const char* what) {
    if (!text.empty())
      text += ", ";
    text += name + ' ' + what;
  }

  template <class T>
  caf::expected<T> result(T value) const {
    if (!text.empty())
      return caf::make_error(errc::invalid_params, text);
    return value;
  }
};

wire_reply refusal_reply(const agents::refusal& r) {
  // A bearer-token refusal's text is its error_description.
  if (r.oauth_error && r.message.empty())
    return error_reply(r.status, *r.oauth_error);
  return error_reply(r.status, r.message);
}

wire_reply no_content_reply(const agents::no_content& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  wire_reply out = ok(pb::NoContentResponse{});
  out.status = 204;
  return out;
}

std::optional<std::string> token(bool has, const std::string& value) {
  if (!has)
    return std::nullopt;
  return value;
}

template <class Out>
void put_repository(Out& r, const agents::repository_view& v) {
  auto* info = r.mutable_gitaly_info();
  info->set_address(v.gitaly_address);
  if (v.gitaly_token)
    info->set_token(*v.gitaly_token);
  if (v.with_features)
    for (auto& [name, value] : v.gitaly_features)
      (*info->mutable_features())[name] = value;
  auto* repo = r.mutable_gitaly_repository();
  repo->set_storage_name(v.storage_name);
  repo->set_relative_path(v.relative_path);
  repo->set_gl_repository(v.gl_repository);
  repo->set_gl_project_path(v.gl_project_path);
  r.set_project_id(v.project_id);
  r.set_default_branch(v.default_branch);
}

caf::expected<agents::agent_info_query>
agent_info_query_of(const std::string& payload) {
  auto r = parse<pb::AgentInfoRequest>(payload);
  if (!r)
    return r.error();
  return agents::agent_info_query{token(r->has_agent_token(), r->agent_token())};
}

wire_reply agent_info_reply(const agents::agent_info_answer& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  pb::AgentInfoResponse r;
  put_repository(r, a.repository);
  r.set_agent_id(a.agent_id);
  r.set_agent_name(a.agent_name);
  return ok(r);
}

caf::expected<agents::project_query>
project_query_of(const std::string& payload, bool autoflow) {
  auto r = parse<pb::ProjectInfoRequest>(payload);
  if (!r)
    return r.error();
  agents::project_query q;
  q.autoflow = autoflow;
  if (!autoflow)
    q.token = token(r->has_agent_token(), r->agent_token());
  grape_texts errors;
  if (r->has_id())
    q.id = r->id();
  else if (autoflow)
    errors.add("id", "is missing");
  return errors.result(std::move(q));
}

wire_reply project_reply(const agents::project_answer& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  pb::ProjectInfoResponse r;
  put_repository(r, a.repository);
  return ok(r);
}

// Grape's JSON type: an object or an array of objects.
bool acceptable_config(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded())
    return false;
  if (j.is_object())
    return true;
  if (!j.is_array())
    return false;
  for (auto& item : j)
    if (!item.is_object())
      return false;
  return true;
}

} // namespace

caf::expected<agents::agent_info_query>
decode(call_tag<call_id::agentk_agent_info>, const std::string& payload) {
  return agent_info_query_of(payload);
}

wire_reply encode(call_tag<call_id::agentk_agent_info>,
                  const agents::agent_info_answer& a) {
  return agent_info_reply(a);
}

caf::expected<agents::agent_info_query>
decode(call_tag<call_id::kubernetes_agent_info>, const std::string& payload) {
  return agent_info_query_of(payload);
}

wire_reply encode(call_tag<call_id::kubernetes_agent_info>,
                  const agents::agent_info_answer& a) {
  return agent_info_reply(a);
}

caf::expected<agents::project_query>
decode(call_tag<call_id::kubernetes_project_info>, const std::string& payload) {
  return project_query_of(payload, false);
}

wire_reply encode(call_tag<call_id::kubernetes_project_info>,
                  const agents::project_answer& a) {
  return project_reply(a);
}

caf::expected<agents::project_query>
decode(call_tag<call_id::kubernetes_verify_project_access>,
       const std::string& payload) {
  return project_query_of(payload, false);
}

wire_reply encode(call_tag<call_id::kubernetes_verify_project_access>,
                  const agents::project_answer& a) {
  return no_content_reply(agents::no_content{a.refused});
}

caf::expected<agents::configuration_query>
decode(call_tag<call_id::kubernetes_agent_configuration>,
       const std::string& payload) {
  auto r = parse<pb::AgentConfigurationRequest>(payload);
  if (!r)
    return r.error();
  grape_texts errors;
  agents::configuration_query q;
  if (r->has_agent_id())
    q.agent_id = r->agent_id();
  else
    errors.add("agent_id", "is missing");
  if (r->agent_config().empty())
    errors.add("agent_config", "is missing");
  else if (!acceptable_config(r->agent_config()))
    errors.add("agent_config", "is invalid");
  else
    q.config = r->agent_config();
  return errors.result(std::move(q));
}

wire_reply encode(call_tag<call_id::kubernetes_agent_configuration>,
                  const agents::no_content& a) {
  return no_content_reply(a);
}

caf::expected<agents::proxy_user_query>
decode(call_tag<call_id::kubernetes_authorize_proxy_user>,
       const std::string& payload) {
  auto r = parse<pb::AuthorizeProxyUserRequest>(payload);
  if (!r)
    return r.error();
  grape_texts errors;
  agents::proxy_user_query q;
  if (r->has_agent_id())
    q.agent_id = r->agent_id();
  else
    errors.add("agent_id", "is missing");
  q.access_type = r->access_type();
  if (q.access_type.empty())
    errors.add("access_type", "is missing");
  if (q.access_type != "session_cookie"
      && q.access_type != "personal_access_token")
    errors.add("access_type", "does not have a valid value");
  if (r->has_access_key())
    q.access_key = r->access_key();
  else
    errors.add("access_key", "is missing");
  if (q.access_type == "session_cookie") {
    if (!r->has_csrf_token())
      errors.add("csrf_token", "is missing");
    const auto& csrf = r->csrf_token();
    if (csrf.find_first_not_of(" \t\r\n\v\f") == std::string::npos)
      errors.add("csrf_token", "is empty");
    if (r->has_csrf_token())
      q.csrf_token = csrf;
  }
  return errors.result(std::move(q));
}

wire_reply encode(call_tag<call_id::kubernetes_authorize_proxy_user>,
                  const agents::proxy_user_answer& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  pb::AuthorizeProxyUserResponse r;
  r.mutable_agent()->set_id(a.agent_id);
  r.mutable_agent()->mutable_config_project()->set_id(a.config_project_id);
  r.mutable_user()->set_id(a.user_id);
  r.mutable_user()->set_username(a.username);
  r.mutable_access_as()->mutable_agent();
  return ok(r);
}

// Known names only, in the order GitLab declares them, as over HTTP.
caf::expected<agents::usage_query>
decode(call_tag<call_id::kubernetes_usage_metrics>,
       const std::string& payload) {
  auto r = parse<pb::UsageMetricsRequest>(payload);
  if (!r)
    return r.error();
  agents::usage_query q;
  for (const char* name : agents::known_counters)
    if (auto it = r->counters().find(name); it != r->counters().end())
      q.counters.emplace_back(name, it->second);
  for (const char* name : agents::known_unique_counters)
    if (auto it = r->unique_counters().find(name);
        it != r->unique_counters().end())
      q.unique_counters.emplace_back(
        name, std::vector<std::int64_t>(it->second.ids().begin(),
                                        it->second.ids().end()));
  return q;
}

wire_reply encode(call_tag<call_id::kubernetes_usage_metrics>,
                  const agents::no_content& a) {
  return no_content_reply(a);
}

caf::expected<agents::events_query>
decode(call_tag<call_id::kubernetes_agent_events>, const std::string& payload) {
  auto r = parse<pb::AgentEventsRequest>(payload);
  if (!r)
    return r.error();
  agents::events_query q;
  auto users = [&](const char* name, const auto& list) {
    if (list.empty())
      return;
    std::vector<agents::user_event> out;
    for (auto& e : list)
      out.push_back({id(e.has_user_id(), e.user_id()),
                     id(e.has_project_id(), e.project_id())});
    q.user_events.emplace_back(name, std::move(out));
  };
  // agents::known_user_events' order.
  users("k8s_api_proxy_requests_unique_users_via_ci_access",
        r->k8s_api_proxy_requests_unique_users_via_ci_access());
  users("k8s_api_proxy_requests_unique_users_via_user_access",
        r->k8s_api_proxy_requests_unique_users_via_user_access());
  users("k8s_api_proxy_requests_unique_users_via_pat_access",
        r->k8s_api_proxy_requests_unique_users_via_pat_access());
  auto text = [](bool has, const std::string& v) {
    return has ? std::optional<std::string>{v} : std::nullopt;
  };
  for (auto& e : r->register_agent_at_kas()) {
    agents::kas_registration k;
    k.project_id = id(e.has_project_id(), e.project_id());
    k.agent_version = text(e.has_agent_version(), e.agent_version());
    k.architecture = text(e.has_architecture(), e.architecture());
    k.agent_id = id(e.has_agent_id(), e.agent_id());
    k.kubernetes_version
      = text(e.has_kubernetes_version(), e.kubernetes_version());
    if (e.has_extra_telemetry_data()) {
      auto& x = e.extra_telemetry_data();
      k.installation_method
        = text(x.has_installation_method(), x.installation_method());
      k.helm_chart_version
        = text(x.has_helm_chart_version(), x.helm_chart_version());
    }
    q.registrations.push_back(std::move(k));
  }
  return q;
}

wire_reply encode(call_tag<call_id::kubernetes_agent_events>,
                  const agents::no_content& a) {
  return no_content_reply(a);
}

caf::expected<agents::project_query>
decode(call_tag<call_id::autoflow_repository_info>,
       const std::string& payload) {
  return project_query_of(payload, true);
}

wire_reply encode(call_tag<call_id::autoflow_repository_info>,
                  const agents::project_answer& a) {
  return project_reply(a);
}

caf::expected<agents::runner_query> decode(call_tag<call_id::ci_runner_info>,
                                           const std::string& payload) {
  auto r = parse<pb::RunnerInfoRequest>(payload);
  if (!r)
    return r.error();
  return agents::runner_query{token(r->has_runner_token(), r->runner_token())};
}

wire_reply encode(call_tag<call_id::ci_runner_info>,
                  const agents::runner_answer& a) {
  if (a.refused)
    return refusal_reply(*a.refused);
  pb::RunnerInfoResponse r;
  r.set_runner_id(a.runner_id);
  return ok(r);
}

// -- the Zoekt indexer's calls ------------------------------------------------

namespace {

// What both node calls share, in the HTTP codec's order of Grape's texts.
// Required fields are proto3 optional: a present "" is sent on as the HTTP
// edge sends a present "" (a node GitLab's validation refuses).
indexer::node_report node_report_of(const pb::ZoektNodeRequest& r,
                                    bool tasks_call, grape_texts& errors) {
  indexer::node_report n;
  n.uuid = r.uuid();
  auto required_text = [&](bool has, const std::string& value,
                           const char* name) {
    if (!has)
      errors.add(name, "is missing");
    return value;
  };
  auto required_integer = [&](bool has, std::int64_t value, const char* name) {
    if (!has)
      errors.add(name, "is missing");
    return value;
  };
  n.url = required_text(r.has_node_url(), r.node_url(), "node.url");
  n.disk_all = required_integer(r.has_disk_all(), r.disk_all(), "disk.all");
  n.disk_used
    = required_integer(r.has_disk_used(), r.disk_used(), "disk.used");
  if (tasks_call) {
    required_integer(r.has_disk_free(), r.disk_free(), "disk.free");
    n.disk_free = id(r.has_disk_free(), r.disk_free());
  }
  n.name = required_text(r.has_node_name(), r.node_name(), "node.name");
  if (!tasks_call && r.node_services_size() > 0)
    n.services = std::vector<std::string>(r.node_services().begin(),
                                          r.node_services().end());
  n.schema_version
    = id(r.has_node_schema_version(), r.node_schema_version());
  n.disk_indexed = id(r.has_disk_indexed(), r.disk_indexed());
  if (r.has_node_search_url())
    n.search_url = r.node_search_url();
  n.task_count = id(r.has_node_task_count(), r.node_task_count());
  n.concurrency = id(r.has_node_concurrency(), r.node_concurrency());
  // GitLab keeps a version only when it is present (not blank).
  if (r.has_node_version()
      && r.node_version().find_first_not_of(" \t\r\n\v\f")
           != std::string::npos)
    n.version = r.node_version();
  return n;
}

wire_reply node_reply(const indexer::heartbeat_answer& a) {
  if (a.invalid_node)
    return error_reply(422, "422 Unprocessable Entity");
  pb::ZoektNodeResponse r;
  r.set_id(a.node_id);
  r.set_truncate(a.truncate);
  for (auto& t : a.tasks) {
    auto* task = r.add_tasks();
    task->set_name(t.name);
    auto* p = task->mutable_payload();
    auto* callback = p->mutable_callback();
    p->set_repoid(t.repo_id);
    callback->mutable_payload()->set_task_id(t.task_id);
    if (t.name == "delete") {
      callback->set_name("delete");
      callback->mutable_payload()->set_service_type("zoekt");
      continue;
    }
    callback->set_name("index");
    callback->mutable_payload()->set_schema_version(t.schema_version);
    if (t.gitaly) {
      auto* g = p->mutable_gitalyconnectioninfo();
      g->set_address(t.gitaly->address);
      g->set_token(t.gitaly->token);
      g->set_storage(t.gitaly->storage);
      g->set_path(t.gitaly->path);
    }
    p->set_filesizelimit(t.file_size_limit);
    p->set_parallelism(t.parallelism);
    p->set_timeout(t.timeout);
    p->set_filecountlimit(t.file_count_limit);
    p->set_missingrepo(t.missing_repo);
    for (auto& [key, value] : t.metadata)
      (*p->mutable_metadata())[key] = value;
    if (t.force)
      p->set_force(true);
  }
  r.set_pull_frequency(a.pull_frequency);
  r.set_stop_indexing(a.stop_indexing);
  return ok(r);
}

// Grape's JSON type over JSON text: blank is nil (null), otherwise an
// object or an array of objects; nullopt for anything else.
std::optional<nlohmann::json> grape_json(const std::string& text) {
  if (text.find_first_not_of(" \t\r\n\v\f") == std::string::npos)
    return nlohmann::json(nullptr);
  if (!acceptable_config(text))
    return std::nullopt;
  return nlohmann::json::parse(text, nullptr, false);
}

// An integer in a callback's JSON: an integer, or a string holding one
// (blanks around, a sign, digits), as the HTTP edge reads it.
std::optional<std::int64_t> integer_in(const nlohmann::json& parent,
                                       const char* name) {
  auto it = parent.find(name);
  if (it == parent.end())
    return std::nullopt;
  if (it->is_number_unsigned()) {
    auto u = it->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(
          std::numeric_limits<std::int64_t>::max()))
      return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (it->is_number_integer())
    return it->get<std::int64_t>();
  if (!it->is_string())
    return std::nullopt;
  std::string_view text = it->get_ref<const std::string&>();
  auto blank = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f'
      || c == '\r';
  };
  while (!text.empty() && blank(text.front()))
    text.remove_prefix(1);
  while (!text.empty() && blank(text.back()))
    text.remove_suffix(1);
  bool negative = !text.empty() && text.front() == '-';
  if (!text.empty() && (text.front() == '-' || text.front() == '+'))
    text.remove_prefix(1);
  if (text.empty() || text.front() == '_' || text.back() == '_')
    return std::nullopt;
  constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
  std::int64_t value = 0;
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

} // namespace

caf::expected<indexer::heartbeat_query>
decode(call_tag<call_id::zoekt_heartbeat>, const std::string& payload) {
  auto r = parse<pb::ZoektNodeRequest>(payload);
  if (!r)
    return r.error();
  grape_texts errors;
  indexer::heartbeat_query q;
  q.node = node_report_of(*r, false, errors);
  return errors.result(std::move(q));
}

wire_reply encode(call_tag<call_id::zoekt_heartbeat>,
                  const indexer::heartbeat_answer& a) {
  return node_reply(a);
}

caf::expected<indexer::tasks_query> decode(call_tag<call_id::zoekt_tasks>,
                                           const std::string& payload) {
  auto r = parse<pb::ZoektNodeRequest>(payload);
  if (!r)
    return r.error();
  grape_texts errors;
  indexer::tasks_query q;
  q.node = node_report_of(*r, true, errors);
  return errors.result(std::move(q));
}

// optimized_performance stays false, as the HTTP edge sends it.
wire_reply encode(call_tag<call_id::zoekt_tasks>,
                  const indexer::heartbeat_answer& a) {
  return node_reply(a);
}

caf::expected<indexer::callback_query>
decode(call_tag<call_id::zoekt_callback>, const std::string& payload) {
  auto r = parse<pb::ZoektCallbackRequest>(payload);
  if (!r)
    return r.error();
  grape_texts errors;
  indexer::callback_query q;
  q.uuid = r->uuid();
  if (r->has_name())
    q.name = r->name();
  else
    errors.add("name", "is missing");
  if (r->has_success())
    q.success = r->success();
  else
    errors.add("success", "is missing");
  if (r->has_error())
    q.error = r->error();
  nlohmann::json task_payload;
  if (!r->has_payload())
    errors.add("payload", "is missing");
  else if (auto j = grape_json(r->payload()))
    task_payload = std::move(*j);
  else
    errors.add("payload", "is invalid");
  nlohmann::json additional;
  if (r->has_additional_payload()) {
    if (auto j = grape_json(r->additional_payload()))
      additional = std::move(*j);
    else
      errors.add("additional_payload", "is invalid");
  }
  if (task_payload.is_object())
    q.task_id = integer_in(task_payload, "task_id");
  if (additional.is_object())
    if (auto it = additional.find("repo_stats");
        it != additional.end() && it->is_object()) {
      q.size_in_bytes = integer_in(*it, "size_in_bytes");
      q.index_file_count = integer_in(*it, "index_file_count");
    }
  return errors.result(std::move(q));
}

wire_reply encode(call_tag<call_id::zoekt_callback>,
                  const indexer::callback_answer& a) {
  if (!a.node_found)
    return error_reply(422, "422 Unprocessable Entity");
  pb::ZoektCallbackResponse r;
  r.set_message("202 Accepted");
  wire_reply out = ok(r);
  out.status = 202;
  return out;
}

} // namespace gatehouse::nats
