// The KAS decoding checker (kas_rules.hpp) against hand-written bodies: it
// must accept what KAS accepts and refuse what KAS refuses, or the
// conformance test that relies on it proves nothing (contract
// other-callers §2.1, §2.3).

#include "tests/agents/kas_rules.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace gatehouse::test;
using json = nlohmann::json;

namespace {

const std::string ct = "application/json";

json good_agent_info() {
  return json::parse(R"({
    "project_id": 7, "agent_id": 3, "agent_name": "prod",
    "gitaly_info": {"address": "unix:/var/opt/gitlab/gitaly/gitaly.socket",
                    "token": "", "features": {}},
    "gitaly_repository": {"storage_name": "default",
                          "relative_path": "@hashed/7f/6f/7f6f.git",
                          "git_object_directory": "",
                          "git_alternate_object_directories": [],
                          "gl_repository": "project-7",
                          "gl_project_path": "ops/agent-config"},
    "default_branch": "main"})");
}

json good_proxy_user() {
  return json::parse(R"({"agent":{"id":3,"config_project":{"id":7}},
    "user":{"id":5,"username":"alice"},"access_as":{"agent":{}}})");
}

/// The checker refuses `body` for agent_info, naming `expected` in a
/// problem.
void refuses_agent_info(const json& body, const std::string& expected,
                        const std::string& content_type = ct) {
  auto d = kas::decode_agent_info(content_type, body.dump());
  INFO(body.dump() << "\n" << d.report());
  CHECK_FALSE(d.ok());
  CHECK(d.report().find(expected) != std::string::npos);
}

void refuses_proxy_user(const json& body, const std::string& expected) {
  auto d = kas::decode_proxy_user(ct, body.dump());
  INFO(body.dump() << "\n" << d.report());
  CHECK_FALSE(d.ok());
  CHECK(d.report().find(expected) != std::string::npos);
}

} // namespace

TEST_CASE("§2.1 Content-Type: application/json, parameters allowed",
          "[kas_rules]") {
  CHECK(kas::json_content_type("application/json"));
  CHECK(kas::json_content_type("application/json; charset=utf-8"));
  CHECK(kas::json_content_type("Application/JSON"));
  CHECK_FALSE(kas::json_content_type(""));
  CHECK_FALSE(kas::json_content_type("text/plain"));
  CHECK_FALSE(kas::json_content_type("application/jsonx"));
  CHECK_FALSE(kas::json_content_type("text/html; charset=utf-8"));
  refuses_agent_info(good_agent_info(), "unexpected Content-Type", "text/plain");
  refuses_agent_info(good_agent_info(), "unexpected Content-Type", "");
}

TEST_CASE("§2.3 AgentInfo: the contract's example decodes and validates",
          "[kas_rules]") {
  auto d = kas::decode_agent_info(ct, good_agent_info().dump());
  INFO(d.report());
  REQUIRE(d.ok());
  CHECK(d.message.project_id == 7);
  CHECK(d.message.agent_id == 3);
  CHECK(d.message.agent_name == "prod");
  REQUIRE(d.message.gitaly);
  CHECK(d.message.gitaly->address
        == "unix:/var/opt/gitlab/gitaly/gitaly.socket");
  REQUIRE(d.message.repository);
  CHECK(d.message.repository->relative_path == "@hashed/7f/6f/7f6f.git");
  CHECK(d.message.default_branch == "main");
}

TEST_CASE("§2.3 protojson leniencies KAS accepts", "[kas_rules]") {
  SECTION("unknown fields are discarded, camelCase names are unknown") {
    auto b = good_agent_info();
    b["extra"] = {{"nested", json::array({1, "x", nullptr})}};
    b["gitaly_info"]["whatever"] = 12;
    b["projectId"] = "not even a number";
    auto d = kas::decode_agent_info(ct, b.dump());
    INFO(d.report());
    CHECK(d.ok());
    CHECK(d.message.project_id == 7);
  }
  SECTION("int64 as a decimal string or an integral number") {
    auto b = good_agent_info();
    b["project_id"] = "7";
    b["agent_id"] = 3.0;
    auto d = kas::decode_agent_info(ct, b.dump());
    INFO(d.report());
    CHECK(d.ok());
    CHECK(d.message.project_id == 7);
    CHECK(d.message.agent_id == 3);
  }
  SECTION("null is unset: a null token, features or directories") {
    auto b = good_agent_info();
    b["gitaly_info"]["token"] = nullptr;
    b["gitaly_info"]["features"] = nullptr;
    b["gitaly_repository"]["git_alternate_object_directories"] = nullptr;
    auto d = kas::decode_agent_info(ct, b.dump());
    INFO(d.report());
    CHECK(d.ok());
    CHECK(d.message.gitaly->token.empty());
  }
  SECTION("feature flags as strings") {
    auto b = good_agent_info();
    b["gitaly_info"]["features"] = {{"gitaly-feature-foo", "true"}};
    auto d = kas::decode_agent_info(ct, b.dump());
    INFO(d.report());
    CHECK(d.ok());
    CHECK(d.message.gitaly->features.at("gitaly-feature-foo") == "true");
  }
}

TEST_CASE("§2.3 protojson type errors KAS refuses", "[kas_rules]") {
  auto b = good_agent_info();
  SECTION("not JSON, or not an object") {
    auto d = kas::decode_agent_info(ct, "{\"project_id\":");
    CHECK_FALSE(d.ok());
    CHECK_FALSE(kas::decode_agent_info(ct, "[]").ok());
    CHECK_FALSE(kas::decode_agent_info(ct, "null").ok());
    CHECK_FALSE(kas::decode_agent_info(ct, "").ok());
  }
  SECTION("int64 as a bool, a fraction or a non-decimal string") {
    b["project_id"] = true;
    refuses_agent_info(b, "project_id");
    b["project_id"] = 7.5;
    refuses_agent_info(b, "project_id");
    b["project_id"] = "7a";
    refuses_agent_info(b, "project_id");
    b["project_id"] = "";
    refuses_agent_info(b, "project_id");
  }
  SECTION("a string field as a number") {
    b["agent_name"] = 3;
    refuses_agent_info(b, "agent_name");
  }
  SECTION("a feature flag value that is not a string") {
    b["gitaly_info"]["features"] = {{"gitaly-feature-foo", true}};
    refuses_agent_info(b, "gitaly_info.features");
  }
  SECTION("features as an array") {
    b["gitaly_info"]["features"] = json::array();
    refuses_agent_info(b, "gitaly_info.features");
  }
  SECTION("a message field as a string") {
    b["gitaly_info"] = "unix:/gitaly.socket";
    refuses_agent_info(b, "gitaly_info");
  }
  SECTION("alternate directories with a null or a number") {
    b["gitaly_repository"]["git_alternate_object_directories"]
      = json::array({nullptr});
    refuses_agent_info(b, "git_alternate_object_directories");
    b["gitaly_repository"]["git_alternate_object_directories"]
      = json::array({1});
    refuses_agent_info(b, "git_alternate_object_directories");
  }
}

TEST_CASE("§2.3 AgentInfo ValidateAll", "[kas_rules]") {
  auto b = good_agent_info();
  SECTION("ids must be greater than 0") {
    b["project_id"] = 0;
    refuses_agent_info(b, "project_id");
    b = good_agent_info();
    b["agent_id"] = -3;
    refuses_agent_info(b, "agent_id");
    b = good_agent_info();
    b.erase("agent_id");
    refuses_agent_info(b, "agent_id");
  }
  SECTION("required strings must not be empty (or unset)") {
    for (const char* top : {"agent_name", "default_branch"}) {
      auto c = good_agent_info();
      c[top] = "";
      refuses_agent_info(c, top);
      c[top] = nullptr;
      refuses_agent_info(c, top);
    }
    for (const char* field : {"storage_name", "relative_path", "gl_repository",
                              "gl_project_path"}) {
      auto c = good_agent_info();
      c["gitaly_repository"][field] = "";
      refuses_agent_info(c, field);
      c["gitaly_repository"].erase(field);
      refuses_agent_info(c, field);
    }
    auto c = good_agent_info();
    c["gitaly_info"]["address"] = "";
    refuses_agent_info(c, "gitaly_info.address");
  }
  SECTION("gitaly_info and gitaly_repository are required") {
    b["gitaly_info"] = nullptr;
    refuses_agent_info(b, "gitaly_info");
    b = good_agent_info();
    b.erase("gitaly_repository");
    refuses_agent_info(b, "gitaly_repository");
  }
  SECTION("the optional strings may be empty") {
    b["gitaly_info"]["token"] = "";
    b["gitaly_repository"]["git_object_directory"] = "";
    CHECK(kas::decode_agent_info(ct, b.dump()).ok());
  }
}

TEST_CASE("§2.3 ProjectInfo: AgentInfo without the agent", "[kas_rules]") {
  auto b = good_agent_info();
  b.erase("agent_id");
  b.erase("agent_name");
  auto d = kas::decode_project_info(ct, b.dump());
  INFO(d.report());
  CHECK(d.ok());
  // agent_id is no field of ProjectInfo: even a wrong type is discarded.
  b["agent_id"] = "x";
  CHECK(kas::decode_project_info(ct, b.dump()).ok());
  b["default_branch"] = "";
  CHECK_FALSE(kas::decode_project_info(ct, b.dump()).ok());
  b = good_agent_info();
  b["project_id"] = 0;
  CHECK_FALSE(kas::decode_project_info(ct, b.dump()).ok());
  CHECK_FALSE(kas::decode_project_info("text/plain", good_agent_info().dump()).ok());
}

TEST_CASE("§2.3 AuthorizeProxyUserResponse", "[kas_rules]") {
  SECTION("the contract's example") {
    auto d = kas::decode_proxy_user(ct, good_proxy_user().dump());
    INFO(d.report());
    REQUIRE(d.ok());
    CHECK(d.message.agent->id == 3);
    CHECK(d.message.agent->config_project->id == 7);
    CHECK(d.message.user->username == "alice");
    CHECK(d.message.access_as->agent);
  }
  SECTION("EE's access_as user") {
    auto b = good_proxy_user();
    b["access_as"] = json::parse(
      R"({"user":{"projects":[{"id":7,"roles":["developer"]}],"groups":[]}})");
    auto d = kas::decode_proxy_user(ct, b.dump());
    INFO(d.report());
    CHECK(d.ok());
    CHECK(d.message.access_as->user->projects.at(0).roles
          == std::vector<std::string>{"developer"});
  }
  SECTION("agent, agent.config_project, user and access_as are required") {
    for (const char* key : {"agent", "user", "access_as"}) {
      auto b = good_proxy_user();
      b.erase(key);
      refuses_proxy_user(b, key);
    }
    auto b = good_proxy_user();
    b["agent"].erase("config_project");
    refuses_proxy_user(b, "agent.config_project");
  }
  SECTION("the username must not be empty") {
    auto b = good_proxy_user();
    b["user"]["username"] = "";
    refuses_proxy_user(b, "user.username");
    b["user"]["username"] = 5;
    refuses_proxy_user(b, "user.username");
  }
  SECTION("access_as needs exactly one of agent or user") {
    auto b = good_proxy_user();
    b["access_as"] = json::object();
    refuses_proxy_user(b, "access_as");
    b["access_as"] = {{"agent", nullptr}};
    refuses_proxy_user(b, "access_as");
    b["access_as"] = json::parse(R"({"agent":{},"user":{"projects":[]}})");
    refuses_proxy_user(b, "access_as");
    b["access_as"] = {{"agent", true}};
    refuses_proxy_user(b, "access_as.agent");
  }
  SECTION("ids as strings are int64") {
    auto b = good_proxy_user();
    b["agent"]["id"] = "3";
    b["user"]["id"] = "5";
    CHECK(kas::decode_proxy_user(ct, b.dump()).ok());
    b["user"]["id"] = "five";
    refuses_proxy_user(b, "user.id");
  }
}
