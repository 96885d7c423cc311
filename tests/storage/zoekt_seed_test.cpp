// The seed's search-indexing fields (zoekt_enabled_namespaces, the search
// settings, projects[].forked_from_project_id): validation without a
// database, and the round trip, refusals and --prune against a real
// PostgreSQL (hidden tag [.pg]). Also that 012_zoekt.sql is harmless run
// twice.

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

std::string show(const problems& ps) {
  std::string out;
  for (const auto& p : ps)
    out += p + "\n";
  return out;
}

/// The demo document (namespace 5 top-level, 6 its sub-group; projects 10
/// in 5, 11 in 6) with every search field set away from its default.
json zoekt_doc() {
  auto doc = demo_seed();
  doc["zoekt_enabled_namespaces"] = json::parse(R"([{"namespace_id": 5}])");
  auto& s = doc["settings"];
  s["zoekt_indexing_paused"] = true;
  s["zoekt_indexing_parallelism"] = 4;
  s["zoekt_maximum_files"] = 1000;
  s["zoekt_indexing_timeout_seconds"] = 600;
  s["zoekt_cpu_to_tasks_ratio"] = 0.5;
  s["elasticsearch_indexing"] = true;
  s["elasticsearch_indexed_file_size_limit_kb"] = 2048;
  doc["projects"][1]["forked_from_project_id"] = 10;
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

std::string enabled(pqxx::connection& conn) {
  return query1(conn, "SELECT coalesce(string_agg(namespace_id::text, ',' "
                      "ORDER BY namespace_id), '') FROM "
                      "zoekt_enabled_namespaces");
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

TEST_CASE("the seed's search fields validate", "[seed]") {
  CHECK(validate(zoekt_doc()).empty());

  SECTION("settings: types and ranges") {
    auto doc = zoekt_doc();
    auto& s = doc["settings"];
    s["zoekt_indexing_paused"] = "yes";
    s["zoekt_indexing_parallelism"] = 0;
    s["zoekt_maximum_files"] = -1;
    s["zoekt_indexing_timeout_seconds"] = 1.5;
    s["zoekt_cpu_to_tasks_ratio"] = -0.5;
    s["elasticsearch_indexing"] = 1;
    s["elasticsearch_indexed_file_size_limit_kb"] = "big";
    auto ps = validate(doc);
    INFO(show(ps));
    CHECK(ps
          == problems{
            "settings.zoekt_indexing_paused: must be true or false",
            "settings.elasticsearch_indexing: must be true or false",
            "settings.zoekt_indexing_parallelism: must be an integer >= 1",
            "settings.zoekt_maximum_files: must be an integer >= 1",
            "settings.elasticsearch_indexed_file_size_limit_kb: must be an "
            "integer >= 1",
            "settings.zoekt_indexing_timeout_seconds: must be an integer >= 0",
            "settings.zoekt_cpu_to_tasks_ratio: must be a number >= 0"});
  }
  SECTION("an integer ratio is a ratio too") {
    auto doc = zoekt_doc();
    doc["settings"]["zoekt_cpu_to_tasks_ratio"] = 2;
    CHECK(validate(doc).empty());
  }
  SECTION("enabled namespaces: references, sub-groups, repeats, fields") {
    auto doc = zoekt_doc();
    doc["zoekt_enabled_namespaces"] = json::parse(R"([
      {"namespace_id": 6}, {"namespace_id": 99}, {"namespace_id": 5},
      {"namespace_id": 5}, {"id": 5}
    ])");
    auto ps = validate(doc);
    INFO(show(ps));
    CHECK(std::count(ps.begin(), ps.end(),
                     "zoekt_enabled_namespaces[0].namespace_id: namespace 6 "
                     "is a sub-group; Zoekt is enabled for top-level "
                     "namespaces only")
          == 1);
    CHECK(std::count(ps.begin(), ps.end(),
                     "zoekt_enabled_namespaces[1].namespace_id: no namespace "
                     "with id 99")
          == 1);
    CHECK(std::count(ps.begin(), ps.end(),
                     "zoekt_enabled_namespaces[3].namespace_id: namespace 5 "
                     "is also listed by zoekt_enabled_namespaces[2]")
          == 1);
    CHECK(std::count(ps.begin(), ps.end(),
                     "zoekt_enabled_namespaces[4].namespace_id: is required")
          == 1);
    CHECK(std::count(ps.begin(), ps.end(),
                     "zoekt_enabled_namespaces[4]: unknown key \"id\"")
          == 1);
    CHECK(ps.size() == 5);
  }
  SECTION("forked_from_project_id: an id or null, not the project itself") {
    auto doc = zoekt_doc();
    doc["projects"][0]["forked_from_project_id"] = nullptr;
    doc["projects"][1]["forked_from_project_id"] = 11;
    CHECK(validate(doc)
          == problems{"projects[1].forked_from_project_id: a project cannot "
                      "fork itself"});
    doc["projects"][1]["forked_from_project_id"] = "10";
    CHECK(validate(doc)
          == problems{"projects[1].forked_from_project_id: must be a positive "
                      "integer"});
    // A source outside the document and the database is fine: GitLab keeps
    // a fork a fork after its source is deleted.
    doc["projects"][1]["forked_from_project_id"] = 12345;
    CHECK(validate(doc).empty());
  }
}

TEST_CASE("012_zoekt.sql is harmless run a second time", "[.pg]") {
  migrated m;
  seed_ok(*m.conn, zoekt_doc());
  exec(*m.conn, "INSERT INTO zoekt_nodes (uuid, name, url) VALUES ('n-1', "
                "'n', 'http://n')");
  auto state = [&] {
    return query1(*m.conn,
                  "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")
      + "|" + enabled(*m.conn) + "|"
      + query1(*m.conn, "SELECT string_agg(key || '=' || value::text, ',' "
                        "ORDER BY key) FROM settings WHERE key LIKE 'zoekt%' "
                        "OR key LIKE 'elastic%'")
      + "|" + query1(*m.conn, "SELECT string_agg(id || uuid, ',' ORDER BY id) "
                              "FROM zoekt_nodes");
  };
  auto before = state();
  for (const auto& mig : storage::embedded_migrations())
    if (mig.name == "012_zoekt.sql")
      exec(*m.conn, mig.sql);
  CHECK(state() == before);
}

TEST_CASE("a fresh database has GitLab's search defaults", "[.pg]") {
  migrated m;
  CHECK(query1(*m.conn,
               "SELECT string_agg(key || '=' || value::text, ',' ORDER BY key) "
               "FROM settings WHERE key LIKE 'zoekt%' OR key LIKE 'elastic%'")
        == "elasticsearch_indexed_file_size_limit_kb=1024,"
           "elasticsearch_indexing=false,zoekt_cpu_to_tasks_ratio=1.0,"
           "zoekt_indexing_parallelism=1,zoekt_indexing_paused=false,"
           "zoekt_indexing_timeout_seconds=1800,zoekt_maximum_files=500000");
}

TEST_CASE("search fields round-trip through the seed", "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  auto report = seed(conn, zoekt_doc());
  INFO(show(report.problems));
  REQUIRE(report.ok());
  CHECK(report.upserted.at("zoekt_enabled_namespaces") == 1);
  CHECK(enabled(conn) == "5");
  CHECK(query1(conn, "SELECT string_agg(key || '=' || value::text, ',' ORDER "
                     "BY key) FROM settings WHERE key LIKE 'zoekt%' OR key "
                     "LIKE 'elastic%'")
        == "elasticsearch_indexed_file_size_limit_kb=2048,"
           "elasticsearch_indexing=true,zoekt_cpu_to_tasks_ratio=0.5,"
           "zoekt_indexing_parallelism=4,zoekt_indexing_paused=true,"
           "zoekt_indexing_timeout_seconds=600,zoekt_maximum_files=1000");
  CHECK(query1(conn, "SELECT string_agg(id || ':' || coalesce("
                     "forked_from_project_id::text, '-'), ',' ORDER BY id) "
                     "FROM projects")
        == "10:-,11:10");

  SECTION("seeding the same document again changes nothing") {
    auto reloads = [&] {
      return query1(conn, "SELECT count(*) FROM "
                          "gatehouse_state.read_model_changes WHERE kind = "
                          "'*'");
    };
    auto before = reloads();
    auto again = seed(conn, zoekt_doc());
    REQUIRE(again.ok());
    CHECK(reloads() == before);
  }
  SECTION("a document without the key leaves the list alone; --prune of "
          "the key removes unlisted namespaces") {
    exec(conn, "INSERT INTO namespaces (id, path, name, full_path) VALUES "
               "(7, 'other', 'Other', 'other')");
    exec(conn, "INSERT INTO zoekt_enabled_namespaces (namespace_id) VALUES (7)");
    json doc = {{"settings", {{"zoekt_maximum_files", 7}}}};
    seed_ok(conn, doc, true);
    CHECK(enabled(conn) == "5,7");
    doc = json::object();
    doc["zoekt_enabled_namespaces"] = json::parse(R"([{"namespace_id": 7}])");
    seed_ok(conn, doc, true);
    CHECK(enabled(conn) == "7");
    doc["zoekt_enabled_namespaces"] = json::array();
    seed_ok(conn, doc, true);
    CHECK(enabled(conn) == "");
  }
  SECTION("a sub-group only the database knows is refused, nothing written") {
    exec(conn, "INSERT INTO namespaces (id, parent_id, path, name, full_path) "
               "VALUES (8, 5, 'deep', 'Deep', 'acme/deep')");
    json doc = json::object();
    doc["zoekt_enabled_namespaces"]
      = json::parse(R"([{"namespace_id": 5}, {"namespace_id": 8}])");
    doc["settings"] = {{"zoekt_indexing_paused", false}};
    auto r = seed(conn, doc, true);
    CHECK(r.problems
          == problems{"zoekt_enabled_namespaces[1].namespace_id: namespace 8 "
                      "is a sub-group; Zoekt is enabled for top-level "
                      "namespaces only"});
    CHECK(enabled(conn) == "5");
    CHECK(query1(conn, "SELECT value::text FROM settings WHERE key = "
                       "'zoekt_indexing_paused'")
          == "true");
  }
  SECTION("an unknown namespace is refused") {
    json doc = json::object();
    doc["zoekt_enabled_namespaces"] = json::parse(R"([{"namespace_id": 404}])");
    auto r = seed(conn, doc);
    CHECK(r.problems
          == problems{"zoekt_enabled_namespaces[0].namespace_id: no namespace "
                      "with id 404"});
  }
  SECTION("deleting a namespace disables it") {
    exec(conn, "DELETE FROM zoekt_enabled_namespaces");
    exec(conn, "INSERT INTO namespaces (id, path, name, full_path) VALUES "
               "(9, 'gone', 'Gone', 'gone')");
    exec(conn, "INSERT INTO zoekt_enabled_namespaces (namespace_id) VALUES (9)");
    exec(conn, "DELETE FROM namespaces WHERE id = 9");
    CHECK(enabled(conn) == "");
  }
}

TEST_CASE("seeded zoekt nodes leave room for nodes that register", "[.pg]") {
  migrated m;
  auto doc = demo_seed();
  doc["zoekt_nodes"] = json::parse(R"([
    {"id": 40, "uuid": "3869fe21-36d1-4612-9676-0b783ef2dcd7",
     "url": "http://zoekt-0:6080"}])");
  seed_ok(*m.conn, doc);
  exec(*m.conn, "INSERT INTO zoekt_nodes (uuid, name, url) VALUES "
                "('registered', 'r', 'http://r')");
  CHECK(query1(*m.conn, "SELECT id FROM zoekt_nodes WHERE uuid = 'registered'")
        == "41");
  CHECK(query1(*m.conn, "SELECT uuid FROM zoekt_nodes WHERE id = 40")
        == "3869fe21-36d1-4612-9676-0b783ef2dcd7");
}
