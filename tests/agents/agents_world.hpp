#pragma once

// The world of the KAS suites (contract other-callers §1.1-§1.3, §2): one
// seed, one private nats-server, one `gatehouse serve` on a scratch
// database, shared by every case of the process. Cases stay independent by
// using objects no other case changes (each case that writes has agents of
// its own); see the seed below for who is who.

#include "common/base64.hpp"
#include "common/jwt.hpp"
#include "tests/integration/git_repo.hpp"
#include "tests/integration/stack.hpp"
#include "tests/support/jetstream_reader.hpp"

#include <catch2/catch.hpp>
#include <nats/nats.h>
#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

namespace gatehouse::test::agents {

using json = nlohmann::json;
using namespace std::chrono_literals;

// -- the seed ---------------------------------------------------------------------
//
// Namespaces: 100 kas-org > {101 deploy-group, 103 ci-group}; 102 other-org.
// Storages: "default" (Gitaly at a .socket address, token "secret"), "local"
// (a directory of real bare repositories, for pushes).
// Projects (all in kas-org unless noted):
//   200 agent-config   private, default branch "develop"  agents 1 prod, 6 proxy
//   201 no-branch      private, no default branch          agent 2 nobranch
//   202 public-proj    public                               —
//   203 public-closed  public, repository_access_level private
//   204 private-proj   private
//   205 internal-proj  internal
//   206 internal-own   internal                             agent 3 internal-agent
//   207 deploy         private (user_access project of agent 6)
//   208 deploy-group/app private
//   209 ci-target      private (ci_access project of agent 1)
//   210 other-org/outside private                           agent 8 another
//   211 flux           private, storage "local", real repo  agent 5 pushy
//   212 configured     private                              agents 4 configured,
//                                                           7 tables, 9 connect,
//                                                           10 usage
// Agent tokens: see the token_* constants.
// Users: 1 agentops (maintainer of kas-org), 2 dev (developer of 207),
//   3 grpdev (developer of deploy-group), 4 nobody, 5 scoped (developer of
//   207, read_api PAT), 6 reporter (reporter of 207), 7 revoked (developer
//   of 207, revoked PAT).
// Runners: 1 active, 2 inactive.

inline const std::string token_prod = "glagent-agents-prod-0123456789abcdef";
inline const std::string token_prod_revoked
  = "glagent-agents-prod-revoked-0123456789";
inline const std::string token_tracked = "glagent-agents-tracked-0123456789ab";
inline const std::string token_nobranch = "glagent-agents-nobranch-012345678";
inline const std::string token_internal = "glagent-agents-internal-012345678";
inline const std::string token_another = "glagent-agents-another-0123456789";

inline const std::string pat_dev = "glpat-agents-dev-k8s-proxy-01";
inline const std::string pat_grpdev = "glpat-agents-grpdev-k8s-proxy";
inline const std::string pat_nobody = "glpat-agents-nobody-k8s-proxy";
inline const std::string pat_scoped = "glpat-agents-scoped-read-api-0";
inline const std::string pat_reporter = "glpat-agents-reporter-k8s-prox";
inline const std::string pat_revoked = "glpat-agents-revoked-k8s-proxy";

inline const std::string runner_token = "glrt-agents-runner-active-0001";
inline const std::string runner_token_inactive
  = "glrt-agents-runner-inactive-01";

inline const std::string gitaly_address
  = "unix:/var/opt/gitlab/gitaly/gitaly.socket";
inline const std::string gitaly_token = "secret";

/// disk_path of project `id` in the seed.
inline std::string disk_path(std::int64_t id) {
  return "@hashed/ag/en/agents-project-" + std::to_string(id);
}

inline json seed_project(std::int64_t id, std::int64_t ns,
                         const std::string& path, const std::string& visibility,
                         json extra = json::object()) {
  json p = {{"id", id},
            {"namespace_id", ns},
            {"path", path},
            {"name", path},
            {"visibility", visibility},
            {"default_branch", "main"},
            {"storage", "default"},
            {"disk_path", disk_path(id)},
            {"repository_access_level", "enabled"}};
  p.update(extra);
  return p;
}

inline json seed_user(std::int64_t id, const std::string& username) {
  return {{"id", id},
          {"username", username},
          {"name", username},
          {"email", username + "@example.com"},
          {"state", "active"}};
}

inline json seed_pat(std::int64_t id, std::int64_t user,
                     const std::string& token, const std::string& scope,
                     bool revoked = false) {
  return {{"id", id},
          {"user_id", user},
          {"name", "kas"},
          {"token", token},
          {"scopes", json::array({scope})},
          {"expires_at", "2099-12-31"},
          {"revoked", revoked}};
}

inline json agent_tokens(
  std::initializer_list<std::tuple<int, std::string, bool>> tokens) {
  json out = json::array();
  for (const auto& [id, token, revoked] : tokens)
    out.push_back({{"id", id}, {"token", token}, {"revoked", revoked}});
  return out;
}

/// Agent 6's user_access, as KAS would have stored it through
/// agent_configuration (and as GitLab's spec sets it).
inline json proxy_configuration() {
  return {{"user_access",
           {{"access_as", {{"agent", json::object()}}},
            {"projects", json::array({{{"id", "kas-org/deploy"}}})},
            {"groups", json::array({{{"id", "kas-org/deploy-group"}}})}}}};
}

inline json seed_document(const std::string& storage_dir) {
  json doc;
  doc["storages"] = json::array(
    {{{"name", "default"},
      {"gitaly_address", gitaly_address},
      {"gitaly_token", gitaly_token}},
     {{"name", "local"},
      {"gitaly_address", "unix:" + storage_dir + "/gitaly.socket"},
      {"gitaly_token", ""},
      {"path", storage_dir}}});
  doc["namespaces"] = json::array(
    {{{"id", 100}, {"path", "kas-org"}, {"name", "KAS org"}},
     {{"id", 101},
      {"path", "deploy-group"},
      {"name", "Deploy group"},
      {"parent_id", 100}},
     {{"id", 102}, {"path", "other-org"}, {"name", "Other org"}},
     {{"id", 103}, {"path", "ci-group"}, {"name", "CI group"}, {"parent_id", 100}}});
  doc["projects"] = json::array({
    seed_project(200, 100, "agent-config", "private",
                 {{"default_branch", "develop"}}),
    seed_project(201, 100, "no-branch", "private",
                 {{"default_branch", nullptr}}),
    seed_project(202, 100, "public-proj", "public"),
    seed_project(203, 100, "public-closed", "public",
                 {{"repository_access_level", "private"}}),
    seed_project(204, 100, "private-proj", "private"),
    seed_project(205, 100, "internal-proj", "internal"),
    seed_project(206, 100, "internal-own", "internal"),
    seed_project(207, 100, "deploy", "private"),
    seed_project(208, 101, "app", "private"),
    seed_project(209, 100, "ci-target", "private"),
    seed_project(210, 102, "outside", "private"),
    seed_project(211, 100, "flux", "private", {{"storage", "local"}}),
    seed_project(212, 100, "configured", "private"),
  });
  doc["users"] = json::array({seed_user(1, "agentops"), seed_user(2, "dev"),
                              seed_user(3, "grpdev"), seed_user(4, "nobody"),
                              seed_user(5, "scoped"), seed_user(6, "reporter"),
                              seed_user(7, "revoked")});
  doc["members"] = json::array({
    {{"user_id", 1}, {"namespace_id", 100}, {"access_level", 40}},
    {{"user_id", 2}, {"project_id", 207}, {"access_level", 30}},
    {{"user_id", 3}, {"namespace_id", 101}, {"access_level", 30}},
    {{"user_id", 5}, {"project_id", 207}, {"access_level", 30}},
    {{"user_id", 6}, {"project_id", 207}, {"access_level", 20}},
    {{"user_id", 7}, {"project_id", 207}, {"access_level", 30}},
  });
  doc["personal_access_tokens"] = json::array({
    seed_pat(1, 2, pat_dev, "k8s_proxy"),
    seed_pat(2, 3, pat_grpdev, "k8s_proxy"),
    seed_pat(3, 4, pat_nobody, "k8s_proxy"),
    seed_pat(4, 5, pat_scoped, "read_api"),
    seed_pat(5, 6, pat_reporter, "k8s_proxy"),
    seed_pat(6, 7, pat_revoked, "k8s_proxy", true),
  });
  json access_as_agent = {{"access_as", {{"agent", json::object()}}}};
  doc["cluster_agents"] = json::array({
    {{"id", 1},
     {"project_id", 200},
     {"name", "prod"},
     {"tokens", agent_tokens({{1, token_prod, false},
                              {2, token_prod_revoked, true},
                              {3, token_tracked, false}})},
     // A CI-access grant: it must not widen what project_info shows.
     {"authorizations",
      {{"ci_access",
        {{"projects",
          json::array({{{"project_id", 209},
                        {"config", {{"default_namespace", "prod"}}}}})}}}}}},
    {{"id", 2},
     {"project_id", 201},
     {"name", "nobranch"},
     {"tokens", agent_tokens({{4, token_nobranch, false}})}},
    {{"id", 3},
     {"project_id", 206},
     {"name", "internal-agent"},
     {"tokens", agent_tokens({{5, token_internal, false}})}},
    {{"id", 4}, {"project_id", 212}, {"name", "configured"}},
    {{"id", 5}, {"project_id", 211}, {"name", "pushy"}},
    {{"id", 6},
     {"project_id", 200},
     {"name", "proxy"},
     {"configuration", proxy_configuration()},
     {"authorizations",
      {{"user_access",
        {{"projects",
          json::array({{{"project_id", 207}, {"config", access_as_agent}}})},
         {"groups", json::array({{{"namespace_id", 101},
                                  {"config", access_as_agent}}})}}}}}},
    {{"id", 7}, {"project_id", 212}, {"name", "tables"}},
    {{"id", 8},
     {"project_id", 210},
     {"name", "another"},
     {"tokens", agent_tokens({{6, token_another, false}})}},
    {{"id", 9}, {"project_id", 212}, {"name", "connect"}},
    {{"id", 10}, {"project_id", 212}, {"name", "usage"}},
  });
  doc["runners"] = json::array(
    {{{"id", 1}, {"token", runner_token}, {"description", "kas runner"}, {"active", true}},
     {{"id", 2},
      {"token", runner_token_inactive},
      {"description", "paused"},
      {"active", false}}});
  return doc;
}

// -- the served world ---------------------------------------------------------------

/// A work repository cloned from a bare one, for commits on any branch
/// and in subdirectories.
struct work_clone {
  std::string dir = make_temp_dir("work-clone");

  explicit work_clone(const std::string& bare) {
    git({"clone", "--quiet", bare, dir});
  }

  std::string commit(const std::string& file, const std::string& content,
                     const std::string& message) {
    auto full = std::filesystem::path(dir) / file;
    std::filesystem::create_directories(full.parent_path());
    write_file(full.string(), content, 0644);
    git({"-C", dir, "add", "--", file});
    git({"-C", dir, "commit", "--quiet", "-m", message});
    return head();
  }

  std::string head() const {
    return git({"-C", dir, "rev-parse", "HEAD"});
  }

  void checkout(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"-C", dir, "checkout", "--quiet"};
    argv.insert(argv.end(), args.begin(), args.end());
    git(argv);
  }

  /// Pushes into the bare repository (it has no hooks: this only moves
  /// objects and refs; tests call post_receive themselves).
  void push(const std::string& refspec) {
    git({"-C", dir, "push", "--quiet", "origin", refspec});
  }
};

/// A private nats-server, the "local" storage with project 211's bare
/// repository (one commit on main with the agent's configuration file),
/// and a Gatehouse seeded and started on them.
struct world {
  std::string storage_dir = make_temp_dir("agents-storage");
  bare_repository flux{storage_dir, disk_path(211)};
  private_nats nats;
  std::unique_ptr<stack> gh;
  std::string kas_key;

  world() {
    work_clone work{flux.path()};
    git({"-C", work.dir, "symbolic-ref", "HEAD", "refs/heads/main"});
    work.commit(".gitlab/agents/pushy/config.yaml", "gitops: {}\n",
                "the agent's first configuration");
    work.push("main:refs/heads/main");
    nats.start();
    gh = std::make_unique<stack>(nats.url());
    gh->seed(seed_document(storage_dir));
    gh->start();
    auto key = base64_decode(read_file(gh->secrets().kas));
    REQUIRE(key);
    kas_key = *key;
  }
};

inline world& shared() {
  static std::unique_ptr<world> w = std::make_unique<world>();
  return *w;
}

// -- KAS over HTTP ------------------------------------------------------------------

/// A KAS JWT as KAS signs it (iss gitlab-kas, aud ["gitlab"], 30 s).
inline std::string kas_jwt() {
  return jwt::sign(jwt::caller::kas, shared().kas_key, std::time(nullptr));
}

/// A KAS-secret token with the given claims (iat/nbf/exp added unless
/// present in `claims`).
inline std::string kas_jwt_with(json claims,
                                const std::string* key = nullptr) {
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  if (!claims.contains("iat"))
    claims["iat"] = now;
  if (!claims.contains("nbf"))
    claims["nbf"] = now - 5;
  if (!claims.contains("exp"))
    claims["exp"] = now + 30;
  return jwt::sign_raw(R"({"alg":"HS256","typ":"JWT"})", claims.dump(),
                       key ? *key : shared().kas_key);
}

/// The headers of a KAS call: the KAS JWT (unless `jwt` says otherwise:
/// nullopt leaves the header out) plus `extra`.
inline httplib::Headers kas_headers(const httplib::Headers& extra = {},
                                    std::optional<std::string> jwt = kas_jwt()) {
  httplib::Headers h = extra;
  if (jwt)
    h.emplace("Gitlab-Kas-Api-Request", *jwt);
  return h;
}

inline reply kas_get(const std::string& target,
                     const httplib::Headers& extra = {},
                     std::optional<std::string> jwt = kas_jwt()) {
  auto cli = shared().gh->client();
  return make_reply(cli.Get(target.c_str(), kas_headers(extra, jwt)));
}

inline reply kas_post(const std::string& target, const json& body,
                      const httplib::Headers& extra = {},
                      std::optional<std::string> jwt = kas_jwt()) {
  auto cli = shared().gh->client();
  return make_reply(cli.Post(target.c_str(), kas_headers(extra, jwt),
                             body.dump(), "application/json"));
}

/// The agent-token header current KAS sends.
inline httplib::Headers agent_header(const std::string& token) {
  return {{"Gitlab-Agent-Api-Request", token}};
}

inline const std::string unauthorized_body = R"({"message":"401 Unauthorized"})";
inline const std::string kas_invalid_body
  = R"({"message":"KAS JWT authentication invalid"})";
inline const std::string not_found_body = R"({"message":"404 Not Found"})";

/// 204 with an empty body (Rack drops it) and no JSON content type.
inline void check_no_content(const reply& r) {
  INFO(r.status << " " << r.body);
  CHECK(r.status == 204);
  CHECK(r.body.empty());
}

/// A JSON answer: status, Content-Type and exact body.
inline void check_json(const reply& r, int status, const json& body) {
  INFO(r.status << " " << r.content_type << " " << r.body);
  CHECK(r.status == status);
  CHECK(r.content_type.rfind("application/json", 0) == 0);
  CHECK(r.j == body);
}

// -- PostgreSQL -----------------------------------------------------------------------

inline pqxx::result query(const std::string& sql) {
  pqxx::connection conn{shared().gh->database_url()};
  pqxx::nontransaction tx{conn};
  return tx.exec(sql);
}

/// The first column of every row, as text (NULL as "<null>").
inline std::vector<std::string> column(const std::string& sql) {
  std::vector<std::string> out;
  for (const auto& row : query(sql))
    out.push_back(row[0].is_null() ? "<null>" : row[0].as<std::string>());
  return out;
}

inline std::optional<std::string> value(const std::string& sql) {
  auto rows = query(sql);
  if (rows.empty() || rows[0][0].is_null())
    return std::nullopt;
  return rows[0][0].as<std::string>();
}

inline std::int64_t unpublished() {
  auto v = value("SELECT count(*) FROM gatehouse_state.outbox WHERE "
                 "published_at IS NULL");
  return v ? std::stoll(*v) : 0;
}

// -- JetStream ------------------------------------------------------------------------

/// The world's nats-server, read as a downstream consumer would.
class js_reader : public jetstream_reader {
public:
  js_reader() : jetstream_reader(shared().nats.url(), "agents_test_") {}
};

} // namespace gatehouse::test::agents
