// The NATS edge of the internal API against the real `gatehouse serve`, a
// private nats-server and PostgreSQL: every call answers over NATS as the
// HTTP edge answers the same input (status and GitLab's message, decoded
// fields), malformed payloads get a 400, replicas in one queue group share
// the load, and retries with the same Gatehouse-Request-Id change nothing
// twice, even across replicas and through a replica killed mid-load.
//
// Each test runs its own nats-server: Gatehouse processes of other suites
// subscribe to the same subjects in the same queue group, and would answer
// from their own databases.

#include "tests/integration/stack.hpp"
#include "tests/nats_edge/nats_client.hpp"

#include "common/base64.hpp"
#include "common/jwt.hpp"
#include "messages/calls.hpp"

#include "gatehouse/internal/v1/access.pb.h"
#include "gatehouse/internal/v1/agents.pb.h"
#include "gatehouse/internal/v1/check.pb.h"
#include "gatehouse/internal/v1/error.pb.h"
#include "gatehouse/internal/v1/indexer.pb.h"
#include "gatehouse/internal/v1/push.pb.h"

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <ctime>
#include <set>
#include <cctype>
#include <csignal>
#include <mutex>
#include <regex>
#include <thread>

using namespace gatehouse::test;
using json = nlohmann::json;
namespace pb = gatehouse::internal::v1;

namespace {

// -- the seed
// -----------------------------------------------------------------------

// Public keys made with ssh-keygen for the integration tests (no private
// part kept anywhere).
const char* const ed25519[] = {
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIBSGMDcrDN/yx6f/G/8HRyrdVtDurdzajXQLW+hZIfdS "
  "k1@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIP2X2ZT+BHT4AtZcaFb3IxHq6JcA9/0bd7LMLN9luRQ8 "
  "k2@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIJFu4PQa8ZBkuWP1bMiFl2XECPR1tpoEK3whmtp8mjMU "
  "k3@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIFmXA6hfCPXV+EFu10ohS+CAawhBmD0Pah0HxUDwSFZI "
  "k4@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIHVBC2o0L8tjL5Hz0aPW4BIV03DRRVp3TukPLAeExADL "
  "k5@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIIAiEC8ompaVm8XqejslypMbaQ8hBfRqLUAjWhmFmhUs "
  "k6@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIGNQH1KbaI2jBlEvOd5BtAQg89pYBTGPpe9Rga4PZwhG "
  "k7@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIO/u56MpRlx8TyGFRCcTaT5VpzLU4XmhE98nfqbOviBM "
  "k13@test",
};
const char* const unknown_key = "ssh-ed25519 "
                                "AAAAC3NzaC1lZDI1NTE5AAAAIHLOFFWCEa+"
                                "DW3R7SN32IB5+RVQKn3OgHe2cEpsVw6kw k14@test";

std::string blob_of(const std::string& line) {
  auto start = line.find(' ') + 1;
  return line.substr(start, line.find(' ', start) - start);
}

json user(int id, const std::string& username, const std::string& name,
          const std::string& state = "active", bool admin = false) {
  return {{"id", id},
          {"username", username},
          {"name", name},
          {"email", username + "@example.com"},
          {"public_email", ""},
          {"state", state},
          {"admin", admin},
          {"external", false},
          {"can_create_project", true},
          {"two_factor_enabled", false}};
}

// KAS's credentials in the seed: agent 1 "prod" (configuration project
// acme/widgets) with its token, and alice's personal access token with the
// k8s_proxy scope; agent 2 "configured" is the one agent_configuration
// rewrites, so that agent 1's user_access stays as seeded; runner 1.
const std::string agent_token = "glagent-natsconf-prod-0123456789abcdef";
const std::string proxy_pat = "glpat-natsconf-k8s-proxy-0001";
const std::string runner_token = "glrt-natsconf-runner-active-0001";

// Users: 1 root (admin), 2 alice (developer), 3 bob (reporter), 4 gina
// (guest), 5 nora (no membership), 6 blocky (blocked developer), 7 mo
// (maintainer of group acme). Key n belongs to user n; deploy key 100
// (created by mo) is read-only on acme/widgets. Agent 1 lets Developers of
// acme/widgets (alice) through the Kubernetes proxy as the agent.
json seed() {
  json doc;
  doc["settings"] = {{"external_url", "https://gitlab.example.com"},
                     {"ssh_clone_url_root", "git@gitlab.example.com:"},
                     {"enabled_git_access_protocol", "all"},
                     {"gitlab_version", "18.6.0"},
                     {"gitlab_shell_operation_limit", 0}};
  doc["storages"]
    = json::array({{{"name", "default"},
                    {"gitaly_address", "tcp://gitaly.internal:8075"},
                    {"gitaly_token", "gitaly-token"}}});
  doc["users"] = json::array(
    {user(1, "root", "Administrator", "active", true),
     user(2, "alice", "Alice Developer"), user(3, "bob", "Bob Reporter"),
     user(4, "gina", "Gina Guest"), user(5, "nora", "Nora Outsider"),
     user(6, "blocky", "Blocked Developer", "blocked"),
     user(7, "mo", "Mo Maintainer")});
  json keys = json::array();
  for (int id = 1; id <= 7; ++id)
    keys.push_back({{"id", id},
                    {"user_id", id},
                    {"title", "key " + std::to_string(id)},
                    {"key", ed25519[id - 1]},
                    {"usage_type", "auth_and_signing"},
                    {"expires_at", nullptr}});
  doc["keys"] = keys;
  doc["deploy_keys"] = json::array(
    {{{"id", 100},
      {"user_id", 7},
      {"title", "ci read-only"},
      {"key", ed25519[7]},
      {"expires_at", nullptr},
      {"projects", json::array({{{"project_id", 10}, {"can_push", false}}})}}});
  doc["namespaces"] = json::array({{{"id", 5},
                                    {"path", "acme"},
                                    {"name", "Acme"},
                                    {"kind", "group"},
                                    {"parent_id", nullptr}}});
  doc["projects"] = json::array({{{"id", 10},
                                  {"namespace_id", 5},
                                  {"path", "widgets"},
                                  {"name", "widgets"},
                                  {"description", ""},
                                  {"visibility", "private"},
                                  {"archived", false},
                                  {"default_branch", "main"},
                                  {"storage", "default"},
                                  {"disk_path", "@hashed/6b/86/widgets"},
                                  {"repository_access_level", "enabled"},
                                  {"merge_requests_enabled", true},
                                  {"lfs_enabled", true},
                                  {"repository_exists", true},
                                  {"redirects", json::array()}}});
  doc["members"] = json::array(
    {{{"user_id", 2}, {"project_id", 10}, {"access_level", 30}},
     {{"user_id", 3}, {"project_id", 10}, {"access_level", 20}},
     {{"user_id", 4}, {"project_id", 10}, {"access_level", 10}},
     {{"user_id", 6}, {"project_id", 10}, {"access_level", 30}},
     {{"user_id", 7}, {"namespace_id", 5}, {"access_level", 40}}});
  doc["personal_access_tokens"]
    = json::array({{{"id", 900},
                    {"user_id", 2},
                    {"name", "kas"},
                    {"token", proxy_pat},
                    {"scopes", json::array({"k8s_proxy"})},
                    {"expires_at", "2099-12-31"},
                    {"revoked", false}}});
  json access_as_agent = {{"access_as", {{"agent", json::object()}}}};
  doc["cluster_agents"] = json::array(
    {{{"id", 1},
      {"project_id", 10},
      {"name", "prod"},
      {"tokens", json::array({{{"id", 1},
                               {"token", agent_token},
                               {"revoked", false}}})},
      {"authorizations",
       {{"user_access",
         {{"projects", json::array({{{"project_id", 10},
                                     {"config", access_as_agent}}})}}}}}},
     {{"id", 2}, {"project_id", 10}, {"name", "configured"}}});
  doc["runners"] = json::array({{{"id", 1},
                                 {"token", runner_token},
                                 {"description", "nats conformance"},
                                 {"active", true}}});
  return doc;
}

// -- HTTP
// -----------------------------------------------------------------------------

struct http_reply {
  int status = 0;
  json j;
  std::string body;
};

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// The internal API's callers over HTTP: GitLab Shell by default, KAS for
// the calls whose caller rule is `kas`.
struct shell_http {
  const stack& gh;
  std::string token = gh.shell_token();
  std::string kas_key = *gatehouse::base64_decode(read_file(gh.secrets().kas));

  /// The caller's JWT header of a call with caller rule `rule`. A KAS JWT
  /// lives 30 s, so each request gets a fresh one, as KAS signs them.
  httplib::Headers caller_headers(gatehouse::caller_rule rule) const {
    if (rule == gatehouse::caller_rule::kas)
      return {{"Gitlab-Kas-Api-Request",
               gatehouse::jwt::sign(gatehouse::jwt::caller::kas, kas_key,
                                    std::time(nullptr))}};
    return {{"Gitlab-Shell-Api-Request", token}};
  }

  http_reply make(const httplib::Result& res) const {
    REQUIRE(res);
    http_reply r;
    r.status = res->status;
    r.body = res->body;
    r.j = json::parse(res->body, nullptr, false);
    return r;
  }

  http_reply post(const std::string& call, const json& body,
                  const httplib::Headers& headers) const {
    auto cli = gh.client();
    auto path = "/api/v4/internal/" + call;
    return make(cli.Post(path.c_str(), headers, body.dump(), "application/json"));
  }

  http_reply post(const std::string& call, const json& body) const {
    return post(call, body, caller_headers(gatehouse::caller_rule::shell));
  }

  http_reply get(const std::string& call, const std::string& query,
                 const httplib::Headers& headers) const {
    auto cli = gh.client();
    auto path = "/api/v4/internal/" + call + (query.empty() ? "" : "?" + query);
    return make(cli.Get(path.c_str(), headers));
  }

  http_reply get(const std::string& call, const std::string& query = {}) const {
    return get(call, query, caller_headers(gatehouse::caller_rule::shell));
  }
};

// -- comparing answers
// --------------------------------------------------------------

// GitLab's message text in an HTTP error body: {"status":false,"message":M},
// {"message":M}, {"error":E} or {"message":{"error":E}}.
std::string http_message(const json& j) {
  if (j.is_object()) {
    if (auto it = j.find("message"); it != j.end()) {
      if (it->is_string())
        return it->get<std::string>();
      if (it->is_object() && it->contains("error"))
        return (*it)["error"].get<std::string>();
    }
    if (auto it = j.find("error"); it != j.end() && it->is_string())
      return it->get<std::string>();
  }
  return "<no message in " + j.dump() + ">";
}

bool is_default(const json& v) {
  return v.is_null() || v == false || v == 0 || v == ""
    || ((v.is_array() || v.is_object()) && v.empty());
}

// The HTTP value and the NATS one (protobuf's JSON, where int64 is a string
// and absent optional fields stand for GitLab's null or left-out keys).
bool same_value(const json& http, const json* nats) {
  if (!nats || nats->is_null())
    return is_default(http);
  if (http.is_object()) {
    if (!nats->is_object())
      return false;
    for (auto& [k, v] : http.items())
      if (!same_value(v, nats->contains(k) ? &(*nats)[k] : nullptr))
        return false;
    for (auto& [k, v] : nats->items())
      if (!http.contains(k) && !is_default(v))
        return false;
    return true;
  }
  if (http.is_array()) {
    if (!nats->is_array() || nats->size() != http.size())
      return false;
    for (std::size_t i = 0; i < http.size(); ++i)
      if (!same_value(http[i], &(*nats)[i]))
        return false;
    return true;
  }
  if (http.is_number_integer() && nats->is_string())
    return std::to_string(http.get<std::int64_t>()) == nats->get<std::string>();
  if (http.is_null())
    return is_default(*nats);
  return http == *nats;
}

template <class Response>
json nats_json(const std::string& body) {
  Response r;
  REQUIRE(r.ParseFromString(body));
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string text;
  REQUIRE(google::protobuf::util::MessageToJsonString(r, &text, opts).ok());
  return json::parse(text);
}

std::string error_message(const std::string& body) {
  pb::Error e;
  REQUIRE(e.ParseFromString(body));
  return e.message();
}

/// The NATS answer has the HTTP answer's status, and its fields (2xx) or
/// its message (otherwise).
template <class Response>
void check_same(const std::string& what, const http_reply& http,
                const nats_answer& nats) {
  INFO(what << ": HTTP " << http.status << " " << http.body);
  REQUIRE(nats.answered);
  CHECK(nats.status == http.status);
  if (http.status == 204) {
    // No body over HTTP; a NoContentResponse, no fields, over NATS.
    CHECK(http.body.empty());
    auto j = nats_json<Response>(nats.body);
    INFO("NATS " << nats.status << " " << j.dump());
    CHECK(j == json::object());
  } else if (http.status >= 200 && http.status < 300) {
    auto j = nats_json<Response>(nats.body);
    INFO("NATS " << nats.status << " " << j.dump());
    CHECK(same_value(http.j, &j));
  } else {
    CHECK(error_message(nats.body) == http_message(http.j));
  }
}

// -- AllowedRequest and its JSON twin
// -------------------------------------------------

json shell_params(const std::string& action, int key_id) {
  return {{"action", action},
          {"project", "acme/widgets.git"},
          {"changes", "_any"},
          {"protocol", "ssh"},
          {"key_id", std::to_string(key_id)},
          {"check_ip", "127.0.0.1"}};
}

struct allowed_case {
  std::string what;
  json http;
  pb::AllowedRequest nats;
  int expected_status;
};

allowed_case shell_case(const std::string& what, const std::string& action,
                        int key_id, int expected_status) {
  allowed_case c;
  c.what = what;
  c.http = shell_params(action, key_id);
  c.nats.set_action(action);
  c.nats.set_project("acme/widgets.git");
  c.nats.set_changes("_any");
  c.nats.set_protocol("ssh");
  c.nats.set_key_id(key_id);
  c.nats.set_check_ip("127.0.0.1");
  c.expected_status = expected_status;
  return c;
}

/// Waits until the served Gatehouse decides (its read model is loaded).
void wait_deciding(const shell_http& http) {
  auto body = shell_case("", "git-upload-pack", 3, 0).http;
  REQUIRE(eventually([&] { return http.post("allowed", body).status == 200; }));
}

// -- metrics and database
// ---------------------------------------------------------------

/// The sum of a counter's series whose labels contain `labels`.
std::int64_t counter(const std::string& metrics, const std::string& name,
                     const std::string& labels) {
  std::int64_t sum = 0;
  std::istringstream in{metrics};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) != 0
        || line.find(labels) == std::string::npos)
      continue;
    sum += std::stoll(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

std::int64_t query_count(const std::string& url, const std::string& sql) {
  pqxx::connection conn{url};
  pqxx::nontransaction tx{conn};
  auto rows = tx.exec(sql);
  if (rows.empty() || rows[0][0].is_null())
    return 0;
  return rows[0][0].as<std::int64_t>();
}

std::int64_t counter_value(const std::string& url) {
  return query_count(url,
                     "SELECT coalesce(max(value), 0) FROM "
                     "gatehouse_state.reference_counters WHERE "
                     "gl_repository = 'project-10' AND expires_at > now()");
}

// -- replicas
// ----------------------------------------------------------------------------

/// One more `gatehouse serve` on a stack's database and NATS (the stack
/// itself only migrates and seeds): its own HTTP port, and a pid to kill.
class replica {
public:
  /// Waits until the replica decides (its read model is loaded): an HTTP
  /// /allowed with `shell_token` answers 200.
  replica(const std::map<std::string, std::string>& env,
          const std::string& name, const std::string& shell_token) {
    auto s = serve(env, name);
    proc_ = std::move(s.proc);
    port_ = s.port;
    auto body = shell_case("", "git-upload-pack", 3, 0).http.dump();
    REQUIRE(eventually([&] {
      auto res = client().Post("/api/v4/internal/allowed",
                               {{"Gitlab-Shell-Api-Request", shell_token}},
                               body, "application/json");
      return res && res->status == 200;
    }));
  }

  httplib::Client client() const {
    httplib::Client cli{"127.0.0.1", port_};
    cli.set_connection_timeout(2, 0);
    cli.set_read_timeout(10, 0);
    return cli;
  }

  std::string metrics() const {
    auto res = client().Get("/metrics");
    return res && res->status == 200 ? res->body : std::string{};
  }

  /// NATS requests of `call` this replica answered.
  std::int64_t answered(const std::string& call) const {
    return counter(metrics(), "gatehouse_nats_requests_total",
                   "call=\"" + call + "\"");
  }

  std::int64_t replays(const std::string& call) const {
    return counter(metrics(), "gatehouse_nats_replays_total",
                   "call=\"" + call + "\"");
  }

  int terminate() {
    return proc_->stop(SIGTERM);
  }

  /// SIGSTOP: the replica stays subscribed but answers nothing.
  void pause() {
    ::kill(proc_->pid(), SIGSTOP);
  }

  void kill() {
    ::kill(proc_->pid(), SIGKILL);
    proc_->wait(std::chrono::seconds(5));
  }

  bool running() {
    return proc_->running();
  }

  std::string log() const {
    return proc_->out() + proc_->err();
  }

private:
  std::unique_ptr<child> proc_;
  int port_ = 0;
};

// -- the conformance table
// ---------------------------------------------------------
//
// One case: a call, its parameters as GitLab's callers send them over HTTP
// (JSON; the NATS request is the same fields in the call's Protobuf
// message), the status both edges must answer, and GitLab's text where it
// is the point of the case. The runner checks HTTP against the expectation
// and NATS against HTTP. Adding a call means adding its cases here.
//
// KAS's tokens are request fields over NATS (`agent_token`,
// `runner_token`); over HTTP the runner sends them where KAS does, in
// Gitlab-Agentk-Api-Request and Gitlab-Agent-Api-Request, beside the KAS
// JWT. Where GitLab's JSON and the Protobuf message are shaped differently,
// nats_fields() says how (agent_config as JSON text, unique counters' ids,
// the agent_events `events` object).

// A Zoekt node's report as the indexer sends it (the tasks call's
// parameters are the same; heartbeat ignores disk.free).
const std::string zoekt_unknown_node = "5c0ffee0-0000-4000-8000-natsconf0000";

json zoekt_report(const std::string& uuid) {
  return {{"uuid", uuid},
          {"node.url", "http://zoekt-1:6065"},
          {"node.name", "zoekt-1"},
          {"disk.all", 994662584320},
          {"disk.used", 53267371212},
          {"disk.free", 941395213108},
          {"disk.indexed", 2416879}};
}

json without(json p, const char* key) {
  p.erase(key);
  return p;
}

json with(json p, const char* key, json value) {
  p[key] = std::move(value);
  return p;
}

struct conformance_case {
  std::string what;
  gatehouse::call_id call;
  json params;
  int status;
  std::string message = {};
};

std::vector<conformance_case> conformance_cases() {
  using gatehouse::call_id;
  const std::string download_denied
    = "You are not allowed to download code from this project.";
  json audit = {{"action", "git-upload-pack"},
                {"protocol", "ssh"},
                {"gl_repository", "project-10"},
                {"changes", "_any"}};
  auto audit_by = [&](int key_id) {
    auto p = audit;
    p["key_id"] = std::to_string(key_id);
    return p;
  };
  auto with = [](json p, const std::string& key, json value) {
    p[key] = std::move(value);
    return p;
  };
  return {
    {"check", call_id::check, json::object(), 200},
    {"reporter clone", call_id::allowed, shell_params("git-upload-pack", 3),
     200},
    {"developer push", call_id::allowed, shell_params("git-receive-pack", 2),
     200},
    {"guest clone", call_id::allowed, shell_params("git-upload-pack", 4), 401,
     download_denied},
    {"non-member clone", call_id::allowed, shell_params("git-upload-pack", 5),
     404},
    {"blocked user", call_id::allowed, shell_params("git-upload-pack", 6), 401},
    {"read-only deploy key push", call_id::allowed,
     shell_params("git-receive-pack", 100), 401},
    {"deploy key clone", call_id::allowed, shell_params("git-upload-pack", 100),
     200},
    {"reporter push", call_id::allowed, shell_params("git-receive-pack", 3),
     401},
    {"unknown key", call_id::allowed, shell_params("git-upload-pack", 999),
     404},
    {"unknown command", call_id::allowed, shell_params("git-frobnicate", 2),
     401},
    {"Gitaly's check of a developer push",
     call_id::allowed,
     {{"action", "git-receive-pack"},
      {"gl_repository", "project-10"},
      {"project", "/repos/@hashed/6b/86/widgets.git"},
      {"changes", "_any"},
      {"protocol", "ssh"},
      {"user_id", "2"},
      {"env", "{}"}},
     200},
    {"malformed gitaly_client_context_bin", call_id::allowed,
     with(shell_params("git-upload-pack", 3), "gitaly_client_context_bin",
          "not base64!"),
     400, "400 Bad request - malformed gitaly_client_context_bin"},
    {"known key",
     call_id::authorized_keys,
     {{"key", blob_of(ed25519[2])}},
     200},
    {"unknown key",
     call_id::authorized_keys,
     {{"key", blob_of(unknown_key)}},
     404,
     "404 Key Not Found"},
    {"no key", call_id::authorized_keys, json::object(), 400, "key is missing"},
    {"discover key 3", call_id::discover, {{"key_id", "3"}}, 200},
    {"discover alice", call_id::discover, {{"username", "alice"}}, 200},
    {"discover a deploy key",
     call_id::discover,
     {{"identifier", "key-100"}},
     200},
    {"discover nobody", call_id::discover, {{"user_id", "4242"}}, 200},
    {"lfs of an unknown project",
     call_id::lfs_authenticate,
     {{"key_id", "2"}, {"project", "acme/nothing"}, {"operation", "download"}},
     404},
    {"recovery codes without 2FA",
     call_id::two_factor_recovery_codes,
     {{"key_id", "2"}},
     200},
    {"recovery codes for a user without a key",
     call_id::two_factor_recovery_codes,
     {{"user_id", "2"}},
     200,
     "Could not find the given key"},
    {"token without a name",
     call_id::personal_access_token,
     {{"key_id", "2"}, {"scopes", {"read_api"}}},
     200},
    {"token for a user without a key",
     call_id::personal_access_token,
     {{"user_id", "2"}, {"name", "ci"}, {"scopes", {"read_api"}}},
     200,
     "Could not find the given key"},
    {"manual otp",
     call_id::two_factor_manual_otp_check,
     {{"key_id", "2"}, {"otp_attempt", "123456"}},
     200},
    {"push otp", call_id::two_factor_push_otp_check, {{"key_id", "2"}}, 200},
    {"audit event with fields missing",
     call_id::git_audit_event,
     {{"action", "git-upload-pack"}},
     400,
     "protocol is missing, gl_repository is missing, changes is missing"},
    {"audit event with an unknown action", call_id::git_audit_event,
     with(audit, "action", "git-frobnicate"), 400, "No valid action specified"},
    {"audit event of a reporter", call_id::git_audit_event, audit_by(3), 200},
    {"audit event of a non-member", call_id::git_audit_event, audit_by(5), 404},
    {"pre_receive without gl_repository", call_id::pre_receive, json::object(),
     400, "gl_repository is missing"},
    {"pre_receive",
     call_id::pre_receive,
     {{"gl_repository", "project-10"}},
     200},
    {"post_receive without fields", call_id::post_receive, json::object(), 400,
     "gl_repository is missing, identifier is missing, changes is missing"},
    {"post_receive of an unparsable gl_repository",
     call_id::post_receive,
     {{"gl_repository", "nonsense"},
      {"identifier", "key-2"},
      {"changes", "_any"}},
     500,
     "500 Internal Server Error"},
    // -- KAS
    {"agentk agent_info",
     call_id::agentk_agent_info,
     {{"agent_token", agent_token}},
     200},
    {"agentk agent_info with an unknown token",
     call_id::agentk_agent_info,
     {{"agent_token", "glagent-natsconf-unknown-00000000"}},
     401,
     "401 Unauthorized"},
    {"legacy agent_info", call_id::kubernetes_agent_info,
     {{"agent_token", agent_token}}, 200},
    {"legacy agent_info without a token", call_id::kubernetes_agent_info,
     json::object(), 401, "401 Unauthorized"},
    {"project_info of the agent's project by path",
     call_id::kubernetes_project_info,
     {{"agent_token", agent_token}, {"id", "acme/widgets"}},
     200},
    {"project_info of the agent's project by id",
     call_id::kubernetes_project_info,
     {{"agent_token", agent_token}, {"id", "10"}},
     200},
    {"project_info of an unknown project",
     call_id::kubernetes_project_info,
     {{"agent_token", agent_token}, {"id", "acme/nothing"}},
     404,
     "404 Not Found"},
    {"project_info with an unknown token",
     call_id::kubernetes_project_info,
     {{"agent_token", "glagent-natsconf-unknown-00000000"},
      {"id", "acme/widgets"}},
     401,
     "401 Unauthorized"},
    {"verify_project_access of the agent's project",
     call_id::kubernetes_verify_project_access,
     {{"agent_token", agent_token}, {"id", "acme/widgets"}},
     204},
    {"verify_project_access of an unknown project",
     call_id::kubernetes_verify_project_access,
     {{"agent_token", agent_token}, {"id", "acme/nothing"}},
     404,
     "404 Not Found"},
    {"agent_configuration",
     call_id::kubernetes_agent_configuration,
     {{"agent_id", 2},
      {"agent_config",
       {{"ci_access", {{"projects", json::array({{{"id", "acme/widgets"}}})}}}}}},
     204},
    {"agent_configuration of an unknown agent",
     call_id::kubernetes_agent_configuration,
     {{"agent_id", 999}, {"agent_config", json::object()}},
     404,
     "404 Not found"},
    {"agent_configuration without parameters",
     call_id::kubernetes_agent_configuration, json::object(), 400,
     "agent_id is missing, agent_config is missing"},
    {"agent_configuration without agent_config",
     call_id::kubernetes_agent_configuration,
     {{"agent_id", 2}},
     400,
     "agent_config is missing"},
    {"authorize_proxy_user with a k8s_proxy token of a developer",
     call_id::kubernetes_authorize_proxy_user,
     {{"agent_id", 1},
      {"access_type", "personal_access_token"},
      {"access_key", proxy_pat}},
     200},
    {"authorize_proxy_user with an unknown token",
     call_id::kubernetes_authorize_proxy_user,
     {{"agent_id", 1},
      {"access_type", "personal_access_token"},
      {"access_key", "glpat-natsconf-unknown-0000"}},
     400,
     "400 Bad request - Unable to get user from request data"},
    {"authorize_proxy_user of an unknown agent",
     call_id::kubernetes_authorize_proxy_user,
     {{"agent_id", 999},
      {"access_type", "personal_access_token"},
      {"access_key", proxy_pat}},
     404,
     "404 Not found"},
    {"usage_metrics",
     call_id::kubernetes_usage_metrics,
     {{"counters", {{"k8s_api_proxy_request", 3}, {"gitops_sync", 0}}},
      {"unique_counters",
       {{"k8s_api_proxy_requests_unique_users_via_user_access",
         json::array({2})}}}},
     204},
    {"usage_metrics with a negative count",
     call_id::kubernetes_usage_metrics,
     {{"counters", {{"k8s_api_proxy_request", -1}}}},
     400,
     "400 Bad request - k8s_api_proxy_request count must be greater than or "
     "equal to zero"},
    {"agent_events",
     call_id::kubernetes_agent_events,
     {{"events",
       {{"k8s_api_proxy_requests_unique_users_via_user_access",
         json::array({{{"user_id", 2}, {"project_id", 10}}})},
        {"register_agent_at_kas",
         json::array({{{"project_id", 10},
                       {"agent_version", "v18.6.0"},
                       {"architecture", "amd64"},
                       {"agent_id", 1},
                       {"kubernetes_version", "v1.33.1"},
                       {"extra_telemetry_data",
                        {{"installation_method", "helm"},
                         {"helm_chart_version", "2.18.0"}}}}})}}}},
     204},
    {"agent_events without events", call_id::kubernetes_agent_events,
     json::object(), 204},
    {"autoflow repository_info", call_id::autoflow_repository_info,
     {{"id", "acme/widgets"}}, 200},
    {"autoflow repository_info of an unknown project",
     call_id::autoflow_repository_info,
     {{"id", "acme/nothing"}},
     404,
     "404 Not Found"},
    {"autoflow repository_info without id", call_id::autoflow_repository_info,
     json::object(), 400, "id is missing"},
    {"runner info", call_id::ci_runner_info, {{"runner_token", runner_token}},
     200},
    {"runner info with an unknown token",
     call_id::ci_runner_info,
     {{"runner_token", "glrt-natsconf-unknown-0000"}},
     401,
     "401 Unauthorized"},
    // Zoekt: only answers both edges give alike (nothing registered); a
    // new node's truncate:true, then false, is the Zoekt test's below,
    // since the edge asked second would find the node the first
    // registered.
    {"zoekt heartbeat without parameters",
     call_id::zoekt_heartbeat,
     {{"uuid", zoekt_unknown_node}},
     400,
     "node.url is missing, disk.all is missing, disk.used is missing, "
     "node.name is missing"},
    {"zoekt heartbeat without a disk figure",
     call_id::zoekt_heartbeat,
     without(zoekt_report(zoekt_unknown_node), "disk.used"),
     400,
     "disk.used is missing"},
    {"zoekt heartbeat of a node GitLab's validation refuses",
     call_id::zoekt_heartbeat,
     with(zoekt_report(zoekt_unknown_node), "node.url", ""),
     422,
     "422 Unprocessable Entity"},
    {"zoekt tasks without disk.free",
     call_id::zoekt_tasks,
     without(zoekt_report(zoekt_unknown_node), "disk.free"),
     400,
     "disk.free is missing"},
    {"zoekt tasks of a node GitLab's validation refuses",
     call_id::zoekt_tasks,
     with(zoekt_report(zoekt_unknown_node), "node.name", ""),
     422,
     "422 Unprocessable Entity"},
    {"zoekt callback without parameters",
     call_id::zoekt_callback,
     {{"uuid", zoekt_unknown_node}},
     400,
     "name is missing, success is missing, payload is missing"},
    {"zoekt callback with a payload that is not JSON",
     call_id::zoekt_callback,
     {{"uuid", zoekt_unknown_node},
      {"name", "index"},
      {"success", true},
      {"payload", "not json"}},
     400,
     "payload is invalid"},
    {"zoekt callback of a node nobody registered",
     call_id::zoekt_callback,
     {{"uuid", zoekt_unknown_node},
      {"name", "index"},
      {"success", true},
      {"payload", {{"task_id", 1}}},
      {"additional_payload",
       {{"repo_stats", {{"index_file_count", 1}, {"size_in_bytes", 1}}}}}},
     422,
     "422 Unprocessable Entity"},
  };
}

// The fields of the call's Protobuf request where GitLab's JSON is shaped
// otherwise: agent_config is JSON text; a unique counter's ids are a
// UsageIds message; agent_events' lists are the message's own fields, not
// members of an `events` object.
json nats_fields(gatehouse::call_id call, json params) {
  using gatehouse::call_id;
  switch (call) {
    case call_id::kubernetes_agent_configuration:
      if (auto it = params.find("agent_config");
          it != params.end() && !it->is_string())
        *it = it->dump();
      return params;
    case call_id::kubernetes_usage_metrics:
      if (auto it = params.find("unique_counters");
          it != params.end() && it->is_object())
        for (auto& [name, ids] : it->items())
          ids = json{{"ids", ids}};
      return params;
    case call_id::kubernetes_agent_events:
      return params.value("events", json::object());
    case call_id::zoekt_heartbeat:
    case call_id::zoekt_tasks: {
      // GitLab's dotted names are written with '_'.
      json out = json::object();
      for (auto& [key, value] : params.items()) {
        auto name = key;
        std::replace(name.begin(), name.end(), '.', '_');
        out[name] = value;
      }
      return out;
    }
    case call_id::zoekt_callback:
      // JSON parameters are JSON text.
      for (const char* name : {"payload", "additional_payload"})
        if (auto it = params.find(name);
            it != params.end() && !it->is_string())
          *it = it->dump();
      return params;
    default:
      return params;
  }
}

// Where KAS puts a token over HTTP: the case's field -> its header.
const std::pair<const char*, const char*> kas_token_headers[] = {
  {"agent_token", "Gitlab-Agentk-Api-Request"},
  {"runner_token", "Gitlab-Agent-Api-Request"},
};

// The call's Protobuf request made of the HTTP parameters (proto3's JSON
// reads int64 from strings, as GitLab's callers send ids).
template <class Request>
std::string to_request(const json& params) {
  Request r;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  REQUIRE(
    google::protobuf::util::JsonStringToMessage(params.dump(), &r, opts).ok());
  return r.SerializeAsString();
}

template <class Request, class Response>
void run_case_as(const conformance_case& c, const shell_http& http,
                 const nats_client& nats) {
  const auto& spec = gatehouse::spec_of(c.call);
  std::string call
    = std::string{spec.path}.substr(std::strlen("/api/v4/internal/"));
  // Over HTTP, the caller's JWT, and KAS's tokens in their headers.
  auto headers = http.caller_headers(spec.auth);
  json params = c.params;
  // A :uuid of the path is a request field over NATS.
  if (auto at = call.find(":uuid"); at != std::string::npos) {
    call.replace(at, 5, url_encode(params.value("uuid", std::string{})));
    params.erase("uuid");
  }
  if (spec.auth == gatehouse::caller_rule::kas)
    for (auto [field, header] : kas_token_headers)
      if (auto it = params.find(field); it != params.end()) {
        headers.emplace(header, it->template get<std::string>());
        params.erase(it);
      }
  http_reply h;
  if (std::string{spec.method} == "GET") {
    std::string query;
    for (auto& [k, v] : params.items())
      query += (query.empty() ? "" : "&") + k + "="
        + url_encode(v.is_string() ? v.template get<std::string>() : v.dump());
    h = http.get(call, query, headers);
  } else {
    h = http.post(call, params, headers);
  }
  INFO(c.what << " (" << spec.name << "): HTTP " << h.status << " " << h.body);
  CHECK(h.status == c.status);
  if (!c.message.empty())
    CHECK(http_message(h.j) == c.message);
  check_same<Response>(
    c.what, h,
    nats.request_raw(spec.name,
                     to_request<Request>(nats_fields(c.call, c.params))));
}

void run_case(const conformance_case& c, const shell_http& http,
              const nats_client& nats) {
  using gatehouse::call_id;
  switch (c.call) {
    case call_id::check:
      return run_case_as<pb::CheckRequest, pb::CheckResponse>(c, http, nats);
    case call_id::allowed:
      return run_case_as<pb::AllowedRequest, pb::AllowedResponse>(c, http,
                                                                  nats);
    case call_id::authorized_keys:
      return run_case_as<pb::AuthorizedKeysRequest, pb::AuthorizedKeysResponse>(
        c, http, nats);
    case call_id::discover:
      return run_case_as<pb::DiscoverRequest, pb::DiscoverResponse>(c, http,
                                                                    nats);
    case call_id::lfs_authenticate:
      return run_case_as<pb::LfsAuthenticateRequest,
                         pb::LfsAuthenticateResponse>(c, http, nats);
    case call_id::two_factor_recovery_codes:
      return run_case_as<pb::TwoFactorRecoveryCodesRequest,
                         pb::TwoFactorRecoveryCodesResponse>(c, http, nats);
    case call_id::personal_access_token:
      return run_case_as<pb::PersonalAccessTokenRequest,
                         pb::PersonalAccessTokenResponse>(c, http, nats);
    case call_id::two_factor_manual_otp_check:
      return run_case_as<pb::TwoFactorManualOtpCheckRequest,
                         pb::TwoFactorOtpCheckResponse>(c, http, nats);
    case call_id::two_factor_push_otp_check:
      return run_case_as<pb::TwoFactorPushOtpCheckRequest,
                         pb::TwoFactorOtpCheckResponse>(c, http, nats);
    case call_id::pre_receive:
      return run_case_as<pb::PreReceiveRequest, pb::PreReceiveResponse>(c, http,
                                                                        nats);
    case call_id::post_receive:
      return run_case_as<pb::PostReceiveRequest, pb::PostReceiveResponse>(
        c, http, nats);
    case call_id::git_audit_event:
      return run_case_as<pb::GitAuditEventRequest, pb::GitAuditEventResponse>(
        c, http, nats);
    case call_id::agentk_agent_info:
    case call_id::kubernetes_agent_info:
      return run_case_as<pb::AgentInfoRequest, pb::AgentInfoResponse>(c, http,
                                                                      nats);
    case call_id::kubernetes_project_info:
    case call_id::autoflow_repository_info:
      return run_case_as<pb::ProjectInfoRequest, pb::ProjectInfoResponse>(
        c, http, nats);
    case call_id::kubernetes_verify_project_access:
      return run_case_as<pb::ProjectInfoRequest, pb::NoContentResponse>(c, http,
                                                                        nats);
    case call_id::kubernetes_agent_configuration:
      return run_case_as<pb::AgentConfigurationRequest, pb::NoContentResponse>(
        c, http, nats);
    case call_id::kubernetes_authorize_proxy_user:
      return run_case_as<pb::AuthorizeProxyUserRequest,
                         pb::AuthorizeProxyUserResponse>(c, http, nats);
    case call_id::kubernetes_usage_metrics:
      return run_case_as<pb::UsageMetricsRequest, pb::NoContentResponse>(
        c, http, nats);
    case call_id::kubernetes_agent_events:
      return run_case_as<pb::AgentEventsRequest, pb::NoContentResponse>(
        c, http, nats);
    case call_id::ci_runner_info:
      return run_case_as<pb::RunnerInfoRequest, pb::RunnerInfoResponse>(c, http,
                                                                        nats);
    case call_id::zoekt_heartbeat:
    case call_id::zoekt_tasks:
      return run_case_as<pb::ZoektNodeRequest, pb::ZoektNodeResponse>(c, http,
                                                                      nats);
    case call_id::zoekt_callback:
      return run_case_as<pb::ZoektCallbackRequest, pb::ZoektCallbackResponse>(
        c, http, nats);
    default:
      break;
  }
  FAIL("no wire types for call " << gatehouse::spec_of(c.call).name);
}

pb::PostReceiveRequest post_receive(const std::string& branch) {
  pb::PostReceiveRequest r;
  r.set_gl_repository("project-10");
  r.set_identifier("key-2");
  r.set_changes(std::string(40, '0') + " " + std::string(40, 'a')
                + " refs/heads/" + branch + "\n");
  return r;
}

std::int64_t outbox_rows(const std::string& url) {
  return query_count(url, "SELECT count(*) FROM gatehouse_state.outbox");
}

/// Sends until answered (a timeout is retried with the same id, as the
/// retry contract says); at most `attempts` times.
nats_answer until_answered(const nats_client& nats, const std::string& call,
                           const google::protobuf::MessageLite& req,
                           const std::string& id, int timeout_ms = 1500,
                           int attempts = 20) {
  nats_answer a;
  for (int i = 0; i < attempts && !a.answered; ++i)
    a = nats.request(call, req, id, timeout_ms);
  return a;
}

} // namespace

// =========================================================================================

TEST_CASE("every internal call answers over NATS as over HTTP", "[.nats]") {
  private_nats ns;
  ns.start();
  stack gh{ns.url()};
  gh.seed(seed());
  gh.start();
  shell_http http{gh};
  wait_deciding(http);
  nats_client nats{ns.url()};

  SECTION("the shared conformance table, over both edges") {
    auto cases = conformance_cases();
    // Every call of the call table has cases.
    std::set<gatehouse::call_id> covered;
    for (auto& c : cases)
      covered.insert(c.call);
    CHECK(covered.size() == gatehouse::nats_call_count());
    for (auto& c : cases)
      run_case(c, http, nats);
  }

  SECTION("/allowed: the denials carry GitLab's own texts") {
    auto guest
      = nats.request("allowed", shell_case("", "git-upload-pack", 4, 0).nats);
    CHECK(error_message(guest.body)
          == "You are not allowed to download code from this project.");
  }

  SECTION("lfs_authenticate: a token differs per call, the rest does not") {
    pb::LfsAuthenticateRequest lfs;
    lfs.set_key_id(2);
    lfs.set_project("acme/widgets");
    lfs.set_operation("download");
    auto lfs_http = http.post("lfs_authenticate",
                              {{"key_id", "2"},
                               {"project", "acme/widgets"},
                               {"operation", "download"}});
    auto lfs_nats = nats.request("lfs_authenticate", lfs);
    CHECK(lfs_http.status == 200);
    CHECK(lfs_nats.status == 200);
    auto lfs_j = nats_json<pb::LfsAuthenticateResponse>(lfs_nats.body);
    CHECK(lfs_j["username"] == lfs_http.j["username"]);
    CHECK(lfs_j["repository_http_path"] == lfs_http.j["repository_http_path"]);
  }
}

TEST_CASE("Zoekt nodes register over both edges, with the Shell JWT only",
          "[.nats]") {
  private_nats ns;
  ns.start();
  stack gh{ns.url()};
  gh.seed(seed());
  gh.start();
  shell_http http{gh};
  wait_deciding(http);
  nats_client nats{ns.url()};
  auto path = [](const std::string& uuid, const char* call) {
    return "search/zoekt/" + uuid + "/" + call;
  };
  auto report = [](const std::string& uuid) {
    return without(zoekt_report(uuid), "uuid");
  };
  auto query = [&](const std::string& uuid) {
    std::string q;
    const json params = report(uuid);
    for (auto& [k, v] : params.items())
      q += (q.empty() ? "" : "&") + k + "=" + url_encode(v.dump());
    return q;
  };
  auto nats_report = [](const std::string& uuid) {
    pb::ZoektNodeRequest r;
    r.set_uuid(uuid);
    r.set_node_url("http://zoekt-2:6065");
    r.set_node_name("zoekt-2");
    r.set_disk_all(994662584320);
    r.set_disk_used(53267371212);
    r.set_disk_free(941395213108);
    return r;
  };
  const std::string http_node = "5c0ffee0-0000-4000-8000-natsconf0001";
  const std::string nats_node = "5c0ffee0-0000-4000-8000-natsconf0002";
  const std::string tasks_node = "5c0ffee0-0000-4000-8000-natsconf0003";
  // GitLab's key order and JSON types: a new node with nothing to index.
  auto heartbeat_body = [](bool truncate) {
    return std::regex{std::string{R"(^\{"id":[1-9][0-9]*,"truncate":)"}
                      + (truncate ? "true" : "false")
                      + R"(,"tasks":\[\],"pull_frequency":"10s",)"
                        R"("stop_indexing":false\}$)"};
  };

  SECTION("a new node truncates once, over either edge") {
    auto first = http.post(path(http_node, "heartbeat"), report(http_node));
    INFO(first.body);
    CHECK(first.status == 200);
    CHECK(std::regex_match(first.body, heartbeat_body(true)));
    auto again = http.post(path(http_node, "heartbeat"), report(http_node));
    INFO(again.body);
    CHECK(again.status == 200);
    CHECK(std::regex_match(again.body, heartbeat_body(false)));
    CHECK(again.j["id"] == first.j["id"]);

    auto nats_first = nats.request("search.zoekt.heartbeat",
                                   nats_report(nats_node));
    REQUIRE(nats_first.answered);
    CHECK(nats_first.status == 200);
    pb::ZoektNodeResponse r1;
    REQUIRE(r1.ParseFromString(nats_first.body));
    CHECK(r1.truncate());
    CHECK(r1.id() > 0);
    CHECK(r1.id() != first.j["id"].get<std::int64_t>());
    CHECK(r1.tasks_size() == 0);
    CHECK(r1.pull_frequency() == "10s");
    CHECK_FALSE(r1.stop_indexing());
    auto nats_again = nats.request("search.zoekt.heartbeat",
                                   nats_report(nats_node));
    pb::ZoektNodeResponse r2;
    REQUIRE(r2.ParseFromString(nats_again.body));
    CHECK(nats_again.status == 200);
    CHECK_FALSE(r2.truncate());
    CHECK(r2.id() == r1.id());

    // The node the other edge registered is known to this one.
    auto cross = http.post(path(nats_node, "heartbeat"), report(nats_node));
    CHECK(cross.status == 200);
    CHECK(cross.j["truncate"] == false);
    CHECK(cross.j["id"] == r1.id());

    // A registered node's callback is accepted over both edges.
    json callback = {{"name", "index"},
                     {"success", false},
                     {"error", "no such task"},
                     {"payload", {{"task_id", 999999}}}};
    auto accepted = http.post(path(http_node, "callback"), callback);
    CHECK(accepted.status == 202);
    CHECK(accepted.body == R"({"message":"202 Accepted"})");
    pb::ZoektCallbackRequest c;
    c.set_uuid(http_node);
    c.set_name("index");
    c.set_success(true);
    c.set_payload(R"({"task_id":999999})");
    auto nats_accepted = nats.request("search.zoekt.callback", c);
    CHECK(nats_accepted.status == 202);
    pb::ZoektCallbackResponse cr;
    REQUIRE(cr.ParseFromString(nats_accepted.body));
    CHECK(cr.message() == "202 Accepted");
  }

  SECTION("the 16.5-17.x tasks call answers its last version's keys") {
    auto first = http.get(path(tasks_node, "tasks"), query(tasks_node));
    INFO(first.body);
    CHECK(first.status == 200);
    CHECK(std::regex_match(
      first.body,
      std::regex{R"(^\{"id":[1-9][0-9]*,"truncate":true,"tasks":\[\],)"
                 R"("optimized_performance":false,"pull_frequency":"10s",)"
                 R"("stop_indexing":false\}$)"}));
    auto again = http.get(path(tasks_node, "tasks"), query(tasks_node));
    CHECK(again.status == 200);
    CHECK(again.j["truncate"] == false);
  }

  SECTION("a JWT Workhorse issued is 401, and nothing is registered") {
    // Signed with the Shell secret but issued by Workhorse (GitLab's
    // spec), and a real Workhorse token in the Shell header.
    std::string shell_key = read_file(gh.secrets().shell);
    while (!shell_key.empty() && shell_key.back() == '\n')
      shell_key.pop_back();
    auto workhorse_key
      = *gatehouse::base64_decode(read_file(gh.secrets().workhorse));
    auto now = std::time(nullptr);
    for (const auto& token :
         {gatehouse::jwt::sign_raw(
            R"({"alg":"HS256","typ":"JWT"})",
            json{{"iss", "gitlab-workhorse"}, {"iat", now}, {"exp", now + 60}}
              .dump(),
            shell_key),
          gatehouse::jwt::sign(gatehouse::jwt::caller::workhorse,
                               workhorse_key, now)}) {
      httplib::Headers headers{{"Gitlab-Shell-Api-Request", token}};
      auto hb = http.post(path(http_node, "heartbeat"), report(http_node),
                          headers);
      CHECK(hb.status == 401);
      auto t = http.get(path(http_node, "tasks"), query(http_node), headers);
      CHECK(t.status == 401);
      auto cb = http.post(path(http_node, "callback"),
                          {{"name", "index"},
                           {"success", true},
                           {"payload", {{"task_id", 1}}}},
                          headers);
      CHECK(cb.status == 401);
    }
    // No Shell header at all, a Workhorse one instead.
    auto wh = http.post(path(http_node, "heartbeat"), report(http_node),
                        {{"Gitlab-Workhorse-Api-Request",
                          gatehouse::jwt::sign(gatehouse::jwt::caller::workhorse,
                                               workhorse_key, now)},
                         {"Gitlab-Workhorse", "v18.6.0"}});
    CHECK(wh.status == 401);
    auto first = http.post(path(http_node, "heartbeat"), report(http_node));
    CHECK(first.status == 200);
    CHECK(first.j["truncate"] == true);
  }

  SECTION("Grape's coercion over HTTP: strings, literal dotted keys") {
    auto strings = report(http_node);
    for (auto& [k, v] : strings.items())
      if (v.is_number())
        v = v.dump();
    auto ok = http.post(path(http_node, "heartbeat"), strings);
    CHECK(ok.status == 200);
    auto bad = http.post(path(http_node, "heartbeat"),
                         with(report(http_node), "disk.all", "lots"));
    CHECK(bad.status == 400);
    CHECK(bad.body == R"({"error":"disk.all is invalid"})");
    auto nested = http.post(
      path(http_node, "heartbeat"),
      {{"node", {{"url", "http://zoekt-1:6065"}, {"name", "zoekt-1"}}},
       {"disk", {{"all", 1}, {"used", 0}}}});
    CHECK(nested.status == 400);
    CHECK(http_message(nested.j)
          == "node.url is missing, disk.all is missing, disk.used is "
             "missing, node.name is missing");
    auto success = http.post(
      path(http_node, "callback"),
      {{"name", "index"}, {"success", "maybe"}, {"payload", "{}"}});
    CHECK(success.status == 400);
    CHECK(http_message(success.j) == "success is invalid");
  }
}

TEST_CASE("a malformed payload gets a 400 and the replica keeps serving",
          "[.nats]") {
  private_nats ns;
  ns.start();
  stack gh{ns.url()};
  gh.seed(seed());
  gh.start();
  wait_deciding(shell_http{gh});
  nats_client nats{ns.url()};
  const std::string garbage = "\xff\xff\xff\xff\xff";
  // Every subject the NATS edge serves: the call table's shared rows.
  std::size_t subjects = 0;
  for (const auto& spec : gatehouse::call_table) {
    if (!spec.over_nats)
      continue;
    ++subjects;
    std::string call = spec.name;
    INFO(call);
    auto a = nats.request_raw(call, garbage);
    REQUIRE(a.answered);
    CHECK(a.status == 400);
    CHECK(error_message(a.body).rfind("400 Bad request - malformed ", 0) == 0);
  }
  CHECK(subjects == gatehouse::nats_call_count());
  auto a = nats.request_raw("allowed", garbage);
  CHECK(error_message(a.body)
        == "400 Bad request - malformed AllowedRequest payload");
  // A NUL byte in any string field, as over HTTP: refused, nothing stored.
  pb::PersonalAccessTokenRequest token;
  token.set_key_id(1);
  token.set_name(std::string("ci\0token", 8));
  token.add_scopes("read_repository");
  auto nul = nats.request("personal_access_token", token);
  CHECK(nul.status == 400);
  CHECK(error_message(nul.body)
        == "400 Bad request - a string field holds a NUL byte");
  pb::AllowedRequest with_nul
    = shell_case("", "git-upload-pack", 3, 0).nats;
  with_nul.add_push_options(std::string("ci.skip\0", 8));
  CHECK(nats.request("allowed", with_nul).status == 400);
  // A request id that is not printable ASCII is refused the same way.
  auto bad_id
    = nats.request("check", pb::CheckRequest{}, std::string(200, 'x'));
  CHECK(bad_id.status == 400);
  // Still alive, still answering both edges.
  CHECK(
    nats.request("allowed", shell_case("", "git-upload-pack", 3, 0).nats).status
    == 200);
  auto live = gh.client().Get("/-/liveness");
  REQUIRE(live);
  CHECK(live->status == 200);
}

TEST_CASE("two replicas in one queue group share the load", "[.nats]") {
  private_nats ns;
  ns.start();
  stack gh{ns.url()};
  gh.seed(seed());
  auto token = gh.shell_token();
  replica a{gh.env(), "replica-a", token};
  replica b{gh.env(), "replica-b", token};
  nats_client nats{ns.url()};
  auto request = shell_case("", "git-upload-pack", 3, 0).nats;
  constexpr int threads = 8;
  constexpr int per_thread = 40;
  std::atomic<int> ok{0};
  std::mutex mtx;
  std::map<std::string, int> other;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        auto answer = nats.request("allowed", request);
        if (answer.status == 200) {
          ++ok;
        } else {
          std::lock_guard<std::mutex> guard{mtx};
          ++other[std::to_string(answer.status) + " "
                  + natsStatus_GetText(answer.error)];
        }
      }
    });
  for (auto& w : workers)
    w.join();
  for (auto& [what, n] : other)
    UNSCOPED_INFO(n << " x " << what);
  CHECK(ok == threads * per_thread);
  auto served_a = a.answered("allowed");
  auto served_b = b.answered("allowed");
  INFO("replica a answered " << served_a << ", replica b " << served_b);
  CHECK(served_a + served_b == threads * per_thread);
  CHECK(served_a > 0);
  CHECK(served_b > 0);
}

TEST_CASE("a retried push changes nothing twice, on any replica", "[.nats]") {
  private_nats ns;
  ns.start();
  stack gh{ns.url()};
  gh.seed(seed());
  auto db = gh.database_url();
  auto token = gh.shell_token();
  replica a{gh.env(), "replica-a", token};
  replica b{gh.env(), "replica-b", token};
  nats_client nats{ns.url()};

  // pre_receive: a repeated id counts once.
  pb::PreReceiveRequest pre;
  pre.set_gl_repository("project-10");
  auto first_pre = nats.request("pre_receive", pre, "pre-1");
  REQUIRE(first_pre.status == 200);
  CHECK(first_pre.request_id == "pre-1");
  CHECK(counter_value(db) == 1);
  for (int i = 0; i < 4; ++i) {
    auto again = nats.request("pre_receive", pre, "pre-1");
    CHECK(again.status == 200);
    CHECK(again.body == first_pre.body);
  }
  CHECK(counter_value(db) == 1);

  // post_receive: one decrement and one set of events.
  auto push = post_receive("feature-retry");
  auto first = nats.request("post_receive", push, "post-1");
  REQUIRE(first.status == 200);
  auto events = outbox_rows(db);
  CHECK(events >= 1);
  CHECK(counter_value(db) == 0);
  // Another push in flight, so that a second decrement would show.
  REQUIRE(nats.request("pre_receive", pre, "pre-2").status == 200);
  CHECK(counter_value(db) == 1);

  // The retry goes to the other replica: stop the one that answered.
  // The counters move just after the reply is sent: wait until one shows it.
  int a_count = 0;
  int b_count = 0;
  REQUIRE(eventually([&] {
    a_count = a.answered("post_receive");
    b_count = b.answered("post_receive");
    return a_count + b_count == 1;
  }));
  bool a_answered = a_count == 1;
  auto& answered = a_answered ? a : b;
  auto& other = a_answered ? b : a;
  CHECK(answered.terminate() == 0);
  auto retry = until_answered(nats, "post_receive", push, "post-1");
  REQUIRE(retry.answered);
  CHECK(retry.status == first.status);
  CHECK(retry.body == first.body);
  CHECK(eventually([&] { return other.answered("post_receive") == 1; }));
  CHECK(eventually([&] { return other.replays("post_receive") == 1; }));
  CHECK(outbox_rows(db) == events);
  CHECK(counter_value(db) == 1);
  CHECK(query_count(db,
                    "SELECT count(*) FROM gatehouse_state.requests "
                    "WHERE request_id = 'post-1' AND response IS NOT NULL")
        == 1);
}

TEST_CASE("a replica killed mid-load loses nothing the retry contract promises",
          "[.nats]") {
  private_nats ns;
  ns.start();
  stack gh{ns.url()};
  gh.seed(seed());
  auto db = gh.database_url();
  auto token = gh.shell_token();
  replica a{gh.env(), "replica-a", token};
  replica b{gh.env(), "replica-b", token};
  nats_client nats{ns.url()};

  // How many outbox events one push of a new branch makes.
  REQUIRE(
    nats.request("post_receive", post_receive("baseline"), "baseline").status
    == 200);
  auto per_push = outbox_rows(db);
  REQUIRE(per_push >= 1);

  // Clients push new branches back to back, each retrying on timeout with
  // its request's id, while one replica is killed.
  constexpr int threads = 12;
  std::atomic<bool> stop{false};
  std::atomic<int> pushes{0};
  std::atomic<int> retried{0};
  std::mutex mtx;
  std::vector<std::string> failures;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        auto name = "load-" + std::to_string(t) + "-" + std::to_string(i);
        nats_answer answer;
        for (int attempt = 0; attempt < 20 && !answer.answered; ++attempt) {
          if (attempt > 0)
            ++retried;
          answer = nats.request("post_receive", post_receive(name), name, 1500);
        }
        ++pushes;
        if (!answer.answered || answer.status != 200) {
          std::lock_guard<std::mutex> guard{mtx};
          failures.push_back(name + ": " + std::to_string(answer.status) + " "
                             + natsStatus_GetText(answer.error));
        }
      }
    });
  // Both replicas answer the load.
  CHECK(eventually([&] { return a.answered("post_receive") > 0; },
                   std::chrono::seconds(20)));
  auto answered_by_a = a.answered("post_receive");
  // Frozen first, so that requests are surely in flight on it when it dies:
  // a client retries only a request that timed out on the frozen replica.
  auto retried_before_pause = retried.load();
  a.pause();
  CHECK(eventually([&] { return retried > retried_before_pause; },
                   std::chrono::seconds(20)));
  a.kill();
  // Pushes go on, answered by the other replica. (A client whose request
  // was lost with the killed one retries it until it is answered; joining
  // the clients below waits for that.)
  auto pushed_at_kill = pushes.load();
  CHECK(eventually([&] { return pushes >= pushed_at_kill + 2 * threads; },
                   std::chrono::seconds(20)));
  stop = true;
  for (auto& w : workers)
    w.join();
  INFO("pushes " << pushes << ", retried " << retried << ", answered by the "
                 << "killed replica before the kill " << answered_by_a);
  INFO("failures: " << failures.size()
                    << (failures.empty() ? "" : " first: " + failures.front()));
  CHECK(failures.empty());
  CHECK(answered_by_a > 0);
  CHECK(retried > 0);
  CHECK(b.running());
  auto total = 1 + pushes.load();
  // Every push's events exactly once: as many rows as the pushes make, one
  // distinct branch per push.
  CHECK(outbox_rows(db) == total * per_push);
  CHECK(query_count(db,
                    "SELECT count(DISTINCT body::jsonb->>'ref') "
                    "FROM gatehouse_state.outbox")
        == total);
  CHECK(b.answered("post_receive") > 0);
}

TEST_CASE("the edge answers again after nats-server restarts", "[.nats]") {
  private_nats ns;
  ns.start();
  stack gh{ns.url()};
  gh.seed(seed());
  gh.start();
  wait_deciding(shell_http{gh});
  auto request = shell_case("", "git-upload-pack", 3, 0).nats;
  {
    nats_client nats{ns.url()};
    CHECK(nats.request("allowed", request).status == 200);
  }
  ns.stop();
  ns.start();
  // nats.c reconnects and subscribes again; no replica restart needed.
  nats_client nats{ns.url()};
  CHECK(eventually(
    [&] { return nats.request("allowed", request, {}, 500).status == 200; },
    std::chrono::seconds(20)));
  CHECK(nats.request("check", pb::CheckRequest{}).status == 200);
}
