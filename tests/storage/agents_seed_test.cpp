// The seed's agent fields (cluster_agents[].configuration and
// .authorizations) and top-level runners: validation without a database,
// and the round trip, re-seed and --prune against a real PostgreSQL
// (hidden tag [.pg]). Also that 011_agents.sql is harmless run twice.

#include "common/base64.hpp"
#include "storage/database.hpp"
#include "storage/migrate.hpp"
#include "storage/seed.hpp"
#include "tests/storage/seed_fixtures.hpp"
#include "tests/support/scratch_database.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

namespace storage = gatehouse::storage;
using gatehouse::test::demo_seed;
using gatehouse::test::scratch_database;
using json = nlohmann::json;
using problems = std::vector<std::string>;

namespace {

problems validate(const json& doc) {
  std::istringstream in{doc.dump()};
  return storage::validate_seed(in);
}

bool has(const problems& ps, const std::string& p) {
  return std::find(ps.begin(), ps.end(), p) != ps.end();
}

std::string show(const problems& ps) {
  std::string out;
  for (const auto& p : ps)
    out += p + "\n";
  return out;
}

/// The demo document with an agent configuration, authorizations of every
/// kind, and two runners.
json agents_doc() {
  auto doc = demo_seed();
  auto& agent = doc["cluster_agents"][0];
  agent["configuration"] = json::parse(R"({"gitops":{"manifest_projects":[]}})");
  agent["authorizations"] = json::parse(R"({
    "ci_access": {
      "projects": [{"project_id": 10, "config": {"default_namespace": "prod"}}],
      "groups": [{"namespace_id": 5}]},
    "user_access": {
      "projects": [{"project_id": 11, "config": {"access_as": {"agent": {}}}}],
      "groups": [{"namespace_id": 6, "config": {"access_as": {"agent": {}}}}]}
  })");
  doc["runners"] = json::parse(R"([
    {"id": 1, "token": "glrt-one", "description": "first"},
    {"id": 2, "token": "glrt-two", "active": false}
  ])");
  return doc;
}

std::string query1(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx{conn};
  auto r = tx.exec(sql);
  if (r.empty())
    return "";
  return r[0][0].is_null() ? "NULL" : r[0][0].as<std::string>();
}

void exec(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx{conn};
  tx.exec(sql);
}

storage::seed_report seed(pqxx::connection& conn, const json& doc,
                          bool prune = false) {
  std::istringstream text{doc.dump()};
  return storage::apply_seed(conn, text, storage::seed_options{prune});
}

void seed_ok(pqxx::connection& conn, const json& doc, bool prune = false) {
  auto report = seed(conn, doc, prune);
  INFO(show(report.problems));
  REQUIRE(report.ok());
}

/// The four authorization tables of agent 3, one line per row.
std::string authorizations(pqxx::connection& conn) {
  return query1(
    conn,
    "SELECT string_agg(line, '; ' ORDER BY line) FROM ("
    "SELECT 'ci project ' || project_id || ' ' || config::text AS line FROM "
    "agent_project_authorizations UNION ALL "
    "SELECT 'ci group ' || group_id || ' ' || config::text FROM "
    "agent_group_authorizations UNION ALL "
    "SELECT 'user project ' || project_id || ' ' || config::text FROM "
    "agent_user_access_project_authorizations UNION ALL "
    "SELECT 'user group ' || group_id || ' ' || config::text FROM "
    "agent_user_access_group_authorizations) t");
}

struct migrated {
  scratch_database db;
  std::unique_ptr<pqxx::connection> conn
    = storage::connect(db.url(), std::chrono::seconds{30});
  migrated() {
    storage::migrate(*conn);
  }
};

} // namespace

TEST_CASE("the seed's agent and runner fields validate", "[seed]") {
  CHECK(validate(agents_doc()).empty());

  SECTION("configuration must be an object") {
    auto doc = agents_doc();
    doc["cluster_agents"][0]["configuration"] = "gitops: {}";
    CHECK(validate(doc)
          == problems{"cluster_agents[0].configuration: must be an object"});
  }
  SECTION("authorizations: types, unknown keys, references, duplicates") {
    auto doc = agents_doc();
    auto& auth = doc["cluster_agents"][0]["authorizations"];
    auth["ci_access"]["projects"].push_back({{"project_id", 10}});
    auth["ci_access"]["groups"][0]["namespace_id"] = 99;
    auth["user_access"]["projects"][0]["config"] = json::array();
    auth["user_access"]["groups"] = json::object();
    auth["user_access"]["extra"] = true;
    auth["other_access"] = json::object();
    auto ps = validate(doc);
    INFO(show(ps));
    CHECK(has(ps, "cluster_agents[0].authorizations.ci_access.projects[1]."
                  "project_id: project 10 is also listed by "
                  "cluster_agents[0].authorizations.ci_access.projects[0]"));
    CHECK(has(ps, "cluster_agents[0].authorizations.ci_access.groups[0]."
                  "namespace_id: no namespace with id 99"));
    CHECK(has(ps, "cluster_agents[0].authorizations.user_access.projects[0]."
                  "config: must be an object"));
    CHECK(has(ps, "cluster_agents[0].authorizations.user_access.groups: must "
                  "be an array"));
    CHECK(has(ps, "cluster_agents[0].authorizations.user_access: unknown key "
                  "\"extra\""));
    CHECK(has(ps, "cluster_agents[0].authorizations: unknown key "
                  "\"other_access\""));
    CHECK(ps.size() == 6);
  }
  SECTION("authorizations must be an object, entries need their id") {
    auto doc = agents_doc();
    doc["cluster_agents"][0]["authorizations"] = json::array();
    CHECK(validate(doc)
          == problems{"cluster_agents[0].authorizations: must be an object"});
    doc["cluster_agents"][0]["authorizations"]
      = json::parse(R"({"ci_access": {"projects": [{"config": {}}]}})");
    CHECK(validate(doc)
          == problems{"cluster_agents[0].authorizations.ci_access.projects[0]."
                      "project_id: is required"});
  }
  SECTION("runners: ids, tokens, types") {
    auto doc = agents_doc();
    doc["runners"].push_back({{"id", 1}, {"token", "glrt-one"}});
    doc["runners"].push_back({{"id", 4}, {"active", "yes"}, {"token", 5}});
    auto ps = validate(doc);
    INFO(show(ps));
    CHECK(has(ps, "runners[2].id: id 1 is also used by runners[0]"));
    CHECK(has(ps, "runners[2].token: same token as runners[0]"));
    CHECK(has(ps, "runners[3].active: must be true or false"));
    CHECK(has(ps, "runners[3].token: must be a string"));
    CHECK(ps.size() == 4);
  }
}

TEST_CASE("011_agents.sql is harmless run a second time", "[.pg]") {
  migrated m;
  seed_ok(*m.conn, agents_doc());
  auto before = query1(*m.conn,
                       "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")
    + authorizations(*m.conn);
  for (const auto& mig : storage::embedded_migrations())
    if (mig.name == "011_agents.sql")
      exec(*m.conn, mig.sql);
  CHECK(query1(*m.conn,
               "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")
          + authorizations(*m.conn)
        == before);
}

TEST_CASE("agent configurations, authorizations and runners round-trip "
          "through the seed",
          "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  auto doc = agents_doc();
  seed_ok(conn, doc);
  CHECK(query1(conn, "SELECT config::text FROM cluster_agent_configs WHERE "
                     "agent_id = 3")
        == R"({"gitops": {"manifest_projects": []}})");
  CHECK(authorizations(conn)
        == "ci group 5 {}; ci project 10 {\"default_namespace\": \"prod\"}; "
           "user group 6 {\"access_as\": {\"agent\": {}}}; user project 11 "
           "{\"access_as\": {\"agent\": {}}}");
  CHECK(query1(conn, "SELECT string_agg(id || ' ' || token_digest || ' ' || "
                     "description || ' ' || active, '; ' ORDER BY id) FROM "
                     "ci_runners")
        == "1 " + gatehouse::token_digest("glrt-one") + " first true; 2 "
             + gatehouse::token_digest("glrt-two") + "  false");
  // Clear tokens are never stored.
  CHECK(query1(conn, "SELECT count(*) FROM ci_runners WHERE token_digest "
                     "LIKE 'glrt%'")
        == "0");

  // The same document again changes nothing.
  auto stamp = [&] {
    return query1(conn, "SELECT string_agg(xmin::text, ',' ORDER BY agent_id) "
                        "FROM cluster_agent_configs")
      + "|"
      + query1(conn, "SELECT string_agg(xmin::text, ',' ORDER BY "
                     "agent_id, project_id) FROM "
                     "agent_user_access_project_authorizations")
      + "|"
      + query1(conn, "SELECT string_agg(xmin::text, ',' ORDER BY id) FROM "
                     "ci_runners");
  };
  auto before = stamp();
  seed_ok(conn, doc);
  CHECK(stamp() == before);

  // Without the keys, what KAS stored stays.
  exec(conn, "UPDATE cluster_agent_configs SET config = '{\"from\": \"kas\"}'");
  auto without = doc;
  without["cluster_agents"][0].erase("configuration");
  without["cluster_agents"][0].erase("authorizations");
  seed_ok(conn, without);
  CHECK(query1(conn, "SELECT config::text FROM cluster_agent_configs")
        == R"({"from": "kas"})");
  CHECK(authorizations(conn).find("ci project 10") != std::string::npos);

  // With them, the lists become exactly what the document lists.
  auto fewer = doc;
  fewer["cluster_agents"][0]["authorizations"] = json::parse(
    R"({"user_access": {"projects": [{"project_id": 10}]}})");
  seed_ok(conn, fewer);
  CHECK(authorizations(conn) == "user project 10 {}");
  CHECK(query1(conn, "SELECT config::text FROM cluster_agent_configs")
        == R"({"gitops": {"manifest_projects": []}})");
}

TEST_CASE("--prune deletes runners and agents the document no longer lists",
          "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  seed_ok(conn, agents_doc());
  exec(conn, "INSERT INTO cluster_agent_connections (agent_id, project_id, "
             "agent_version) VALUES (3, 10, 'v17.0.0')");

  // Without --prune, a shorter list deletes nothing.
  auto doc = agents_doc();
  doc["runners"].erase(1);
  seed_ok(conn, doc);
  CHECK(query1(conn, "SELECT count(*) FROM ci_runners") == "2");

  seed_ok(conn, doc, true);
  CHECK(query1(conn, "SELECT string_agg(id::text, ',') FROM ci_runners")
        == "1");
  // An agent's configuration rows go with it.
  doc["cluster_agents"] = json::array();
  auto report = seed(conn, doc, true);
  INFO(show(report.problems));
  REQUIRE(report.ok());
  CHECK(report.pruned["cluster_agents"] == 1);
  CHECK(query1(conn, "SELECT count(*) FROM cluster_agent_configs") == "0");
  CHECK(authorizations(conn) == "NULL");
  CHECK(query1(conn, "SELECT count(*) FROM cluster_agent_connections") == "0");
  // Kinds absent from the document are left alone.
  auto no_runners = doc;
  no_runners.erase("runners");
  seed_ok(conn, no_runners, true);
  CHECK(query1(conn, "SELECT count(*) FROM ci_runners") == "1");
}
