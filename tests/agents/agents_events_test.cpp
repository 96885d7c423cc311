// The agent registry's domain events on JetStream (issue 12, "Events and
// data"): read back from GATEHOUSE_EVENTS with nats.c as a downstream
// consumer would. A repeat that must publish nothing is proven by a later
// call that must publish: the outbox publishes an agent's project's events
// in order, so once the later event is on the stream (and the outbox is
// drained), whatever the repeat had published would be there before it.
// Hidden tag [.integration][agents].

#include "tests/agents/agents_world.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace gatehouse::test::agents;

namespace {

const std::string kube = "/api/v4/internal/kubernetes";
const std::string zeros(40, '0');

/// Waits until the outbox has published every row it holds.
void wait_drained() {
  bool drained = eventually([] { return unpublished() == 0; }, 20s);
  REQUIRE(drained);
}

std::string header(const stream_message& m, const std::string& name) {
  auto it = m.headers.find(name);
  return it == m.headers.end() ? std::string{"<none>"} : it->second;
}

/// The common shape of an agent event: subject, Gatehouse-Event, object_kind
/// and agent.id.
void check_agent_event(const stream_message& m, const std::string& subject,
                       const std::string& kind, std::int64_t agent) {
  INFO(m.subject << " " << m.data);
  CHECK(m.subject == subject);
  CHECK(header(m, "Gatehouse-Event") == kind);
  REQUIRE(m.body.is_object());
  CHECK(m.body["object_kind"] == kind);
  REQUIRE(m.body["agent"].is_object());
  CHECK(m.body["agent"]["id"] == agent);
}

/// Distinct Nats-Msg-Id headers: no event is on the stream twice.
void check_distinct_ids(const std::vector<stream_message>& msgs) {
  std::set<std::string> ids;
  for (const auto& m : msgs)
    ids.insert(header(m, "Nats-Msg-Id"));
  CHECK(ids.size() == msgs.size());
}

/// Gitaly's post-receive hook for project 211.
reply post_receive(const std::string& changes) {
  auto& w = shared();
  auto cli = w.gh->client();
  json body = {{"gl_repository", "project-211"},
               {"identifier", "user-1"},
               {"changes", changes},
               {"push_options", nullptr}};
  return make_reply(cli.Post("/api/v4/internal/post_receive",
                             {{"Gitlab-Shell-Api-Request",
                               w.gh->shell_token()}},
                             body.dump(), "application/json"));
}

void require_accepted(const reply& r) {
  INFO(r.status << " " << r.body);
  REQUIRE(r.status == 200);
}

} // namespace

TEST_CASE("events: agent_configuration publishes a changed configuration "
          "once",
          "[.integration][agents]") {
  // Agent 4 ("configured") is this case's own; it has no stored
  // configuration yet.
  const std::string subject = "gitlab.events.agent_configuration.4";
  const std::string path = kube + "/agent_configuration";
  const json first = {{"gitops", {{"manifest_projects", json::array()}}},
                      {"ci_access",
                       {{"projects", json::array({{{"id", "kas-org/ci-target"}}})}}}};
  const json second = {{"observability", {{"logging", {{"level", "debug"}}}}}};
  js_reader reader;
  REQUIRE(reader.read(subject).empty());

  check_no_content(kas_post(path, {{"agent_id", 4}, {"agent_config", first}}));
  auto msgs = reader.wait_for(subject, 1);
  REQUIRE(msgs.size() == 1);
  check_agent_event(msgs[0], subject, "agent_configuration", 4);

  // The same configuration again: nothing new. Then a changed one.
  check_no_content(kas_post(path, {{"agent_id", 4}, {"agent_config", first}}));
  check_no_content(kas_post(path, {{"agent_id", 4}, {"agent_config", second}}));
  msgs = reader.wait_for(subject, 2);
  wait_drained();
  msgs = reader.read(subject);
  REQUIRE(msgs.size() == 2);
  check_agent_event(msgs[1], subject, "agent_configuration", 4);
  check_distinct_ids(msgs);
  if (msgs[1].body.contains("configuration"))
    CHECK(msgs[1].body["configuration"] == second);

  // An unknown agent publishes nothing anywhere.
  check_json(kas_post(path, {{"agent_id", 999999}, {"agent_config", second}}),
             404, {{"message", "404 Not found"}});
  CHECK(reader.read("gitlab.events.agent_configuration.999999").empty());
}

TEST_CASE("events: register_agent_at_kas publishes agent_registered, then "
          "agent_upgraded",
          "[.integration][agents]") {
  // Agent 9 ("connect") is this case's own; KAS has never reported it.
  const std::string subject = "gitlab.events.agent_connection.9";
  const std::string path = kube + "/agent_events";
  auto register_at_kas = [&](const std::string& version) {
    return kas_post(path,
                    {{"events",
                      {{"register_agent_at_kas",
                        json::array({{{"project_id", 212},
                                      {"agent_id", 9},
                                      {"agent_version", version},
                                      {"architecture", "amd64"},
                                      {"kubernetes_version", "1.30"}}})}}}});
  };
  js_reader reader;
  REQUIRE(reader.read(subject).empty());

  check_no_content(register_at_kas("v17.1.0"));
  auto msgs = reader.wait_for(subject, 1);
  REQUIRE(msgs.size() == 1);
  check_agent_event(msgs[0], subject, "agent_registered", 9);

  // The same connection again: nothing. A new agent version: upgraded.
  check_no_content(register_at_kas("v17.1.0"));
  check_no_content(register_at_kas("v17.2.0"));
  msgs = reader.wait_for(subject, 2);
  wait_drained();
  msgs = reader.read(subject);
  REQUIRE(msgs.size() == 2);
  check_agent_event(msgs[1], subject, "agent_upgraded", 9);
  check_distinct_ids(msgs);
  CHECK(value("SELECT agent_version FROM cluster_agent_connections WHERE "
              "agent_id = 9")
        == std::optional<std::string>{"v17.2.0"});
}

TEST_CASE("events: a push that changes an agent's config.yaml on the default "
          "branch publishes one agent_config_push",
          "[.integration][agents]") {
  // Agent 5 ("pushy") of project 211 (kas-org/flux, a real repository on
  // storage "local", default branch main).
  const std::string subject = "gitlab.events.agent_config_push.5";
  const std::string config = ".gitlab/agents/pushy/config.yaml";
  js_reader reader;
  REQUIRE(reader.read(subject).empty());
  work_clone work{shared().flux.path()};
  auto base = work.head();

  // 1. The configuration file on another branch: no notice.
  work.checkout({"-b", "feature"});
  auto f1 = work.commit(config, "gitops: {feature: true}\n", "feature config");
  work.push("feature:refs/heads/feature");
  require_accepted(post_receive(zeros + " " + f1 + " refs/heads/feature\n"));

  // 2. Another path on the default branch: no notice.
  work.checkout({"main"});
  auto m1 = work.commit("README.md", "flux\n", "readme");
  work.push("main:refs/heads/main");
  require_accepted(post_receive(base + " " + m1 + " refs/heads/main\n"));

  // 3. The configuration file on the default branch: one notice.
  auto m2 = work.commit(config, "gitops: {changed: true}\n", "new config");
  work.push("main:refs/heads/main");
  require_accepted(post_receive(m1 + " " + m2 + " refs/heads/main\n"));

  auto msgs = reader.wait_for(subject, 1, 30s);
  REQUIRE(msgs.size() >= 1);
  // The push feed handles push events in stream order: once push 3's notice
  // is here, pushes 1 and 2 were handled; drain what the outbox still holds.
  wait_drained();
  msgs = reader.read(subject);
  REQUIRE(msgs.size() == 1);
  check_agent_event(msgs[0], subject, "agent_config_push", 5);
  CHECK(msgs[0].body["after"] == m2);
  CHECK(msgs[0].body["ref"] == "refs/heads/main");
  CHECK(reader.read("gitlab.events.agent_config_push.>").size() == 1);
}
