// Agents in the read model (full load and the change log: 011_agents.sql)
// and the agent store's writes (storage/agent_store.hpp), against a real
// PostgreSQL. Hidden tag [.pg].

#include "common/base64.hpp"
#include "storage/agent_store.hpp"
#include "storage/read_model_loader.hpp"
#include "tests/readmodel/fixtures.hpp"

#include <atomic>
#include <sstream>
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;

namespace {

/// Every agent entry of a model, sorted: equal when a full load agrees.
std::vector<std::string> describe_agents(const snapshot& s) {
  std::vector<std::string> lines;
  s.agents.for_each([&](std::int64_t id, const cluster_agent_record& a) {
    std::ostringstream l;
    l << "agent " << id << '|' << a.project_id << '|' << a.name << "|p:";
    for (const auto& [t, c] : a.user_access_projects)
      l << t << '=' << c << ',';
    l << "|g:";
    for (const auto& [t, c] : a.user_access_groups)
      l << t << '=' << c << ',';
    lines.push_back(l.str());
  });
  s.agents_by_project.for_each(
    [&](std::int64_t project, const std::vector<std::int64_t>& ids) {
      std::ostringstream l;
      l << "project " << project << ':';
      for (auto id : ids)
        l << ' ' << id;
      lines.push_back(l.str());
    });
  s.agent_tokens_by_digest.for_each(
    [&](const std::string& digest, const agent_token_record& t) {
      lines.push_back("token " + digest + " " + std::to_string(t.id) + " "
                      + std::to_string(t.agent_id));
    });
  s.runner_by_digest.for_each([&](const std::string& digest, std::int64_t id) {
    lines.push_back("runner " + digest + " " + std::to_string(id));
  });
  std::sort(lines.begin(), lines.end());
  return lines;
}

/// The demo document plus user_access authorizations and runners.
nlohmann::json agents_seed() {
  auto doc = demo_seed();
  doc["cluster_agents"][0]["authorizations"] = nlohmann::json::parse(R"({
    "user_access": {
      "projects": [{"project_id": 11, "config": {"access_as": {"agent": {}}}}],
      "groups": [{"namespace_id": 6, "config": {}}]}
  })");
  doc["cluster_agents"][0]["tokens"].push_back(
    {{"id", 2}, {"token", "glagent-revoked"}, {"revoked", true}});
  doc["cluster_agents"].push_back(
    {{"id", 4}, {"project_id", 10}, {"name", "staging"}});
  doc["runners"] = nlohmann::json::parse(R"([
    {"id": 1, "token": "glrt-active"},
    {"id": 2, "token": "glrt-paused", "active": false}
  ])");
  return doc;
}

struct agents_database : seeded_database {
  agents_database() {
    seed_ok(*conn, agents_seed());
  }
};

/// Waits for a model for which `pred` holds.
template <class Pred>
snapshot_ptr wait_for(actor_env& env, Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = env.next_snapshot(1s);
    if (s && pred(*s))
      return s;
  }
  return nullptr;
}

std::string uuid(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", n);
  return buf;
}

agents::outbox_event event(int n, const std::string& kind,
                           std::int64_t agent = 3) {
  agents::outbox_event e;
  e.event_id = uuid(n);
  e.project_id = 10;
  e.subject = "gitlab.events." + kind + "." + std::to_string(agent);
  e.kind = kind;
  e.body = R"({"agent_id":)" + std::to_string(agent) + "}";
  return e;
}

std::string outbox(agents_database& m) {
  return m.query("SELECT coalesce(string_agg(kind || ' ' || subject, '; ' "
                 "ORDER BY seq), '') FROM gatehouse_state.outbox");
}

agents::connection_write connection(std::int64_t agent, const char* version,
                                    const char* k8s, int n) {
  agents::connection_write c;
  c.seen.agent_id = agent;
  c.seen.project_id = 10;
  c.seen.agent_version = version;
  c.seen.kubernetes_version = k8s;
  c.seen.architecture = "amd64";
  c.registered = event(n, "agent_registered", agent);
  c.upgraded = event(n + 1, "agent_upgraded", agent);
  return c;
}

/// Stops a detached actor when the test ends, a failed REQUIRE included
/// (the actor system waits for it otherwise).
template <class Handle>
struct stop_on_exit {
  actor_env& env;
  Handle hdl;
  ~stop_on_exit() {
    env.self->send_exit(hdl, caf::exit_reason::user_shutdown);
  }
};

struct store_env {
  agents_database m;
  actor_env env;
  std::atomic<int> commits{0};
  agent_store_actor store;

  store_env() {
    storage::agent_store_settings s;
    s.database_url = m.db.url();
    s.statement_timeout = 5s;
    s.on_events_committed = [this] { ++commits; };
    store = env.sys.spawn<caf::detached>(storage::agent_store, s);
  }

  ~store_env() {
    env.self->send_exit(store, caf::exit_reason::user_shutdown);
  }
};

} // namespace

// -- the read model -------------------------------------------------------------

TEST_CASE("a full load reads agents, active tokens, user_access and active "
          "runners",
          "[.pg]") {
  agents_database m;
  auto s = storage::load_snapshot(*m.conn);
  REQUIRE(s.agents.count(3) == 1);
  const auto& a = s.agents.at(3);
  CHECK(a.project_id == 10);
  CHECK(a.name == "prod");
  REQUIRE(a.user_access_projects.size() == 1);
  CHECK(a.user_access_projects[0].first == 11);
  CHECK(nlohmann::json::parse(a.user_access_projects[0].second)
        == nlohmann::json::parse(R"({"access_as":{"agent":{}}})"));
  REQUIRE(a.user_access_groups.size() == 1);
  CHECK(a.user_access_groups[0] == std::make_pair(std::int64_t{6},
                                                  std::string{"{}"}));
  CHECK(s.agents_by_project.at(10) == std::vector<std::int64_t>{3, 4});
  auto t = s.agent_tokens_by_digest.find(token_digest(demo_agent_token));
  REQUIRE(t != s.agent_tokens_by_digest.end());
  CHECK(t->second.id == 1);
  CHECK(t->second.agent_id == 3);
  CHECK(s.agent_tokens_by_digest.count(token_digest("glagent-revoked")) == 0);
  CHECK(s.runner_by_digest.at(token_digest("glrt-active")) == 1);
  CHECK(s.runner_by_digest.count(token_digest("glrt-paused")) == 0);
  CHECK(storage::kind_concerns_read_model("cluster_agents"));
  CHECK(storage::kind_concerns_read_model("runners"));
}

TEST_CASE("agent changes reach the model through the change log", "[.pg]") {
  agents_database m;
  actor_env env;
  auto loader = env.sys.spawn<caf::detached>(storage::read_model_loader,
                                             loader_settings(m.db.url()));
  stop_on_exit<read_model_loader_actor> stop{env, loader};
  env.self->send(loader, atom::subscribe::value, env.subscriber());
  auto first = env.next_snapshot(10s);
  REQUIRE(first);
  auto digest = token_digest(demo_agent_token);
  REQUIRE(first->agent_tokens_by_digest.count(digest) == 1);
  auto count_changes = [&] {
    return m.query("SELECT count(*) FROM gatehouse_state.read_model_changes "
                   "WHERE kind <> '*'");
  };

  // KAS's every call records last_used_at: no change.
  auto before = count_changes();
  exec(*m.conn, "UPDATE cluster_agent_tokens SET last_used_at = now()");
  CHECK(count_changes() == before);

  SECTION("a revoked token is gone from the next model") {
    exec(*m.conn, "UPDATE cluster_agent_tokens SET revoked = true WHERE id = 1");
    auto s = wait_for(env, [&](const snapshot& s) {
      return s.agent_tokens_by_digest.count(digest) == 0;
    });
    REQUIRE(s);
    // Not a full load: the users' shards are the first model's.
    CHECK(s->users.shares_shard_with(first->users, first->users.shard_of(1)));
    CHECK(describe_agents(*s) == describe_agents(storage::load_snapshot(*m.conn)));
    // Un-revoked, and a new token: back.
    exec(*m.conn, "UPDATE cluster_agent_tokens SET revoked = false WHERE id = 1");
    exec(*m.conn, "INSERT INTO cluster_agent_tokens (id, agent_id, "
                  "token_digest) VALUES (7, 4, 'd7')");
    s = wait_for(env, [&](const snapshot& s) {
      return s.agent_tokens_by_digest.count(digest) == 1
        && s.agent_tokens_by_digest.count("d7") == 1;
    });
    REQUIRE(s);
    CHECK(s->agent_tokens_by_digest.at("d7").agent_id == 4);
  }
  SECTION("a user_access authorization change reaches agents[id]") {
    exec(*m.conn, "INSERT INTO agent_user_access_project_authorizations "
                  "(agent_id, project_id, config) VALUES (3, 10, "
                  "'{\"access_as\": {\"user\": {}}}')");
    auto s = wait_for(env, [&](const snapshot& s) {
      return s.agents.at(3).user_access_projects.size() == 2;
    });
    REQUIRE(s);
    CHECK(s->agents.at(3).user_access_projects[0].first == 10);
    exec(*m.conn, "DELETE FROM agent_user_access_group_authorizations");
    s = wait_for(env, [&](const snapshot& s) {
      return s.agents.at(3).user_access_groups.empty();
    });
    REQUIRE(s);
    CHECK(describe_agents(*s) == describe_agents(storage::load_snapshot(*m.conn)));
  }
  SECTION("an agent moved, renamed and deleted; runners paused") {
    exec(*m.conn, "UPDATE cluster_agents SET project_id = 11, name = 'moved' "
                  "WHERE id = 4");
    auto s = wait_for(env, [&](const snapshot& s) {
      return s.agents.at(4).name == "moved";
    });
    REQUIRE(s);
    CHECK(s->agents_by_project.at(10) == std::vector<std::int64_t>{3});
    CHECK(s->agents_by_project.at(11) == std::vector<std::int64_t>{4});
    exec(*m.conn, "DELETE FROM cluster_agents WHERE id = 3");
    exec(*m.conn, "UPDATE ci_runners SET active = NOT active");
    s = wait_for(env, [&](const snapshot& s) {
      return s.agents.count(3) == 0
        && s.runner_by_digest.count(token_digest("glrt-paused")) == 1;
    });
    REQUIRE(s);
    CHECK(s->agents_by_project.count(10) == 0);
    CHECK(s->agent_tokens_by_digest.count(digest) == 0);
    CHECK(s->runner_by_digest.count(token_digest("glrt-active")) == 0);
    CHECK(describe_agents(*s) == describe_agents(storage::load_snapshot(*m.conn)));
  }
  SECTION("seed --prune of an agent token reaches the model") {
    auto doc = agents_seed();
    doc["cluster_agents"][0]["tokens"].erase(0);
    std::istringstream text{doc.dump()};
    auto report = storage::apply_seed(*m.conn, text, {true});
    REQUIRE(report.ok());
    auto s = wait_for(env, [&](const snapshot& s) {
      return s.agent_tokens_by_digest.count(digest) == 0;
    });
    REQUIRE(s);
  }
}

// -- the agent store --------------------------------------------------------------

TEST_CASE("agent store: configuration_write", "[.pg]") {
  store_env t;
  auto& m = t.m;
  agents::configuration_write w;
  w.agent_id = 3;
  // Not the demo's configuration: this one changes it.
  w.config = R"({"gitops": {"manifest_projects": [{"id": "acme/widgets"}]}})";
  w.ci_access_projects = {{10, R"({"default_namespace": "prod"})"}};
  w.ci_access_groups = {{5, "{}"}};
  w.user_access_projects = {{11, R"({"access_as": {"agent": {}}})"},
                            {999, "{}"}}; // gone: skipped
  w.user_access_groups = {};
  w.changed_event = event(1, "agent_configuration");

  auto first = t.env.request<agents::configuration_written>(t.store, w);
  REQUIRE(first);
  CHECK(first->agent_found);
  CHECK(first->changed);
  CHECK(outbox(m) == "agent_configuration gitlab.events.agent_configuration.3");
  CHECK(t.commits.load() == 1);
  CHECK(m.query("SELECT config::text FROM cluster_agent_configs WHERE "
                "agent_id = 3")
        == R"({"gitops": {"manifest_projects": [{"id": "acme/widgets"}]}})");
  CHECK(m.query("SELECT string_agg(project_id || ' ' || config::text, '; ') "
                "FROM agent_project_authorizations WHERE agent_id = 3")
        == R"(10 {"default_namespace": "prod"})");
  CHECK(m.query("SELECT string_agg(project_id::text, ',') FROM "
                "agent_user_access_project_authorizations")
        == "11");
  // The seed's user_access group is gone: the lists are replaced exactly.
  CHECK(m.query("SELECT count(*) FROM agent_user_access_group_authorizations")
        == "0");

  SECTION("the same configuration again: unchanged, no event, no change") {
    auto changes = m.query("SELECT count(*) FROM "
                           "gatehouse_state.read_model_changes");
    // Key order and spacing differ; jsonb compares equal.
    w.config = R"({"gitops":{"manifest_projects":[{"id":"acme/widgets"}]}})";
    w.changed_event = event(2, "agent_configuration");
    auto again = t.env.request<agents::configuration_written>(t.store, w);
    REQUIRE(again);
    CHECK(again->agent_found);
    CHECK_FALSE(again->changed);
    CHECK(m.query("SELECT count(*) FROM gatehouse_state.outbox") == "1");
    CHECK(t.commits.load() == 1);
    CHECK(m.query("SELECT count(*) FROM gatehouse_state.read_model_changes")
          == changes);
  }
  SECTION("a changed configuration whose event was written already: once") {
    w.config = R"({"changed": true})";
    auto again = t.env.request<agents::configuration_written>(t.store, w);
    REQUIRE(again);
    CHECK(again->changed);
    CHECK(m.query("SELECT count(*) FROM gatehouse_state.outbox") == "1");
    CHECK(t.commits.load() == 1);
  }
  SECTION("an agent without a stored configuration: changed") {
    REQUIRE(m.query("SELECT count(*) FROM cluster_agent_configs WHERE "
                    "agent_id = 4")
            == "0");
    w.agent_id = 4;
    w.changed_event = event(4, "agent_configuration", 4);
    auto other = t.env.request<agents::configuration_written>(t.store, w);
    REQUIRE(other);
    CHECK(other->agent_found);
    CHECK(other->changed);
    CHECK(m.query("SELECT count(*) FROM gatehouse_state.outbox") == "2");
    CHECK(t.commits.load() == 2);
  }
  SECTION("a missing agent: nothing written") {
    w.agent_id = 404;
    w.config = R"({"other": 1})";
    w.changed_event = event(3, "agent_configuration");
    auto missing = t.env.request<agents::configuration_written>(t.store, w);
    REQUIRE(missing);
    CHECK_FALSE(missing->agent_found);
    CHECK_FALSE(missing->changed);
    CHECK(m.query("SELECT count(*) FROM cluster_agent_configs WHERE agent_id "
                  "= 404")
          == "0");
    CHECK(m.query("SELECT count(*) FROM gatehouse_state.outbox") == "1");
  }
  SECTION("a malformed event id fails whole") {
    w.config = R"({"third": 3})";
    w.changed_event.event_id = "not-a-uuid";
    auto failed = t.env.request<agents::configuration_written>(t.store, w);
    REQUIRE_FALSE(failed);
    CHECK(m.query("SELECT config::text FROM cluster_agent_configs WHERE "
                  "agent_id = 3")
          == R"({"gitops": {"manifest_projects": [{"id": "acme/widgets"}]}})");
  }
}

TEST_CASE("agent store: usage_write adds counters and records connections",
          "[.pg]") {
  store_env t;
  auto& m = t.m;
  agents::usage_write w;
  w.counters = {{"gitops_sync", 2}, {"k8s_api_proxy_request", 0},
                {"gitops_sync", 1}};
  w.unique_ids = {{"agent_users_using_ci_tunnel", 7},
                  {"agent_users_using_ci_tunnel", 7},
                  {"agent_users_using_ci_tunnel", 8}};
  w.connections = {connection(3, "v17.0.0", "v1.30", 10),
                   connection(404, "v17.0.0", "v1.30", 20)};
  auto first = t.env.request<agents::usage_written>(t.store, w);
  REQUIRE(first);
  CHECK(first->changes == std::vector<std::string>{"registered", ""});
  CHECK(outbox(m) == "agent_registered gitlab.events.agent_registered.3");
  CHECK(t.commits.load() == 1);

  // Unchanged versions: no event; the same agent twice in one write: the
  // second compares with the first.
  w.counters = {{"gitops_sync", 4}};
  w.unique_ids = {{"agent_users_using_ci_tunnel", 9}};
  w.connections = {connection(3, "v17.0.0", "v1.30", 30),
                   connection(3, "v17.1.0", "v1.30", 40)};
  auto second = t.env.request<agents::usage_written>(t.store, w);
  REQUIRE(second);
  CHECK(second->changes == std::vector<std::string>{"", "upgraded"});
  CHECK(outbox(m)
        == "agent_registered gitlab.events.agent_registered.3; "
           "agent_upgraded gitlab.events.agent_upgraded.3");
  CHECK(t.commits.load() == 2);
  CHECK(m.query("SELECT agent_version || ' ' || kubernetes_version || ' ' || "
                "architecture FROM cluster_agent_connections WHERE agent_id "
                "= 3")
        == "v17.1.0 v1.30 amd64");

  w.counters = {};
  w.unique_ids = {};
  w.connections = {connection(3, "v17.1.0", "v1.31", 50)};
  auto third = t.env.request<agents::usage_written>(t.store, w);
  REQUIRE(third);
  CHECK(third->changes == std::vector<std::string>{"upgraded"});
  w.connections = {connection(3, "v17.1.0", "v1.31", 60)};
  auto fourth = t.env.request<agents::usage_written>(t.store, w);
  REQUIRE(fourth);
  CHECK(fourth->changes == std::vector<std::string>{""});
  CHECK(t.commits.load() == 3);

  auto totals = t.env.request<agents::usage_totals>(t.store,
                                                    atom::usage_totals::value);
  REQUIRE(totals);
  using counts = std::vector<std::pair<std::string, std::int64_t>>;
  CHECK(totals->counters == counts{{"gitops_sync", 7}});
  CHECK(totals->unique_week == counts{{"agent_users_using_ci_tunnel", 3}});
  CHECK(totals->unique_month == counts{{"agent_users_using_ci_tunnel", 3}});
  CHECK(totals->connected_agents == 1);

  // Expired ids count nowhere and are purged; older connections do not
  // count as connected.
  exec(*m.conn, "UPDATE gatehouse_state.agent_unique_ids SET last_seen_at = "
                "now() - interval '10 days' WHERE entity_id = 7");
  exec(*m.conn, "UPDATE gatehouse_state.agent_unique_ids SET last_seen_at = "
                "now() - interval '29 days' WHERE entity_id = 8");
  exec(*m.conn, "UPDATE cluster_agent_connections SET last_seen_at = now() - "
                "interval '2 hours'");
  totals = t.env.request<agents::usage_totals>(t.store,
                                               atom::usage_totals::value);
  REQUIRE(totals);
  CHECK(totals->unique_week == counts{{"agent_users_using_ci_tunnel", 1}});
  CHECK(totals->unique_month == counts{{"agent_users_using_ci_tunnel", 2}});
  CHECK(totals->connected_agents == 0);
  CHECK(m.query("SELECT count(*) FROM gatehouse_state.agent_unique_ids")
        == "2");
}

TEST_CASE("agent store: config_push writes each event once", "[.pg]") {
  store_env t;
  auto e = event(100, "agent_config_push");
  auto first = t.env.request<bool>(t.store, atom::config_push::value, e);
  REQUIRE(first);
  CHECK(*first);
  auto again = t.env.request<bool>(t.store, atom::config_push::value, e);
  REQUIRE(again);
  CHECK_FALSE(*again);
  CHECK(outbox(t.m) == "agent_config_push gitlab.events.agent_config_push.3");
  CHECK(t.m.query("SELECT coalesce(bulk::text, 'null') || "
                  "coalesce(commits_unavailable::text, 'null') || body FROM "
                  "gatehouse_state.outbox")
        == R"(nullnull{"agent_id":3})");
  CHECK(t.commits.load() == 1);
}

TEST_CASE("agent store: touch_agent_token, and a lost connection", "[.pg]") {
  store_env t;
  auto& m = t.m;
  t.env.self->send(t.store, atom::touch_agent_token::value, std::int64_t{1});
  // A request behind the touch in the same mailbox: answered after it.
  REQUIRE(t.env.request<agents::usage_totals>(t.store,
                                              atom::usage_totals::value));
  CHECK(m.query("SELECT last_used_at IS NOT NULL FROM cluster_agent_tokens "
                "WHERE id = 1")
        == "t");

  // The server ends the store's session: the next call fails as
  // unavailable or succeeds on a new connection; the one after succeeds.
  exec(*m.conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> "
                "pg_backend_pid()");
  auto after = t.env.request<agents::usage_totals>(t.store,
                                                   atom::usage_totals::value);
  if (!after)
    CHECK(classify(after.error()) == errc::unavailable);
  CHECK(t.env.request<agents::usage_totals>(t.store,
                                            atom::usage_totals::value));
}
