// Gatehouse's agent_info, project_info and authorize_proxy_user answers
// decoded the way an unmodified KAS decodes them (contract other-callers
// §2.1, §2.3): Content-Type, protojson with unknown fields discarded, then
// ValidateAll. The checker is kas_rules.hpp (unit-tested in
// kas_rules_test.cpp). Hidden tag [.integration][agents].

#include "tests/agents/agents_world.hpp"
#include "tests/agents/kas_rules.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace gatehouse::test::agents;

namespace {

const std::string kube = "/api/v4/internal/kubernetes";

/// KAS's JSON handlers accept 200 or 201 only.
void accepted_status(const reply& r) {
  INFO(r.status << " " << r.body);
  REQUIRE((r.status == 200 || r.status == 201));
}

void check_repository(const kas::agent_info& m, std::int64_t project,
                      const std::string& full_path,
                      const std::string& branch) {
  CHECK(m.project_id == project);
  REQUIRE(m.gitaly);
  CHECK(m.gitaly->address == gitaly_address);
  CHECK(m.gitaly->token == gitaly_token);
  REQUIRE(m.repository);
  CHECK(m.repository->storage_name == "default");
  CHECK(m.repository->relative_path == disk_path(project) + ".git");
  CHECK(m.repository->gl_repository == "project-" + std::to_string(project));
  CHECK(m.repository->gl_project_path == full_path);
  CHECK(m.default_branch == branch);
}

} // namespace

TEST_CASE("§2.1 §2.3 K1 K2 KAS decodes and validates agent_info",
          "[.integration][agents]") {
  struct expectation {
    std::string token;
    std::int64_t agent;
    std::string name;
    std::int64_t project;
    std::string path;
    std::string branch;
  };
  for (const auto& e :
       {expectation{token_prod, 1, "prod", 200, "kas-org/agent-config",
                    "develop"},
        expectation{token_nobranch, 2, "nobranch", 201, "kas-org/no-branch",
                    "main"},
        expectation{token_internal, 3, "internal-agent", 206,
                    "kas-org/internal-own", "main"}}) {
    for (const std::string& path :
         {std::string{"/api/v4/internal/agents/agentk/agent_info"},
          kube + "/agent_info"}) {
      INFO(path << " agent " << e.agent);
      auto r = kas_get(path, agent_header(e.token));
      accepted_status(r);
      auto d = kas::decode_agent_info(r.content_type, r.body);
      INFO(r.body << "\n" << d.report());
      REQUIRE(d.ok());
      CHECK(d.message.agent_id == e.agent);
      CHECK(d.message.agent_name == e.name);
      check_repository(d.message, e.project, e.path, e.branch);
    }
  }
}

TEST_CASE("§2.1 §2.3 K3 KAS decodes and validates project_info",
          "[.integration][agents]") {
  struct expectation {
    std::string id;
    std::string token;
    std::int64_t project;
    std::string path;
    std::string branch;
  };
  for (const auto& e :
       {expectation{"202", token_prod, 202, "kas-org/public-proj", "main"},
        expectation{"kas-org%2Fpublic-proj", token_prod, 202,
                    "kas-org/public-proj", "main"},
        expectation{"200", token_prod, 200, "kas-org/agent-config", "develop"},
        expectation{"206", token_internal, 206, "kas-org/internal-own",
                    "main"}}) {
    INFO("id " << e.id);
    auto r = kas_get(kube + "/project_info?id=" + e.id, agent_header(e.token));
    accepted_status(r);
    auto d = kas::decode_project_info(r.content_type, r.body);
    INFO(r.body << "\n" << d.report());
    REQUIRE(d.ok());
    check_repository(d.message, e.project, e.path, e.branch);
  }
}

TEST_CASE("§2.1 §2.3 §2.4 K6 KAS decodes and validates authorize_proxy_user",
          "[.integration][agents]") {
  struct expectation {
    std::string pat;
    std::int64_t user;
    std::string username;
  };
  for (const auto& e :
       {expectation{pat_dev, 2, "dev"}, expectation{pat_grpdev, 3, "grpdev"}}) {
    INFO(e.username);
    auto r = kas_post(kube + "/authorize_proxy_user",
                      {{"agent_id", 6},
                       {"access_type", "personal_access_token"},
                       {"access_key", e.pat}});
    accepted_status(r);
    auto d = kas::decode_proxy_user(r.content_type, r.body);
    INFO(r.body << "\n" << d.report());
    REQUIRE(d.ok());
    CHECK(d.message.agent->id == 6);
    CHECK(d.message.agent->config_project->id == 200);
    CHECK(d.message.user->id == e.user);
    CHECK(d.message.user->username == e.username);
    CHECK(d.message.access_as->agent);
    CHECK_FALSE(d.message.access_as->user);
  }
  // A refusal: KAS reads its reason from `message`, which needs JSON.
  auto refused = kas_post(kube + "/authorize_proxy_user",
                          {{"agent_id", 6},
                           {"access_type", "personal_access_token"},
                           {"access_key", pat_nobody}});
  CHECK(refused.status == 403);
  CHECK(kas::json_content_type(refused.content_type));
  CHECK(refused.j["message"].is_string());
}
