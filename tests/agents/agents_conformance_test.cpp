// KAS's calls end to end (issue 12; contract other-callers §1.1-§1.3, §2.2-
// §2.4, and §15's row for GitLab's spec/requests/api/internal/
// kubernetes_spec.rb): the real `gatehouse serve` against PostgreSQL and a
// private nats-server, seeded through the CLI (agents_world.hpp). Each case
// names its contract section and call (K1-K10). Every field KAS reads is
// checked for its JSON type as well as its value. Hidden tag
// [.integration][agents].

#include "tests/agents/agents_world.hpp"

#include <catch2/catch.hpp>

#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace gatehouse::test::agents;

namespace {

const std::string agentk_info = "/api/v4/internal/agents/agentk/agent_info";
const std::string kube = "/api/v4/internal/kubernetes";
const std::string legacy_info = kube + "/agent_info";
const std::string forbidden_body = R"({"message":"403 Forbidden"})";
const std::string record_not_found_body = R"({"message":"404 Not found"})";

/// One KAS call with a body that would succeed with a good KAS JWT (an
/// agent token where the call takes one).
struct route {
  const char* method;
  std::string target;
  json body;
  httplib::Headers agent;
};

std::vector<route> every_route() {
  auto tok = agent_header(token_prod);
  return {
    {"GET", agentk_info, nullptr, tok},
    {"GET", legacy_info, nullptr, tok},
    {"GET", kube + "/project_info?id=202", nullptr, tok},
    {"GET", kube + "/verify_project_access?id=202", nullptr, tok},
    // An unknown agent: a JWT that wrongly passed would still write nothing.
    {"POST", kube + "/agent_configuration",
     {{"agent_id", 999999}, {"agent_config", json::object()}}, {}},
    {"POST", kube + "/authorize_proxy_user",
     {{"agent_id", 6},
      {"access_type", "personal_access_token"},
      {"access_key", pat_dev}},
     {}},
    // Unknown counter names only: nothing to count either way.
    {"POST", kube + "/usage_metrics",
     {{"counters", {{"jwt_probe_counter", 1}}}}, {}},
    {"POST", kube + "/agent_events",
     {{"events", {{"register_agent_at_kas", json::array()}}}}, {}},
    {"GET", "/api/v4/internal/autoflow/repository_info?id=202", nullptr, {}},
    {"GET", "/api/v4/internal/ci/agents/runner/info", nullptr,
     agent_header(runner_token)},
  };
}

reply call(const route& r, std::optional<std::string> jwt) {
  if (std::string{r.method} == "GET")
    return kas_get(r.target, r.agent, jwt);
  return kas_post(r.target, r.body, r.agent, jwt);
}

std::set<std::string> keys_of(const json& object) {
  std::set<std::string> out;
  for (const auto& item : object.items())
    out.insert(item.key());
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size()
         && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// What GitLab tells KAS about one project's repository (§2.3).
struct expected_repository {
  std::int64_t project_id;
  std::string full_path;
  std::string default_branch;
  bool features = true; // autoflow leaves them out
};

/// gitaly_info, gitaly_repository and default_branch, each checked for type
/// and value.
void check_repository(const json& j, const expected_repository& e) {
  REQUIRE(j.is_object());
  CHECK(j["project_id"].is_number_integer());
  CHECK(j["project_id"] == e.project_id);

  const auto& gi = j["gitaly_info"];
  REQUIRE(gi.is_object());
  CHECK(gi["address"].is_string());
  CHECK(gi["address"] == gitaly_address);
  CHECK(ends_with(gi.value("address", ""), ".socket"));
  CHECK(gi["token"].is_string());
  CHECK(gi["token"] == gitaly_token);
  if (e.features) {
    REQUIRE(gi.contains("features"));
    CHECK(gi["features"].is_object());
    for (const auto& f : gi["features"].items()) {
      INFO("feature " << f.key());
      CHECK(f.value().is_string());
    }
  } else {
    CHECK_FALSE(gi.contains("features"));
  }

  const auto& gr = j["gitaly_repository"];
  REQUIRE(gr.is_object());
  CHECK(gr["storage_name"].is_string());
  CHECK(gr["storage_name"] == "default");
  CHECK(gr["relative_path"].is_string());
  CHECK(gr["relative_path"] == disk_path(e.project_id) + ".git");
  CHECK(gr["gl_repository"].is_string());
  CHECK(gr["gl_repository"] == "project-" + std::to_string(e.project_id));
  CHECK(gr["gl_project_path"].is_string());
  CHECK(gr["gl_project_path"] == e.full_path);
  CHECK(gr["git_object_directory"].is_string());
  CHECK(gr["git_alternate_object_directories"].is_array());
  for (const auto& d : gr["git_alternate_object_directories"])
    CHECK(d.is_string());

  CHECK(j["default_branch"].is_string());
  CHECK(j["default_branch"] == e.default_branch);
}

void check_agent_info(const reply& r, std::int64_t agent_id,
                      const std::string& agent_name,
                      const expected_repository& e) {
  INFO(r.status << " " << r.content_type << " " << r.body);
  REQUIRE(r.status == 200);
  CHECK(r.content_type.rfind("application/json", 0) == 0);
  CHECK(keys_of(r.j)
        == std::set<std::string>{"project_id", "agent_id", "agent_name",
                                 "gitaly_info", "gitaly_repository",
                                 "default_branch"});
  CHECK(r.j["agent_id"].is_number_integer());
  CHECK(r.j["agent_id"] == agent_id);
  CHECK(r.j["agent_name"].is_string());
  CHECK(r.j["agent_name"] == agent_name);
  check_repository(r.j, e);
}

void check_project_info(const reply& r, const expected_repository& e) {
  INFO(r.status << " " << r.content_type << " " << r.body);
  REQUIRE(r.status == 200);
  CHECK(r.content_type.rfind("application/json", 0) == 0);
  CHECK(keys_of(r.j)
        == std::set<std::string>{"project_id", "gitaly_info",
                                 "gitaly_repository", "default_branch"});
  check_repository(r.j, e);
}

const expected_repository prod_repo{200, "kas-org/agent-config", "develop"};
const expected_repository public_repo{202, "kas-org/public-proj", "main"};

std::string percent(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789ABCDEF";
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

reply project_info(const std::string& id, const std::string& token) {
  return kas_get(kube + "/project_info?id=" + percent(id), agent_header(token));
}

reply verify_access(const std::string& id, const std::string& token) {
  return kas_get(kube + "/verify_project_access?id=" + percent(id),
                 agent_header(token));
}

reply proxy_user(const json& body) {
  return kas_post(kube + "/authorize_proxy_user", body);
}

json pat_request(std::int64_t agent, const std::string& pat) {
  return {{"agent_id", agent},
          {"access_type", "personal_access_token"},
          {"access_key", pat}};
}

json proxy_payload(std::int64_t user, const std::string& username) {
  return {{"agent", {{"id", 6}, {"config_project", {{"id", 200}}}}},
          {"user", {{"id", user}, {"username", username}}},
          {"access_as", {{"agent", json::object()}}}};
}

/// A Grape validation refusal: 400 {"error": text}.
void check_invalid(const reply& r, const std::string& text) {
  check_json(r, 400, {{"error", text}});
}

/// /metrics as text.
std::string metrics() {
  auto cli = shared().gh->client();
  auto res = cli.Get("/metrics");
  REQUIRE(res);
  return res->body;
}

/// The largest value of a gatehouse_kas_ sample that names `counter`
/// exactly (as metric name or label), or -1.
double kas_sample(const std::string& text, const std::string& counter) {
  std::istringstream in{text};
  double best = -1;
  std::regex name_re{"(^|[^a-z0-9_])" + counter + "([^a-z0-9_]|$)"};
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("gatehouse_kas_", 0) != 0)
      continue;
    auto space = line.find_last_of(' ');
    if (space == std::string::npos)
      continue;
    if (!std::regex_search(line.substr(0, space), name_re))
      continue;
    try {
      best = std::max(best, std::stod(line.substr(space + 1)));
    } catch (...) {
      // not a sample line
    }
  }
  return best;
}

} // namespace

// -- §1.1 the KAS JWT ---------------------------------------------------------------

TEST_CASE("§1.1 §2.2 K1-K10 every KAS call refuses a bad KAS JWT",
          "[.integration][agents]") {
  auto& w = shared();
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  std::string other_key(32, 'k');
  const json kas = {{"iss", "gitlab-kas"}, {"aud", json::array({"gitlab"})}};
  auto with = [&](json patch) {
    json c = kas;
    c.update(patch);
    return kas_jwt_with(c);
  };
  std::vector<std::pair<std::string, std::optional<std::string>>> bad = {
    {"missing header", std::nullopt},
    {"empty header", std::string{}},
    {"not a JWT", std::string{"NONEXISTENT"}},
    {"wrong secret", kas_jwt_with(kas, &other_key)},
    {"the Shell JWT", w.gh->shell_token()},
    {"wrong iss", with({{"iss", "gitlab-shell"}})},
    {"no iss", [&] {
       json c = kas;
       c.erase("iss");
       return kas_jwt_with(c);
     }()},
    {"wrong aud as a string", with({{"aud", "gitlab-kas"}})},
    {"wrong aud as an array", with({{"aud", json::array({"kas", "other"})}})},
    {"expired", with({{"exp", now - 10}, {"iat", now - 60}, {"nbf", now - 60}})},
    {"not yet valid", with({{"nbf", now + 120}})},
    {"alg none",
     [&] {
       auto unsigned_token = kas_jwt();
       // Same payload, header {"alg":"none"}, no signature.
       auto dot = unsigned_token.find('.');
       auto second = unsigned_token.find('.', dot + 1);
       return std::string{"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"}
              + unsigned_token.substr(dot, second - dot) + ".";
     }()},
  };
  for (const auto& r : every_route()) {
    for (const auto& [what, token] : bad) {
      INFO(r.method << " " << r.target << " with " << what);
      auto answer = call(r, token);
      check_json(answer, 401, json::parse(kas_invalid_body));
    }
  }
}

TEST_CASE("§1.1 K1 aud may be a string or an array containing gitlab",
          "[.integration][agents]") {
  auto tok = agent_header(token_prod);
  for (const json& aud : {json("gitlab"), json::array({"gitlab"}),
                          json::array({"other", "gitlab"})}) {
    INFO("aud " << aud.dump());
    auto jwt = kas_jwt_with({{"iss", "gitlab-kas"}, {"aud", aud}});
    auto r = kas_get(agentk_info, tok, jwt);
    CHECK(r.status == 200);
  }
  // As GitLab's spec signs it: iss and aud only, no time claims.
  auto bare = jwt::sign_raw(R"({"alg":"HS256"})",
                            R"({"iss":"gitlab-kas","aud":"gitlab"})",
                            shared().kas_key);
  CHECK(kas_get(agentk_info, tok, bare).status == 200);
}

// -- §1.2 the agent token --------------------------------------------------------------

TEST_CASE("§1.2 §2.2 K1-K4 missing, unknown and revoked agent tokens answer "
          "401",
          "[.integration][agents]") {
  for (const std::string& target :
       {agentk_info, legacy_info, kube + "/project_info?id=202",
        kube + "/verify_project_access?id=202"}) {
    INFO(target);
    {
      INFO("no agent token");
      check_json(kas_get(target), 401, json::parse(unauthorized_body));
    }
    {
      INFO("NONEXISTENT");
      check_json(kas_get(target, agent_header("NONEXISTENT")), 401,
                 json::parse(unauthorized_body));
    }
    {
      INFO("revoked");
      check_json(kas_get(target, agent_header(token_prod_revoked)), 401,
                 json::parse(unauthorized_body));
      check_json(kas_get(target, {{"Gitlab-Agentk-Api-Request",
                                   token_prod_revoked}}),
                 401, json::parse(unauthorized_body));
      check_json(kas_get(target, {{"Authorization",
                                   "Bearer " + token_prod_revoked}}),
                 401, json::parse(unauthorized_body));
    }
  }
}

TEST_CASE("§1.2 K1 the token comes from any of the three headers, in order",
          "[.integration][agents]") {
  auto agent_of = [](const httplib::Headers& h) {
    auto r = kas_get(agentk_info, h);
    INFO(r.status << " " << r.body);
    return r.status == 200 ? r.j.value("agent_id", json(-1)).get<int>()
                           : -r.status;
  };
  // Each header alone.
  CHECK(agent_of({{"Gitlab-Agentk-Api-Request", token_prod}}) == 1);
  CHECK(agent_of({{"Gitlab-Agent-Api-Request", token_prod}}) == 1);
  CHECK(agent_of({{"Authorization", "Bearer " + token_prod}}) == 1);
  // Gitlab-Agentk-Api-Request first.
  CHECK(agent_of({{"Gitlab-Agentk-Api-Request", token_nobranch},
                  {"Gitlab-Agent-Api-Request", token_prod}})
        == 2);
  CHECK(agent_of({{"Gitlab-Agentk-Api-Request", token_nobranch},
                  {"Authorization", "Bearer " + token_prod}})
        == 2);
  CHECK(agent_of({{"Gitlab-Agentk-Api-Request", "NONEXISTENT"},
                  {"Gitlab-Agent-Api-Request", token_prod}})
        == -401);
  // Then Gitlab-Agent-Api-Request, then Authorization.
  CHECK(agent_of({{"Gitlab-Agent-Api-Request", token_nobranch},
                  {"Authorization", "Bearer " + token_prod}})
        == 2);
  CHECK(agent_of({{"Gitlab-Agent-Api-Request", "NONEXISTENT"},
                  {"Authorization", "Bearer " + token_prod}})
        == -401);
  // The same on the legacy path.
  auto legacy = kas_get(legacy_info, {{"Authorization", "Bearer " + token_prod}});
  CHECK(legacy.status == 200);
  CHECK(legacy.j["agent_id"] == 1);
}

TEST_CASE("§1.2 K1 a successful token check records last_used_at",
          "[.integration][agents]") {
  const std::string sql
    = "SELECT last_used_at FROM cluster_agent_tokens WHERE id = 3";
  REQUIRE_FALSE(value(sql)); // token 3 is used by this case only
  auto r = kas_get(agentk_info, agent_header(token_tracked));
  REQUIRE(r.status == 200);
  // Written off the answer's path: wait for it, bounded.
  bool recorded = eventually([&] { return value(sql).has_value(); }, 10s);
  CHECK(recorded);
  // A refused call records nothing for the revoked token.
  kas_get(agentk_info, agent_header(token_prod_revoked));
  CHECK_FALSE(value("SELECT last_used_at FROM cluster_agent_tokens WHERE "
                    "id = 2"));
}

// -- §2.2 §2.3 K1 K2 agent_info ------------------------------------------------------------

TEST_CASE("§2.2 §2.3 K1 K2 agent_info: every field with its type",
          "[.integration][agents]") {
  for (const auto& path : {agentk_info, legacy_info}) {
    INFO(path);
    check_agent_info(kas_get(path, agent_header(token_prod)), 1, "prod",
                     prod_repo);
    // A project without a default branch: "main" (default_branch_or_main).
    check_agent_info(kas_get(path, agent_header(token_nobranch)), 2,
                     "nobranch", {201, "kas-org/no-branch", "main"});
    check_agent_info(kas_get(path, agent_header(token_internal)), 3,
                     "internal-agent", {206, "kas-org/internal-own", "main"});
  }
}

// -- §2.2 §2.3 K3 K4 project_info and verify_project_access --------------------------------

TEST_CASE("§2.3 K3 project_info answers anonymously readable projects and the "
          "agent's own",
          "[.integration][agents]") {
  SECTION("public, by id and by full path (any case)") {
    for (const std::string id :
         {"202", "kas-org/public-proj", "KAS-ORG/Public-Proj"}) {
      INFO(id);
      check_project_info(project_info(id, token_prod), public_repo);
    }
  }
  SECTION("the agent's own private project") {
    for (const std::string id : {"200", "kas-org/agent-config"}) {
      INFO(id);
      check_project_info(project_info(id, token_prod), prod_repo);
    }
  }
  SECTION("the agent's own internal project") {
    check_project_info(project_info("206", token_internal),
                       {206, "kas-org/internal-own", "main"});
    check_project_info(project_info("kas-org/internal-own", token_internal),
                       {206, "kas-org/internal-own", "main"});
  }
  SECTION("404 otherwise, whatever the configuration grants") {
    const json nf = json::parse(not_found_body);
    for (const std::string id :
         {"203", "kas-org/public-closed", // public, repository private
          "204", "kas-org/private-proj",  // private
          "205", "kas-org/internal-proj", // internal
          "209", "kas-org/ci-target",     // ci_access-authorized, private
          "206",                          // another agent's internal project
          "999999", "kas-org/nope", "nope", "0", "-1"}) {
      INFO(id);
      check_json(project_info(id, token_prod), 404, nf);
    }
    // Agent 3's own project is not agent 1's, nor 1's agent 3's.
    check_json(project_info("200", token_internal), 404, nf);
    check_json(project_info("205", token_internal), 404, nf);
    // No id at all: nothing is found.
    check_json(kas_get(kube + "/project_info", agent_header(token_prod)), 404,
               nf);
  }
}

TEST_CASE("§2.3 K4 verify_project_access: 204 where project_info answers, "
          "404 elsewhere",
          "[.integration][agents]") {
  for (const std::string id : {"202", "kas-org/public-proj", "200",
                               "kas-org/agent-config"}) {
    INFO(id);
    check_no_content(verify_access(id, token_prod));
  }
  check_no_content(verify_access("206", token_internal));
  check_no_content(verify_access("kas-org/internal-own", token_internal));
  const json nf = json::parse(not_found_body);
  for (const std::string id : {"203", "kas-org/public-closed", "204",
                               "kas-org/private-proj", "205", "209", "206",
                               "999999", "kas-org/nope"}) {
    INFO(id);
    check_json(verify_access(id, token_prod), 404, nf);
  }
  check_json(verify_access("205", token_internal), 404, nf);
}

// -- §2.3 K5 agent_configuration ---------------------------------------------------------

TEST_CASE("§2.3 K5 agent_configuration stores the configuration and the four "
          "authorization lists",
          "[.integration][agents]") {
  // Agent 7 (project kas-org/configured) is this case's own.
  const json config = {
    {"ci_access",
     {{"groups",
       json::array({{{"id", "kas-org/ci-group"},
                     {"default_namespace", "production"}}})},
      {"projects",
       json::array({{{"id", "kas-org/ci-target"},
                     {"default_namespace", "staging"}},
                    // Outside the agent's top-level group: not authorized.
                    {{"id", "other-org/outside"}}})}}},
    {"user_access",
     {{"access_as", {{"agent", json::object()}}},
      {"groups", json::array({{{"id", "kas-org/deploy-group"}}})},
      {"projects", json::array({{{"id", "kas-org/deploy"}}})}}}};
  auto r = kas_post(kube + "/agent_configuration",
                    {{"agent_id", 7}, {"agent_config", config}});
  check_no_content(r);

  auto ids = [](const std::string& table, const std::string& target) {
    return column("SELECT " + target + " FROM " + table
                  + " WHERE agent_id = 7 ORDER BY " + target);
  };
  CHECK(ids("agent_project_authorizations", "project_id")
        == std::vector<std::string>{"209"});
  CHECK(ids("agent_group_authorizations", "group_id")
        == std::vector<std::string>{"103"});
  CHECK(ids("agent_user_access_project_authorizations", "project_id")
        == std::vector<std::string>{"207"});
  CHECK(ids("agent_user_access_group_authorizations", "group_id")
        == std::vector<std::string>{"101"});
  CHECK(value("SELECT config->>'default_namespace' FROM "
              "agent_project_authorizations WHERE agent_id = 7")
        == std::optional<std::string>{"staging"});
  CHECK(value("SELECT config->>'default_namespace' FROM "
              "agent_group_authorizations WHERE agent_id = 7")
        == std::optional<std::string>{"production"});
  CHECK(value("SELECT config->'access_as' = '{\"agent\":{}}'::jsonb FROM "
              "agent_user_access_project_authorizations WHERE agent_id = 7")
        == std::optional<std::string>{"t"});
  CHECK(value("SELECT config = '" + config.dump()
              + "'::jsonb FROM cluster_agent_configs WHERE agent_id = 7")
        == std::optional<std::string>{"t"});

  // A new configuration replaces the lists exactly.
  const json smaller = {
    {"ci_access", {{"projects", json::array({{{"id", "kas-org/public-proj"}}})}}}};
  check_no_content(kas_post(kube + "/agent_configuration",
                            {{"agent_id", 7}, {"agent_config", smaller}}));
  CHECK(ids("agent_project_authorizations", "project_id")
        == std::vector<std::string>{"202"});
  CHECK(ids("agent_group_authorizations", "group_id").empty());
  CHECK(ids("agent_user_access_project_authorizations", "project_id").empty());
  CHECK(ids("agent_user_access_group_authorizations", "group_id").empty());
  CHECK(value("SELECT config = '" + smaller.dump()
              + "'::jsonb FROM cluster_agent_configs WHERE agent_id = 7")
        == std::optional<std::string>{"t"});
}

TEST_CASE("§1.3 §2.2 K5 agent_configuration: 404 for an unknown agent, 400 "
          "for missing parameters",
          "[.integration][agents]") {
  const std::string path = kube + "/agent_configuration";
  const json config = {{"gitops", json::object()}};
  check_json(kas_post(path, {{"agent_id", -1}, {"agent_config", config}}), 404,
             json::parse(record_not_found_body));
  check_json(kas_post(path, {{"agent_id", 999999}, {"agent_config", config}}),
             404, json::parse(record_not_found_body));
  check_invalid(kas_post(path, {{"agent_config", config}}),
                "agent_id is missing");
  check_invalid(kas_post(path, {{"agent_id", 7}}), "agent_config is missing");
  check_invalid(kas_post(path, json::object()),
                "agent_id is missing, agent_config is missing");
  check_invalid(kas_post(path, {{"agent_id", "seven"}, {"agent_config", config}}),
                "agent_id is invalid");
  CHECK(column("SELECT agent_id FROM cluster_agent_configs WHERE agent_id "
               "NOT IN (SELECT id FROM cluster_agents)")
          .empty());
}

// -- §2.4 K6 authorize_proxy_user -----------------------------------------------------------

TEST_CASE("§2.4 K6 authorize_proxy_user with a personal access token",
          "[.integration][agents]") {
  SECTION("developer of a user_access project: 200 and the payload") {
    auto r = proxy_user(pat_request(6, pat_dev));
    check_json(r, 200, proxy_payload(2, "dev"));
    CHECK(r.j["agent"]["id"].is_number_integer());
    CHECK(r.j["agent"]["config_project"]["id"].is_number_integer());
    CHECK(r.j["user"]["id"].is_number_integer());
    CHECK(r.j["user"]["username"].is_string());
    CHECK(r.j["access_as"]["agent"].is_object());
  }
  SECTION("developer of a user_access group: 200") {
    check_json(proxy_user(pat_request(6, pat_grpdev)), 200,
               proxy_payload(3, "grpdev"));
  }
  SECTION("no access: 403") {
    check_json(proxy_user(pat_request(6, pat_nobody)), 403,
               json::parse(forbidden_body));
  }
  SECTION("a reporter may not use the proxy: 403") {
    check_json(proxy_user(pat_request(6, pat_reporter)), 403,
               json::parse(forbidden_body));
  }
  SECTION("a token without the k8s_proxy scope: 403") {
    auto r = proxy_user(pat_request(6, pat_scoped));
    INFO(r.body);
    CHECK(r.status == 403);
    CHECK(r.content_type.rfind("application/json", 0) == 0);
  }
  SECTION("another agent, which grants this user nothing: 403") {
    check_json(proxy_user(pat_request(8, pat_dev)), 403,
               json::parse(forbidden_body));
    // An agent without any user_access at all.
    check_json(proxy_user(pat_request(1, pat_dev)), 403,
               json::parse(forbidden_body));
  }
  SECTION("an unknown token: 400, checked before the agent") {
    const json body = {
      {"message", "400 Bad request - Unable to get user from request data"}};
    check_json(proxy_user(pat_request(6, "glpat-unknown-0000000000")), 400,
               body);
    check_json(proxy_user(pat_request(999999, "glpat-unknown-0000000000")),
               400, body);
    // An agent token is no personal access token.
    check_json(proxy_user(pat_request(6, token_prod)), 400, body);
  }
  SECTION("an unknown agent: 404") {
    check_json(proxy_user(pat_request(999999, pat_dev)), 404,
               json::parse(record_not_found_body));
  }
  SECTION("a revoked token is refused") {
    auto r = proxy_user(pat_request(6, pat_revoked));
    INFO(r.body);
    CHECK(r.status == 401);
  }
}

TEST_CASE("§2.2 §2.4 K6 authorize_proxy_user parameters", "[.integration][agents]") {
  SECTION("session_cookie needs a csrf_token") {
    check_invalid(proxy_user({{"agent_id", 6},
                              {"access_type", "session_cookie"},
                              {"access_key", "abc"}}),
                  "csrf_token is missing");
    check_invalid(proxy_user({{"agent_id", 6},
                              {"access_type", "session_cookie"},
                              {"access_key", "abc"},
                              {"csrf_token", ""}}),
                  "csrf_token is empty");
  }
  SECTION("an access_type GitLab does not know") {
    check_invalid(proxy_user({{"agent_id", 6},
                              {"access_type", "oauth"},
                              {"access_key", pat_dev}}),
                  "access_type does not have a valid value");
  }
  SECTION("missing parameters") {
    auto r = proxy_user(json::object());
    INFO(r.body);
    CHECK(r.status == 400);
    CHECK(r.j.value("error", "").rfind("agent_id is missing", 0) == 0);
  }
  SECTION("a session cookie Gatehouse cannot read is refused with a reason") {
    auto r = proxy_user({{"agent_id", 6},
                         {"access_type", "session_cookie"},
                         {"access_key", "123"},
                         {"csrf_token", "bm90LWEtdG9rZW4="}});
    INFO(r.status << " " << r.body);
    CHECK((r.status == 400 || r.status == 401));
    CHECK(r.content_type.rfind("application/json", 0) == 0);
    CHECK(r.j["message"].is_string());
  }
}

// -- §2.3 K7 usage_metrics ----------------------------------------------------------------------

TEST_CASE("§2.3 K7 usage_metrics: GitLab's validation, counters in "
          "PostgreSQL and /metrics",
          "[.integration][agents]") {
  const std::string path = kube + "/usage_metrics";
  // This case alone counts k8s_api_proxy_request (5 + 0 + 1 = 6).
  check_no_content(kas_post(
    path, {{"counters", {{"k8s_api_proxy_request", 5}}},
           {"unique_counters",
            {{"k8s_api_proxy_requests_unique_users_via_ci_access",
              json::array({10})}}}}));
  check_no_content(kas_post(
    path, {{"counters", {{"k8s_api_proxy_request", 0}}},
           {"unique_counters",
            {{"k8s_api_proxy_requests_unique_users_via_ci_access",
              json::array()}}}}));
  // Unknown names are ignored.
  check_no_content(kas_post(
    path, {{"counters",
            {{"k8s_api_proxy_request", 1}, {"not_a_gitlab_counter", 7}}},
           {"unique_counters", {{"not_a_gitlab_unique_counter",
                                 json::array({1, 2})}}}}));
  // Nothing at all is valid too.
  check_no_content(kas_post(path, json::object()));

  auto bad = kas_post(path, {{"counters", {{"k8s_api_proxy_request", "string"}}}});
  INFO(bad.body);
  CHECK(bad.status == 400);
  CHECK(bad.content_type.rfind("application/json", 0) == 0);
  bad = kas_post(path, {{"unique_counters",
                         {{"k8s_api_proxy_requests_unique_users_via_ci_access",
                           1}}}});
  INFO(bad.body);
  CHECK(bad.status == 400);
  bad = kas_post(path, {{"counters", {{"k8s_api_proxy_request", -1}}}});
  CHECK(bad.status == 400);

  const std::string counter_sql
    = "SELECT value FROM gatehouse_state.agent_usage_counters WHERE name = "
      "'k8s_api_proxy_request'";
  bool counted = eventually(
    [&] { return value(counter_sql) == std::optional<std::string>{"6"}; }, 10s);
  INFO("counter: " << value(counter_sql).value_or("<none>"));
  CHECK(counted);
  CHECK(column("SELECT name FROM gatehouse_state.agent_usage_counters WHERE "
               "name LIKE 'not_a_gitlab%' OR name = 'jwt_probe_counter'")
          .empty());
  CHECK(value("SELECT count(*) FROM gatehouse_state.agent_unique_ids WHERE "
              "name = 'k8s_api_proxy_requests_unique_users_via_ci_access' "
              "AND entity_id = 10")
        == std::optional<std::string>{"1"});

  // Exported in /metrics under gatehouse_kas_.
  std::string text;
  bool exported = eventually(
    [&] {
      text = metrics();
      return kas_sample(text, "k8s_api_proxy_request") >= 6;
    },
    15s);
  INFO(text);
  CHECK(text.find("\ngatehouse_kas_") != std::string::npos);
  CHECK(exported);
}

// -- §2.3 K8 agent_events ------------------------------------------------------------------------

TEST_CASE("§2.3 K8 agent_events: register_agent_at_kas with and without the "
          "newer fields",
          "[.integration][agents]") {
  const std::string path = kube + "/agent_events";
  // Agent 10 ("usage") is this case's own.
  const json user_events = json::array(
    {{{"user_id", 2}, {"project_id", 207}}, {{"user_id", 3}, {"project_id", 208}}});
  SECTION("the spec's valid events") {
    check_no_content(kas_post(
      path,
      {{"events",
        {{"k8s_api_proxy_requests_unique_users_via_ci_access", user_events},
         {"k8s_api_proxy_requests_unique_users_via_user_access", user_events},
         {"k8s_api_proxy_requests_unique_users_via_pat_access", user_events},
         {"register_agent_at_kas",
          json::array({// an older agent: no agent_id, no kubernetes_version
                       {{"project_id", 212},
                        {"agent_version", "v17.1.0"},
                        {"architecture", "arm64"}},
                       // an agent that does not exist (any more)
                       {{"project_id", 212},
                        {"agent_version", "v18.0.0"},
                        {"architecture", "amd64"},
                        {"agent_id", 999999},
                        {"kubernetes_version", "1.33"}}})}}}}));
  }
  SECTION("extra telemetry: empty, unknown, and installation data") {
    for (const json& extra :
         {json::object(), json{{"unknown", "unknown"}},
          json{{"installation_method", "helm-chart"},
               {"helm_chart_version", "1.0.0"}}}) {
      INFO(extra.dump());
      check_no_content(kas_post(
        path, {{"events",
                {{"register_agent_at_kas",
                  json::array({{{"project_id", 212},
                                {"agent_version", "v17.1.0"},
                                {"architecture", "arm64"},
                                {"agent_id", 10},
                                {"kubernetes_version", "1.30"},
                                {"extra_telemetry_data", extra}}})}}}}));
    }
    // Kept as the agent's last-seen connection.
    const std::string sql
      = "SELECT agent_version || '|' || kubernetes_version || '|' || "
        "architecture || '|' || coalesce(installation_method, '') || '|' || "
        "coalesce(helm_chart_version, '') FROM cluster_agent_connections "
        "WHERE agent_id = 10";
    bool kept = eventually(
      [&] {
        return value(sql)
               == std::optional<std::string>{"v17.1.0|1.30|arm64|helm-chart|1.0.0"};
      },
      10s);
    INFO(value(sql).value_or("<none>"));
    CHECK(kept);
  }
  SECTION("empty arrays and no events") {
    check_no_content(kas_post(
      path,
      {{"events",
        {{"k8s_api_proxy_requests_unique_users_via_ci_access", json::array()},
         {"k8s_api_proxy_requests_unique_users_via_user_access", json::array()},
         {"k8s_api_proxy_requests_unique_users_via_pat_access", json::array()},
         {"register_agent_at_kas", json::array()}}}}));
    check_no_content(kas_post(path, json::object()));
  }
  SECTION("a non-integer user_id: 400") {
    auto r = kas_post(
      path, {{"events",
              {{"k8s_api_proxy_requests_unique_users_via_ci_access",
                json::array({{{"user_id", "string"}, {"project_id", 111}}})}}}});
    INFO(r.body);
    CHECK(r.status == 400);
    CHECK(r.content_type.rfind("application/json", 0) == 0);
    CHECK(r.j["error"].is_string());
  }
}

// -- K9 autoflow, K10 runner ----------------------------------------------------------------------

TEST_CASE("§2.2 K9 autoflow repository_info", "[.integration][agents]") {
  const std::string path = "/api/v4/internal/autoflow/repository_info";
  // No agent token; any existing project, private included.
  for (const std::string id : {"202", "kas-org/public-proj"}) {
    INFO(id);
    auto r = kas_get(path + "?id=" + percent(id));
    INFO(r.body);
    REQUIRE(r.status == 200);
    CHECK(r.content_type.rfind("application/json", 0) == 0);
    check_repository(r.j, {202, "kas-org/public-proj", "main", false});
  }
  auto priv = kas_get(path + "?id=204");
  REQUIRE(priv.status == 200);
  check_repository(priv.j, {204, "kas-org/private-proj", "main", false});
  auto nobranch = kas_get(path + "?id=201");
  REQUIRE(nobranch.status == 200);
  CHECK(nobranch.j["default_branch"] == "main");

  check_json(kas_get(path + "?id=999999"), 404, json::parse(not_found_body));
  check_json(kas_get(path + "?id=" + percent("kas-org/nope")), 404,
             json::parse(not_found_body));
  check_invalid(kas_get(path), "id is missing");
}

TEST_CASE("§2.2 K10 ci/agents/runner/info", "[.integration][agents]") {
  const std::string path = "/api/v4/internal/ci/agents/runner/info";
  auto r = kas_get(path, agent_header(runner_token));
  check_json(r, 200, {{"runner_id", 1}});
  CHECK(r.j["runner_id"].is_number_integer());
  const json unauthorized = json::parse(unauthorized_body);
  check_json(kas_get(path), 401, unauthorized);
  check_json(kas_get(path, agent_header("glrt-unknown")), 401, unauthorized);
  check_json(kas_get(path, agent_header(runner_token_inactive)), 401,
             unauthorized);
  check_json(kas_get(path, agent_header(token_prod)), 401, unauthorized);
  // Only Gitlab-Agent-Api-Request carries the runner token.
  check_json(kas_get(path, {{"Authorization", "Bearer " + runner_token}}), 401,
             unauthorized);
  check_json(kas_get(path, {{"Gitlab-Agentk-Api-Request", runner_token}}), 401,
             unauthorized);
}
