#include "edges/nats/internal_codec.hpp"

#include "edges/error_status.hpp"

#include "gatehouse/internal/v1/access.pb.h"
#include "gatehouse/internal/v1/check.pb.h"
#include "gatehouse/internal/v1/error.pb.h"
#include "gatehouse/internal/v1/push.pb.h"


#include <optional>

namespace gatehouse::nats {

namespace pb = gatehouse::internal::v1;

namespace {

constexpr const char* rate_limit_text
  = "This endpoint has been requested too many times. Try again later.";

wire_reply ok(const google::protobuf::MessageLite& msg) {
  wire_reply out;
  out.status = 200;
  msg.SerializeToString(&out.body);
  return out;
}

// Parses `payload` into `msg`; false for bytes that are not a `Message`.
template <class Message>
bool parse(const std::string& payload, Message& msg) {
  return msg.ParseFromString(payload);
}

// Grape treats a blank string parameter as absent (string_param).
std::optional<std::string> present(bool has, const std::string& value) {
  if (!has || value.empty())
    return std::nullopt;
  return value;
}

// "<name> is missing, <name> is missing" for the required fields left
// empty, in the order given (the HTTP edge's 400 {"error":…} text).
template <class... Fields>
std::string missing_fields(const Fields&... fields) {
  std::string out;
  auto check = [&](const std::pair<const char*, const std::string*>& f) {
    if (f.second->empty())
      out += std::string{out.empty() ? "" : ", "} + f.first + " is missing";
  };
  (check(fields), ...);
  return out;
}

// An id given as "<digits>" in Rails' identifier parameter; the HTTP edge
// ignores anything else there.
std::optional<std::int64_t> digits_id(const std::string& text) {
  if (text.empty() || text.size() > 18)
    return std::nullopt;
  for (char c : text)
    if (c < '0' || c > '9')
      return std::nullopt;
  return std::stoll(text);
}


access::shell_actor actor_of(bool has_key, std::int64_t key_id, bool has_user,
                             std::int64_t user_id) {
  access::shell_actor a;
  if (has_key)
    a.key_id = key_id;
  if (has_user)
    a.user_id = user_id;
  return a;
}

// A denial (or any answer that is not a success) of /allowed as the HTTP
// edge sends it: the status, and its message as the Error text.
wire_reply allowed_failure(const access::allowed_outcome& o) {
  if (o.status == 429)
    return error_reply(429, rate_limit_text);
  return error_reply(o.status, o.message);
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
  return error_reply(classify(err));
}

wire_reply malformed(const char* message_name) {
  return error_reply(errc::bad_request,
                     std::string{"malformed "} + message_name + " payload");
}

// -- access calls -------------------------------------------------------------

decoded<access::allowed_params> decode_allowed(const std::string& payload) {
  pb::AllowedRequest r;
  if (!parse(payload, r))
    return malformed("AllowedRequest");
  access::allowed_params p;
  p.action = r.action();
  p.project = present(r.has_project(), r.project());
  p.gl_repository = present(r.has_gl_repository(), r.gl_repository());
  if (auto changes = present(r.has_changes(), r.changes()))
    p.changes = *changes;
  if (auto protocol = present(r.has_protocol(), r.protocol()))
    p.protocol = *protocol;
  if (r.has_key_id())
    p.key_id = r.key_id();
  if (r.has_user_id())
    p.user_id = r.user_id();
  p.username = present(r.has_username(), r.username());
  p.env = r.env();
  p.relative_path = r.relative_path();
  p.push_options.assign(r.push_options().begin(), r.push_options().end());
  if (auto bin = present(r.has_gitaly_client_context_bin(),
                         r.gitaly_client_context_bin());
      bin)
    if (auto problem = access::gitaly_context_problem(*bin))
      return error_reply(errc::bad_request, *problem);
  return p;
}

wire_reply encode_allowed(const access::allowed_outcome& o) {
  if (o.status != 200)
    return allowed_failure(o);
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

decoded<std::string> decode_authorized_keys(const std::string& payload) {
  pb::AuthorizedKeysRequest r;
  if (!parse(payload, r))
    return malformed("AuthorizedKeysRequest");
  if (r.key().empty())
    return error_reply(400, "key is missing");
  return r.key();
}

wire_reply encode_authorized_keys(const access::key_answer& answer) {
  if (!answer.key)
    return error_reply(errc::not_found, "Key");
  auto& k = *answer.key;
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

decoded<access::discover_query> decode_discover(const std::string& payload) {
  pb::DiscoverRequest r;
  if (!parse(payload, r))
    return malformed("DiscoverRequest");
  access::discover_query q;
  if (r.has_key_id())
    q.key_id = r.key_id();
  if (r.has_user_id())
    q.user_id = r.user_id();
  q.username = present(r.has_username(), r.username());
  // Rails also takes identifier=key-<n>|user-<n>.
  if (auto identifier = present(r.has_identifier(), r.identifier())) {
    if (identifier->rfind("key-", 0) == 0 && !q.key_id)
      q.key_id = digits_id(identifier->substr(4));
    else if (identifier->rfind("user-", 0) == 0 && !q.user_id)
      q.user_id = digits_id(identifier->substr(5));
  }
  return q;
}

wire_reply encode_discover(const access::discover_answer& answer) {
  pb::DiscoverResponse r;
  if (answer.user) {
    r.set_id(answer.user->id);
    r.set_username(answer.user->username);
    r.set_name(answer.user->name);
  }
  return ok(r);
}

decoded<access::lfs_query>
decode_lfs_authenticate(const std::string& payload) {
  pb::LfsAuthenticateRequest r;
  if (!parse(payload, r))
    return malformed("LfsAuthenticateRequest");
  access::lfs_query q;
  q.actor = actor_of(r.has_key_id(), r.key_id(), r.has_user_id(), r.user_id());
  q.project = r.project();
  q.operation = r.operation();
  return q;
}

wire_reply encode_lfs_authenticate(const access::lfs_answer& answer) {
  if (answer.status != 200)
    return error_reply(answer.status, answer.message);
  pb::LfsAuthenticateResponse r;
  r.set_username(answer.username);
  r.set_lfs_token(answer.lfs_token);
  r.set_repository_http_path(answer.repository_http_path);
  r.set_expires_in(answer.expires_in);
  return ok(r);
}

decoded<access::shell_actor>
decode_recovery_codes(const std::string& payload) {
  pb::TwoFactorRecoveryCodesRequest r;
  if (!parse(payload, r))
    return malformed("TwoFactorRecoveryCodesRequest");
  return actor_of(r.has_key_id(), r.key_id(), r.has_user_id(), r.user_id());
}

wire_reply encode_recovery_codes(const access::shell_answer& a) {
  pb::TwoFactorRecoveryCodesResponse r;
  r.set_success(a.success);
  if (!a.success)
    r.set_message(a.message);
  for (auto& code : a.recovery_codes)
    r.add_recovery_codes(code);
  return ok(r);
}

decoded<access::pat_query>
decode_personal_access_token(const std::string& payload) {
  pb::PersonalAccessTokenRequest r;
  if (!parse(payload, r))
    return malformed("PersonalAccessTokenRequest");
  access::pat_query q;
  q.actor = actor_of(r.has_key_id(), r.key_id(), r.has_user_id(), r.user_id());
  q.name = present(r.has_name(), r.name());
  // No scopes and an empty list are one case for GitLab.
  if (r.scopes_size() > 0)
    q.scopes = std::vector<std::string>(r.scopes().begin(), r.scopes().end());
  q.expires_at = present(r.has_expires_at(), r.expires_at());
  return q;
}

wire_reply encode_personal_access_token(const access::shell_answer& a) {
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

decoded<no_fields> decode_manual_otp_check(const std::string& payload) {
  pb::TwoFactorManualOtpCheckRequest r;
  if (!parse(payload, r))
    return malformed("TwoFactorManualOtpCheckRequest");
  return no_fields{};
}

decoded<no_fields> decode_push_otp_check(const std::string& payload) {
  pb::TwoFactorPushOtpCheckRequest r;
  if (!parse(payload, r))
    return malformed("TwoFactorPushOtpCheckRequest");
  return no_fields{};
}

wire_reply otp_not_available() {
  // Community edition: GitLab answers this for both OTP checks (§2.10).
  pb::TwoFactorOtpCheckResponse r;
  r.set_success(false);
  r.set_message("Feature is not available");
  return ok(r);
}

decoded<access::allowed_params>
decode_git_audit_event(const std::string& payload) {
  pb::GitAuditEventRequest r;
  if (!parse(payload, r))
    return malformed("GitAuditEventRequest");
  auto missing = missing_fields(std::pair{"action", &r.action()},
                                std::pair{"protocol", &r.protocol()},
                                std::pair{"gl_repository", &r.gl_repository()},
                                std::pair{"changes", &r.changes()});
  if (!missing.empty())
    return error_reply(400, missing);
  if (r.action() != "git-upload-pack" && r.action() != "git-receive-pack")
    return error_reply(400, "No valid action specified");
  access::allowed_params p;
  p.action = r.action();
  p.project = present(r.has_project(), r.project());
  p.gl_repository = r.gl_repository();
  p.changes = r.changes();
  p.protocol = r.protocol();
  if (r.has_key_id())
    p.key_id = r.key_id();
  if (r.has_user_id())
    p.user_id = r.user_id();
  p.username = present(r.has_username(), r.username());
  p.push_options.assign(r.push_options().begin(), r.push_options().end());
  return p;
}

wire_reply encode_git_audit_event(const access::allowed_outcome& o) {
  if (o.status != 200)
    return allowed_failure(o);
  // Community edition: git audit streaming is never configured.
  pb::GitAuditEventResponse r;
  r.set_status(false);
  r.set_message("No git audit event needed");
  return ok(r);
}

// -- check ----------------------------------------------------------------------

decoded<no_fields> decode_check(const std::string& payload) {
  pb::CheckRequest r;
  if (!parse(payload, r))
    return malformed("CheckRequest");
  return no_fields{};
}

wire_reply encode_check(const check_view& view) {
  pb::CheckResponse r;
  r.set_api_version("v4");
  r.set_gitlab_version(view.gitlab_version);
  r.set_gitlab_rev(view.gitlab_rev);
  r.set_redis(view.state_store_reachable);
  return ok(r);
}

// -- push calls -------------------------------------------------------------------

decoded<std::string> decode_pre_receive(const std::string& payload) {
  pb::PreReceiveRequest r;
  if (!parse(payload, r))
    return malformed("PreReceiveRequest");
  if (r.gl_repository().empty())
    return error_reply(400, "gl_repository is missing");
  return r.gl_repository();
}

wire_reply encode_pre_receive(bool counted) {
  pb::PreReceiveResponse r;
  r.set_reference_counter_increased(counted);
  return ok(r);
}

decoded<push::post_receive_params>
decode_post_receive(const std::string& payload) {
  pb::PostReceiveRequest r;
  if (!parse(payload, r))
    return malformed("PostReceiveRequest");
  auto missing = missing_fields(std::pair{"gl_repository", &r.gl_repository()},
                                std::pair{"identifier", &r.identifier()},
                                std::pair{"changes", &r.changes()});
  if (!missing.empty())
    return error_reply(400, missing);
  push::post_receive_params p;
  p.gl_repository = r.gl_repository();
  p.identifier = r.identifier();
  p.changes = r.changes();
  p.push_options.assign(r.push_options().begin(), r.push_options().end());
  return p;
}

wire_reply encode_post_receive(const push::post_receive_answer& answer) {
  pb::PostReceiveResponse r;
  for (auto& m : answer.messages) {
    auto* line = r.add_messages();
    line->set_message(m.message);
    line->set_type(m.type);
  }
  r.set_reference_counter_decreased(answer.reference_counter_decreased);
  return ok(r);
}

} // namespace gatehouse::nats
