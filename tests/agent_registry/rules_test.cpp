// The agent registry's rules as pure functions over a snapshot (contract
// other-callers §2.2–§2.4): token lookup, project access, the proxy-user
// decision, authorizations from a configuration, configuration pushes.

#include "actors/agents/rules.hpp"
#include "common/base64.hpp"
#include "actors/access/project_policy.hpp"
#include "tests/access/world.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using namespace gatehouse;
using namespace gatehouse::access;
using namespace gatehouse::access::test;

namespace {

// Groups: acme (5) > acme/ops (6); another top level: other (7); a user
// namespace: alice (8). Projects: acme/agents (10, private, the agent's),
// acme/ops/deploy (11, private), acme/site (12, public), acme/hidden (13,
// public with a private repository), acme/inner (14, internal),
// other/x (15, public).
struct agents_world : world {
  agents_world() {
    ns(5, "acme");
    ns(6, "acme/ops", 5);
    ns(7, "other");
    ns(8, "alice", std::nullopt, "user");
    project(10, 5, "agents");
    project(11, 6, "deploy");
    project(12, 5, "site", "public");
    project(13, 5, "hidden", "public").repository_access_level = "private";
    project(14, 5, "inner", "internal");
    project(15, 7, "x", "public");
    project(16, 8, "own");
    s.projects[10].default_branch = "main";
    agent(3, 10, "prod");
    agent_token(1, 3, "glagent-prod");
    user(20, "dev");
    user(21, "guest");
  }

  cluster_agent_record& agent(std::int64_t id, std::int64_t project_id,
                              const std::string& name) {
    auto& a = s.agents[id];
    a.id = id;
    a.project_id = project_id;
    a.name = name;
    s.agents_by_project[project_id].push_back(id);
    return a;
  }

  void agent_token(std::int64_t id, std::int64_t agent_id,
                   const std::string& token) {
    s.agent_tokens_by_digest[token_digest(token)] = {id, agent_id};
  }

  void pat(std::int64_t id, std::int64_t user_id, const std::string& token,
           std::vector<std::string> scopes,
           std::optional<unix_time> expires = std::nullopt) {
    personal_access_token_record t;
    t.id = id;
    t.user_id = user_id;
    t.scopes = std::move(scopes);
    t.expires_at = expires;
    s.tokens_by_digest[token_digest(token)] = t;
  }
};

const std::string as_agent = R"({"access_as":{"agent":{}}})";

agents::proxy_user_query proxy_by_pat(std::int64_t agent_id,
                                   const std::string& token) {
  agents::proxy_user_query q;
  q.agent_id = agent_id;
  q.access_type = "personal_access_token";
  q.access_key = token;
  return q;
}

} // namespace

TEST_CASE("§1.2 an agent token names its agent only while it is active") {
  agents_world w;
  auto match = agents::agent_for_token(w.s, std::string{"glagent-prod"});
  REQUIRE(match);
  CHECK(match->agent->id == 3);
  CHECK(match->token_id == 1);
  CHECK_FALSE(agents::agent_for_token(w.s, std::string{"NONEXISTENT"}));
  CHECK_FALSE(agents::agent_for_token(w.s, std::string{}));
  CHECK_FALSE(agents::agent_for_token(w.s, std::nullopt));
  // A token whose agent is gone names nothing.
  w.s.agents.erase(3);
  CHECK_FALSE(agents::agent_for_token(w.s, std::string{"glagent-prod"}));
}

TEST_CASE("§2.3 agent_info carries the agent's project repository") {
  agents_world w;
  w.s.storages["default"].gitaly_token = "secret";
  auto match = agents::agent_for_token(w.s, std::string{"glagent-prod"});
  auto a = agents::agent_info(w.s, *match);
  REQUIRE_FALSE(a.refused);
  CHECK(a.agent_id == 3);
  CHECK(a.agent_name == "prod");
  CHECK(a.repository.project_id == 10);
  CHECK(a.repository.gitaly_address
        == "unix:/var/opt/gitlab/gitaly/gitaly.socket");
  CHECK(a.repository.gitaly_token == std::optional<std::string>{"secret"});
  CHECK(a.repository.relative_path == w.s.projects[10].disk_path + ".git");
  CHECK(a.repository.gl_repository == "project-10");
  CHECK(a.repository.gl_project_path == "acme/agents");
  CHECK(a.repository.default_branch == "main");
  // default_branch_or_main, and an empty Gitaly token is null.
  w.s.projects[10].default_branch.clear();
  w.s.storages["default"].gitaly_token.clear();
  a = agents::agent_info(w.s, *match);
  CHECK(a.repository.default_branch == "main");
  CHECK_FALSE(a.repository.gitaly_token);
}

TEST_CASE("§2.3 project_info: public code or the agent's own project") {
  agents_world w;
  auto ask = [&](std::optional<std::string> id) {
    agents::project_query q;
    q.token = "glagent-prod";
    q.id = std::move(id);
    return agents::project_info(w.s, q);
  };
  CHECK_FALSE(ask("12").refused);              // public
  CHECK_FALSE(ask("acme/site").refused);       // by full path
  CHECK_FALSE(ask("ACME/Site").refused);       // case-insensitive
  CHECK(ask("13").refused->status == 404);     // public, private repository
  CHECK(ask("11").refused->status == 404);     // private
  CHECK(ask("14").refused->status == 404);     // internal
  CHECK_FALSE(ask("10").refused);              // the agent's own, private
  CHECK(ask("999").refused->status == 404);    // missing
  CHECK(ask("site").refused->status == 404);   // a path needs a '/'
  CHECK(ask(std::nullopt).refused->status == 404);
  w.redirect("acme/old-site", 12);
  CHECK_FALSE(ask("acme/old-site").refused);   // redirects followed
  CHECK(ask("999").refused->message == "404 Not Found");

  agents::project_query bad;
  bad.token = "nope";
  bad.id = "12";
  CHECK(agents::project_info(w.s, bad).refused->status == 401);

  agents::project_query autoflow;
  autoflow.autoflow = true;
  autoflow.id = "11"; // private: autoflow trusts KAS's JWT alone
  auto a = agents::project_info(w.s, autoflow);
  REQUIRE_FALSE(a.refused);
  CHECK_FALSE(a.repository.with_features);
  autoflow.id = "999";
  CHECK(agents::project_info(w.s, autoflow).refused->status == 404);
}

TEST_CASE("§2.4 authorize_proxy_user with a personal access token") {
  agents_world w;
  w.pat(1, 20, "glpat-dev", {"k8s_proxy"});
  w.pat(2, 20, "glpat-readapi", {"read_api"});
  w.pat(3, 20, "glpat-expired", {"k8s_proxy"}, now - 1);
  auto& agent = w.s.agents[3];
  agent.user_access_projects = {{11, as_agent}};
  agent.user_access_groups = {{6, as_agent}};

  SECTION("a developer of a user_access project is let through") {
    w.member(20, 11, level_developer);
    auto a = agents::authorize_proxy_user(w.s, proxy_by_pat(3, "glpat-dev"), now);
    REQUIRE_FALSE(a.refused);
    CHECK(a.agent_id == 3);
    CHECK(a.config_project_id == 10);
    CHECK(a.user_id == 20);
    CHECK(a.username == "dev");
  }
  SECTION("so is a developer of a user_access group, inherited") {
    w.ns_member(20, 5, level_developer);
    CHECK_FALSE(
      agents::authorize_proxy_user(w.s, proxy_by_pat(3, "glpat-dev"), now).refused);
  }
  SECTION("a reporter is not") {
    w.member(20, 11, level_reporter);
    auto a = agents::authorize_proxy_user(w.s, proxy_by_pat(3, "glpat-dev"), now);
    REQUIRE(a.refused);
    CHECK(a.refused->status == 403);
    CHECK(a.refused->message == "403 Forbidden");
  }
  SECTION("a blocked developer is not") {
    w.member(20, 11, level_developer);
    w.s.users[20].state = "blocked";
    CHECK(agents::authorize_proxy_user(w.s, proxy_by_pat(3, "glpat-dev"), now)
            .refused->status
          == 403);
  }
  SECTION("the wrong scope is an OAuth insufficient_scope") {
    w.member(20, 11, level_developer);
    auto a
      = agents::authorize_proxy_user(w.s, proxy_by_pat(3, "glpat-readapi"), now);
    REQUIRE(a.refused);
    CHECK(a.refused->status == 403);
    CHECK(a.refused->oauth_error == std::optional<std::string>{"insufficient_scope"});
    CHECK(a.refused->scope == std::optional<std::string>{"k8s_proxy"});
  }
  SECTION("an expired token is an OAuth invalid_token") {
    auto a
      = agents::authorize_proxy_user(w.s, proxy_by_pat(3, "glpat-expired"), now);
    REQUIRE(a.refused);
    CHECK(a.refused->status == 401);
    CHECK(a.refused->oauth_error == std::optional<std::string>{"invalid_token"});
  }
  SECTION("a revoked token is an OAuth invalid_token") {
    w.s.revoked_tokens_by_digest[token_digest("glpat-revoked")] = 9;
    auto a
      = agents::authorize_proxy_user(w.s, proxy_by_pat(3, "glpat-revoked"), now);
    REQUIRE(a.refused);
    CHECK(a.refused->status == 401);
    CHECK(a.refused->oauth_error == std::optional<std::string>{"invalid_token"});
  }
  SECTION("an unknown or blank token names no user, before the agent") {
    for (const char* token : {"glpat-unknown", ""}) {
      auto a = agents::authorize_proxy_user(w.s, proxy_by_pat(999, token), now);
      REQUIRE(a.refused);
      CHECK(a.refused->status == 400);
      CHECK(a.refused->message
            == "400 Bad request - Unable to get user from request data");
    }
  }
  SECTION("an unknown agent") {
    auto a = agents::authorize_proxy_user(w.s, proxy_by_pat(999, "glpat-dev"), now);
    CHECK(a.refused->status == 404);
    CHECK(a.refused->message == "404 Not found");
  }
  SECTION("another agent, without user_access") {
    w.member(20, 11, level_developer);
    w.agent(4, 15, "other");
    CHECK(agents::authorize_proxy_user(w.s, proxy_by_pat(4, "glpat-dev"), now)
            .refused->status
          == 403);
  }
  SECTION("access_as must name exactly the agent") {
    w.member(20, 11, level_developer);
    agent.user_access_projects = {{11, R"({"access_as":{"user":{}}})"}};
    agent.user_access_groups.clear();
    CHECK(agents::authorize_proxy_user(w.s, proxy_by_pat(3, "glpat-dev"), now)
            .refused->status
          == 403);
    agent.user_access_projects = {{11, R"({})"}};
    CHECK(agents::authorize_proxy_user(w.s, proxy_by_pat(3, "glpat-dev"), now)
            .refused->status
          == 403);
  }
  SECTION("session cookies: GitLab's answers without its session store") {
    auto q = proxy_by_pat(3, "123");
    q.access_type = "session_cookie";
    q.csrf_token = "x";
    auto a = agents::authorize_proxy_user(w.s, q, now);
    CHECK(a.refused->status == 400);
    CHECK(a.refused->message == "400 Bad request - Invalid access_key");
    q.access_key = "YWJj--ZGVm--Z2hp";
    a = agents::authorize_proxy_user(w.s, q, now);
    CHECK(a.refused->status == 401);
    CHECK(a.refused->message == "401 Unauthorized - Invalid session");
  }
}

TEST_CASE("§2.3 agent_configuration grants within the top-level namespace") {
  agents_world w;
  auto config = R"({
    "ci_access": {
      "projects": [{"id": "ACME/ops/deploy", "default_namespace": "staging"},
                   {"id": "other/x"}, {"id": "acme/missing"}, {"noid": 1}],
      "groups": [{"id": "acme", "default_namespace": "production"},
                 {"id": "other"}]
    },
    "user_access": {
      "access_as": {"agent": {}},
      "projects": [{"id": "acme/agents"}],
      "groups": [{"id": "acme/ops"}]
    }
  })";
  auto write = agents::authorizations_for(w.s, w.s.agents[3], config);
  CHECK(write.agent_id == 3);
  REQUIRE(write.ci_access_projects.size() == 1);
  CHECK(write.ci_access_projects[0].target_id == 11);
  CHECK(nlohmann::json::parse(write.ci_access_projects[0].config)
        == nlohmann::json{{"default_namespace", "staging"}});
  REQUIRE(write.ci_access_groups.size() == 1);
  CHECK(write.ci_access_groups[0].target_id == 5);
  REQUIRE(write.user_access_projects.size() == 1);
  CHECK(write.user_access_projects[0].target_id == 10);
  CHECK(nlohmann::json::parse(write.user_access_projects[0].config)
        == nlohmann::json::parse(as_agent));
  REQUIRE(write.user_access_groups.size() == 1);
  CHECK(write.user_access_groups[0].target_id == 6);

  // A project in a user namespace can name projects there, no groups.
  w.agent(9, 16, "mine");
  auto own = agents::authorizations_for(
    w.s, w.s.agents[9],
    R"({"ci_access":{"projects":[{"id":"alice/own"}],"groups":[{"id":"alice"}]}})");
  CHECK(own.ci_access_projects.size() == 1);
  CHECK(own.ci_access_groups.empty());

  // Not an object: nothing granted, stored as given.
  auto none = agents::authorizations_for(w.s, w.s.agents[3], "[1,2]");
  CHECK(none.ci_access_projects.empty());
  CHECK(none.config == "[1,2]");
}

TEST_CASE("configuration pushes: the default branch and the agent's file") {
  agents_world w;
  w.agent(4, 10, "staging");
  agents::pushed_paths push;
  push.event_id = "8a3b0f4e-0000-4000-8000-000000000001";
  push.project_id = 10;
  push.ref = "refs/heads/main";
  push.before = std::string(40, 'a');
  push.after = std::string(40, 'b');
  push.paths = {".gitlab/agents/prod/config.yaml", "README.md"};

  auto hit = agents::agents_configured_by(w.s, push);
  REQUIRE(hit.size() == 1);
  CHECK(hit[0]->id == 3);

  auto other_branch = push;
  other_branch.ref = "refs/heads/feature";
  CHECK(agents::agents_configured_by(w.s, other_branch).empty());

  auto other_path = push;
  other_path.paths = {"README.md"};
  CHECK(agents::agents_configured_by(w.s, other_path).empty());

  auto deleted = push;
  deleted.after = std::string(40, '0');
  CHECK(agents::agents_configured_by(w.s, deleted).empty());

  auto partial = other_path;
  partial.complete = false;
  CHECK(agents::agents_configured_by(w.s, partial).size() == 2);

  auto elsewhere = push;
  elsewhere.project_id = 12;
  CHECK(agents::agents_configured_by(w.s, elsewhere).empty());

  // The notice's id is the same for a redelivered push event.
  auto first = agents::config_push_event(w.s, *hit[0], push, now);
  auto again = agents::config_push_event(w.s, *hit[0], push, now + 60);
  CHECK(first.event_id == again.event_id);
  CHECK(first.subject == "gitlab.events.agent_config_push.3");
  CHECK(first.kind == "agent_config_push");
  auto body = nlohmann::json::parse(first.body);
  CHECK(body["agent"]["id"] == 3);
  CHECK(body["config_path"] == ".gitlab/agents/prod/config.yaml");
  CHECK(body["push_event_id"] == push.event_id);
}

TEST_CASE("§2.3 usage_metrics: negative counts are refused") {
  agents::usage_query q;
  q.counters = {{"k8s_api_proxy_request", 0}};
  CHECK_FALSE(agents::usage_refusal(q));
  q.counters = {{"k8s_api_proxy_request", -1}};
  auto r = agents::usage_refusal(q);
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(r->message
        == "400 Bad request - k8s_api_proxy_request count must be greater "
           "than or equal to zero");
}
