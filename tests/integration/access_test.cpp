// End-to-end conformance of the access-control endpoints (contract
// shell-gitaly §1.2, §1.5, §2.1–§2.8, §2.10, §2.13, §3, §4): the real
// `gatehouse serve` against PostgreSQL and NATS, seeded through the CLI, and
// real git repositories for the per-ref checks. Every answer is compared
// with GitLab's status, fields and messages.

#include "common/base64.hpp"
#include "common/jwt.hpp"
#include "tests/integration/git_repo.hpp"
#include "tests/integration/stack.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <cctype>
#include <chrono>
#include <ctime>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>

using namespace gatehouse;
using namespace gatehouse::test;
using json = nlohmann::json;

namespace {

// -- keys
// ----------------------------------------------------------------------

// Public keys made with ssh-keygen for these tests (no private part kept).
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
  "AAAAC3NzaC1lZDI1NTE5AAAAIDYCySqMn2iyYtkxznN1XUam9v5A+EIeZjLCHjKvA/CW "
  "k8@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIBfd4MzFc5x4z0aT4IkZshFr4guqTPYKmVl/YIHktv+4 "
  "k9@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIIdRiJQ/AHh685IB7W0XxHNWeAOmd5jjJ/+MrcrdHSYc "
  "k10@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIBw0E3WanV2pp6Jw9x5IGOaN/uIRKbaU8oIWYDOWYFUI "
  "k11@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIJtWPNkCbiVKhIyeZBpRK78NCYFbFqb71oA6xO1h6SAP "
  "k12@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIO/u56MpRlx8TyGFRCcTaT5VpzLU4XmhE98nfqbOviBM "
  "k13@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIHLOFFWCEa+DW3R7SN32IB5+RVQKn3OgHe2cEpsVw6kw "
  "k14@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIMWe5w7R+ddArBtBfMrRU+boXlDL/RNzqz+hTc3wyggl "
  "k15@test",
  "ssh-ed25519 "
  "AAAAC3NzaC1lZDI1NTE5AAAAIEASiHO1IBa6S72fPwHfvCjVsxmmCKvRle+cl3tOi51a "
  "k16@test",
};
// Its blob needs base64 padding (104 bytes), unlike ed25519's (51 bytes).
const char* const ecdsa_key
  = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBB"
    "BOz1MM0IZCIJeiGRChWy9HjW5Nt97BVFfcfK+cdI/6lcTd9A9Q08Jz4Wo/XNNj26KQocO2UEk"
    "E4+5WXt4Ao4OY= e1@test";

/// The base64 blob of a public key line.
std::string blob_of(const std::string& line) {
  auto start = line.find(' ') + 1;
  return line.substr(start, line.find(' ', start) - start);
}

// -- messages (GitLab's, byte for byte)
// --------------------------------------------

const std::string msg_not_found
  = "The project you were looking for could not be found or you don't have "
    "permission to view it.";
const std::string msg_download
  = "You are not allowed to download code from this project.";
const std::string msg_push
  = "You are not allowed to push code to this project.";
const std::string msg_blocked = "Your account has been blocked.";
const std::string msg_key_expired = "Your SSH key has expired.";
const std::string msg_expiring
  = "INFO: Your SSH key is expiring soon. Please generate a new key.";
const std::string msg_archived = "You can't push code to an archived project.";
const std::string msg_deploy_key_push
  = "This deploy key does not have write access to this project.";
const std::string msg_command
  = "The command you're trying to execute is not allowed.";
const std::string msg_force_push
  = "You are not allowed to force push code to a protected branch on this "
    "project.";
const std::string msg_push_protected
  = "You are not allowed to push code to protected branches on this project.";
const std::string msg_delete_default
  = "The default branch of a project cannot be deleted.";
const std::string msg_delete_protected
  = "You are not allowed to delete protected branches from this project. "
    "Only a project maintainer or owner can delete a protected branch.";
const std::string msg_delete_protected_web
  = "You can only delete protected branches using the web interface.";
const std::string msg_protected_tag
  = "You are not allowed to create this tag as it is protected.";
const std::string msg_rate_limited
  = "This endpoint has been requested too many times. Try again later.";

const std::string zeros(40, '0');

// -- time
// ------------------------------------------------------------------------

std::int64_t now_seconds() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

std::string utc_date(std::int64_t days) {
  std::time_t t = static_cast<std::time_t>(days) * 86400;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

std::string utc_time(std::int64_t seconds) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::int64_t today() {
  return now_seconds() / 86400;
}

// -- the seed
// ----------------------------------------------------------------------

// Users: 1 root (admin), 2 alice (developer of acme/widgets), 3 bob
// (reporter), 4 gina (guest), 5 nora (no membership), 6 blocky (blocked
// developer), 7 mo (maintainer of group acme), 8 tess (developer, 2FA on).
// Keys 1..8 belong to the user of the same id; 9 alice expired, 10 alice
// expiring in 3 days, 11 alice signing-only, 12 alice ECDSA, 13 bob
// auth-only. Deploy keys (created by mo): 100 read-only, 101 can push.
const std::string widgets_disk_path = "@hashed/6b/86/widgets";

json user(int id, const std::string& username, const std::string& name,
          const std::string& state = "active", bool two_factor = false,
          bool admin = false) {
  return {{"id", id},
          {"username", username},
          {"name", name},
          {"email", username + "@example.com"},
          {"public_email", ""},
          {"state", state},
          {"admin", admin},
          {"external", false},
          {"can_create_project", true},
          {"two_factor_enabled", two_factor}};
}

json key(int id, int user_id, const std::string& line,
         const std::string& usage = "auth_and_signing",
         json expires_at = nullptr) {
  return {{"id", id},
          {"user_id", user_id},
          {"title", "key " + std::to_string(id)},
          {"key", line},
          {"usage_type", usage},
          {"expires_at", expires_at}};
}

json project(int id, int namespace_id, const std::string& path,
             const std::string& disk_path,
             const std::string& storage = "default") {
  return {{"id", id},
          {"namespace_id", namespace_id},
          {"path", path},
          {"name", path},
          {"description", ""},
          {"visibility", "private"},
          {"archived", false},
          {"default_branch", "main"},
          {"storage", storage},
          {"disk_path", disk_path},
          {"repository_access_level", "enabled"},
          {"merge_requests_enabled", true},
          {"lfs_enabled", true},
          {"repository_exists", true},
          {"redirects", json::array()}};
}

json base_seed(int operation_limit = 0) {
  json doc;
  doc["settings"] = {{"external_url", "https://gitlab.example.com:8443"},
                     {"ssh_clone_url_root", "git@gitlab.example.com:"},
                     {"enabled_git_access_protocol", "all"},
                     {"receive_max_input_size_mb", 1},
                     {"gitlab_version", "18.6.0"},
                     {"gitlab_shell_operation_limit", operation_limit}};
  doc["storages"]
    = json::array({{{"name", "default"},
                    {"gitaly_address", "tcp://gitaly.internal:8075"},
                    {"gitaly_token", "gitaly-token"}}});
  doc["users"] = json::array(
    {user(1, "root", "Administrator", "active", false, true),
     user(2, "alice", "Alice Developer"), user(3, "bob", "Bob Reporter"),
     user(4, "gina", "Gina Guest"), user(5, "nora", "Nora Outsider"),
     user(6, "blocky", "Blocked Developer", "blocked"),
     user(7, "mo", "Mo Maintainer"),
     user(8, "tess", "Tess TwoFactor", "active", true)});
  json keys = json::array();
  for (int id = 1; id <= 8; ++id)
    keys.push_back(key(id, id, ed25519[id - 1]));
  keys.push_back(
    key(9, 2, ed25519[8], "auth_and_signing", "2020-01-01T00:00:00Z"));
  keys.push_back(key(10, 2, ed25519[9], "auth_and_signing",
                     utc_time(now_seconds() + 3 * 86400)));
  keys.push_back(key(11, 2, ed25519[10], "signing"));
  keys.push_back(key(12, 2, ecdsa_key, "auth_and_signing"));
  keys.push_back(key(13, 3, ed25519[11], "auth"));
  doc["keys"] = keys;
  doc["deploy_keys"] = json::array(
    {{{"id", 100},
      {"user_id", 7},
      {"title", "ci read-only"},
      {"key", ed25519[12]},
      {"expires_at", nullptr},
      {"projects", json::array({{{"project_id", 10}, {"can_push", false}}})}},
     {{"id", 101},
      {"user_id", 7},
      {"title", "ci push"},
      {"key", ed25519[13]},
      {"expires_at", nullptr},
      {"projects", json::array({{{"project_id", 10}, {"can_push", true}}})}}});
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
  auto archive = project(11, 5, "archive", "@hashed/d4/73/archive");
  archive["archived"] = true;
  auto nolfs = project(12, 5, "nolfs", "@hashed/4e/07/nolfs");
  nolfs["lfs_enabled"] = false;
  doc["projects"] = json::array(
    {widgets, archive, nolfs, project(13, 6, "api", "@hashed/6b/51/api")});
  doc["members"] = json::array(
    {{{"user_id", 2}, {"project_id", 10}, {"access_level", 30}},
     {{"user_id", 3}, {"project_id", 10}, {"access_level", 20}},
     {{"user_id", 4}, {"project_id", 10}, {"access_level", 10}},
     {{"user_id", 6}, {"project_id", 10}, {"access_level", 30}},
     {{"user_id", 8}, {"project_id", 10}, {"access_level", 30}},
     {{"user_id", 7}, {"namespace_id", 5}, {"access_level", 40}}});
  doc["protected_branches"] = json::array({{{"id", 1},
                                            {"project_id", 10},
                                            {"name", "main"},
                                            {"push_access_level", 40},
                                            {"merge_access_level", 40},
                                            {"allow_force_push", false}}});
  doc["protected_tags"] = json::array({{{"id", 1},
                                        {"project_id", 10},
                                        {"name", "v*"},
                                        {"create_access_level", 40}}});
  return doc;
}

// -- HTTP
// --------------------------------------------------------------------------

/// Percent-encodes everything but unreserved characters, as Go's
/// url.Values.Encode does for `+`, `/` and `=`.
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

/// A caller holding a Shell token, as GitLab Shell and Gitaly are.
struct shell_caller {
  const stack& gh;
  std::string token = gh.shell_token();

  reply post(const std::string& path, const json& body) const {
    return post_raw(path, body.dump(), "application/json");
  }

  reply post_raw(const std::string& path, const std::string& body,
                 const char* content_type) const {
    auto cli = gh.client();
    return make_reply(cli.Post(
      path.c_str(), {{"Gitlab-Shell-Api-Request", token}}, body, content_type));
  }

  reply get(const std::string& path) const {
    auto cli = gh.client();
    return make_reply(cli.Get(path.c_str(),
                              {{"Gitlab-Shell-Api-Request", token},
                               {"Content-Type", "application/json"}}));
  }

  reply allowed(const json& body) const {
    return post("/api/v4/internal/allowed", body);
  }
};

/// /allowed as GitLab Shell sends it: key_id a string, changes `_any`.
json shell_request(const std::string& action, const std::string& project,
                   int key_id) {
  return {{"action", action},
          {"project", project},
          {"changes", "_any"},
          {"protocol", "ssh"},
          {"key_id", std::to_string(key_id)},
          {"check_ip", "127.0.0.1"}};
}

json shell_pull(const std::string& project, int key_id) {
  return shell_request("git-upload-pack", project, key_id);
}

json shell_push(const std::string& project, int key_id) {
  return shell_request("git-receive-pack", project, key_id);
}

/// /allowed as Gitaly's pre-receive hook sends it: gl_repository, the actor
/// as a string (`key_id` or `user_id`), real changes, `env` as JSON text.
json gitaly_request(std::int64_t project_id, const std::string& repo_path,
                    const std::string& relative_path,
                    const std::string& changes, const std::string& actor_field,
                    std::int64_t actor_id, const json& env = json::object()) {
  return {{"action", "git-receive-pack"},
          {"gl_repository", "project-" + std::to_string(project_id)},
          {"project", repo_path},
          {"relative_path", relative_path},
          {"changes", changes},
          {"protocol", "ssh"},
          {actor_field, std::to_string(actor_id)},
          {"env", env.dump()}};
}

/// Gitaly's quarantine environment for objects/<dir>.
json quarantine_env(const std::string& dir) {
  return {
    {"GIT_OBJECT_DIRECTORY_RELATIVE", "objects/" + dir},
    {"GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE", json::array({"objects"})}};
}

void check_denied(const std::string& what, const reply& r, int status,
                  const std::string& message) {
  INFO(what << " -> " << r.status << " " << r.body);
  CHECK(r.status == status);
  CHECK(r.content_type == "application/json");
  CHECK(r.j == json{{"status", false}, {"message", message}});
}

void check_allowed(const std::string& what, const reply& r) {
  INFO(what << " -> " << r.status << " " << r.body);
  CHECK(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(r.j.is_object());
  if (r.j.is_object())
    CHECK(r.j.value("status", false) == true);
}

// -- PostgreSQL
// --------------------------------------------------------------------

std::optional<std::string> query_value(const stack& gh,
                                       const std::string& sql) {
  pqxx::connection conn{gh.database_url()};
  pqxx::nontransaction tx{conn};
  auto rows = tx.exec(sql);
  if (rows.empty() || rows[0][0].is_null())
    return std::nullopt;
  return rows[0][0].as<std::string>();
}

std::string hex_decode(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

/// Runs `gatehouse seed [--prune] doc` against the stack's database.
void reseed(const stack& gh, const json& doc, bool prune) {
  auto path = make_temp_dir("reseed") + "/seed.json";
  write_file(path, doc.dump());
  std::vector<std::string> args{"seed"};
  if (prune)
    args.push_back("--prune");
  args.push_back(path);
  std::string err;
  auto rc = run_cli(args, gh.env(), nullptr, &err);
  INFO(err);
  REQUIRE(rc == 0);
}

} // namespace

// =====================================================================================

TEST_CASE(
  "/allowed answers GitLab Shell's and Gitaly's requests as GitLab does",
  "[.integration][access]") {
  stack gh;
  gh.seed(base_seed());
  gh.start();
  shell_caller api{gh};

  // -- success body: GitLab Shell's shape
  // --------------------------------------------
  auto r = api.allowed(shell_push("acme/widgets.git", 2));
  check_allowed("developer push _any", r);
  json expected
    = {{"status", true},
       {"gl_repository", "project-10"},
       {"gl_project_path", "acme/widgets"},
       {"gl_project_id", 10},
       {"gl_root_namespace_id", 5},
       {"gl_id", "user-2"},
       {"gl_username", "alice"},
       {"gl_key_type", "key"},
       {"gl_key_id", 2},
       {"git_config_options",
        {"uploadpack.allowFilter=true", "uploadpack.allowAnySHA1InWant=true",
         "receive.maxInputSize=1048576"}},
       {"gl_console_messages", json::array()},
       {"need_audit", false}};
  for (auto& [k, v] : expected.items()) {
    INFO("field " << k << " in " << r.body);
    CHECK(r.j.contains(k));
    if (r.j.contains(k))
      CHECK(r.j[k] == v);
  }
  REQUIRE(r.j.contains("gitaly"));
  auto& repo = r.j["gitaly"]["repository"];
  CHECK(repo["storage_name"] == "default");
  CHECK(repo["relative_path"] == widgets_disk_path + ".git");
  CHECK(repo["gl_repository"] == "project-10");
  CHECK(repo["gl_project_path"] == "acme/widgets");
  CHECK(r.j["gitaly"]["address"] == "tcp://gitaly.internal:8075");
  CHECK(r.j["gitaly"]["token"] == "gitaly-token");
  for (auto& [k, v] : r.j.items()) {
    INFO("top-level key " << k << " is null in " << r.body);
    CHECK_FALSE(v.is_null());
  }

  // A leading slash and no ".git" name the same project.
  r = api.allowed(shell_pull("/acme/widgets", 3));
  check_allowed("reporter clone", r);
  CHECK(r.j["gl_username"] == "bob");
  CHECK(r.j["gl_key_id"] == 3);

  // A project in a sub-group reports its top-level namespace.
  r = api.allowed(shell_pull("acme/platform/api.git", 7));
  check_allowed("maintainer of the parent group clones a sub-group project", r);
  CHECK(r.j["gl_project_path"] == "acme/platform/api");
  CHECK(r.j["gl_project_id"] == 13);
  CHECK(r.j["gl_root_namespace_id"] == 5);

  // -- Gitaly's shape
  // ------------------------------------------------------------------
  auto commit = std::string(40, 'a');
  r = api.allowed(gitaly_request(
    10, "/var/opt/gitlab/git-data/repositories/" + widgets_disk_path + ".git",
    widgets_disk_path + ".git", zeros + " " + commit + " refs/heads/topic\n",
    "user_id", 2, quarantine_env("incoming-abc")));
  check_allowed("Gitaly pre-receive, user_id actor, new unprotected branch", r);
  CHECK(r.j["gl_repository"] == "project-10");
  CHECK(r.j["gl_id"] == "user-2");
  CHECK(r.j["gl_username"] == "alice");
  // Not a key actor: the key fields are left out, not null.
  CHECK_FALSE(r.j.contains("gl_key_type"));
  CHECK_FALSE(r.j.contains("gl_key_id"));

  r = api.allowed(
    gitaly_request(10, "/somewhere/else.git", widgets_disk_path + ".git",
                   zeros + " " + commit + " refs/heads/topic\n", "key_id", 2));
  check_allowed(
    "Gitaly pre-receive, key_id actor (gl_repository wins over project)", r);
  CHECK(r.j["gl_key_id"] == 2);

  // -- denials
  // ------------------------------------------------------------------------
  check_denied("guest clone", api.allowed(shell_pull("acme/widgets.git", 4)),
               401, msg_download);
  check_denied("non-member clone of a private project",
               api.allowed(shell_pull("acme/widgets.git", 5)), 404,
               msg_not_found);
  check_denied("reporter push", api.allowed(shell_push("acme/widgets.git", 3)),
               401, msg_push);
  check_denied("blocked user", api.allowed(shell_pull("acme/widgets.git", 6)),
               401, msg_blocked);
  check_denied("expired key", api.allowed(shell_pull("acme/widgets.git", 9)),
               401, msg_key_expired);
  check_denied("archived push", api.allowed(shell_push("acme/archive.git", 7)),
               401, msg_archived);
  check_allowed("archived pull",
                api.allowed(shell_pull("acme/archive.git", 7)));
  check_denied("read-only deploy key push",
               api.allowed(shell_push("acme/widgets.git", 100)), 401,
               msg_deploy_key_push);
  check_denied(
    "unknown command",
    api.allowed(shell_request("git-frobnicate", "acme/widgets.git", 2)), 401,
    msg_command);

  // -- deploy keys
  // --------------------------------------------------------------------
  r = api.allowed(shell_pull("acme/widgets.git", 100));
  check_allowed("read-only deploy key pull", r);
  CHECK(r.j["gl_key_type"] == "deploy_key");
  CHECK(r.j["gl_key_id"] == 100);
  // A deploy key answers with the user who created it.
  CHECK(r.j["gl_id"] == "user-7");
  CHECK(r.j["gl_username"] == "mo");
  check_allowed("write deploy key push",
                api.allowed(shell_push("acme/widgets.git", 101)));

  // -- expiring key
  // ---------------------------------------------------------------------
  r = api.allowed(shell_pull("acme/widgets.git", 10));
  check_allowed("key expiring in 3 days", r);
  CHECK(r.j["gl_console_messages"] == json::array({msg_expiring}));

  // -- encodings and authentication
  // ---------------------------------------------------------
  auto form = api.post_raw("/api/v4/internal/allowed",
                           "action=git-upload-pack&project=acme%2Fwidgets.git&"
                           "changes=_any&protocol=ssh"
                           "&key_id=2",
                           "application/x-www-form-urlencoded");
  check_allowed("form-encoded body", form);
  CHECK(form.j["gl_project_path"] == "acme/widgets");
  CHECK(form.j["gl_key_id"] == 2);
  CHECK(form.j["gitaly"]["repository"]["relative_path"]
        == widgets_disk_path + ".git");

  // Newer Gitaly adds gitaly_client_context_bin: base64 of a JSON object.
  auto with_context = [&](const std::string& decoded) {
    auto req = gitaly_request(
      10, "/repos/" + widgets_disk_path + ".git", widgets_disk_path + ".git",
      zeros + " " + commit + " refs/heads/topic\n", "key_id", 2);
    req["gitaly_client_context_bin"] = base64_encode(decoded);
    return api.allowed(req);
  };
  check_allowed("a JSON object as Gitaly client context",
                with_context(R"({"k":"v"})"));
  r = with_context("[1]");
  {
    INFO(r.body);
    CHECK(r.status == 400);
    CHECK(r.j
          == json{{"message",
                   "400 Bad request - Decoded gitaly_client_context_bin "
                   "is not a valid JSON object"}});
  }
  r = with_context("{not json");
  {
    INFO(r.body);
    CHECK(r.status == 400);
    CHECK(r.j
          == json{{"message",
                   "400 Bad request - malformed gitaly_client_context_bin"}});
  }

  // /allowed declares no parameters in Grape: an id is looked up as given,
  // and one that names no record makes the request anonymous, whatever else
  // it carries (GitAccessActor.from_params takes key_id first).
  for (json key_id :
       {json("two"), json(""), json(18446744073709551615ull), json(-3)}) {
    auto bad = shell_pull("acme/widgets.git", 2);
    bad["key_id"] = key_id;
    bad["user_id"] = 2;
    r = api.allowed(bad);
    INFO(key_id.dump() << " -> " << r.body);
    check_denied("key_id naming no key", r, 404, msg_not_found);
  }
  // Rails' identifier is the actor when neither id is given.
  {
    json by_identifier = {{"action", "git-receive-pack"},
                          {"project", "acme/widgets.git"},
                          {"changes", "_any"},
                          {"protocol", "ssh"},
                          {"identifier", "user-2"}};
    r = api.allowed(by_identifier);
    check_allowed("identifier user-2", r);
    CHECK(r.j["gl_id"] == "user-2");
    by_identifier["identifier"] = "key-2"; // alice's key: acts as alice
    r = api.allowed(by_identifier);
    check_allowed("identifier key-2", r);
    CHECK(r.j["gl_id"] == "user-2");
    CHECK_FALSE(r.j.contains("gl_key_id"));
    by_identifier["identifier"] = "user-x";
    check_denied("identifier naming nobody", api.allowed(by_identifier), 404,
                 msg_not_found);
  }

  {
    auto cli = gh.client();
    auto res
      = cli.Post("/api/v4/internal/allowed",
                 shell_pull("acme/widgets.git", 2).dump(), "application/json");
    auto anon = make_reply(res);
    CHECK(anon.status == 401);
    CHECK(anon.body == R"({"message":"401 Unauthorized"})");
  }

  // -- a push through a redirect leaves the project-moved message
  // ----------------------------
  r = api.allowed(shell_push("acme/old-widgets.git", 2));
  check_allowed("push through a former path", r);
  CHECK(r.j["gl_project_path"] == "acme/widgets");
  auto moved = query_value(
    gh,
    "SELECT message FROM gatehouse_state.project_moved_messages "
    "WHERE user_id = 2 AND project_id = 10 AND expires_at > now()");
  REQUIRE(moved);
  CHECK_THAT(*moved, Catch::StartsWith("Project '"));
  CHECK_THAT(*moved, Catch::Contains("was moved to"));
  CHECK_THAT(*moved,
             Catch::Contains("'acme/old-widgets' was moved to 'acme/widgets'"));
  CHECK_THAT(
    *moved,
    Catch::Contains(
      "git remote set-url origin git@gitlab.example.com:acme/widgets.git"));

  // -- operation limit 0 disables the limit
  // -----------------------------------------------
  for (int i = 0; i < 8; ++i) {
    INFO("call " << i);
    CHECK(api.allowed(shell_pull("acme/widgets.git", 3)).status == 200);
  }

  // -- last_used_at is written once a day
  // ----------------------------------------------------
  auto last_used = [&] {
    return query_value(gh, "SELECT last_used_at::text FROM keys WHERE id = 13");
  };
  CHECK_FALSE(last_used());
  check_allowed("auth-only key",
                api.allowed(shell_pull("acme/widgets.git", 13)));
  CHECK(eventually([&] { return last_used().has_value(); },
                   std::chrono::seconds(5)));
  auto first = last_used();
  check_allowed("auth-only key again",
                api.allowed(shell_pull("acme/widgets.git", 13)));
  // A push through a former path is answered only after the access store
  // kept its project-moved message, and the store handles the access
  // actor's messages in order: a write of last_used_at that the call above
  // might have caused is done by then.
  check_allowed("push through a former path, again",
                api.allowed(shell_push("acme/old-widgets.git", 2)));
  CHECK(last_used() == first);
}

TEST_CASE("/allowed refuses SSH when the instance allows only HTTP",
          "[.integration][access]") {
  stack gh;
  auto doc = base_seed();
  doc["settings"]["enabled_git_access_protocol"] = "http";
  gh.seed(doc);
  gh.start();
  shell_caller api{gh};
  check_denied("ssh clone with protocol http",
               api.allowed(shell_pull("acme/widgets.git", 2)), 401,
               "Git access over SSH is not allowed");
  // protocol web is always allowed.
  auto web = shell_pull("acme/widgets.git", 2);
  web["protocol"] = "web";
  check_allowed("web", api.allowed(web));
}

TEST_CASE("/allowed counts git operations per action, project and key",
          "[.integration][access]") {
  stack gh;
  gh.seed(base_seed(3));
  gh.start();
  shell_caller api{gh};
  // The served binary counts per wall-clock minute. An attempt that spans a
  // minute boundary proves nothing, so it is repeated under a scope of its
  // own (the same project spelled with a leading slash) rather than waited
  // out; two attempts in a row cannot both span one.
  bool within_one_minute = false;
  for (const char* path : {"acme/widgets.git", "/acme/widgets.git"}) {
    auto minute = now_seconds() / 60;
    std::vector<reply> replies;
    for (int i = 1; i <= 4; ++i)
      replies.push_back(api.allowed(shell_pull(path, 2)));
    if (now_seconds() / 60 != minute)
      continue;
    within_one_minute = true;
    for (int i = 0; i < 3; ++i) {
      INFO("call " << i + 1);
      check_allowed("within the limit", replies[i]);
    }
    auto& r = replies[3];
    INFO(r.body);
    CHECK(r.status == 429);
    CHECK(r.content_type == "application/json");
    CHECK(r.j == json{{"message", {{"error", msg_rate_limited}}}});
    CHECK(r.body == R"({"message":{"error":")" + msg_rate_limited + R"("}})");
    break;
  }
  REQUIRE(within_one_minute);
  // Another key, another scope.
  check_allowed("another key", api.allowed(shell_pull("acme/widgets.git", 3)));
  // Another action, another scope.
  check_allowed("another action",
                api.allowed(shell_push("acme/widgets.git", 2)));
}

TEST_CASE("/allowed follows re-seeded data without a restart",
          "[.integration][access]") {
  stack gh;
  auto doc = base_seed();
  gh.seed(doc);
  gh.start();
  shell_caller api{gh};
  check_allowed("alice before", api.allowed(shell_push("acme/widgets.git", 2)));
  check_allowed("bob before", api.allowed(shell_pull("acme/widgets.git", 3)));

  // An operator removes alice's membership: seed --prune.
  auto pruned = doc;
  json members = json::array();
  for (auto& m : doc["members"])
    if (m["user_id"] != 2)
      members.push_back(m);
  pruned["members"] = members;
  reseed(gh, pruned, true);
  reply last;
  CHECK(eventually(
    [&] {
      last = api.allowed(shell_push("acme/widgets.git", 2));
      return last.status == 404;
    },
    std::chrono::seconds(5)));
  check_denied("alice after removal", last, 404, msg_not_found);

  // An operator blocks bob: a plain seed of the changed user.
  json blocked;
  blocked["users"] = json::array({user(3, "bob", "Bob Reporter", "blocked")});
  reseed(gh, blocked, false);
  CHECK(eventually(
    [&] {
      last = api.allowed(shell_pull("acme/widgets.git", 3));
      return last.status == 401;
    },
    std::chrono::seconds(5)));
  check_denied("bob after blocking", last, 401, msg_blocked);
  // Others are untouched.
  check_allowed("tess unchanged",
                api.allowed(shell_pull("acme/widgets.git", 8)));
}

TEST_CASE("/allowed runs GitLab's per-ref checks against a real repository",
          "[.integration][access]") {
  auto storage_dir = make_temp_dir("storage");
  const std::string disk_path = "@hashed/aa/bb/repo20";
  bare_repository repo{storage_dir, disk_path};
  auto c1 = repo.commit("README.md", "one\n", "first");
  auto c2 = repo.commit("README.md", "two\n", "second");
  repo.push("main:main");
  repo.push("main:refs/heads/release/1");
  repo.push("main:refs/heads/hotfix");
  repo.push("main:refs/tags/v0.9");
  REQUIRE(repo.rev("refs/heads/main") == c2);
  // A project whose repository has no branch yet.
  const std::string empty_disk_path = "@hashed/ee/ee/empty";
  bare_repository empty_repo{storage_dir, empty_disk_path};

  // Gitaly's receive-pack leaves the pushed objects in a quarantine
  // directory until the hooks accept them.
  auto fast_forward = repo.quarantined_commit("incoming-ff", c2, c2, "third");
  auto rewritten
    = repo.quarantined_commit("incoming-rw", c2, c1, "second, rewritten");
  REQUIRE_FALSE(repo.has_object(fast_forward));
  REQUIRE_FALSE(repo.has_object(rewritten));

  auto doc = base_seed();
  doc["storages"].push_back({{"name", "local"},
                             {"gitaly_address", "unix:/tmp/gitaly.socket"},
                             {"gitaly_token", ""},
                             {"path", storage_dir}});
  doc["storages"].push_back({{"name", "remote"},
                             {"gitaly_address", "tcp://remote-gitaly:8075"},
                             {"gitaly_token", ""}});
  doc["projects"].push_back(project(20, 5, "repo", disk_path, "local"));
  doc["projects"].push_back(
    project(21, 5, "nopath", "@hashed/cc/dd/repo21", "remote"));
  doc["projects"].push_back(project(22, 5, "empty", empty_disk_path, "local"));
  doc["members"].push_back(
    {{"user_id", 2}, {"project_id", 20}, {"access_level", 30}});
  doc["members"].push_back(
    {{"user_id", 2}, {"project_id", 22}, {"access_level", 30}});
  doc["protected_branches"].push_back({{"id", 20},
                                       {"project_id", 20},
                                       {"name", "main"},
                                       {"push_access_level", 40},
                                       {"merge_access_level", 40},
                                       {"allow_force_push", false}});
  doc["protected_branches"].push_back({{"id", 21},
                                       {"project_id", 20},
                                       {"name", "release/*"},
                                       {"push_access_level", 40},
                                       {"merge_access_level", 40},
                                       {"allow_force_push", false}});
  doc["protected_branches"].push_back({{"id", 22},
                                       {"project_id", 21},
                                       {"name", "main"},
                                       {"push_access_level", 40},
                                       {"merge_access_level", 40},
                                       {"allow_force_push", false}});
  doc["protected_branches"].push_back({{"id", 23},
                                       {"project_id", 20},
                                       {"name", "hot*"},
                                       {"push_access_level", 40},
                                       {"merge_access_level", 40},
                                       {"allow_force_push", true}});
  doc["protected_branches"].push_back({{"id", 24},
                                       {"project_id", 22},
                                       {"name", "main"},
                                       {"push_access_level", 40},
                                       {"merge_access_level", 40},
                                       {"allow_force_push", false}});
  doc["protected_tags"].push_back({{"id", 20},
                                   {"project_id", 20},
                                   {"name", "v*"},
                                   {"create_access_level", 40}});
  stack gh;
  gh.seed(doc);
  gh.start();
  shell_caller api{gh};

  auto pre_receive = [&](const std::string& changes, const std::string& field,
                         std::int64_t id, const json& env = json::object()) {
    return api.allowed(gitaly_request(20, repo.path(), disk_path + ".git",
                                      changes + "\n", field, id, env));
  };
  const std::string maintainer_key = "key_id";  // mo: key 7, group maintainer
  const std::string developer_user = "user_id"; // alice: user 2, developer

  auto r = pre_receive(c2 + " " + fast_forward + " refs/heads/main",
                       maintainer_key, 7, quarantine_env("incoming-ff"));
  check_allowed("maintainer fast-forwards protected main (quarantined objects)",
                r);
  CHECK(r.j["gitaly"]["repository"]["storage_name"] == "local");
  CHECK(r.j["gitaly"]["repository"]["relative_path"] == disk_path + ".git");
  CHECK(r.j["gitaly"]["address"] == "unix:/tmp/gitaly.socket");
  // An empty Gitaly token is sent as null (GitLab's `.presence`).
  CHECK(r.j["gitaly"].contains("token"));
  CHECK(r.j["gitaly"]["token"].is_null());

  check_denied("maintainer force-pushes protected main",
               pre_receive(c2 + " " + rewritten + " refs/heads/main",
                           maintainer_key, 7, quarantine_env("incoming-rw")),
               401, msg_force_push);

  check_denied("developer pushes to protected main",
               pre_receive(c2 + " " + fast_forward + " refs/heads/main",
                           developer_user, 2, quarantine_env("incoming-ff")),
               401, msg_push_protected);

  check_allowed(
    "developer creates an unprotected branch",
    pre_receive(zeros + " " + c2 + " refs/heads/feature-x", developer_user, 2));

  check_denied(
    "maintainer deletes the default branch",
    pre_receive(c2 + " " + zeros + " refs/heads/main", maintainer_key, 7), 401,
    msg_delete_default);

  check_denied(
    "maintainer deletes a protected branch over ssh",
    pre_receive(c2 + " " + zeros + " refs/heads/release/1", maintainer_key, 7),
    401, msg_delete_protected_web);
  check_denied(
    "developer deletes a protected branch",
    pre_receive(c2 + " " + zeros + " refs/heads/release/1", developer_user, 2),
    401, msg_delete_protected);

  check_denied(
    "developer creates a protected tag",
    pre_receive(zeros + " " + c2 + " refs/tags/v1.0", developer_user, 2), 401,
    msg_protected_tag);
  check_allowed(
    "developer creates an unprotected tag",
    pre_receive(zeros + " " + c2 + " refs/tags/build-1", developer_user, 2));
  check_denied(
    "maintainer moves a protected tag",
    pre_receive(c2 + " " + c1 + " refs/tags/v0.9", maintainer_key, 7), 401,
    "Protected tags cannot be updated.");
  check_denied(
    "maintainer deletes a protected tag over ssh",
    pre_receive(c2 + " " + zeros + " refs/tags/v0.9", maintainer_key, 7), 401,
    "You can only delete protected tags using the web interface.");

  check_allowed(
    "maintainer creates a protected branch",
    pre_receive(zeros + " " + c2 + " refs/heads/release/2", maintainer_key, 7));
  check_denied(
    "developer creates a protected branch",
    pre_receive(zeros + " " + c2 + " refs/heads/release/2", developer_user, 2),
    401, "You are not allowed to create protected branches on this project.");
  check_allowed("maintainer force-pushes a branch that allows force pushes",
                pre_receive(c2 + " " + rewritten + " refs/heads/hotfix",
                            maintainer_key, 7, quarantine_env("incoming-rw")));
  // One refused change refuses the whole push.
  check_denied("two changes, the second refused",
               pre_receive(zeros + " " + c2 + " refs/heads/ok\n" + c2 + " "
                             + zeros + " refs/heads/main",
                           maintainer_key, 7),
               401, msg_delete_default);

  // An empty repository under the default (full) protection: a developer
  // may not make the initial push.
  check_denied(
    "developer's initial push to an empty repository",
    api.allowed(gitaly_request(22, empty_repo.path(), empty_disk_path + ".git",
                               zeros + " " + c2 + " refs/heads/main\n",
                               "user_id", 2)),
    401,
    "\nA default branch (e.g. master) does not yet exist for acme/empty\n"
    "Ask a project Owner or Maintainer to create a default branch:\n\n"
    "  https://gitlab.example.com:8443/acme/empty/-/project_members\n\n");
  check_allowed("maintainer's initial push to an empty repository",
                api.allowed(gitaly_request(
                  22, empty_repo.path(), empty_disk_path + ".git",
                  zeros + " " + c2 + " refs/heads/main\n", "key_id", 7)));

  // A storage without a local path cannot tell a force push.
  r = api.allowed(
    gitaly_request(21, "/remote/repo21.git", "@hashed/cc/dd/repo21.git",
                   c1 + " " + c2 + " refs/heads/main\n", "key_id", 7));
  {
    INFO(r.body);
    CHECK(r.status == 401);
    CHECK(r.j.value("status", true) == false);
    CHECK_THAT(r.j.value("message", ""), Catch::Contains("no local path"));
    CHECK_THAT(r.j.value("message", ""), Catch::Contains("orce"));
  }
}

TEST_CASE("/authorized_keys and /discover find keys and users as GitLab does",
          "[.integration][access]") {
  stack gh;
  gh.seed(base_seed());
  gh.start();
  shell_caller api{gh};

  // -- /authorized_keys
  // -------------------------------------------------------------------
  auto padded = blob_of(ecdsa_key);
  REQUIRE(padded.back() == '=');
  auto unpadded = padded;
  while (!unpadded.empty() && unpadded.back() == '=')
    unpadded.pop_back();
  for (auto& blob : {padded, unpadded}) {
    auto r
      = api.get("/api/v4/internal/authorized_keys?key=" + url_encode(blob));
    INFO(blob << " -> " << r.body);
    CHECK(r.status == 200);
    CHECK(r.content_type == "application/json");
    CHECK(r.j["id"] == 12);
    CHECK(r.j["title"] == "key 12");
    CHECK(r.j["key"]
          == "ecdsa-sha2-nistp256 " + padded
            + " Alice Developer (gitlab.example.com)");
    CHECK(r.j["usage_type"] == "auth_and_signing");
    CHECK(r.j["expires_at"].is_null());
    CHECK(r.j["created_at"].is_string());
  }
  // An auth-only ed25519 key.
  auto r = api.get("/api/v4/internal/authorized_keys?key="
                   + url_encode(blob_of(ed25519[11])));
  CHECK(r.status == 200);
  CHECK(r.j["id"] == 13);
  CHECK(r.j["key"]
        == "ssh-ed25519 " + blob_of(ed25519[11])
          + " Bob Reporter (gitlab.example.com)");
  CHECK(r.j["usage_type"] == "auth");

  for (auto& blob : {blob_of(ed25519[10]) /* signing-only */,
                     blob_of(ed25519[15]) /* unknown */,
                     blob_of(ed25519[1]).substr(0, 60) /* partial */,
                     std::string("whatever!")}) {
    auto nf
      = api.get("/api/v4/internal/authorized_keys?key=" + url_encode(blob));
    INFO(blob << " -> " << nf.body);
    CHECK(nf.status == 404);
    CHECK(nf.body == R"({"message":"404 Key Not Found"})");
  }
  r = api.get("/api/v4/internal/authorized_keys");
  CHECK(r.status == 400);

  // -- /discover
  // ---------------------------------------------------------------------------
  auto alice
    = json{{"id", 2}, {"username", "alice"}, {"name", "Alice Developer"}};
  r = api.get("/api/v4/internal/discover?key_id=2");
  CHECK(r.status == 200);
  CHECK(r.j == alice);
  r = api.get("/api/v4/internal/discover?username=alice");
  CHECK(r.j == alice);
  r = api.get("/api/v4/internal/discover?user_id=2");
  CHECK(r.j == alice);
  r = api.get("/api/v4/internal/discover?key_id=100");
  CHECK(r.j == json{{"id", 7}, {"username", "mo"}, {"name", "Mo Maintainer"}});
  for (auto query : {"username=noone", "key_id=999",
                     "key_id=11" /* signing-only */, "nothing=1"}) {
    auto none = api.get(std::string("/api/v4/internal/discover?") + query);
    INFO(query);
    CHECK(none.status == 200);
    CHECK(none.body == "null");
  }
}

TEST_CASE("/lfs_authenticate issues GitLab's answer with a verifiable token",
          "[.integration][access]") {
  stack gh;
  gh.seed(base_seed());
  gh.start();
  shell_caller api{gh};
  auto secret_hex
    = query_value(gh,
                  "SELECT encode(secret, 'hex') FROM "
                  "gatehouse_state.signing_keys WHERE name = 'lfs'");
  REQUIRE(secret_hex);
  auto secret = hex_decode(*secret_hex);
  REQUIRE_FALSE(secret.empty());

  auto check_token = [&](const std::string& token) {
    INFO("lfs_token " << token);
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (auto dot = token.find('.'); dot != std::string::npos;
         dot = token.find('.', start)) {
      parts.push_back(token.substr(start, dot - start));
      start = dot + 1;
    }
    parts.push_back(token.substr(start));
    REQUIRE(parts.size() == 3);
    auto header = base64url_decode(parts[0]);
    auto payload = base64url_decode(parts[1]);
    REQUIRE(header);
    REQUIRE(payload);
    CHECK(json::parse(*header, nullptr, false)["alg"] == "HS256");
    CHECK(json::parse(*payload, nullptr, false).is_object());
    // Re-signing the same header and payload with the stored secret must
    // reproduce the token, signature included.
    CHECK(jwt::sign_raw(*header, *payload, secret) == token);
    CHECK(jwt::sign_raw(*header, *payload, secret + "x") != token);
  };

  auto r = api.post("/api/v4/internal/lfs_authenticate",
                    {{"operation", "download"},
                     {"project", "acme/widgets.git"},
                     {"key_id", "2"}});
  INFO(r.body);
  CHECK(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(r.j["username"] == "alice");
  CHECK(r.j["expires_in"] == 7200);
  CHECK(r.j["repository_http_path"]
        == "https://gitlab.example.com:8443/acme/widgets.git");
  REQUIRE(r.j["lfs_token"].is_string());
  check_token(r.j["lfs_token"]);

  r = api.post("/api/v4/internal/lfs_authenticate",
               {{"operation", "upload"},
                {"project", "/acme/widgets.git"},
                {"user_id", 2}});
  CHECK(r.status == 200);
  CHECK(r.j["username"] == "alice");

  r = api.post("/api/v4/internal/lfs_authenticate",
               {{"operation", "download"},
                {"project", "acme/widgets.git"},
                {"key_id", "100"}});
  CHECK(r.status == 200);
  CHECK(r.j["username"] == "lfs+deploy-key-100");
  CHECK(r.j["repository_http_path"]
        == "https://gitlab.example.com:8443/acme/widgets.git");
  REQUIRE(r.j["lfs_token"].is_string());
  check_token(r.j["lfs_token"]);

  r = api.post("/api/v4/internal/lfs_authenticate",
               {{"operation", "download"},
                {"project", "acme/nolfs.git"},
                {"key_id", "7"}});
  CHECK(r.status == 404);
  CHECK(r.body == R"({"message":"404 Not Found"})");

  r = api.post("/api/v4/internal/lfs_authenticate",
               {{"operation", "download"},
                {"project", "acme/widgets.git"},
                {"key_id", "999"}});
  CHECK(r.status == 404);
}

TEST_CASE(
  "/personal_access_token, /two_factor_recovery_codes and the OTP checks",
  "[.integration][access]") {
  stack gh;
  gh.seed(base_seed());
  gh.start();
  shell_caller api{gh};
  const std::string pat = "/api/v4/internal/personal_access_token";

  // -- personal access tokens
  // -------------------------------------------------------------
  auto r = api.post(
    pat,
    {{"key_id", "2"}, {"name", "ci"}, {"scopes", {"api", "read_repository"}}});
  INFO(r.body);
  CHECK(r.status == 200);
  CHECK(r.j["success"] == true);
  REQUIRE(r.j["token"].is_string());
  auto token = r.j["token"].get<std::string>();
  CHECK_THAT(token, Catch::StartsWith("glpat-"));
  CHECK(r.j["scopes"] == json::array({"api", "read_repository"}));
  CHECK(r.j["expires_at"] == utc_date(today() + 365));
  {
    pqxx::connection conn{gh.database_url()};
    pqxx::nontransaction tx{conn};
    auto hex = hex_encode(sha256(token));
    auto b64 = base64_encode(sha256(token));
    CHECK(
      tx.exec1(
          "SELECT count(*) FROM personal_access_tokens WHERE user_id = 2 AND "
          "token_digest IN ("
          + tx.quote(hex) + ", " + tx.quote(b64) + ")")[0]
        .as<int>()
      == 1);
    CHECK(
      tx.exec1(
          "SELECT count(*) FROM personal_access_tokens t WHERE strpos(t::text, "
          + tx.quote(token) + ") > 0")[0]
        .as<int>()
      == 0);
  }

  // SQL in a string is data: stored as sent, nothing else touched (the
  // sweep of issue 9 tried every string field; this keeps it held).
  const std::string hostile = "x'); DROP TABLE personal_access_tokens; --";
  r = api.post(pat, {{"key_id", "2"}, {"name", hostile}, {"scopes", {"api"}}});
  CHECK(r.j["success"] == true);
  {
    pqxx::connection conn{gh.database_url()};
    pqxx::nontransaction tx{conn};
    CHECK(tx.exec1("SELECT count(*) FROM personal_access_tokens WHERE name = "
                   + tx.quote(hostile))[0]
            .as<int>()
          == 1);
  }
  CHECK(api.post("/api/v4/internal/pre_receive",
                 {{"gl_repository", "project-1' OR '1'='1"}})
          .status
        == 200);
  r = api.get("/api/v4/internal/discover?username="
              + url_encode("alice' OR '1'='1"));
  CHECK(r.status == 200);
  CHECK(r.body == "null");

  // The maximum lifetime itself is accepted...
  r = api.post(pat,
               {{"key_id", "2"},
                {"name", "max"},
                {"scopes", {"read_api"}},
                {"expires_at", utc_date(today() + 365)}});
  CHECK(r.j["success"] == true);
  CHECK(r.j["expires_at"] == utc_date(today() + 365));
  // ...a later date is refused with GitLab's validation message
  // (PersonalAccessToken#expires_at_before_instance_max_expiry_date: "must be
  // before <today + 365 days>").
  r = api.post(pat,
               {{"key_id", "2"},
                {"name", "late"},
                {"scopes", {"read_api"}},
                {"expires_at", utc_date(today() + 366)}});
  CHECK(r.status == 200);
  CHECK(r.j
        == json{{"success", false},
                {"message",
                 "Failed to create token: Expires at must be before "
                   + utc_date(today() + 365)}});

  r = api.post(
    pat, {{"key_id", "2"}, {"name", "bad"}, {"scopes", {"read_api", "x"}}});
  CHECK(r.j
        == json{
          {"success", false},
          {"message",
           "Invalid scope: 'x'. Valid scopes are: [\"api\", \"create_runner\", "
           "\"k8s_proxy\", \"manage_runner\", \"read_api\", \"read_registry\", "
           "\"read_repository\", \"read_user\", \"self_rotate\", "
           "\"write_registry\", \"write_repository\"]"}});
  r = api.post(pat, {{"key_id", "2"}, {"scopes", {"api"}}});
  CHECK(r.j
        == json{{"success", false}, {"message", "No token name specified"}});
  r = api.post(pat,
               {{"key_id", "100"}, {"name", "deploy"}, {"scopes", {"api"}}});
  CHECK(
    r.j
    == json{{"success", false},
            {"message",
             "Deploy keys cannot be used to create personal access tokens"}});
  r = api.post(pat, {{"user_id", 999}, {"name", "x"}, {"scopes", {"api"}}});
  CHECK(
    r.j
    == json{{"success", false}, {"message", "Could not find the given user"}});

  // -- recovery codes
  // -------------------------------------------------------------------------
  const std::string codes_path = "/api/v4/internal/two_factor_recovery_codes";
  r = api.post(codes_path, {{"key_id", "8"}});
  CHECK(r.status == 200);
  CHECK(r.j["success"] == true);
  REQUIRE(r.j["recovery_codes"].is_array());
  CHECK(r.j["recovery_codes"].size() == 10);
  std::set<std::string> codes;
  static const std::regex hex16{"^[0-9a-f]{16}$"};
  for (auto& c : r.j["recovery_codes"]) {
    auto code = c.get<std::string>();
    INFO(code);
    CHECK(std::regex_match(code, hex16));
    codes.insert(code);
  }
  CHECK(codes.size() == 10);
  {
    pqxx::connection conn{gh.database_url()};
    pqxx::nontransaction tx{conn};
    auto rows = tx.exec(
      "SELECT code_digest FROM gatehouse_state.two_factor_recovery_codes "
      "WHERE user_id = 8");
    CHECK(rows.size() == 10);
    std::set<std::string> digests;
    for (auto row : rows)
      digests.insert(row[0].as<std::string>());
    for (auto& code : codes) {
      CHECK(digests.count(hex_encode(sha256(code))) == 1);
      CHECK(digests.count(code) == 0);
    }
  }
  r = api.post(codes_path, {{"key_id", "2"}});
  CHECK(r.j
        == json{{"success", false},
                {"message",
                 "Two-factor authentication is not enabled for this user"}});
  r = api.post(codes_path, {{"key_id", "999"}});
  CHECK(
    r.j
    == json{{"success", false}, {"message", "Could not find the given key"}});
  r = api.post(codes_path, {{"key_id", "100"}});
  CHECK(r.j
        == json{{"success", false},
                {"message",
                 "Deploy keys cannot be used to retrieve recovery codes"}});

  // -- OTP checks (Community Edition)
  // ------------------------------------------------------------
  for (auto path : {"/api/v4/internal/two_factor_manual_otp_check",
                    "/api/v4/internal/two_factor_push_otp_check"}) {
    auto otp = api.post(path, {{"key_id", "2"}, {"otp_attempt", "123456"}});
    INFO(path);
    CHECK(otp.status == 200);
    CHECK(otp.content_type == "application/json");
    CHECK(otp.j
          == json{{"success", false}, {"message", "Feature is not available"}});
  }
}

TEST_CASE(
  "/shellhorse/git_audit_event validates, checks access and needs no audit",
  "[.integration][access]") {
  stack gh;
  gh.seed(base_seed());
  gh.start();
  shell_caller api{gh};
  const std::string path = "/api/v4/internal/shellhorse/git_audit_event";

  auto r = api.post(path, json::object());
  CHECK(r.status == 400);
  CHECK(r.j
        == json{{"error",
                 "action is missing, protocol is missing, gl_repository is "
                 "missing, changes is missing"}});
  r = api.post(path, {{"action", "git-upload-pack"}, {"protocol", "ssh"}});
  CHECK(r.status == 400);
  CHECK(r.j == json{{"error", "gl_repository is missing, changes is missing"}});

  json event = {{"action", "git-upload-pack"},
                {"protocol", "ssh"},
                {"gl_repository", "project-10"},
                {"username", "alice"},
                {"key_id", 2},
                {"changes", "_any"},
                {"check_ip", "127.0.0.1"},
                {"packfile_stats", {{"wants", 1}, {"haves", 0}}}};
  auto invalid = event;
  invalid["action"] = "git-upload-archive";
  r = api.post(path, invalid);
  CHECK(r.status == 400);
  CHECK(r.j
        == json{{"status", false}, {"message", "No valid action specified"}});

  r = api.post(path, event);
  INFO(r.body);
  CHECK(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(r.j
        == json{{"status", false}, {"message", "No git audit event needed"}});

  // The same access check as /allowed: a non-member is not found.
  auto outsider = event;
  outsider["key_id"] = 5;
  outsider["username"] = "nora";
  check_denied("audit event of a non-member", api.post(path, outsider), 404,
               msg_not_found);

  // Workhorse may call it with its own token when the Shell header is absent.
  std::string workhorse_token;
  REQUIRE(run_cli({"jwt", "workhorse"}, gh.env(), &workhorse_token) == 0);
  while (!workhorse_token.empty()
         && std::isspace(static_cast<unsigned char>(workhorse_token.back())))
    workhorse_token.pop_back();
  auto cli = gh.client();
  // (Workhorse also sends its version header, which GitLab requires.)
  auto res
    = cli.Post(path.c_str(),
               {{jwt::header_name(jwt::caller::workhorse), workhorse_token},
                {"Gitlab-Workhorse", "v18.6.0"}},
               event.dump(), "application/json");
  auto wh = make_reply(res);
  CHECK(wh.status == 200);
  CHECK(wh.j
        == json{{"status", false}, {"message", "No git audit event needed"}});

  // A Shell header that does not verify: 401, even with a good Workhorse
  // token beside it (the Shell header decides which check applies).
  res = cli.Post(path.c_str(),
                 {{"Gitlab-Shell-Api-Request", "not-a-token"},
                  {jwt::header_name(jwt::caller::workhorse), workhorse_token},
                  {"Gitlab-Workhorse", "v18.6.0"}},
                 event.dump(), "application/json");
  auto bad = make_reply(res);
  CHECK(bad.status == 401);
  CHECK(bad.body == R"({"message":"401 Unauthorized"})");

  // No token at all: GitLab falls back to the Workhorse check, which answers
  // 403 (require_gitlab_workhorse!).
  res = cli.Post(path.c_str(), event.dump(), "application/json");
  auto anon = make_reply(res);
  CHECK(anon.status == 403);
  CHECK(anon.body == R"({"message":"403 Forbidden"})");

  // A good Workhorse token without Workhorse's own header: GitLab names the
  // reason (require_gitlab_workhorse!).
  res = cli.Post(path.c_str(),
                 {{jwt::header_name(jwt::caller::workhorse), workhorse_token}},
                 event.dump(), "application/json");
  auto headless = make_reply(res);
  CHECK(headless.status == 403);
  CHECK(
    headless.body
    == R"({"message":"403 Forbidden - Request should be executed via GitLab Workhorse"})");
}
