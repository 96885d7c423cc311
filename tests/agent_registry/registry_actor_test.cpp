// The agent registry actor with typed mocks of its store and of the
// read-model loader: what it asks the store for each KAS call, what it
// answers without the store, token-use throttling, and store failures
// (contract other-callers §2.2).

#include "actors/agents/agent_registry.hpp"
#include "common/base64.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

using namespace gatehouse;
using namespace std::chrono_literals;

namespace {

struct store_script {
  std::atomic<bool> fail{false};
  std::atomic<bool> agent_found{true};
  std::mutex mtx;
  std::vector<std::int64_t> touches;
  std::vector<agents::configuration_write> configurations;
  std::vector<agents::usage_write> usages;
  std::vector<agents::outbox_event> notices;
  std::atomic<int> totals_reads{0};

  template <class T>
  std::size_t count(const std::vector<T>& v) {
    std::lock_guard<std::mutex> guard{mtx};
    return v.size();
  }
};

caf::error down() {
  return caf::make_error(errc::unavailable, "connection refused");
}

agent_store_actor::behavior_type mock_store(agent_store_actor::pointer,
                                            store_script* s) {
  return {
    [=](atom::touch_agent_token, std::int64_t id) {
      std::lock_guard<std::mutex> guard{s->mtx};
      s->touches.push_back(id);
    },
    [=](agents::configuration_write& w)
      -> caf::result<agents::configuration_written> {
      if (s->fail)
        return down();
      std::lock_guard<std::mutex> guard{s->mtx};
      s->configurations.push_back(w);
      return agents::configuration_written{s->agent_found, true};
    },
    [=](agents::usage_write& w) -> caf::result<agents::usage_written> {
      if (s->fail)
        return down();
      std::lock_guard<std::mutex> guard{s->mtx};
      s->usages.push_back(w);
      return agents::usage_written{
        std::vector<std::string>(w.connections.size(), "registered")};
    },
    [=](atom::config_push, agents::outbox_event& e) -> caf::result<bool> {
      if (s->fail)
        return down();
      std::lock_guard<std::mutex> guard{s->mtx};
      s->notices.push_back(e);
      return true;
    },
    [=](atom::usage_totals) -> caf::result<agents::usage_totals> {
      ++s->totals_reads;
      agents::usage_totals t;
      t.counters = {{"k8s_api_proxy_request", 7}};
      t.connected_agents = 1;
      return t;
    },
  };
}

/// Hands its snapshot to every subscriber.
read_model_loader_actor::behavior_type mock_loader(
  read_model_loader_actor::pointer self, snapshot_ptr snap) {
  return {
    [=](atom::subscribe, caf::actor& who) {
      if (snap)
        caf::anon_send(who, atom::snapshot::value, snap);
    },
    [=](atom::get) -> caf::result<snapshot_ptr> { return snap; },
    [](atom::tick, std::uint64_t) {},
  };
}

snapshot_ptr world() {
  auto s = std::make_shared<snapshot>();
  s->storages["default"] = {"default", "unix:/gitaly.socket", "", ""};
  namespace_record ns;
  ns.id = 5;
  ns.path = ns.full_path = "acme";
  s->namespaces[5] = ns;
  project_record p;
  p.id = 10;
  p.namespace_id = 5;
  p.path = "agents";
  p.full_path = "acme/agents";
  p.default_branch = "main";
  p.disk_path = "@hashed/aa/bb/cc";
  s->projects[10] = p;
  s->project_by_path["acme/agents"] = 10;
  cluster_agent_record a;
  a.id = 3;
  a.project_id = 10;
  a.name = "prod";
  s->agents[3] = a;
  s->agents_by_project[10] = {3};
  s->agent_tokens_by_digest[token_digest("glagent-prod")] = {1, 3};
  s->runner_by_digest[token_digest("glrt-runner")] = 42;
  return s;
}

struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  store_script script;
  agent_store_actor store = sys.spawn(mock_store, &script);
  read_model_loader_actor loader;
  agent_registry_actor registry;
  std::shared_ptr<agents::usage_board> board
    = std::make_shared<agents::usage_board>();
  bool snap_given;

  explicit fixture(snapshot_ptr snap = world()) : snap_given(snap != nullptr) {
    loader = sys.spawn(mock_loader, std::move(snap));
    agent_registry_settings s;
    s.store_timeout = 300ms;
    s.now = [] { return unix_time{1'800'000'000}; };
    registry = sys.spawn(agent_registry, s, loader, store, board);
    if (snap_given)
      eventually([this] {
        return static_cast<bool>(ask<agents::runner_answer>(agents::runner_query{}));
      });
  }

  ~fixture() {
    for (auto& a : {caf::actor_cast<caf::actor>(registry),
                    caf::actor_cast<caf::actor>(store),
                    caf::actor_cast<caf::actor>(loader)})
      self->send_exit(a, caf::exit_reason::user_shutdown);
  }

  template <class Answer, class Request>
  caf::expected<Answer> ask(Request req) {
    caf::expected<Answer> out{caf::error{}};
    self->request(registry, 5s, std::move(req))
      .receive([&](Answer& a) { out = std::move(a); },
               [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  /// Returns once the store has handled everything sent to it before:
  /// a store's mailbox is first in, first out.
  void drain_store() {
    self->request(store, 5s, atom::usage_totals::value)
      .receive([](agents::usage_totals&) {}, [](caf::error&) {});
  }

  /// Waits, bounded, for an effect of a message no one answers.
  template <class Pred>
  bool eventually(Pred done) {
    for (int i = 0; i < 500 && !done(); ++i)
      std::this_thread::sleep_for(10ms);
    return done();
  }
};

agents::agent_info_query token(const char* t) {
  return agents::agent_info_query{std::string{t}};
}

} // namespace

TEST_CASE("§2.2 K1 agent_info answers from the snapshot and records use") {
  fixture f;
  auto a = f.ask<agents::agent_info_answer>(token("glagent-prod"));
  REQUIRE(a);
  REQUIRE_FALSE(a->refused);
  CHECK(a->agent_id == 3);
  CHECK(a->repository.gl_repository == "project-10");
  // A second use within the interval writes nothing more.
  REQUIRE(f.ask<agents::agent_info_answer>(token("glagent-prod")));
  f.drain_store();
  CHECK(f.script.count(f.script.touches) == 1);

  auto unknown = f.ask<agents::agent_info_answer>(token("NONEXISTENT"));
  REQUIRE(unknown);
  REQUIRE(unknown->refused);
  CHECK(unknown->refused->status == 401);
}

TEST_CASE("calls before the first snapshot are 503") {
  fixture f{nullptr};
  auto a = f.ask<agents::agent_info_answer>(token("glagent-prod"));
  REQUIRE_FALSE(a);
  CHECK(classify(a.error()) == errc::unavailable);
}

TEST_CASE("§2.2 K5 agent_configuration") {
  fixture f;
  SECTION("an unknown agent is 404 without a write") {
    auto a = f.ask<agents::no_content>(agents::configuration_query{-1, "{}"});
    REQUIRE(a);
    REQUIRE(a->refused);
    CHECK(a->refused->status == 404);
    CHECK(a->refused->message == "404 Not found");
    CHECK(f.script.count(f.script.configurations) == 0);
  }
  SECTION("a known agent's configuration is written with its event") {
    auto a = f.ask<agents::no_content>(agents::configuration_query{
      3, R"({"user_access":{"access_as":{"agent":{}},"projects":[{"id":"acme/agents"}]}})"});
    REQUIRE(a);
    CHECK_FALSE(a->refused);
    std::lock_guard<std::mutex> guard{f.script.mtx};
    REQUIRE(f.script.configurations.size() == 1);
    const auto& w = f.script.configurations[0];
    CHECK(w.agent_id == 3);
    REQUIRE(w.user_access_projects.size() == 1);
    CHECK(w.changed_event.subject == "gitlab.events.agent_configuration.3");
    CHECK(w.changed_event.kind == "agent_configuration");
    CHECK(w.changed_event.project_id == 10);
    auto body = nlohmann::json::parse(w.changed_event.body);
    CHECK(body["authorizations"]["user_access"]["projects"]
          == nlohmann::json::array({10}));
  }
  SECTION("an agent deleted since the snapshot is 404") {
    f.script.agent_found = false;
    auto a = f.ask<agents::no_content>(agents::configuration_query{3, "{}"});
    REQUIRE(a);
    REQUIRE(a->refused);
    CHECK(a->refused->status == 404);
  }
  SECTION("a configuration that is not an object changes nothing") {
    for (const char* config : {"null", "[1]", "\"x\""}) {
      auto a = f.ask<agents::no_content>(agents::configuration_query{3, config});
      REQUIRE_FALSE(a);
      CHECK(classify(a.error()) == errc::invalid_params);
      CHECK(error_detail(a.error()) == "agent_config is invalid");
    }
    CHECK(f.script.count(f.script.configurations) == 0);
  }
  SECTION("a failing store is 503") {
    f.script.fail = true;
    auto a = f.ask<agents::no_content>(agents::configuration_query{3, "{}"});
    REQUIRE_FALSE(a);
    CHECK(classify(a.error()) == errc::unavailable);
  }
}

TEST_CASE("§2.3 K7 usage_metrics: zeros write nothing, counts add up") {
  fixture f;
  agents::usage_query zeros;
  zeros.counters = {{"k8s_api_proxy_request", 0}};
  zeros.unique_counters = {{"k8s_api_proxy_requests_unique_users_via_ci_access", {}}};
  REQUIRE(f.ask<agents::no_content>(zeros));
  CHECK(f.script.count(f.script.usages) == 0);

  agents::usage_query q;
  q.counters = {{"k8s_api_proxy_request", 5}};
  q.unique_counters = {{"k8s_api_proxy_requests_unique_users_via_ci_access", {10, 10, 11}}};
  auto a = f.ask<agents::no_content>(q);
  REQUIRE(a);
  CHECK_FALSE(a->refused);
  std::lock_guard<std::mutex> guard{f.script.mtx};
  REQUIRE(f.script.usages.size() == 1);
  CHECK(f.script.usages[0].counters.size() == 1);
  CHECK(f.script.usages[0].unique_ids.size() == 2);
}

TEST_CASE("§2.2 K8 agent_events record a known agent's connection") {
  fixture f;
  agents::events_query q;
  agents::kas_registration known;
  known.agent_id = 3;
  known.agent_version = "v18.0.0";
  agents::kas_registration old_agent; // no agent_id: counted only
  old_agent.project_id = 10;
  agents::kas_registration unknown;
  unknown.agent_id = 12;
  q.registrations = {known, old_agent, unknown};
  q.user_events = {{"k8s_api_proxy_requests_unique_users_via_ci_access",
                    {{20, 10}, {21, 10}, {20, 11}}}};
  REQUIRE(f.ask<agents::no_content>(q));
  std::lock_guard<std::mutex> guard{f.script.mtx};
  REQUIRE(f.script.usages.size() == 1);
  const auto& w = f.script.usages[0];
  REQUIRE(w.connections.size() == 1);
  CHECK(w.connections[0].registered.subject
        == "gitlab.events.agent_connection.3");
  CHECK(w.connections[0].registered.kind == "agent_registered");
  CHECK(w.connections[0].upgraded.kind == "agent_upgraded");
  CHECK(w.unique_ids.size() == 2);
  CHECK(std::count(w.counters.begin(), w.counters.end(),
                   std::pair<std::string, std::int64_t>{"register_agent_at_kas", 3})
        == 1);
}

TEST_CASE("§2.2 K10 runner info by runner token") {
  fixture f;
  auto a = f.ask<agents::runner_answer>(agents::runner_query{std::string{"glrt-runner"}});
  REQUIRE(a);
  CHECK(a->runner_id == 42);
  auto no = f.ask<agents::runner_answer>(agents::runner_query{std::string{"x"}});
  REQUIRE(no);
  REQUIRE(no->refused);
  CHECK(no->refused->status == 401);
}

TEST_CASE("a configuration push becomes one notice per agent") {
  fixture f;
  agents::pushed_paths push;
  push.event_id = "8a3b0f4e-0000-4000-8000-000000000001";
  push.project_id = 10;
  push.ref = "refs/heads/main";
  push.after = std::string(40, 'b');
  push.paths = {".gitlab/agents/prod/config.yaml"};
  auto done = f.ask<agents::pushed_paths_done>(push);
  REQUIRE(done);
  CHECK(done->notices == 1);
  push.paths = {"README.md"};
  done = f.ask<agents::pushed_paths_done>(push);
  REQUIRE(done);
  CHECK(done->notices == 0);
  f.script.fail = true;
  push.paths = {".gitlab/agents/prod/config.yaml"};
  auto failed = f.ask<agents::pushed_paths_done>(push);
  REQUIRE_FALSE(failed);
  CHECK(classify(failed.error()) == errc::unavailable);
}

TEST_CASE("usage totals reach the metrics board") {
  fixture f;
  REQUIRE(f.eventually([&] { return !f.board->render().empty(); }));
  auto text = f.board->render();
  CHECK(text.find("gatehouse_kas_usage_total{counter=\"k8s_api_proxy_request\"} 7")
        != std::string::npos);
  CHECK(text.find("gatehouse_kas_connected_agents 1") != std::string::npos);
}
