#include "edges/http/codec.hpp"

#include "common/ascii.hpp"
#include "common/base64.hpp"
#include "common/ids.hpp"
#include "common/json_text.hpp"

#include "messages/errors.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <string_view>
#include <vector>

namespace gatehouse::http {

namespace {

// Collects Grape's "<name> is invalid" texts of one request.
struct id_reader {
  const json& params;
  std::string invalid;

  std::optional<std::int64_t> operator()(const char* name) {
    return id_param(params, name, invalid);
  }

  // The request, or the 400 of its invalid ids.
  template <class T>
  caf::expected<T> result(T value) const {
    if (!invalid.empty())
      return caf::make_error(errc::invalid_params, invalid);
    return value;
  }
};

// An id of /allowed, which declares no parameters in Grape: GitLab looks
// the value up as given, and one that is not a record's id (empty, not a
// number, too large) finds nothing. 0 is such an id.
std::optional<std::int64_t> lookup_id(const json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end() || it->is_null())
    return std::nullopt;
  if (it->is_number_unsigned())
    return it->get<std::uint64_t>()
        <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
      ? static_cast<std::int64_t>(it->get<std::uint64_t>())
      : 0;
  if (it->is_number_integer())
    return std::max<std::int64_t>(it->get<std::int64_t>(), 0);
  if (it->is_string())
    return parse_id(it->get_ref<const std::string&>()).value_or(0);
  return 0;
}

access::shell_caller caller_of(id_reader& ids) {
  return {ids("key_id"), ids("user_id")};
}

json shell_body(const access::shell_answer& a) {
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

json denial(const std::string& message) {
  return {{"status", false}, {"message", message}};
}

// Writes JSON text as dump() does (no indent, UTF-8 as is, invalid UTF-8
// replaced). Keys must come in dump()'s order: nlohmann::json keeps an
// object's keys sorted bytewise.
class json_writer {
public:
  explicit json_writer(std::size_t reserve) {
    out_.reserve(reserve);
  }

  json_writer& open() {
    out_ += '{';
    first_ = true;
    return *this;
  }

  json_writer& close() {
    out_ += '}';
    first_ = false;
    return *this;
  }

  /// Starts the member `name` (plain ASCII, nothing to escape).
  json_writer& key(const char* name) {
    if (!first_)
      out_ += ',';
    first_ = false;
    out_ += '"';
    out_ += name;
    out_ += "\":";
    first_ = true; // the value that follows takes no comma
    return *this;
  }

  json_writer& value(const std::string& text) {
    comma();
    json_text::append_string(out_, text);
    return *this;
  }

  json_writer& value(const std::optional<std::string>& text) {
    return text ? value(*text) : raw("null");
  }

  json_writer& value(std::int64_t number) {
    return raw(std::to_string(number));
  }

  json_writer& value(bool flag) {
    return raw(flag ? "true" : "false");
  }

  json_writer& value(const std::vector<std::string>& items) {
    comma();
    out_ += '[';
    first_ = true;
    for (auto& item : items)
      value(item);
    out_ += ']';
    first_ = false;
    return *this;
  }

  json_writer& raw(std::string_view text) {
    comma();
    out_ += text;
    return *this;
  }

  std::string take() {
    return std::move(out_);
  }

private:
  void comma() {
    if (!first_)
      out_ += ',';
    first_ = false;
  }

  std::string out_;
  bool first_ = true;
};

std::string denial_text(const std::string& message) {
  json_writer w{message.size() + 32};
  w.open().key("message").value(message).key("status").value(false).close();
  return w.take();
}

} // namespace

// -- check
// ------------------------------------------------------------------------

caf::expected<check_query> decode(call_tag<call_id::check>, const request_view&) {
  return check_query{};
}

reply encode(call_tag<call_id::check>, const check_view& view) {
  return {200,
          {{"api_version", "v4"},
           {"gitlab_version", view.gitlab_version},
           {"gitlab_rev", view.gitlab_rev},
           {"redis", view.state_store_reachable}}};
}

// -- allowed
// ----------------------------------------------------------------------

caf::expected<access::allowed_params> decode(call_tag<call_id::allowed>,
                                             const request_view& in) {
  const json& params = in.params;
  access::allowed_params p;
  p.action = string_param(params, "action").value_or("");
  p.project = string_param(params, "project");
  p.gl_repository = string_param(params, "gl_repository");
  if (auto changes = string_param(params, "changes"))
    p.changes = *changes;
  if (auto protocol = string_param(params, "protocol"))
    p.protocol = *protocol;
  p.key_id = lookup_id(params, "key_id");
  p.user_id = lookup_id(params, "user_id");
  p.identifier = string_param(params, "identifier");
  p.username = string_param(params, "username");
  // Gitaly sends `env` as a JSON string; a form caller may send an object.
  p.env = string_param(params, "env").value_or("");
  p.relative_path = string_param(params, "relative_path").value_or("");
  if (auto options = strings_param(params, "push_options"))
    p.push_options = *options;
  p.gitaly_client_context_bin
    = string_param(params, "gitaly_client_context_bin");
  return p;
}

reply encode(call_tag<call_id::allowed>, const access::allowed_outcome& o) {
  if (o.status != 200 || !o.success)
    return {o.status, denial(o.message)};
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
    out["gitaly"] = {{"repository",
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
  return {200, std::move(out)};
}

text_reply encode_text(call_tag<call_id::allowed>,
                       const access::allowed_outcome& o) {
  if (o.status != 200 || !o.success)
    return {o.status, denial_text(o.message)};
  auto& s = *o.success;
  json_writer w{1024};
  w.open().key("git_config_options").value(s.git_config_options);
  if (s.gitaly) {
    auto& g = *s.gitaly;
    w.key("gitaly").open();
    w.key("address").value(g.address);
    w.key("features").raw("{}");
    w.key("repository").open();
    w.key("git_alternate_object_directories").raw("[]");
    w.key("git_object_directory").value(std::string{});
    w.key("gl_project_path").value(g.gl_project_path);
    w.key("gl_repository").value(g.gl_repository);
    w.key("relative_path").value(g.relative_path);
    w.key("storage_name").value(g.storage_name);
    w.close();
    w.key("token").value(g.token);
    w.close();
  }
  w.key("gl_console_messages").value(s.gl_console_messages);
  w.key("gl_id").value(s.gl_id);
  if (s.gl_key_id)
    w.key("gl_key_id").value(*s.gl_key_id);
  if (s.gl_key_type)
    w.key("gl_key_type").value(*s.gl_key_type);
  if (s.gl_project_id)
    w.key("gl_project_id").value(*s.gl_project_id);
  w.key("gl_project_path").value(s.gl_project_path);
  w.key("gl_repository").value(s.gl_repository);
  if (s.gl_root_namespace_id)
    w.key("gl_root_namespace_id").value(*s.gl_root_namespace_id);
  if (s.gl_username)
    w.key("gl_username").value(*s.gl_username);
  w.key("need_audit").value(false);
  w.key("status").value(true);
  w.close();
  return {200, w.take()};
}

// -- authorized_keys
// --------------------------------------------------------------

caf::expected<access::key_query> decode(call_tag<call_id::authorized_keys>,
                                        const request_view& in) {
  const json& params = in.params;
  return access::key_query{string_param(params, "key").value_or("")};
}

reply encode(call_tag<call_id::authorized_keys>,
             const access::authorized_key& k) {
  return {200,
          {{"id", k.id},
           {"title", k.title},
           {"created_at", k.created_at},
           {"expires_at", k.expires_at ? json(*k.expires_at) : json(nullptr)},
           {"key", k.key},
           {"usage_type", k.usage_type}}};
}

text_reply encode_text(call_tag<call_id::authorized_keys>,
                       const access::authorized_key& k) {
  json_writer w{k.key.size() + k.title.size() + 160};
  w.open();
  w.key("created_at").value(k.created_at);
  w.key("expires_at").value(k.expires_at);
  w.key("id").value(k.id);
  w.key("key").value(k.key);
  w.key("title").value(k.title);
  w.key("usage_type").value(k.usage_type);
  w.close();
  return {200, w.take()};
}

// -- discover
// ---------------------------------------------------------------------

caf::expected<access::discover_query> decode(call_tag<call_id::discover>,
                                             const request_view& in) {
  const json& params = in.params;
  id_reader ids{params, {}};
  access::discover_query q;
  q.key_id = ids("key_id");
  q.user_id = ids("user_id");
  q.username = string_param(params, "username");
  q.identifier = string_param(params, "identifier");
  return ids.result(std::move(q));
}

reply encode(call_tag<call_id::discover>, const access::discover_answer& a) {
  if (!a.user)
    return {200, json(nullptr)};
  return {200,
          {{"id", a.user->id},
           {"username", a.user->username},
           {"name", a.user->name}}};
}

// -- lfs_authenticate
// -------------------------------------------------------------

caf::expected<access::lfs_query> decode(call_tag<call_id::lfs_authenticate>,
                                        const request_view& in) {
  const json& params = in.params;
  id_reader ids{params, {}};
  access::lfs_query q;
  q.caller = caller_of(ids);
  q.project = string_param(params, "project").value_or("");
  q.operation = string_param(params, "operation").value_or("");
  return ids.result(std::move(q));
}

reply encode(call_tag<call_id::lfs_authenticate>, const access::lfs_answer& a) {
  if (a.status != 200)
    return {a.status, {{"message", a.message}}};
  return {200,
          {{"username", a.username},
           {"lfs_token", a.lfs_token},
           {"repository_http_path", a.repository_http_path},
           {"expires_in", a.expires_in}}};
}

// -- two_factor_recovery_codes
// ----------------------------------------------------

caf::expected<access::recovery_query> decode(
  call_tag<call_id::two_factor_recovery_codes>, const request_view& in) {
  const json& params = in.params;
  id_reader ids{params, {}};
  access::recovery_query q{caller_of(ids)};
  return ids.result(std::move(q));
}

reply encode(call_tag<call_id::two_factor_recovery_codes>,
             const access::shell_answer& a) {
  return {200, shell_body(a)};
}

// -- personal_access_token
// ---------------------------------------------------------

caf::expected<access::pat_query> decode(
  call_tag<call_id::personal_access_token>, const request_view& in) {
  const json& params = in.params;
  id_reader ids{params, {}};
  access::pat_query q;
  q.caller = caller_of(ids);
  q.name = string_param(params, "name");
  q.scopes = strings_param(params, "scopes");
  q.expires_at = string_param(params, "expires_at");
  return ids.result(std::move(q));
}

reply encode(call_tag<call_id::personal_access_token>,
             const access::shell_answer& a) {
  return {200, shell_body(a)};
}

// -- OTP checks
// ---------------------------------------------------------------------

// The community edition declares no parameters for these: nothing to read.
caf::expected<access::otp_query> decode(
  call_tag<call_id::two_factor_manual_otp_check>, const request_view&) {
  return access::otp_query{};
}

reply encode(call_tag<call_id::two_factor_manual_otp_check>,
             const access::shell_answer& a) {
  return {200, shell_body(a)};
}

caf::expected<access::otp_query> decode(
  call_tag<call_id::two_factor_push_otp_check>, const request_view&) {
  return access::otp_query{};
}

reply encode(call_tag<call_id::two_factor_push_otp_check>,
             const access::shell_answer& a) {
  return {200, shell_body(a)};
}

// -- pre_receive, post_receive
// -----------------------------------------------------

caf::expected<push::pre_receive_params> decode(call_tag<call_id::pre_receive>,
                                               const request_view& in) {
  const json& params = in.params;
  push::pre_receive_params p;
  p.gl_repository = string_param(params, "gl_repository").value_or("");
  return p;
}

reply encode(call_tag<call_id::pre_receive>,
             const push::pre_receive_answer& a) {
  return {200,
          {{"reference_counter_increased", a.reference_counter_increased}}};
}

caf::expected<push::post_receive_params> decode(call_tag<call_id::post_receive>,
                                                const request_view& in) {
  const json& params = in.params;
  push::post_receive_params p;
  p.gl_repository = string_param(params, "gl_repository").value_or("");
  p.identifier = string_param(params, "identifier").value_or("");
  p.changes = string_param(params, "changes").value_or("");
  // Gitaly sends null when there are none.
  if (auto options = strings_param(params, "push_options"))
    p.push_options = *options;
  return p;
}

reply encode(call_tag<call_id::post_receive>,
             const push::post_receive_answer& a) {
  auto messages = json::array();
  for (auto& m : a.messages)
    messages.push_back({{"message", m.message}, {"type", m.type}});
  return {200,
          {{"messages", messages},
           {"reference_counter_decreased", a.reference_counter_decreased}}};
}

// -- shellhorse/git_audit_event
// ----------------------------------------------------

caf::expected<access::audit_query> decode(call_tag<call_id::git_audit_event>,
                                          const request_view& in) {
  const json& params = in.params;
  id_reader ids{params, {}};
  access::audit_query q;
  q.action = string_param(params, "action");
  q.protocol = string_param(params, "protocol");
  q.gl_repository = string_param(params, "gl_repository");
  q.changes = string_param(params, "changes");
  q.project = string_param(params, "project");
  q.key_id = ids("key_id");
  q.user_id = ids("user_id");
  q.username = string_param(params, "username");
  if (auto options = strings_param(params, "push_options"))
    q.push_options = *options;
  return ids.result(std::move(q));
}

reply encode(call_tag<call_id::git_audit_event>,
             const access::audit_answer& a) {
  return {a.status, denial(a.message)};
}

// -- geo/proxy
// ----------------------------------------------------------------------

caf::expected<geo_query> decode(call_tag<call_id::geo_proxy>,
                                const request_view&) {
  return geo_query{};
}

reply encode(call_tag<call_id::geo_proxy>, const geo_view& view) {
  reply out{200, {{"geo_enabled", view.geo_enabled}}};
  out.content_type = workhorse_content_type;
  return out;
}

// -- git over HTTP (Workhorse's pre-authorization)
// ---------------------------------------------------------

namespace {

// An Authorization header of the Basic scheme with "login:password";
// anything else counts as no credentials, as for Rails'
// has_basic_credentials?.
access::basic_credentials basic_credentials_of(const request_view& in) {
  access::basic_credentials out;
  auto header = in.header("Authorization");
  if (header.size() < 6 || ascii_lower(header.substr(0, 6)) != "basic ")
    return out;
  auto encoded = std::string_view{header}.substr(6);
  while (!encoded.empty() && encoded.front() == ' ')
    encoded.remove_prefix(1);
  auto decoded = base64_decode(encoded);
  if (!decoded)
    return out;
  auto colon = decoded->find(':');
  if (colon == std::string::npos)
    return out;
  out.provided = true;
  out.login = decoded->substr(0, colon);
  out.password = decoded->substr(colon + 1);
  return out;
}

access::git_http_query git_http_query_of(const request_view& in,
                                         access::git_http_action action) {
  access::git_http_query q;
  q.action = action;
  q.repository_path = in.capture(0);
  q.service = string_param(in.params, "service");
  q.credentials = basic_credentials_of(in);
  q.workhorse_refusal = in.workhorse_refusal;
  return q;
}

// GitLab's git_http_ok: what Workhorse needs to serve the request through
// Gitaly. Keys are matched case-insensitively by Workhorse.
reply git_http_reply(const access::git_http_answer& a) {
  if (a.status != 200 || !a.success) {
    reply out{a.status, {}, "text/plain; charset=utf-8", a.message};
    if (a.challenge)
      out.headers.emplace_back("WWW-Authenticate", "Basic realm=\"GitLab\"");
    return out;
  }
  const auto& s = *a.success;
  json metadata = json::object();
  if (!s.gl_id.empty())
    metadata["user_id"] = s.gl_id;
  if (s.gl_username && !s.gl_username->empty())
    metadata["username"] = *s.gl_username;
  json repository = json::object();
  json gitaly_server = {{"address", ""}, {"token", ""}};
  if (s.gitaly) {
    const auto& g = *s.gitaly;
    repository = {{"storage_name", g.storage_name},
                  {"relative_path", g.relative_path},
                  {"git_object_directory", ""},
                  {"git_alternate_object_directories", json::array()},
                  {"gl_repository", g.gl_repository},
                  {"gl_project_path", g.gl_project_path}};
    gitaly_server = {{"address", g.address}, {"token", g.token.value_or("")}};
  }
  gitaly_server["call_metadata"] = std::move(metadata);
  json body = {{"GL_ID", s.gl_id},
               {"GL_USERNAME",
                s.gl_username ? json(*s.gl_username) : json(nullptr)},
               {"GL_REPOSITORY", s.gl_repository},
               {"ShowAllRefs", false},
               {"NeedAudit", false},
               {"Repository", std::move(repository)},
               {"GitConfigOptions", a.git_config_options},
               {"GitalyServer", std::move(gitaly_server)}};
  // Projects only: a wiki's answer has neither.
  if (s.gl_repository.rfind("project-", 0) == 0) {
    if (s.gl_project_id)
      body["ProjectID"] = *s.gl_project_id;
    if (s.gl_root_namespace_id)
      body["RootNamespaceID"] = *s.gl_root_namespace_id;
  }
  reply out{200, std::move(body)};
  out.content_type = workhorse_content_type;
  return out;
}

} // namespace

caf::expected<access::git_http_query> decode(call_tag<call_id::git_info_refs>,
                                             const request_view& in) {
  return git_http_query_of(in, access::git_http_action::info_refs);
}

reply encode(call_tag<call_id::git_info_refs>,
             const access::git_http_answer& a) {
  return git_http_reply(a);
}

caf::expected<access::git_http_query>
decode(call_tag<call_id::git_upload_pack>, const request_view& in) {
  return git_http_query_of(in, access::git_http_action::upload_pack);
}

reply encode(call_tag<call_id::git_upload_pack>,
             const access::git_http_answer& a) {
  return git_http_reply(a);
}

caf::expected<access::git_http_query>
decode(call_tag<call_id::git_receive_pack>, const request_view& in) {
  return git_http_query_of(in, access::git_http_action::receive_pack);
}

reply encode(call_tag<call_id::git_receive_pack>,
             const access::git_http_answer& a) {
  return git_http_reply(a);
}

// -- LFS uploads
// -----------------------------------------------------------------

namespace {

access::lfs_upload_query lfs_upload_query_of(const request_view& in,
                                             bool finalize) {
  access::lfs_upload_query q;
  q.finalize = finalize;
  q.repository_path = in.capture(0);
  q.oid = in.capture(1);
  q.size = in.capture(2);
  q.credentials = basic_credentials_of(in);
  q.workhorse_refusal = in.workhorse_refusal;
  if (finalize) {
    q.upload_token = string_param(in.params, "file.gitlab-workhorse-upload");
    if (auto fields = in.header("Gitlab-Workhorse-Multipart-Fields");
        !fields.empty())
      q.multipart_fields_token = std::move(fields);
  }
  return q;
}

constexpr const char* lfs_content_type = "application/vnd.git-lfs+json";

reply lfs_refusal_reply(const access::lfs_upload_answer& a) {
  if (a.refusal_shape == access::lfs_upload_answer::shape::lfs_json)
    return {a.status,
            {{"message", a.message},
             {"documentation_url", a.documentation_url}},
            lfs_content_type};
  reply out{a.status, {}, "text/plain; charset=utf-8", a.message};
  if (a.challenge)
    out.headers.emplace_back("WWW-Authenticate", "Basic realm=\"GitLab\"");
  return out;
}

} // namespace

caf::expected<access::lfs_upload_query>
decode(call_tag<call_id::lfs_upload_authorize>, const request_view& in) {
  return lfs_upload_query_of(in, false);
}

// Local storage: Workhorse stores the body under TempPath (never with
// RemoteObject too), at most the announced size.
reply encode(call_tag<call_id::lfs_upload_authorize>,
             const access::lfs_upload_answer& a) {
  if (a.status != 200)
    return lfs_refusal_reply(a);
  reply out{200,
            {{"TempPath", a.temp_path},
             {"MaximumSize", a.size},
             {"LfsOid", a.oid},
             {"LfsSize", a.size}}};
  out.content_type = workhorse_content_type;
  return out;
}

caf::expected<access::lfs_upload_query>
decode(call_tag<call_id::lfs_upload_finalize>, const request_view& in) {
  return lfs_upload_query_of(in, true);
}

// GitLab answers a kept object 200 with an empty body.
reply encode(call_tag<call_id::lfs_upload_finalize>,
             const access::lfs_upload_answer& a) {
  if (a.status != 200)
    return lfs_refusal_reply(a);
  return {200, {}, lfs_content_type, std::string{}};
}

// -- workhorse/authorize_upload
// ---------------------------------------------------

// GitLab's order: the private_token parameter, the PRIVATE-TOKEN header,
// then an OAuth-style token (Doorkeeper's access_token parameter, Bearer
// header, bearer_token parameter).
caf::expected<access::upload_query>
decode(call_tag<call_id::workhorse_authorize_upload>, const request_view& in) {
  access::upload_query q;
  if (auto token = string_param(in.params, "private_token")) {
    q.token = std::move(token);
  } else if (auto header = in.header("PRIVATE-TOKEN"); !header.empty()) {
    q.token = std::move(header);
  } else if (auto token = string_param(in.params, "access_token")) {
    q.token = std::move(token);
  } else if (auto auth = in.header("Authorization");
             auth.size() > 7 && ascii_lower(auth.substr(0, 7)) == "bearer ") {
    q.token = auth.substr(7);
  } else if (auto bearer = string_param(in.params, "bearer_token")) {
    q.token = std::move(bearer);
  }
  return q;
}

reply encode(call_tag<call_id::workhorse_authorize_upload>,
             const access::upload_answer& a) {
  reply out{200, {{"TempPath", a.temp_path}}};
  out.content_type = workhorse_content_type;
  return out;
}

} // namespace gatehouse::http

// -- pages, pages/status
// ----------------------------------------------------------------------

namespace gatehouse::http {

caf::expected<pages::domain_query> decode(call_tag<call_id::pages>,
                                          const request_view& in) {
  pages::domain_query q;
  auto it = in.params.find("host");
  if (it == in.params.end() || it->is_null())
    return q; // the actor answers Grape's "host is missing"
  if (it->is_array() || it->is_object())
    q.host_invalid = true;
  else
    q.host = it->is_string() ? it->get<std::string>() : dump(*it);
  return q;
}

// GitLab's entity order (certificate, key, root_namespace_id, lookup_paths;
// then each LookupPath's expose order), which the sorted json type would
// not keep: Pages does not care, people reading answers do.
reply encode(call_tag<call_id::pages>, const pages::virtual_domain& d) {
  if (!d.found)
    return reply{204, {}, "", std::string{}};
  using ordered = nlohmann::ordered_json;
  auto text_or_null = [](const std::optional<std::string>& s) {
    return s ? ordered(*s) : ordered(nullptr);
  };
  ordered paths = ordered::array();
  for (const auto& p : d.lookup_paths) {
    ordered source = {{"type", p.source.type},
                      {"path", p.source.path},
                      {"global_id", p.source.global_id},
                      {"sha256", p.source.sha256},
                      {"file_size", p.source.file_size},
                      {"file_count", p.source.file_count}};
    paths.push_back({{"access_control", p.access_control},
                     {"https_only", p.https_only},
                     {"prefix", p.prefix},
                     {"project_id", p.project_id},
                     {"source", std::move(source)},
                     {"unique_host", text_or_null(p.unique_host)},
                     {"root_directory", p.root_directory},
                     {"primary_domain", text_or_null(p.primary_domain)}});
  }
  ordered body = {{"certificate", text_or_null(d.certificate)},
                  {"key", text_or_null(d.key)},
                  {"root_namespace_id", d.root_namespace_id},
                  {"lookup_paths", std::move(paths)}};
  // Invalid UTF-8 in seeded text is replaced, as dump() does elsewhere.
  return reply{200, {}, "application/json",
               body.dump(-1, ' ', false, ordered::error_handler_t::replace)};
}

caf::expected<pages::status_query> decode(call_tag<call_id::pages_status>,
                                          const request_view&) {
  return pages::status_query{};
}

reply encode(call_tag<call_id::pages_status>, const pages::status_answer&) {
  return reply{204, {}, "", std::string{}};
}

} // namespace gatehouse::http
