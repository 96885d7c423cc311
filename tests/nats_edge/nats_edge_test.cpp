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

#include "gatehouse/internal/v1/access.pb.h"
#include "gatehouse/internal/v1/check.pb.h"
#include "gatehouse/internal/v1/error.pb.h"
#include "gatehouse/internal/v1/push.pb.h"

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>
#include <pqxx/pqxx>

#include <atomic>
#include <cctype>
#include <csignal>
#include <mutex>
#include <regex>
#include <thread>

using namespace gatehouse::test;
using json = nlohmann::json;
namespace pb = gatehouse::internal::v1;

namespace {

// -- the seed -----------------------------------------------------------------------

// Public keys made with ssh-keygen for the integration tests (no private
// part kept anywhere).
const char* const ed25519[] = {
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSGMDcrDN/yx6f/G/8HRyrdVtDurdzajXQLW+hZIfdS k1@test",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP2X2ZT+BHT4AtZcaFb3IxHq6JcA9/0bd7LMLN9luRQ8 k2@test",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJFu4PQa8ZBkuWP1bMiFl2XECPR1tpoEK3whmtp8mjMU k3@test",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFmXA6hfCPXV+EFu10ohS+CAawhBmD0Pah0HxUDwSFZI k4@test",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVBC2o0L8tjL5Hz0aPW4BIV03DRRVp3TukPLAeExADL k5@test",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIAiEC8ompaVm8XqejslypMbaQ8hBfRqLUAjWhmFmhUs k6@test",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNQH1KbaI2jBlEvOd5BtAQg89pYBTGPpe9Rga4PZwhG k7@test",
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO/u56MpRlx8TyGFRCcTaT5VpzLU4XmhE98nfqbOviBM k13@test",
};
const char* const unknown_key
  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHLOFFWCEa+DW3R7SN32IB5+RVQKn3OgHe2cEpsVw6kw k14@test";

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

// Users: 1 root (admin), 2 alice (developer), 3 bob (reporter), 4 gina
// (guest), 5 nora (no membership), 6 blocky (blocked developer), 7 mo
// (maintainer of group acme). Key n belongs to user n; deploy key 100
// (created by mo) is read-only on acme/widgets.
json seed() {
  json doc;
  doc["settings"] = {{"external_url", "https://gitlab.example.com"},
                     {"ssh_clone_url_root", "git@gitlab.example.com:"},
                     {"enabled_git_access_protocol", "all"},
                     {"gitlab_version", "18.6.0"},
                     {"gitlab_shell_operation_limit", 0}};
  doc["storages"] = json::array({{{"name", "default"},
                                  {"gitaly_address", "tcp://gitaly.internal:8075"},
                                  {"gitaly_token", "gitaly-token"}}});
  doc["users"] = json::array({user(1, "root", "Administrator", "active", true),
                              user(2, "alice", "Alice Developer"),
                              user(3, "bob", "Bob Reporter"),
                              user(4, "gina", "Gina Guest"),
                              user(5, "nora", "Nora Outsider"),
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
    {{{"id", 100}, {"user_id", 7}, {"title", "ci read-only"}, {"key", ed25519[7]},
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
  return doc;
}

// -- HTTP -----------------------------------------------------------------------------

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

struct shell_http {
  const stack& gh;
  std::string token = gh.shell_token();

  http_reply make(const httplib::Result& res) const {
    REQUIRE(res);
    http_reply r;
    r.status = res->status;
    r.body = res->body;
    r.j = json::parse(res->body, nullptr, false);
    return r;
  }

  http_reply post(const std::string& call, const json& body) const {
    auto cli = gh.client();
    auto path = "/api/v4/internal/" + call;
    return make(cli.Post(path.c_str(), {{"Gitlab-Shell-Api-Request", token}},
                         body.dump(), "application/json"));
  }

  http_reply get(const std::string& call, const std::string& query = {}) const {
    auto cli = gh.client();
    auto path = "/api/v4/internal/" + call + (query.empty() ? "" : "?" + query);
    return make(cli.Get(path.c_str(), {{"Gitlab-Shell-Api-Request", token}}));
  }
};

// -- comparing answers --------------------------------------------------------------

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
  if (http.status >= 200 && http.status < 300) {
    auto j = nats_json<Response>(nats.body);
    INFO("NATS " << nats.status << " " << j.dump());
    CHECK(same_value(http.j, &j));
  } else {
    CHECK(error_message(nats.body) == http_message(http.j));
  }
}

// -- AllowedRequest and its JSON twin -------------------------------------------------

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
  c.http = {{"action", action},      {"project", "acme/widgets.git"},
            {"changes", "_any"},     {"protocol", "ssh"},
            {"key_id", std::to_string(key_id)}, {"check_ip", "127.0.0.1"}};
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

// -- metrics and database ---------------------------------------------------------------

/// The sum of a counter's series whose labels contain `labels`.
std::int64_t counter(const std::string& metrics, const std::string& name,
                     const std::string& labels) {
  std::int64_t sum = 0;
  std::istringstream in{metrics};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) != 0 || line.find(labels) == std::string::npos)
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
  return query_count(url, "SELECT coalesce(max(value), 0) FROM "
                          "gatehouse_state.reference_counters WHERE "
                          "gl_repository = 'project-10' AND expires_at > now()");
}

// -- replicas ----------------------------------------------------------------------------

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

pb::PostReceiveRequest post_receive(const std::string& branch) {
  pb::PostReceiveRequest r;
  r.set_gl_repository("project-10");
  r.set_identifier("key-2");
  r.set_changes(std::string(40, '0') + " " + std::string(40, 'a') + " refs/heads/"
                + branch + "\n");
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

  SECTION("/allowed: the access-control conformance cases") {
    std::vector<allowed_case> cases = {
      shell_case("reporter clone", "git-upload-pack", 3, 200),
      shell_case("developer push", "git-receive-pack", 2, 200),
      shell_case("guest clone", "git-upload-pack", 4, 401),
      shell_case("non-member clone", "git-upload-pack", 5, 404),
      shell_case("blocked user", "git-upload-pack", 6, 401),
      shell_case("read-only deploy key push", "git-receive-pack", 100, 401),
      shell_case("deploy key clone", "git-upload-pack", 100, 200),
      shell_case("reporter push", "git-receive-pack", 3, 401),
      shell_case("unknown key", "git-upload-pack", 999, 404),
      shell_case("unknown command", "git-frobnicate", 2, 401),
    };
    // Gitaly's shape: gl_repository and user_id.
    allowed_case gitaly;
    gitaly.what = "Gitaly's check of a developer push";
    gitaly.http = {{"action", "git-receive-pack"}, {"gl_repository", "project-10"},
                   {"project", "/repos/@hashed/6b/86/widgets.git"},
                   {"changes", "_any"}, {"protocol", "ssh"}, {"user_id", "2"},
                   {"env", "{}"}};
    gitaly.nats.set_action("git-receive-pack");
    gitaly.nats.set_gl_repository("project-10");
    gitaly.nats.set_project("/repos/@hashed/6b/86/widgets.git");
    gitaly.nats.set_changes("_any");
    gitaly.nats.set_protocol("ssh");
    gitaly.nats.set_user_id(2);
    gitaly.nats.set_env("{}");
    gitaly.expected_status = 200;
    cases.push_back(gitaly);
    auto bad_context = shell_case("malformed gitaly_client_context_bin",
                                  "git-upload-pack", 3, 400);
    bad_context.http["gitaly_client_context_bin"] = "not base64!";
    bad_context.nats.set_gitaly_client_context_bin("not base64!");
    cases.push_back(bad_context);
    for (auto& c : cases) {
      auto h = http.post("allowed", c.http);
      CHECK(h.status == c.expected_status);
      check_same<pb::AllowedResponse>(c.what, h, nats.request("allowed", c.nats));
    }
    // The denials carry GitLab's own texts.
    auto guest = nats.request("allowed", shell_case("", "git-upload-pack", 4, 0).nats);
    CHECK(error_message(guest.body)
          == "You are not allowed to download code from this project.");
  }

  SECTION("/authorized_keys, /discover, /check") {
    pb::AuthorizedKeysRequest key;
    key.set_key(blob_of(ed25519[2]));
    check_same<pb::AuthorizedKeysResponse>(
      "known key", http.get("authorized_keys", "key=" + url_encode(key.key())),
      nats.request("authorized_keys", key));
    key.set_key(blob_of(unknown_key));
    auto h = http.get("authorized_keys", "key=" + url_encode(key.key()));
    CHECK(h.status == 404);
    check_same<pb::AuthorizedKeysResponse>("unknown key", h,
                                           nats.request("authorized_keys", key));
    check_same<pb::AuthorizedKeysResponse>(
      "no key", http.get("authorized_keys"),
      nats.request("authorized_keys", pb::AuthorizedKeysRequest{}));

    pb::DiscoverRequest d;
    d.set_key_id(3);
    check_same<pb::DiscoverResponse>("discover key 3", http.get("discover", "key_id=3"),
                                     nats.request("discover", d));
    d.Clear();
    d.set_username("alice");
    check_same<pb::DiscoverResponse>("discover alice",
                                     http.get("discover", "username=alice"),
                                     nats.request("discover", d));
    d.Clear();
    d.set_identifier("key-100");
    check_same<pb::DiscoverResponse>("discover a deploy key",
                                     http.get("discover", "identifier=key-100"),
                                     nats.request("discover", d));
    d.Clear();
    d.set_user_id(4242);
    auto nobody = http.get("discover", "user_id=4242");
    CHECK(nobody.j.is_null());
    check_same<pb::DiscoverResponse>("discover nobody", nobody,
                                     nats.request("discover", d));

    auto check = http.get("check");
    CHECK(check.status == 200);
    check_same<pb::CheckResponse>("check", check,
                                  nats.request("check", pb::CheckRequest{}));
  }

  SECTION("the other calls of GitLab Shell and Gitaly") {
    pb::LfsAuthenticateRequest lfs;
    lfs.set_key_id(2);
    lfs.set_project("acme/nothing");
    lfs.set_operation("download");
    check_same<pb::LfsAuthenticateResponse>(
      "lfs of an unknown project",
      http.post("lfs_authenticate",
                {{"key_id", "2"}, {"project", "acme/nothing"}, {"operation", "download"}}),
      nats.request("lfs_authenticate", lfs));
    // A token differs per call; compare status and the stable fields.
    lfs.set_project("acme/widgets");
    auto lfs_http = http.post(
      "lfs_authenticate",
      {{"key_id", "2"}, {"project", "acme/widgets"}, {"operation", "download"}});
    auto lfs_nats = nats.request("lfs_authenticate", lfs);
    CHECK(lfs_http.status == 200);
    CHECK(lfs_nats.status == 200);
    auto lfs_j = nats_json<pb::LfsAuthenticateResponse>(lfs_nats.body);
    CHECK(lfs_j["username"] == lfs_http.j["username"]);
    CHECK(lfs_j["repository_http_path"] == lfs_http.j["repository_http_path"]);

    pb::TwoFactorRecoveryCodesRequest codes;
    codes.set_key_id(2);
    check_same<pb::TwoFactorRecoveryCodesResponse>(
      "recovery codes without 2FA",
      http.post("two_factor_recovery_codes", {{"key_id", "2"}}),
      nats.request("two_factor_recovery_codes", codes));

    pb::PersonalAccessTokenRequest pat;
    pat.set_key_id(2);
    pat.add_scopes("read_api");
    check_same<pb::PersonalAccessTokenResponse>(
      "token without a name",
      http.post("personal_access_token", {{"key_id", "2"}, {"scopes", {"read_api"}}}),
      nats.request("personal_access_token", pat));

    pb::TwoFactorManualOtpCheckRequest otp;
    otp.set_key_id(2);
    otp.set_otp_attempt("123456");
    check_same<pb::TwoFactorOtpCheckResponse>(
      "manual otp",
      http.post("two_factor_manual_otp_check", {{"key_id", "2"}, {"otp_attempt", "123456"}}),
      nats.request("two_factor_manual_otp_check", otp));
    pb::TwoFactorPushOtpCheckRequest push_otp;
    push_otp.set_key_id(2);
    check_same<pb::TwoFactorOtpCheckResponse>(
      "push otp", http.post("two_factor_push_otp_check", {{"key_id", "2"}}),
      nats.request("two_factor_push_otp_check", push_otp));

    pb::GitAuditEventRequest audit;
    audit.set_action("git-upload-pack");
    check_same<pb::GitAuditEventResponse>(
      "audit event with fields missing",
      http.post("shellhorse/git_audit_event", {{"action", "git-upload-pack"}}),
      nats.request("shellhorse.git_audit_event", audit));
    audit.set_protocol("ssh");
    audit.set_gl_repository("project-10");
    audit.set_changes("_any");
    audit.set_key_id(3);
    json audit_json = {{"action", "git-upload-pack"}, {"protocol", "ssh"},
                       {"gl_repository", "project-10"}, {"changes", "_any"},
                       {"key_id", "3"}};
    check_same<pb::GitAuditEventResponse>(
      "audit event of a reporter", http.post("shellhorse/git_audit_event", audit_json),
      nats.request("shellhorse.git_audit_event", audit));
    audit.set_key_id(5);
    audit_json["key_id"] = "5";
    check_same<pb::GitAuditEventResponse>(
      "audit event of a non-member",
      http.post("shellhorse/git_audit_event", audit_json),
      nats.request("shellhorse.git_audit_event", audit));

    check_same<pb::PreReceiveResponse>(
      "pre_receive without gl_repository", http.post("pre_receive", json::object()),
      nats.request("pre_receive", pb::PreReceiveRequest{}));
    pb::PreReceiveRequest pre;
    pre.set_gl_repository("project-10");
    check_same<pb::PreReceiveResponse>(
      "pre_receive", http.post("pre_receive", {{"gl_repository", "project-10"}}),
      nats.request("pre_receive", pre));
    check_same<pb::PostReceiveResponse>(
      "post_receive without fields", http.post("post_receive", json::object()),
      nats.request("post_receive", pb::PostReceiveRequest{}));
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
  for (auto call : {"allowed", "authorized_keys", "discover", "check",
                    "lfs_authenticate", "two_factor_recovery_codes",
                    "personal_access_token", "two_factor_manual_otp_check",
                    "two_factor_push_otp_check", "pre_receive", "post_receive",
                    "shellhorse.git_audit_event"}) {
    INFO(call);
    auto a = nats.request_raw(call, garbage);
    REQUIRE(a.answered);
    CHECK(a.status == 400);
    CHECK(error_message(a.body).rfind("400 Bad request - malformed ", 0) == 0);
  }
  auto a = nats.request_raw("allowed", garbage);
  CHECK(error_message(a.body)
        == "400 Bad request - malformed AllowedRequest payload");
  // A request id that is not printable ASCII is refused the same way.
  auto bad_id = nats.request("check", pb::CheckRequest{}, std::string(200, 'x'));
  CHECK(bad_id.status == 400);
  // Still alive, still answering both edges.
  CHECK(nats.request("allowed", shell_case("", "git-upload-pack", 3, 0).nats).status
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
  CHECK(query_count(db, "SELECT count(*) FROM gatehouse_state.requests "
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
  REQUIRE(nats.request("post_receive", post_receive("baseline"), "baseline").status
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
  CHECK(query_count(db, "SELECT count(DISTINCT body::jsonb->>'ref') "
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
