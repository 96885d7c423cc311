// Workhorse's calls end to end (contract other-callers §1.1, §1.3, §4.1,
// §4.2, §4.4, §4.5, §15): the real `gatehouse serve` against PostgreSQL,
// seeded through the CLI, asked as Workhorse asks: git-over-HTTP
// pre-authorization (info/refs, git-upload-pack, git-receive-pack with no
// body, the git client's Basic credentials passed through), authorize_upload
// and geo/proxy. Every 200 is checked against the exact key set and the JSON
// types Workhorse decodes; every refusal against GitLab's exact status, type
// and text (the git client shows them to the user).

#include "common/base64.hpp"
#include "common/jwt.hpp"
#include "tests/integration/stack.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <set>
#include <string>

using namespace gatehouse;
using namespace gatehouse::test;
using json = nlohmann::json;

namespace {

const char* const vendor_type = "application/vnd.gitlab-workhorse+json";
const char* const widgets_disk_path
  = "@hashed/4a/44/"
    "4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5";
const char* const external_url = "https://gitlab.example.com:8443";

const std::string basic_denied
  = "HTTP Basic: Access denied. If a password was provided for Git "
    "authentication, the password was incorrect or you're required to use a "
    "token instead of a password. If a token was provided, it was either "
    "incorrect, expired, or improperly scoped. See "
    "https://gitlab.example.com:8443/help/topics/git/troubleshooting_git.md"
    "#error-on-git-fetch-http-basic-access-denied";
const std::string not_found
  = "The project you were looking for could not be found or you don't have "
    "permission to view it.";

// Personal access tokens (clear text, as the git client sends them).
const std::string alice_api = "glpat-alice-api-aaaaaaaaaaaa";
const std::string alice_read_repo = "glpat-alice-readrepo-bbbbbbbb";
const std::string alice_read_user = "glpat-alice-readuser-cccccccc";
const std::string alice_revoked = "glpat-alice-revoked-dddddddd";
const std::string alice_expired = "glpat-alice-expired-eeeeeeee";
const std::string bob_api = "glpat-bob-api-ffffffffffffff";
const std::string blocky_api = "glpat-blocky-api-gggggggggggg";
const std::string nora_api = "glpat-nora-api-hhhhhhhhhhhhh";
const std::string alice_write_repo = "glpat-alice-writerepo-iiiiiiii";
const std::string alice_to_revoke = "glpat-alice-torevoke-jjjjjjjj";
const std::string alice_two_scopes = "glpat-alice-twoscopes-kkkkkkkk";
const std::string gina_api = "glpat-gina-api-llllllllllllll";

json user(int id, const std::string& username, const std::string& state = "active") {
  return {{"id", id},
          {"username", username},
          {"name", username},
          {"email", username + "@example.com"},
          {"public_email", ""},
          {"state", state},
          {"admin", false},
          {"external", false},
          {"can_create_project", true},
          {"two_factor_enabled", false}};
}

json project(int id, int namespace_id, const std::string& path,
             const std::string& disk_path,
             const std::string& visibility = "private") {
  return {{"id", id},
          {"namespace_id", namespace_id},
          {"path", path},
          {"name", path},
          {"description", ""},
          {"visibility", visibility},
          {"archived", false},
          {"default_branch", "main"},
          {"storage", "default"},
          {"disk_path", disk_path},
          {"repository_access_level", "enabled"},
          {"merge_requests_enabled", true},
          {"lfs_enabled", true},
          {"repository_exists", true},
          {"redirects", json::array()}};
}

json pat(int id, int user_id, const std::string& token, json scopes,
         const std::string& expires_at = "2099-12-31", bool revoked = false) {
  return {{"id", id},
          {"user_id", user_id},
          {"name", "token " + std::to_string(id)},
          {"token", token},
          {"scopes", std::move(scopes)},
          {"expires_at", expires_at},
          {"revoked", revoked}};
}

// Users: alice (2) Developer of acme/widgets and acme/platform/api, bob (3)
// Reporter, blocky (6, blocked) Developer, nora (5) no member. acme/open
// (11) is public. acme/platform is a sub-group of acme (root namespace 5).
json seed_document(const std::string& protocol = "all", int max_input_mb = 0) {
  json doc;
  doc["settings"] = {{"external_url", external_url},
                     {"ssh_clone_url_root", "git@gitlab.example.com:"},
                     {"enabled_git_access_protocol", protocol},
                     {"receive_max_input_size_mb", max_input_mb},
                     {"gitlab_version", "18.6.0"},
                     {"gitlab_shell_operation_limit", 0}};
  doc["storages"]
    = json::array({{{"name", "default"},
                    {"gitaly_address", "tcp://gitaly.internal:8075"},
                    {"gitaly_token", "gitaly-token"}}});
  doc["users"] = json::array({user(2, "alice"), user(3, "bob"),
                              user(5, "nora"), user(6, "blocky", "blocked"),
                              user(7, "gina")});
  doc["namespaces"] = json::array({{{"id", 5},
                                    {"path", "acme"},
                                    {"name", "Acme"},
                                    {"kind", "group"},
                                    {"parent_id", nullptr}},
                                   {{"id", 6},
                                    {"path", "platform"},
                                    {"name", "Platform"},
                                    {"kind", "group"},
                                    {"parent_id", 5}}});
  auto widgets = project(10, 5, "widgets", widgets_disk_path);
  widgets["redirects"] = json::array({"acme/old-widgets"});
  auto archive = project(15, 5, "archive", "@hashed/e6/29/archive");
  archive["archived"] = true;
  auto empty = project(16, 5, "empty", "@hashed/b1/7e/empty");
  empty["repository_exists"] = false;
  // Public projects whose repository is for members only, or off.
  auto code_private = project(17, 5, "membercode", "@hashed/4e/c9/membercode",
                              "public");
  code_private["repository_access_level"] = "private";
  auto code_disabled = project(18, 5, "nocode", "@hashed/4a/c5/nocode", "public");
  code_disabled["repository_access_level"] = "disabled";
  doc["projects"] = json::array(
    {widgets, project(11, 5, "open", "@hashed/6b/86/open", "public"),
     project(13, 6, "api", "@hashed/6b/51/api"),
     project(14, 5, "inside", "@hashed/8b/94/inside", "internal"), archive,
     empty, code_private, code_disabled});
  doc["members"] = json::array(
    {{{"user_id", 2}, {"project_id", 10}, {"access_level", 30}},
     {{"user_id", 3}, {"project_id", 10}, {"access_level", 20}},
     {{"user_id", 6}, {"project_id", 10}, {"access_level", 30}},
     {{"user_id", 2}, {"project_id", 13}, {"access_level", 30}},
     {{"user_id", 2}, {"project_id", 15}, {"access_level", 30}},
     {{"user_id", 2}, {"project_id", 16}, {"access_level", 30}},
     {{"user_id", 2}, {"project_id", 17}, {"access_level", 30}},
     {{"user_id", 2}, {"project_id", 18}, {"access_level", 30}},
     {{"user_id", 7}, {"project_id", 10}, {"access_level", 10}}});
  doc["personal_access_tokens"] = json::array(
    {pat(1, 2, alice_api, {"api"}),
     pat(2, 2, alice_read_repo, {"read_repository"}),
     pat(3, 2, alice_read_user, {"read_user"}),
     pat(4, 2, alice_revoked, {"api"}, "2099-12-31", true),
     pat(5, 2, alice_expired, {"api"}, "2020-01-01"),
     pat(6, 3, bob_api, {"api"}),
     pat(7, 6, blocky_api, {"api"}),
     pat(8, 5, nora_api, {"api"}),
     pat(9, 2, alice_write_repo, {"write_repository"}),
     pat(10, 2, alice_to_revoke, {"api"}),
     pat(11, 2, alice_two_scopes, {"read_user", "read_repository"}),
     pat(12, 7, gina_api, {"api"})});
  return doc;
}

const std::string& uploads_dir() {
  static const std::string dir = make_temp_dir("wh-uploads");
  return dir;
}

std::unique_ptr<stack> started(const json& doc,
                               std::map<std::string, std::string> env = {}) {
  auto s = std::make_unique<stack>(std::string{}, std::string{}, std::move(env));
  s->seed(doc);
  s->start();
  return s;
}

// One served Gatehouse for the cases that need no settings of their own.
stack& shared() {
  static std::unique_ptr<stack> gh
    = started(seed_document(), {{"GATEHOUSE_UPLOADS_DIR", uploads_dir()}});
  return *gh;
}

std::string workhorse_key(const stack& gh) {
  auto key = base64_decode(read_file(gh.secrets().workhorse));
  REQUIRE(key);
  return *key;
}

// A token as the newest Workhorse signs it: iss and iat, no exp.
std::string workhorse_jwt(const stack& gh) {
  auto now = std::to_string(std::time(nullptr));
  return jwt::sign_raw(R"({"alg":"HS256","typ":"JWT"})",
                       R"({"iss":"gitlab-workhorse","iat":)" + now + "}",
                       workhorse_key(gh));
}

std::string basic(const std::string& password,
                  const std::string& login = "anyone") {
  return "Basic " + base64_encode(login + ":" + password);
}

struct answer {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string www_authenticate;
  bool has_www_authenticate = false;
  json j;
};

// How a request reaches the server: the git client's credentials (if any),
// Workhorse's token (by default a fresh one; "" leaves the header out) and
// any further headers.
struct how {
  how() = default;
  how(std::optional<std::string> password_,
      std::optional<std::string> jwt_ = std::nullopt,
      httplib::Headers extra_ = {})
      : password{std::move(password_)}, jwt{std::move(jwt_)},
        extra{std::move(extra_)} {}

  std::optional<std::string> password;
  std::optional<std::string> jwt;
  httplib::Headers extra;
  std::string login = "anyone";
};

answer ask(const stack& gh, const std::string& method,
           const std::string& target, const how& h = {}) {
  httplib::Headers headers = h.extra;
  if (h.password)
    headers.emplace("Authorization", basic(*h.password, h.login));
  std::string token = h.jwt ? *h.jwt : workhorse_jwt(gh);
  if (!token.empty())
    headers.emplace("Gitlab-Workhorse-Api-Request", token);
  headers.emplace("Gitlab-Workhorse", "v18.6.0");
  auto cli = gh.client();
  httplib::Result res = method == "GET"    ? cli.Get(target.c_str(), headers)
                        : method == "HEAD" ? cli.Head(target.c_str(), headers)
                                           : cli.Post(target.c_str(), headers);
  REQUIRE(res);
  answer a;
  a.status = res->status;
  a.body = res->body;
  a.content_type = res->get_header_value("Content-Type");
  a.has_www_authenticate = res->has_header("WWW-Authenticate");
  a.www_authenticate = res->get_header_value("WWW-Authenticate");
  a.j = json::parse(res->body, nullptr, false);
  return a;
}

std::string info_refs(const std::string& repo,
                      const std::string& service = "git-upload-pack") {
  return "/" + repo + ".git/info/refs?service=" + service;
}

std::string media_type(const std::string& content_type) {
  auto semi = content_type.find(';');
  auto out = content_type.substr(0, semi);
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

// GitLab's render plain: text/plain, the message as the whole body.
void check_plain(const answer& a, int status, const std::string& text) {
  INFO("status " << a.status << " type " << a.content_type << " body " << a.body);
  CHECK(a.status == status);
  CHECK(media_type(a.content_type) == "text/plain");
  CHECK(a.body == text);
}

// 401 with GitLab's Basic challenge and troubleshooting text.
void check_denied(const answer& a) {
  check_plain(a, 401, basic_denied);
  CHECK(a.has_www_authenticate);
  CHECK(a.www_authenticate == "Basic realm=\"GitLab\"");
}

std::set<std::string> keys_of(const json& object) {
  std::set<std::string> out;
  for (const auto& item : object.items())
    out.insert(item.key());
  return out;
}

// GitLab's git_http_ok as Workhorse decodes it (api.Response): the exact key
// set and JSON types. Returns the body.
json check_ok(const answer& a, bool project_repo = true) {
  INFO("status " << a.status << " type " << a.content_type << " body " << a.body);
  REQUIRE(a.status == 200);
  CHECK(media_type(a.content_type) == vendor_type);
  const json& b = a.j;
  REQUIRE(b.is_object());
  std::set<std::string> expected{"GL_ID",        "GL_USERNAME",      "GL_REPOSITORY",
                                 "ShowAllRefs",  "NeedAudit",        "Repository",
                                 "GitConfigOptions", "GitalyServer"};
  if (project_repo) {
    expected.insert("ProjectID");
    expected.insert("RootNamespaceID");
  }
  CHECK(keys_of(b) == expected);
  CHECK(b["GL_ID"].is_string());
  CHECK((b["GL_USERNAME"].is_string() || b["GL_USERNAME"].is_null()));
  CHECK(b["GL_REPOSITORY"].is_string());
  CHECK(b["ShowAllRefs"] == false);
  CHECK(b["NeedAudit"] == false);
  const json& r = b["Repository"];
  REQUIRE(r.is_object());
  CHECK(keys_of(r)
        == std::set<std::string>{"storage_name", "relative_path",
                                 "git_object_directory",
                                 "git_alternate_object_directories",
                                 "gl_repository", "gl_project_path"});
  CHECK(r["storage_name"].is_string());
  CHECK(r["relative_path"].is_string());
  CHECK(r["git_object_directory"] == "");
  CHECK(r["git_alternate_object_directories"] == json::array());
  CHECK(r["gl_repository"] == b["GL_REPOSITORY"]);
  CHECK(r["gl_project_path"].is_string());
  REQUIRE(b["GitConfigOptions"].is_array());
  for (const auto& option : b["GitConfigOptions"])
    CHECK(option.is_string());
  const json& g = b["GitalyServer"];
  REQUIRE(g.is_object());
  CHECK(keys_of(g) == std::set<std::string>{"address", "token", "call_metadata"});
  CHECK(g["address"].is_string());
  CHECK(g["token"].is_string());
  REQUIRE(g["call_metadata"].is_object());
  for (const auto& item : g["call_metadata"].items())
    CHECK(item.value().is_string());
  if (project_repo) {
    CHECK(b["ProjectID"].is_number_integer());
    CHECK(b["RootNamespaceID"].is_number_integer());
  }
  return b;
}

// The body for alice on acme/widgets, whatever the command.
void check_alice_widgets(const json& b) {
  CHECK(b["GL_ID"] == "user-2");
  CHECK(b["GL_USERNAME"] == "alice");
  CHECK(b["GL_REPOSITORY"] == "project-10");
  CHECK(b["Repository"]
        == json{{"storage_name", "default"},
                {"relative_path", std::string{widgets_disk_path} + ".git"},
                {"git_object_directory", ""},
                {"git_alternate_object_directories", json::array()},
                {"gl_repository", "project-10"},
                {"gl_project_path", "acme/widgets"}});
  CHECK(b["GitConfigOptions"] == json::array());
  CHECK(b["GitalyServer"]["address"] == "tcp://gitaly.internal:8075");
  CHECK(b["GitalyServer"]["token"] == "gitaly-token");
  CHECK(b["GitalyServer"]["call_metadata"]["user_id"] == "user-2");
  CHECK(b["GitalyServer"]["call_metadata"]["username"] == "alice");
  CHECK(b["ProjectID"] == 10);
  CHECK(b["RootNamespaceID"] == 5);
}

} // namespace

// ---------------------------------------------------------------------------
// §4.2 git over HTTP

TEST_CASE("§4.2 HEAD on info/refs is 403 with an empty body, before any "
          "other check",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§4.2 without credentials nor Workhorse's token") {
    auto a = ask(gh, "HEAD", info_refs("acme/widgets"), {{}, std::string{}});
    CHECK(a.status == 403);
    CHECK(a.body.empty());
  }
  SECTION("§4.2 with valid credentials and token") {
    auto a = ask(gh, "HEAD", info_refs("acme/widgets"), {alice_api});
    CHECK(a.status == 403);
    CHECK(a.body.empty());
  }
}

TEST_CASE("§4.2 §15 success for each of the three calls: git_http_ok with "
          "exact keys and types",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§4.2 info/refs?service=git-upload-pack") {
    check_alice_widgets(check_ok(ask(gh, "GET", info_refs("acme/widgets"), {alice_api})));
  }
  SECTION("§4.2 info/refs?service=git-receive-pack") {
    check_alice_widgets(check_ok(
      ask(gh, "GET", info_refs("acme/widgets", "git-receive-pack"), {alice_api})));
  }
  SECTION("§4.1 §4.2 POST git-upload-pack with no body") {
    check_alice_widgets(
      check_ok(ask(gh, "POST", "/acme/widgets.git/git-upload-pack", {alice_api})));
  }
  SECTION("§4.1 §4.2 POST git-receive-pack with no body") {
    check_alice_widgets(
      check_ok(ask(gh, "POST", "/acme/widgets.git/git-receive-pack", {alice_api})));
  }
  SECTION("§4.2 the Basic login is ignored: only the token counts") {
    how h{alice_api};
    h.login = "somebody-else";
    check_alice_widgets(check_ok(ask(gh, "GET", info_refs("acme/widgets"), h)));
    h.login = "";
    check_alice_widgets(check_ok(ask(gh, "GET", info_refs("acme/widgets"), h)));
    // bob's token under alice's name is bob.
    how b{bob_api};
    b.login = "alice";
    auto body = check_ok(ask(gh, "GET", info_refs("acme/widgets"), b));
    CHECK(body["GL_ID"] == "user-3");
    CHECK(body["GL_USERNAME"] == "bob");
  }
  SECTION("§4.2 RootNamespaceID is the root of a sub-group's project") {
    auto b = check_ok(ask(gh, "GET", info_refs("acme/platform/api"), {alice_api}));
    CHECK(b["GL_REPOSITORY"] == "project-13");
    CHECK(b["ProjectID"] == 13);
    CHECK(b["RootNamespaceID"] == 5);
    CHECK(b["Repository"]["gl_project_path"] == "acme/platform/api");
    CHECK(b["Repository"]["relative_path"] == "@hashed/6b/51/api.git");
  }
  SECTION("§4.2 scoped tokens: read_repository clones, write_repository pushes") {
    check_ok(ask(gh, "GET", info_refs("acme/widgets"), {alice_read_repo}));
    check_ok(ask(gh, "POST", "/acme/widgets.git/git-upload-pack", {alice_read_repo}));
    check_ok(ask(gh, "POST", "/acme/widgets.git/git-receive-pack", {alice_write_repo}));
    check_ok(ask(gh, "GET", info_refs("acme/widgets", "git-receive-pack"),
                 {alice_write_repo}));
  }
}

TEST_CASE("§4.2 a wiki answers wiki-<id>, without ProjectID and "
          "RootNamespaceID",
          "[.integration][workhorse]") {
  auto& gh = shared();
  auto b = check_ok(ask(gh, "GET", info_refs("acme/widgets.wiki"), {alice_api}),
                    false);
  CHECK(b["GL_ID"] == "user-2");
  CHECK(b["GL_REPOSITORY"] == "wiki-10");
  CHECK(b["Repository"]["gl_repository"] == "wiki-10");
  CHECK(b["Repository"]["relative_path"]
        == std::string{widgets_disk_path} + ".wiki.git");
  CHECK(b["Repository"]["storage_name"] == "default");
}

TEST_CASE("§4.2 anonymous clone of a public project only",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§4.2 info/refs and POST git-upload-pack on a public project: 200, "
          "no user") {
    for (const auto& a : {ask(gh, "GET", info_refs("acme/open")),
                          ask(gh, "POST", "/acme/open.git/git-upload-pack")}) {
      auto b = check_ok(a);
      CHECK(b["GL_ID"] == "");
      CHECK(b["GL_USERNAME"].is_null());
      CHECK(b["GL_REPOSITORY"] == "project-11");
      CHECK(b["ProjectID"] == 11);
      CHECK(b["RootNamespaceID"] == 5);
      const auto& metadata = b["GitalyServer"]["call_metadata"];
      CHECK(metadata.find("user_id") == metadata.end());
      CHECK(metadata.find("username") == metadata.end());
    }
  }
  SECTION("§4.2 anonymous push to a public project: 401 with the challenge") {
    check_denied(ask(gh, "GET", info_refs("acme/open", "git-receive-pack")));
    check_denied(ask(gh, "POST", "/acme/open.git/git-receive-pack"));
  }
  SECTION("§4.2 anonymous clone of a private project: 401") {
    check_denied(ask(gh, "GET", info_refs("acme/widgets")));
    check_denied(ask(gh, "POST", "/acme/widgets.git/git-upload-pack"));
  }
  SECTION("§4.2 anonymous clone of an unknown project: 401, which hides it") {
    check_denied(ask(gh, "GET", info_refs("acme/nothing-here")));
  }
  SECTION("§4.2 a wrong token on a public project is 401, no anonymous "
          "fallback") {
    check_denied(ask(gh, "GET", info_refs("acme/open"), {"glpat-nobody-knows-this"}));
  }
}

TEST_CASE("§4.2 credentials that do not authenticate: 401 with GitLab's "
          "challenge and text",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§4.2 unknown token") {
    check_denied(ask(gh, "GET", info_refs("acme/widgets"), {"glpat-unknown-zzzzzzzz"}));
  }
  SECTION("§4.2 revoked token") {
    check_denied(ask(gh, "GET", info_refs("acme/widgets"), {alice_revoked}));
  }
  SECTION("§4.2 expired token") {
    check_denied(ask(gh, "GET", info_refs("acme/widgets"), {alice_expired}));
    check_denied(ask(gh, "POST", "/acme/widgets.git/git-receive-pack", {alice_expired}));
  }
  SECTION("§4.2 a blocked user's token") {
    check_denied(ask(gh, "GET", info_refs("acme/widgets"), {blocky_api}));
  }
  SECTION("§4.2 an empty password") {
    check_denied(ask(gh, "GET", info_refs("acme/widgets"), {std::string{}}));
  }
  SECTION("§4.2 no credentials, for a push") {
    check_denied(ask(gh, "POST", "/acme/widgets.git/git-receive-pack"));
  }
}

TEST_CASE("§1.1 §4.2 Workhorse's JWT is checked after the end user's "
          "credentials, answered 403 plain text",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§1.1 §4.2 credentials refused come first, even without the JWT") {
    check_denied(ask(gh, "GET", info_refs("acme/widgets"), {"glpat-unknown-zzzzzzzz",
                                                            std::string{}}));
    check_denied(ask(gh, "GET", info_refs("acme/widgets"), {{}, std::string{}}));
  }
  SECTION("§1.1 §4.2 missing JWT: Nil JSON web token") {
    check_plain(ask(gh, "GET", info_refs("acme/widgets"), {alice_api, std::string{}}),
                403, "Nil JSON web token");
    check_plain(ask(gh, "POST", "/acme/widgets.git/git-receive-pack",
                    {alice_api, std::string{}}),
                403, "Nil JSON web token");
  }
  SECTION("§1.1 §4.2 anonymous public clone without the JWT") {
    check_plain(ask(gh, "GET", info_refs("acme/open"), {{}, std::string{}}), 403,
                "Nil JSON web token");
  }
  SECTION("§1.1 §4.2 signed with another secret: Signature verification "
          "failed") {
    auto forged = jwt::sign(jwt::caller::workhorse,
                            std::string(32, 'x'), std::time(nullptr));
    check_plain(ask(gh, "GET", info_refs("acme/widgets"), {alice_api, forged}), 403,
                "Signature verification failed");
  }
  SECTION("§1.1 §4.2 a token signed like gatehouse's jwt::sign passes") {
    check_ok(ask(gh, "GET", info_refs("acme/widgets"),
                 {alice_api, jwt::sign(jwt::caller::workhorse, workhorse_key(gh),
                                       std::time(nullptr))}));
  }
  SECTION("§1.1 older Workhorse: only iss, no iat, is let through") {
    auto old = jwt::sign_raw(R"({"alg":"HS256","typ":"JWT"})",
                             R"({"iss":"gitlab-workhorse"})", workhorse_key(gh));
    check_ok(ask(gh, "GET", info_refs("acme/widgets"), {alice_api, old}));
  }
  SECTION("§1.1 iat older than 90 s: Token has expired") {
    auto stale = jwt::sign_raw(
      R"({"alg":"HS256","typ":"JWT"})",
      R"({"iss":"gitlab-workhorse","iat":)"
        + std::to_string(std::time(nullptr) - 120) + "}",
      workhorse_key(gh));
    check_plain(ask(gh, "GET", info_refs("acme/widgets"), {alice_api, stale}), 403,
                "Token has expired");
  }
  SECTION("§1.1 alg none is refused") {
    auto unsigned_token
      = base64_encode(R"({"alg":"none","typ":"JWT"})") + "."
        + base64_encode(R"({"iss":"gitlab-workhorse"})") + ".";
    auto a = ask(gh, "GET", info_refs("acme/widgets"), {alice_api, unsigned_token});
    CHECK(a.status == 403);
    CHECK(media_type(a.content_type) == "text/plain");
  }
}

// GitLab answers these JWT refusals with ruby-jwt's own texts, and refuses
// an iat in the future (decode_jwt passes verify_iat: true).
TEST_CASE("§1.1 §4.2 ruby-jwt's refusals of Workhorse's JWT: exp, iss, "
          "future iat",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§1.1 an exp in the past is checked (ruby-jwt: Signature has "
          "expired)") {
    auto now = std::time(nullptr);
    auto expired = jwt::sign_raw(
      R"({"alg":"HS256","typ":"JWT"})",
      R"({"iss":"gitlab-workhorse","iat":)" + std::to_string(now)
        + R"(,"exp":)" + std::to_string(now - 10) + "}",
      workhorse_key(gh));
    check_plain(ask(gh, "GET", info_refs("acme/widgets"), {alice_api, expired}), 403,
                "Signature has expired");
  }
  SECTION("§1.1 another issuer is refused with 403 plain text") {
    auto other = jwt::sign_raw(
      R"({"alg":"HS256","typ":"JWT"})",
      R"({"iss":"gitlab-shell","iat":)" + std::to_string(std::time(nullptr)) + "}",
      workhorse_key(gh));
    auto a = ask(gh, "GET", info_refs("acme/widgets"), {alice_api, other});
    CHECK(a.status == 403);
    CHECK(media_type(a.content_type) == "text/plain");
    // ruby-jwt's InvalidIssuerError names what it got, in every version:
    // "Invalid issuer. Expected <expected>, received <iss or <none>>" (the
    // expected part prints as ["gitlab-workhorse"] in newer jwt versions,
    // as gitlab-workhorse in older ones).
    CHECK_THAT(a.body, Catch::StartsWith("Invalid issuer. Expected "));
    CHECK_THAT(a.body, Catch::EndsWith(", received gitlab-shell"));
  }
  SECTION("§1.1 an iat in the future is refused (verify_iat: Invalid iat)") {
    auto future = jwt::sign_raw(
      R"({"alg":"HS256","typ":"JWT"})",
      R"({"iss":"gitlab-workhorse","iat":)"
        + std::to_string(std::time(nullptr) + 60) + "}",
      workhorse_key(gh));
    check_plain(ask(gh, "GET", info_refs("acme/widgets"), {alice_api, future}), 403,
                "Invalid iat");
  }
}

TEST_CASE("§4.2 the access decision for protocol http: GitLab's 403 and 404 "
          "texts",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§4.2 a Reporter's push") {
    const std::string text = "You are not allowed to push code to this project.";
    check_plain(ask(gh, "GET", info_refs("acme/widgets", "git-receive-pack"), {bob_api}),
                403, text);
    check_plain(ask(gh, "POST", "/acme/widgets.git/git-receive-pack", {bob_api}), 403,
                text);
    // A Reporter may clone.
    check_ok(ask(gh, "GET", info_refs("acme/widgets"), {bob_api}));
  }
  SECTION("§4.2 a read_repository token's push") {
    const std::string text = "You are not allowed to upload code.";
    check_plain(ask(gh, "GET", info_refs("acme/widgets", "git-receive-pack"),
                    {alice_read_repo}),
                403, text);
    check_plain(
      ask(gh, "POST", "/acme/widgets.git/git-receive-pack", {alice_read_repo}), 403,
      text);
  }
  SECTION("§4.2 a read_user token's clone") {
    const std::string text = "You are not allowed to download code.";
    check_plain(ask(gh, "GET", info_refs("acme/widgets"), {alice_read_user}), 403, text);
    check_plain(ask(gh, "POST", "/acme/widgets.git/git-upload-pack", {alice_read_user}),
                403, text);
  }
  SECTION("§4.2 a non-member's clone of a private project: 404") {
    check_plain(ask(gh, "GET", info_refs("acme/widgets"), {nora_api}), 404, not_found);
    check_plain(ask(gh, "POST", "/acme/widgets.git/git-receive-pack", {nora_api}), 404,
                not_found);
  }
  SECTION("§4.2 an unknown project with valid credentials: 404") {
    check_plain(ask(gh, "GET", info_refs("acme/nothing-here"), {alice_api}), 404,
                not_found);
    check_plain(ask(gh, "POST", "/nowhere/nothing.git/git-upload-pack", {alice_api}),
                404, not_found);
  }
  SECTION("§4.2 a non-member's push to a public project") {
    check_ok(ask(gh, "GET", info_refs("acme/open"), {nora_api}));
    check_plain(ask(gh, "GET", info_refs("acme/open", "git-receive-pack"), {nora_api}),
                403, "You are not allowed to push code to this project.");
  }
  SECTION("§4.2 a service that is no git command") {
    const std::string text = "The command you're trying to execute is not allowed.";
    check_plain(ask(gh, "GET", info_refs("acme/widgets", "git-foo"), {alice_api}), 403,
                text);
    check_plain(ask(gh, "GET", "/acme/widgets.git/info/refs", {alice_api}), 403, text);
  }
}

TEST_CASE("§4.2 how GitLab resolves the repository path",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§4.2 a path in other case finds the project (GitLab's "
          "case-insensitive route lookup)") {
    auto b = check_ok(ask(gh, "GET", info_refs("ACME/Widgets"), {alice_api}));
    CHECK(b["GL_REPOSITORY"] == "project-10");
    CHECK(b["Repository"]["gl_project_path"] == "acme/widgets");
  }
  SECTION("§4.2 a former path (redirect route) still serves the project") {
    auto b = check_ok(ask(gh, "GET", info_refs("acme/old-widgets"), {alice_api}));
    CHECK(b["GL_REPOSITORY"] == "project-10");
    CHECK(b["Repository"]["gl_project_path"] == "acme/widgets");
  }
  SECTION("§4.2 a sub-group project's wiki") {
    auto b = check_ok(ask(gh, "GET", info_refs("acme/platform/api.wiki"), {alice_api}),
                      false);
    CHECK(b["GL_REPOSITORY"] == "wiki-13");
  }
  SECTION("§4.2 an unknown wiki: GitLab's RepoPath falls back to the "
          "project type, so the project text") {
    check_plain(ask(gh, "GET", info_refs("acme/nothing-here.wiki"), {alice_api}), 404,
                not_found);
  }
  SECTION("§4.2 a private project's wiki for a non-member: the wiki text") {
    check_plain(ask(gh, "GET", info_refs("acme/widgets.wiki"), {nora_api}), 404,
                "The wiki you were looking for could not be found.");
  }
  SECTION("§4.2 a public project's wiki is cloned anonymously") {
    auto b = check_ok(ask(gh, "GET", info_refs("acme/open.wiki")), false);
    CHECK(b["GL_REPOSITORY"] == "wiki-11");
    CHECK(b["GL_ID"] == "");
    CHECK(b["GL_USERNAME"].is_null());
  }
}

TEST_CASE("§4.2 more access decisions over HTTP", "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§4.2 an internal project: any signed-in user clones, nobody "
          "anonymous") {
    auto b = check_ok(ask(gh, "GET", info_refs("acme/inside"), {nora_api}));
    CHECK(b["GL_USERNAME"] == "nora");
    check_plain(ask(gh, "POST", "/acme/inside.git/git-receive-pack", {nora_api}), 403,
                "You are not allowed to push code to this project.");
    check_denied(ask(gh, "GET", info_refs("acme/inside")));
  }
  SECTION("§4.2 an archived project is cloned but not pushed") {
    check_ok(ask(gh, "GET", info_refs("acme/archive"), {alice_api}));
    check_plain(ask(gh, "POST", "/acme/archive.git/git-receive-pack", {alice_api}), 403,
                "You can't push code to an archived project.");
  }
  SECTION("§4.2 a project without a repository: 404 with GitLab's text") {
    check_plain(ask(gh, "GET", info_refs("acme/empty"), {alice_api}), 404,
                "A repository for this project does not exist yet.");
  }
  SECTION("§4.2 a token with read_user and read_repository clones, does not "
          "push") {
    check_ok(ask(gh, "GET", info_refs("acme/widgets"), {alice_two_scopes}));
    check_plain(ask(gh, "POST", "/acme/widgets.git/git-receive-pack",
                    {alice_two_scopes}),
                403, "You are not allowed to upload code.");
  }
}

TEST_CASE("§4.2 repository feature levels and roles over HTTP",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§4.2 a public project whose repository is for members: no "
          "anonymous clone, members clone") {
    check_denied(ask(gh, "GET", info_refs("acme/membercode")));
    check_ok(ask(gh, "GET", info_refs("acme/membercode"), {alice_api}));
  }
  SECTION("§4.2 a public project whose repository is disabled: 403 for a "
          "member") {
    check_denied(ask(gh, "GET", info_refs("acme/nocode")));
    check_plain(ask(gh, "GET", info_refs("acme/nocode"), {alice_api}), 403,
                "You are not allowed to download code from this project.");
  }
  SECTION("§4.2 a Guest of a private project may not clone") {
    check_plain(ask(gh, "GET", info_refs("acme/widgets"), {gina_api}), 403,
                "You are not allowed to download code from this project.");
  }
  SECTION("§4.2 a Reporter may clone a wiki, not push to it") {
    check_ok(ask(gh, "GET", info_refs("acme/widgets.wiki"), {bob_api}), false);
    check_plain(ask(gh, "POST", "/acme/widgets.wiki.git/git-receive-pack", {bob_api}),
                403, "You are not allowed to write to this project's wiki.");
    check_ok(ask(gh, "POST", "/acme/widgets.wiki.git/git-receive-pack", {alice_api}),
             false);
  }
}

TEST_CASE("§4.2 a token revoked in PostgreSQL stops working within seconds",
          "[.integration][workhorse]") {
  auto& gh = shared();
  check_ok(ask(gh, "GET", info_refs("acme/widgets"), {alice_to_revoke}));
  {
    pqxx::connection conn{gh.database_url()};
    pqxx::work tx{conn};
    tx.exec("UPDATE personal_access_tokens SET revoked = true WHERE id = 10");
    tx.commit();
  }
  answer last;
  bool refused = eventually(
    [&] {
      last = ask(gh, "GET", info_refs("acme/widgets"), {alice_to_revoke});
      return last.status == 401;
    },
    std::chrono::seconds(10));
  INFO(last.status << " " << last.body);
  CHECK(refused);
  check_denied(last);
  // authorize_upload no longer accepts it either.
  httplib::Headers headers{{"Gitlab-Workhorse-Api-Request", workhorse_jwt(gh)},
                           {"PRIVATE-TOKEN", alice_to_revoke}};
  auto res = gh.client().Post("/api/v4/internal/workhorse/authorize_upload", headers);
  REQUIRE(res);
  CHECK(res->status == 401);
  // Other tokens of the same user still work.
  check_ok(ask(gh, "GET", info_refs("acme/widgets"), {alice_api}));
}

TEST_CASE("§4.2 token and user changes made in PostgreSQL reach the "
          "decision within seconds, both ways",
          "[.integration][workhorse]") {
  // A stack of its own: these cases change rows the shared one relies on.
  auto gh = started(seed_document());
  auto sql = [&](const std::string& statement) {
    pqxx::connection conn{gh->database_url()};
    pqxx::work tx{conn};
    tx.exec(statement);
    tx.commit();
  };
  // Polls (no fixed sleep) until `target` answers `status` to `token`.
  auto reaches = [&](const std::string& method, const std::string& target,
                     const std::string& token, int status) {
    answer last;
    bool ok = eventually(
      [&] {
        last = ask(*gh, method, target, {token});
        return last.status == status;
      },
      std::chrono::seconds(10));
    INFO(method << " " << target << ": " << last.status << " " << last.body);
    CHECK(ok);
    return last;
  };
  const auto clone = info_refs("acme/widgets");
  const auto push = info_refs("acme/widgets", "git-receive-pack");
  check_ok(ask(*gh, "GET", push, {alice_to_revoke}));

  SECTION("§4.2 scopes narrowed to read_repository, then widened again") {
    sql("UPDATE personal_access_tokens SET scopes = '{read_repository}' "
        "WHERE id = 10");
    check_plain(reaches("GET", push, alice_to_revoke, 403), 403,
                "You are not allowed to upload code.");
    check_ok(ask(*gh, "GET", clone, {alice_to_revoke}));
    sql("UPDATE personal_access_tokens SET scopes = '{api}' WHERE id = 10");
    check_ok(reaches("GET", push, alice_to_revoke, 200));
  }
  SECTION("§4.2 revoked, then un-revoked") {
    sql("UPDATE personal_access_tokens SET revoked = true WHERE id = 10");
    check_denied(reaches("GET", clone, alice_to_revoke, 401));
    sql("UPDATE personal_access_tokens SET revoked = false WHERE id = 10");
    check_ok(reaches("GET", clone, alice_to_revoke, 200));
  }
  SECTION("§4.2 expired, then without expiry") {
    sql("UPDATE personal_access_tokens SET expires_at = '2020-01-01' "
        "WHERE id = 10");
    check_denied(reaches("GET", clone, alice_to_revoke, 401));
    sql("UPDATE personal_access_tokens SET expires_at = NULL WHERE id = 10");
    check_ok(reaches("GET", clone, alice_to_revoke, 200));
  }
  SECTION("§4.2 deleted") {
    sql("DELETE FROM personal_access_tokens WHERE id = 10");
    check_denied(reaches("GET", clone, alice_to_revoke, 401));
    check_ok(ask(*gh, "GET", clone, {alice_api}));
  }
  SECTION("§4.2 the token's user blocked, then unblocked") {
    sql("UPDATE users SET state = 'blocked' WHERE id = 3");
    check_denied(reaches("GET", clone, bob_api, 401));
    sql("UPDATE users SET state = 'active' WHERE id = 3");
    check_ok(reaches("GET", clone, bob_api, 200));
  }
  SECTION("§4.4 authorize_upload follows a revocation too") {
    sql("UPDATE personal_access_tokens SET revoked = true WHERE id = 10");
    answer last;
    CHECK(eventually(
      [&] {
        last = ask(*gh, "POST", "/api/v4/internal/workhorse/authorize_upload",
                   {{}, {}, {{"PRIVATE-TOKEN", alice_to_revoke}}});
        return last.status == 401;
      },
      std::chrono::seconds(10)));
    CHECK(last.j == json{{"message", "401 Unauthorized"}});
  }
}

TEST_CASE("§4.2 enabled_git_access_protocol ssh: Git access over HTTP is not "
          "allowed",
          "[.integration][workhorse]") {
  auto gh = started(seed_document("ssh"));
  check_plain(ask(*gh, "GET", info_refs("acme/widgets"), {alice_api}), 403,
              "Git access over HTTP is not allowed");
  check_plain(ask(*gh, "POST", "/acme/widgets.git/git-receive-pack", {alice_api}), 403,
              "Git access over HTTP is not allowed");
  // No anonymous clone over HTTP either (http_download_allowed? is false).
  check_denied(ask(*gh, "GET", info_refs("acme/open")));
}

TEST_CASE("§4.2 GitConfigOptions carries receive.maxInputSize in bytes; "
          "§4.2 GATEHOUSE_RELATIVE_URL_ROOT moves every route",
          "[.integration][workhorse]") {
  auto gh = started(seed_document("http", 10),
                    {{"GATEHOUSE_RELATIVE_URL_ROOT", "/gitlab"},
                     {"GATEHOUSE_UPLOADS_DIR", uploads_dir()}});
  SECTION("§4.2 receive.maxInputSize=<MB*1048576>, for every command") {
    for (const auto& a :
         {ask(*gh, "GET", "/gitlab" + info_refs("acme/widgets"), {alice_api}),
          ask(*gh, "POST", "/gitlab/acme/widgets.git/git-upload-pack", {alice_api}),
          ask(*gh, "POST", "/gitlab/acme/widgets.git/git-receive-pack", {alice_api})}) {
      auto b = check_ok(a);
      CHECK(b["GitConfigOptions"] == json::array({"receive.maxInputSize=10485760"}));
    }
  }
  SECTION("§4.2 protocol http allows HTTP, anonymous clone included") {
    check_ok(ask(*gh, "GET", "/gitlab" + info_refs("acme/open")));
  }
  SECTION("§4.2 the refusals under the root") {
    check_denied(ask(*gh, "GET", "/gitlab" + info_refs("acme/widgets")));
    auto head = ask(*gh, "HEAD", "/gitlab" + info_refs("acme/widgets"));
    CHECK(head.status == 403);
    CHECK(head.body.empty());
  }
  SECTION("§4.2 the routes without the root are gone") {
    auto a = ask(*gh, "GET", info_refs("acme/widgets"), {alice_api});
    CHECK(a.status == 404);
    CHECK(media_type(a.content_type) != vendor_type);
  }
  SECTION("§4.4 §4.5 authorize_upload and geo/proxy under the root") {
    auto up = ask(*gh, "POST", "/gitlab/api/v4/internal/workhorse/authorize_upload",
                  {{}, {}, {{"PRIVATE-TOKEN", alice_api}}});
    CHECK(up.status == 200);
    CHECK(up.j == json{{"TempPath", uploads_dir() + "/uploads/tmp"}});
    auto geo = ask(*gh, "GET", "/gitlab/api/v4/geo/proxy");
    CHECK(geo.status == 200);
    CHECK(geo.j == json{{"geo_enabled", false}});
  }
}

// ---------------------------------------------------------------------------
// §4.5 geo/proxy

TEST_CASE("§4.5 geo/proxy: {\"geo_enabled\":false} for Workhorse only",
          "[.integration][workhorse]") {
  auto& gh = shared();
  SECTION("§4.5 JWT and Gitlab-Workhorse header: 200, vendor type") {
    auto a = ask(gh, "GET", "/api/v4/geo/proxy");
    CHECK(a.status == 200);
    CHECK(media_type(a.content_type) == vendor_type);
    CHECK(a.j == json{{"geo_enabled", false}});
  }
  SECTION("§4.5 §1.3 no Gitlab-Workhorse header: 403 with the reason") {
    httplib::Headers headers{{"Gitlab-Workhorse-Api-Request", workhorse_jwt(gh)}};
    auto res = gh.client().Get("/api/v4/geo/proxy", headers);
    REQUIRE(res);
    CHECK(res->status == 403);
    CHECK(media_type(res->get_header_value("Content-Type")) == "application/json");
    CHECK(json::parse(res->body, nullptr, false)
          == json{{"message",
                   "403 Forbidden - Request should be executed via GitLab "
                   "Workhorse"}});
  }
  SECTION("§4.5 §1.1 no JWT: 403") {
    auto a = ask(gh, "GET", "/api/v4/geo/proxy", {{}, std::string{}});
    CHECK(a.status == 403);
    CHECK(media_type(a.content_type) == "application/json");
  }
  SECTION("§4.5 §1.1 a JWT whose iat is older than 90 s: 403") {
    auto stale = jwt::sign_raw(
      R"({"alg":"HS256","typ":"JWT"})",
      R"({"iss":"gitlab-workhorse","iat":)"
        + std::to_string(std::time(nullptr) - 120) + "}",
      workhorse_key(gh));
    auto a = ask(gh, "GET", "/api/v4/geo/proxy", {{}, stale});
    CHECK(a.status == 403);
    CHECK(a.j == json{{"message", "403 Forbidden"}});
  }
  SECTION("§4.5 §1.1 a JWT signed with another secret: 403") {
    auto forged = jwt::sign(jwt::caller::workhorse, std::string(32, 'x'),
                            std::time(nullptr));
    CHECK(ask(gh, "GET", "/api/v4/geo/proxy", {{}, forged}).status == 403);
  }
}

// ---------------------------------------------------------------------------
// §4.4 authorize_upload

TEST_CASE("§4.4 authorize_upload: Workhorse's JWT, then an api-scoped user "
          "token",
          "[.integration][workhorse]") {
  auto& gh = shared();
  const std::string target = "/api/v4/internal/workhorse/authorize_upload";
  const json temp_path{{"TempPath", uploads_dir() + "/uploads/tmp"}};
  auto post = [&](how h) { return ask(gh, "POST", target, h); };
  auto check_ok_upload = [&](const answer& a) {
    INFO(a.status << " " << a.content_type << " " << a.body);
    CHECK(a.status == 200);
    CHECK(media_type(a.content_type) == vendor_type);
    CHECK(a.j == temp_path);
  };
  auto check_unauthorized = [&](const answer& a) {
    INFO(a.status << " " << a.content_type << " " << a.body);
    CHECK(a.status == 401);
    CHECK(media_type(a.content_type) == "application/json");
    CHECK(a.j == json{{"message", "401 Unauthorized"}});
  };

  SECTION("§4.4 §1.3 no JWT: 403 Forbidden, even with a good token") {
    auto a = post({{}, std::string{}, {{"PRIVATE-TOKEN", alice_api}}});
    CHECK(a.status == 403);
    CHECK(a.j == json{{"message", "403 Forbidden"}});
    auto forged = jwt::sign(jwt::caller::workhorse, std::string(32, 'x'),
                            std::time(nullptr));
    auto b = post({{}, forged, {{"PRIVATE-TOKEN", alice_api}}});
    CHECK(b.status == 403);
    CHECK(b.j == json{{"message", "403 Forbidden"}});
  }
  SECTION("§4.4 §1.1 a JWT whose iat is older than 90 s: 403") {
    auto stale = jwt::sign_raw(
      R"({"alg":"HS256","typ":"JWT"})",
      R"({"iss":"gitlab-workhorse","iat":)"
        + std::to_string(std::time(nullptr) - 120) + "}",
      workhorse_key(gh));
    auto a = post({{}, stale, {{"PRIVATE-TOKEN", alice_api}}});
    CHECK(a.status == 403);
    CHECK(a.j == json{{"message", "403 Forbidden"}});
  }
  SECTION("§4.4 a token with api among other scopes") {
    check_unauthorized(post({{}, {}, {{"PRIVATE-TOKEN", alice_two_scopes}}}));
    check_ok_upload(post({{}, {}, {{"PRIVATE-TOKEN", bob_api}}}));
  }
  SECTION("§4.4 §1.3 JWT but no user: 401 Unauthorized") {
    check_unauthorized(post({}));
  }
  SECTION("§4.4 api token in the PRIVATE-TOKEN header") {
    check_ok_upload(post({{}, {}, {{"PRIVATE-TOKEN", alice_api}}}));
  }
  SECTION("§4.4 api token as the private_token parameter") {
    check_ok_upload(ask(gh, "POST", target + "?private_token=" + alice_api));
  }
  SECTION("§4.4 api token as an OAuth-style Bearer") {
    check_ok_upload(post({{}, {}, {{"Authorization", "Bearer " + alice_api}}}));
  }
  SECTION("§4.4 the private_token parameter wins over the header "
          "(GitLab's find_personal_access_token order)") {
    check_unauthorized(ask(gh, "POST", target + "?private_token=glpat-unknown-zzzz",
                           {{}, {}, {{"PRIVATE-TOKEN", alice_api}}}));
  }
  SECTION("§4.4 a read_repository-only token: 401") {
    check_unauthorized(post({{}, {}, {{"PRIVATE-TOKEN", alice_read_repo}}}));
  }
  SECTION("§4.4 unknown, revoked, expired tokens: 401") {
    check_unauthorized(post({{}, {}, {{"PRIVATE-TOKEN", "glpat-unknown-zzzzzzzz"}}}));
    check_unauthorized(post({{}, {}, {{"PRIVATE-TOKEN", alice_revoked}}}));
    check_unauthorized(post({{}, {}, {{"PRIVATE-TOKEN", alice_expired}}}));
  }
  SECTION("§4.4 a blocked user's api token: 401") {
    check_unauthorized(post({{}, {}, {{"PRIVATE-TOKEN", blocky_api}}}));
  }
}

// GitLab's find_personal_access_token falls back to parsed_oauth_token, i.e.
// Doorkeeper's access_token_methods, which GitLab configures as
// from_access_token_param, from_bearer_authorization, from_bearer_param.
// So an api-scoped personal access token in the access_token (or
// bearer_token) query parameter authenticates authorize_upload.
TEST_CASE("§4.4 authorize_upload takes the token from the access_token and "
          "bearer_token parameters too",
          "[.integration][workhorse]") {
  auto& gh = shared();
  const std::string target = "/api/v4/internal/workhorse/authorize_upload";
  for (const char* param : {"access_token", "bearer_token"}) {
    INFO(param);
    auto a = ask(gh, "POST", target + "?" + param + "=" + alice_api);
    CHECK(a.status == 200);
    CHECK(media_type(a.content_type) == vendor_type);
    CHECK(a.j == json{{"TempPath", uploads_dir() + "/uploads/tmp"}});
  }
}
