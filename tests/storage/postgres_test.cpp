// Migrations and the seed loader against a real PostgreSQL server. Hidden
// tag [.pg]: run with `gatehouse_storage_tests "[.pg]"` and
// GATEHOUSE_TEST_DATABASE_URL set (ctest's storage_postgres does this).

#include "storage/database.hpp"
#include "storage/migrate.hpp"
#include "storage/seed.hpp"
#include "tests/storage/seed_fixtures.hpp"
#include "tests/support/process.hpp"
#include "tests/support/scratch_database.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace storage = gatehouse::storage;
using gatehouse::test::demo_seed;
using gatehouse::test::scratch_database;
using json = nlohmann::json;
using problems = std::vector<std::string>;

namespace {

std::unique_ptr<pqxx::connection> open(const scratch_database& db) {
  return storage::connect(db.url(), std::chrono::seconds{30});
}

/// A migrated scratch database and a connection to it.
struct migrated {
  scratch_database db;
  std::unique_ptr<pqxx::connection> conn = open(db);
  migrated() {
    storage::migrate(*conn);
  }
};

/// The first column of the first row of `sql` ("NULL" for null, "" if none).
std::string query1(pqxx::connection& conn, const std::string& sql) {
  pqxx::nontransaction tx{conn};
  auto r = tx.exec(sql);
  if (r.empty())
    return "";
  return r[0][0].is_null() ? "NULL" : r[0][0].as<std::string>();
}

std::vector<std::string> table_names(pqxx::connection& conn) {
  pqxx::nontransaction tx{conn};
  std::vector<std::string> names;
  for (const auto& row : tx.exec(
         "SELECT table_name FROM information_schema.tables WHERE "
         "table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"))
    names.push_back(row[0].as<std::string>());
  return names;
}

/// Every row of every table, ordered; with `xmin`, each row's version too,
/// so that a rewritten (even identical) row shows up as a difference.
std::map<std::string, std::string> dump_tables(pqxx::connection& conn,
                                               bool xmin = false) {
  std::map<std::string, std::string> out;
  for (const auto& table : table_names(conn)) {
    pqxx::nontransaction tx{conn};
    auto sql = std::string("SELECT row_to_json(t)::text")
      + (xmin ? " || ' xmin=' || t.xmin::text" : "") + " FROM "
      + tx.quote_name(table) + " t ORDER BY 1";
    std::string text;
    for (const auto& row : tx.exec(sql))
      text += row[0].as<std::string>() + "\n";
    out[table] = text;
  }
  return out;
}

std::string dump(pqxx::connection& conn, bool xmin = false) {
  std::string text;
  for (const auto& [table, rows] : dump_tables(conn, xmin))
    text += "== " + table + "\n" + rows;
  return text;
}

std::string schema_dump(pqxx::connection& conn) {
  pqxx::nontransaction tx{conn};
  std::string text;
  for (const auto& row : tx.exec(
         "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' "
         "|| "
         "is_nullable || ' ' || coalesce(column_default, '') FROM "
         "information_schema.columns WHERE table_schema = 'public' ORDER BY 1"))
    text += row[0].as<std::string>() + "\n";
  for (const auto& row : tx.exec("SELECT indexdef FROM pg_indexes WHERE "
                                 "schemaname = 'public' ORDER BY 1"))
    text += row[0].as<std::string>() + "\n";
  for (const auto& row :
       tx.exec("SELECT conname || ' ' || pg_get_constraintdef(oid) FROM "
               "pg_constraint "
               "WHERE connamespace = 'public'::regnamespace ORDER BY 1"))
    text += row[0].as<std::string>() + "\n";
  return text;
}

std::vector<std::string> migration_names() {
  std::vector<std::string> names;
  for (const auto& m : storage::embedded_migrations())
    names.push_back(m.name);
  return names;
}

storage::seed_report seed(pqxx::connection& conn, const json& doc,
                          bool prune = false) {
  std::istringstream text{doc.dump()};
  auto report = storage::apply_seed(conn, text, storage::seed_options{prune});
  return report;
}

/// Seeds `doc` and REQUIREs success, showing the problems otherwise.
void seed_ok(pqxx::connection& conn, const json& doc, bool prune = false) {
  auto report = seed(conn, doc, prune);
  for (const auto& p : report.problems)
    UNSCOPED_INFO(p);
  REQUIRE(report.ok());
}

/// Collects NOTIFY payloads of one channel.
class listener : public pqxx::notification_receiver {
public:
  listener(pqxx::connection& conn, const std::string& channel)
    : pqxx::notification_receiver(conn, channel) {}
  void operator()(const std::string& payload, int) override {
    payloads.push_back(payload);
  }
  std::vector<std::string> payloads;
};

} // namespace

TEST_CASE("connect names the application and sets the statement timeout",
          "[.pg]") {
  scratch_database db;
  auto conn = storage::connect(db.url(), std::chrono::milliseconds{1500});
  CHECK(query1(*conn, "SELECT current_setting('application_name')")
        == "gatehouse");
  CHECK(query1(*conn, "SHOW statement_timeout") == "1500ms");
  auto plain = storage::connect(db.url(), std::chrono::milliseconds{0});
  CHECK(query1(*plain, "SHOW statement_timeout") == "0");
}

TEST_CASE("migrate applies each migration once and is idempotent", "[.pg]") {
  scratch_database db;
  auto conn = open(db);
  auto first = storage::migrate(*conn);
  CHECK(first.applied == migration_names());
  CHECK(first.skipped.empty());
  auto schema = schema_dump(*conn);
  auto second = storage::migrate(*conn);
  CHECK(second.applied.empty());
  CHECK(second.skipped == migration_names());
  CHECK(schema_dump(*conn) == schema);
  CHECK(query1(*conn, "SELECT count(*) FROM schema_migrations")
        == std::to_string(migration_names().size()));
}

TEST_CASE("migrate leaves default settings", "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  CHECK(
    query1(conn,
           "SELECT value #>> '{}' FROM settings WHERE key = 'gitlab_version'")
    == "18.6.0");
  CHECK(query1(conn,
               "SELECT value #>> '{}' FROM settings WHERE key = 'external_url'")
        == "http://127.0.0.1:8080");
  CHECK(query1(conn,
               "SELECT value::text FROM settings WHERE key = "
               "'gitlab_shell_operation_limit'")
        == "600");
  CHECK(query1(conn,
               "SELECT value::text FROM settings WHERE key = "
               "'allow_local_requests_from_web_hooks_and_services'")
        == "false");
  // 001's nine and 012's seven search settings.
  CHECK(query1(conn, "SELECT count(*) FROM settings") == "16");
}

TEST_CASE("two concurrent migrate calls both succeed, each file once",
          "[.pg]") {
  scratch_database db;
  std::promise<void> go;
  auto start = go.get_future().share();
  std::atomic<int> connected{0};
  auto run = [&] {
    auto conn = open(db);
    ++connected;
    start.wait();
    return storage::migrate(*conn);
  };
  auto a = std::async(std::launch::async, run);
  auto b = std::async(std::launch::async, run);
  // Both connected before either migrates, so that they overlap.
  CHECK(gatehouse::test::eventually([&] { return connected == 2; }));
  go.set_value();
  storage::migration_report ra, rb;
  REQUIRE_NOTHROW(ra = a.get());
  REQUIRE_NOTHROW(rb = b.get());
  for (const auto& name : migration_names()) {
    auto count = [&](const std::vector<std::string>& v) {
      return std::count(v.begin(), v.end(), name);
    };
    CHECK(count(ra.applied) + count(rb.applied) == 1);
    CHECK(count(ra.skipped) + count(rb.skipped) == 1);
  }
  auto conn = open(db);
  CHECK(query1(*conn, "SELECT count(*) FROM schema_migrations")
        == std::to_string(migration_names().size()));
}

TEST_CASE("a failing migration names its file and is not recorded", "[.pg]") {
  scratch_database db;
  auto conn = open(db);
  std::vector<storage::migration> migrations{
    {"001_ok.sql", "CREATE TABLE a (x int)"},
    {"002_bad.sql", "CREATE TABLE b (x int); CREATE TABLE c (x no_such_type)"}};
  CHECK_THROWS_WITH(
    storage::migrate(*conn, migrations),
    Catch::Matchers::StartsWith(
      "migration 002_bad.sql failed: type \"no_such_type\" does not exist"));
  CHECK(query1(*conn, "SELECT string_agg(name, ',') FROM schema_migrations")
        == "001_ok.sql");
  CHECK(query1(*conn, "SELECT to_regclass('b') IS NULL") == "t");
}

TEST_CASE("the demo document seeds every table", "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  auto report = seed(conn, demo_seed());
  REQUIRE(report.problems == problems{});
  CHECK(report.upserted.at("users") == 3);
  CHECK(report.upserted.at("members") == 2);
  CHECK(report.pruned.empty());
  // LFS objects come from uploads, never from a seed; agent connections
  // from KAS (agent_events); Zoekt repositories and tasks from the indexer
  // coordination.
  const std::set<std::string> not_seeded{
    "lfs_objects",        "lfs_objects_projects", "cluster_agent_connections",
    "zoekt_repositories", "zoekt_tasks"};
  for (const auto& table : table_names(conn))
    if (not_seeded.count(table) == 0)
      CHECK_FALSE(query1(conn, "SELECT count(*) FROM " + table) == "0");
  CHECK(
    query1(conn, "SELECT string_agg(full_path, ',' ORDER BY id) FROM projects")
    == "acme/widgets,acme/tools/hammer");
  CHECK(query1(conn, "SELECT full_path FROM namespaces WHERE id = 6")
        == "acme/tools");
  CHECK(query1(conn,
               "SELECT project_id FROM project_redirects WHERE path = "
               "'acme/old-widgets'")
        == "10");
  CHECK(query1(conn, "SELECT disk_path FROM projects WHERE id = 11")
        == "@hashed/4f/c8/"
           "4fc82b26aecb47d2868c4efbe3581732a3e7cbcc6c2efb32062c08170a05eeb8");
  CHECK(
    query1(conn,
           "SELECT kind || ' ' || fingerprint_sha256 FROM keys WHERE id = 100")
    == "deploy " + gatehouse::test::key_b_fingerprint);
  CHECK(query1(conn,
               "SELECT can_push FROM deploy_keys_projects WHERE key_id = 100 "
               "AND project_id = 10")
        == "f");
  CHECK(query1(conn,
               "SELECT value #>> '{}' FROM settings WHERE key = 'external_url'")
        == "https://gitlab.example.com");
  CHECK(json::parse(query1(conn,
                           "SELECT value::text FROM settings WHERE key = "
                           "'broadcast_messages'"))
        == demo_seed()["settings"]["broadcast_messages"]);
  CHECK(query1(conn,
               "SELECT scopes::text || ' ' || expires_at FROM "
               "personal_access_tokens WHERE id = 1")
        == "{api} 2027-12-31");
  CHECK(query1(conn,
               "SELECT count(*) FROM members WHERE namespace_id = 5 AND "
               "access_level = 40")
        == "1");
}

TEST_CASE("SHA-256 fingerprints match ssh-keygen", "[.pg]") {
  using namespace gatehouse::test;
  migrated m;
  seed_ok(*m.conn,
          {{"users", {{{"id", 1}, {"username", "root"}}}},
           {"keys",
            {{{"id", 1}, {"user_id", 1}, {"key", key_a}},
             {{"id", 2}, {"user_id", 1}, {"key", key_rsa}},
             {{"id", 3}, {"user_id", 1}, {"key", key_ecdsa}}}}});
  CHECK(
    query1(*m.conn,
           "SELECT string_agg(fingerprint_sha256, ' ' ORDER BY id) FROM keys")
    == key_a_fingerprint + " " + key_rsa_fingerprint + " "
      + key_ecdsa_fingerprint);
  CHECK(
    query1(*m.conn, "SELECT string_agg(key_type, ' ' ORDER BY id) FROM keys")
    == "ssh-ed25519 ssh-rsa ecdsa-sha2-nistp256");
  CHECK(
    query1(*m.conn, "SELECT key_blob FROM keys WHERE id = 1")
    == "AAAAC3NzaC1lZDI1NTE5AAAAID72VztSZsPMmsTmHFHnqhQ3DKLjzzr7+I9n3bASRYnv");
  CHECK(query1(*m.conn, "SELECT key FROM keys WHERE id = 1") == key_a);
}

TEST_CASE("seeding the same document twice changes nothing", "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  seed_ok(conn, demo_seed());
  auto before = dump(conn, true);
  seed_ok(conn, demo_seed());
  CHECK(dump(conn, true) == before);
  seed_ok(conn, demo_seed(), true);
  CHECK(dump(conn, true) == before);
}

TEST_CASE("two seeds at once: each applies whole, one after the other",
          "[.pg]") {
  migrated m;
  auto doc_a = demo_seed();
  auto doc_b = demo_seed();
  for (auto& u : doc_b["users"])
    u["name"] = u["name"].get<std::string>() + " (b)";
  std::promise<void> go;
  auto start = go.get_future().share();
  std::atomic<int> connected{0};
  auto run = [&](const json& doc) {
    auto conn = open(m.db);
    ++connected;
    start.wait();
    return seed(*conn, doc);
  };
  auto a = std::async(std::launch::async, run, doc_a);
  auto b = std::async(std::launch::async, run, doc_b);
  CHECK(gatehouse::test::eventually([&] { return connected == 2; }));
  go.set_value();
  CHECK(a.get().ok());
  CHECK(b.get().ok());
  // Every user has the names of one document, never a mix.
  auto marked
    = query1(*m.conn, "SELECT count(*) FROM users WHERE name LIKE '% (b)'");
  auto all = query1(*m.conn, "SELECT count(*) FROM users");
  CHECK((marked == "0" || marked == all));
}

TEST_CASE("strings that look like SQL are stored as data", "[.pg]") {
  migrated m;
  auto doc = demo_seed();
  const std::string name = "Robert'); DROP TABLE users; --";
  const std::string title = "' OR '1'='1";
  doc["users"][0]["name"] = name;
  doc["keys"][0]["title"] = title;
  seed_ok(*m.conn, doc);
  pqxx::nontransaction tx{*m.conn};
  CHECK(
    tx.exec1("SELECT count(*) FROM users WHERE name = " + tx.quote(name))[0]
      .as<int>()
    == 1);
  CHECK(
    tx.exec1("SELECT count(*) FROM keys WHERE title = " + tx.quote(title))[0]
      .as<int>()
    == 1);
}

TEST_CASE("seeding notifies gatehouse_changes with the kinds that changed",
          "[.pg]") {
  migrated m;
  auto listen_conn = open(m.db);
  listener changes{*listen_conn, "gatehouse_changes"};
  auto drain = [&] {
    changes.payloads.clear();
    listen_conn->await_notification(1, 0);
    listen_conn->get_notifs();
    return changes.payloads;
  };
  seed_ok(*m.conn, demo_seed());
  auto first = drain();
  REQUIRE(first.size() == 1);
  auto kinds = json::parse(first[0]).at("kinds");
  CHECK(kinds.size()
        == 19); // every kind in the demo, settings and messages apart
  CHECK(std::find(kinds.begin(), kinds.end(), "keys") != kinds.end());

  seed_ok(*m.conn, demo_seed());
  changes.payloads.clear();
  listen_conn->await_notification(0, 300000);
  CHECK(changes.payloads.empty());

  auto doc = demo_seed();
  doc["users"][1]["state"] = "blocked";
  seed_ok(*m.conn, doc);
  CHECK(drain() == std::vector<std::string>{R"({"kinds":["users"]})"});
}

TEST_CASE("a document with a problem changes nothing", "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  seed_ok(conn, demo_seed());
  auto before = dump(conn, true);

  auto doc = demo_seed();
  doc["users"][0]["name"] = "Changed";
  doc["members"].push_back(
    {{"user_id", 1}, {"project_id", 99}, {"access_level", 30}});
  auto report = seed(conn, doc);
  CHECK(report.problems
        == problems{"members[2].project_id: no project with id 99"});
  CHECK(report.upserted.empty());
  CHECK(dump(conn, true) == before);

  // Passes validation, fails in the database (case-insensitive username).
  doc = json::parse(R"({"users": [{"id": 2, "username": "developer"},
                                   {"id": 4, "username": "ROOT"}]})");
  report = seed(conn, doc);
  REQUIRE(report.problems.size() == 1);
  CHECK_THAT(
    report.problems[0],
    Catch::Matchers::StartsWith("database: duplicate key value violates unique "
                                "constraint \"users_username_lower_idx\""));
  CHECK(dump(conn, true) == before);

  // A parent loop through a namespace that only the database holds.
  report = seed(conn, json::parse(R"({"namespaces": [
    {"id": 5, "path": "acme", "parent_id": 6}]})"));
  CHECK(report.problems
        == problems{
          "namespaces[0].parent_id: namespace 5 would be its own ancestor"});
  CHECK(dump(conn, true) == before);
}

TEST_CASE("references may name objects seeded by an earlier file", "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  seed_ok(conn, demo_seed());
  seed_ok(conn, json::parse(R"({
    "members": [{"user_id": 1, "project_id": 11, "access_level": 50}],
    "protected_tags": [{"id": 2, "project_id": 11, "name": "release-*"}],
    "projects": [{"id": 12, "namespace_id": 6, "path": "saw"}]
  })"));
  CHECK(query1(conn, "SELECT full_path FROM projects WHERE id = 12")
        == "acme/tools/saw");
  CHECK(query1(conn,
               "SELECT access_level FROM members WHERE user_id = 1 AND "
               "project_id = 11")
        == "50");
  auto report = seed(conn, json::parse(R"({
    "webhooks": [{"id": 2, "project_id": 77, "url": "http://127.0.0.1/x"}]})"));
  CHECK(report.problems
        == problems{"webhooks[0].project_id: no project with id 77"});
  // With --prune, a kind the document lists must list what it refers to.
  report = seed(conn, json::parse(R"({
    "projects": [{"id": 10, "namespace_id": 5, "path": "widgets"}],
    "webhooks": [{"id": 2, "project_id": 11, "url": "http://127.0.0.1/x"}]})"),
                true);
  CHECK(report.problems
        == problems{"webhooks[0].project_id: no project with id 11"});
}

TEST_CASE("settings keys are upserted one by one", "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  seed_ok(conn, {{"settings", {{"external_url", "https://git.example.org"}}}});
  CHECK(query1(conn,
               "SELECT value #>> '{}' FROM settings WHERE key = 'external_url'")
        == "https://git.example.org");
  CHECK(
    query1(conn,
           "SELECT value #>> '{}' FROM settings WHERE key = 'gitlab_version'")
    == "18.6.0");
  // 001's nine and 012's seven search settings.
  CHECK(query1(conn, "SELECT count(*) FROM settings") == "16");
}

TEST_CASE("renaming a namespace moves the full paths below it", "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  seed_ok(conn, demo_seed());
  auto doc = json::parse(
    R"({"namespaces": [{"id": 5, "path": "acme-corp", "name": "Acme"}]})");
  seed_ok(conn, doc);
  CHECK(query1(conn,
               "SELECT string_agg(full_path, ',' ORDER BY id) FROM namespaces")
        == "acme-corp,acme-corp/tools");
  CHECK(
    query1(conn, "SELECT string_agg(full_path, ',' ORDER BY id) FROM projects")
    == "acme-corp/widgets,acme-corp/tools/hammer");
  auto before = dump(conn, true);
  seed_ok(conn, doc);
  CHECK(dump(conn, true) == before);
}

TEST_CASE("--prune deletes what a listed kind no longer lists, nothing else",
          "[.pg]") {
  using namespace gatehouse::test;
  migrated m;
  auto& conn = *m.conn;
  seed_ok(conn, demo_seed());
  auto before = dump_tables(conn);

  auto demo = demo_seed();
  json doc = {{"keys", {demo["keys"][1]}}, {"members", {demo["members"][1]}}};
  auto report = seed(conn, doc, true);
  REQUIRE(report.problems == problems{});
  CHECK(report.pruned
        == std::map<std::string, std::int64_t>{{"keys", 1}, {"members", 1}});
  CHECK(query1(conn, "SELECT string_agg(id::text, ',' ORDER BY id) FROM keys")
        == "2,100");
  CHECK(query1(conn, "SELECT string_agg(user_id::text, ',') FROM members")
        == "3");
  auto after = dump_tables(conn);
  for (const auto& [table, rows] : before)
    if (table != "keys" && table != "members")
      CHECK(after[table] == rows);

  // Without --prune the same document deletes nothing.
  seed_ok(conn, demo_seed());
  seed_ok(conn, doc);
  CHECK(query1(conn, "SELECT count(*) FROM keys") == "3");

  // Deploy keys: the kind and its project links.
  report = seed(conn, {{"deploy_keys", json::array()}}, true);
  REQUIRE(report.ok());
  CHECK(report.pruned.at("deploy_keys") == 1);
  CHECK(query1(conn, "SELECT string_agg(id::text, ',' ORDER BY id) FROM keys")
        == "1,2");
  CHECK(query1(conn, "SELECT count(*) FROM deploy_keys_projects") == "0");

  // A project and what belongs to it.
  report = seed(conn, {{"projects", {demo["projects"][1]}}}, true);
  REQUIRE(report.ok());
  CHECK(report.pruned.at("projects") == 1);
  CHECK(query1(conn, "SELECT count(*) FROM webhooks") == "0");
  CHECK(query1(conn, "SELECT count(*) FROM project_redirects") == "0");
  CHECK(query1(conn, "SELECT count(*) FROM users") == "3");
}

TEST_CASE("tokens are stored as SHA-256 digests only", "[.pg]") {
  using namespace gatehouse::test;
  migrated m;
  auto& conn = *m.conn;
  seed_ok(conn, demo_seed());
  auto all = dump(conn);
  CHECK(all.find(demo_pat) == std::string::npos);
  CHECK(all.find(demo_agent_token) == std::string::npos);
  CHECK(all.find("s3cret") != std::string::npos); // webhook tokens stay clear
  CHECK(
    query1(conn,
           "SELECT token_digest = encode(sha256(convert_to('" + demo_pat
             + "', 'UTF8')), 'hex') FROM personal_access_tokens WHERE id = 1")
    == "t");
  CHECK(query1(conn,
               "SELECT token_digest = encode(sha256(convert_to('"
                 + demo_agent_token
                 + "', 'UTF8')), 'hex') FROM cluster_agent_tokens WHERE id = 1")
        == "t");
}

namespace {

/// `count` users with ids from `first_id` on, usernames bulk<id>.
json bulk_users(std::int64_t first_id, std::int64_t count) {
  json users = json::array();
  for (auto id = first_id; id < first_id + count; ++id)
    users.push_back({{"id", id}, {"username", "bulk" + std::to_string(id)}});
  return users;
}

} // namespace

TEST_CASE("a seed of 200,001 rows loads whole, in statements of bounded size",
          "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  // 20 full statements and one of a single row.
  json doc{{"users", bulk_users(1, 200001)}};
  seed_ok(conn, doc);
  CHECK(query1(conn, "SELECT count(*) FROM users") == "200001");
  CHECK(query1(conn, "SELECT username FROM users WHERE id = 200001")
        == "bulk200001");
  // Seeding it again rewrites no row.
  auto before = dump(conn, true);
  seed_ok(conn, doc);
  CHECK(dump(conn, true) == before);
}

TEST_CASE("a row the database refuses in a large seed's last statement "
          "changes nothing",
          "[.pg]") {
  migrated m;
  auto& conn = *m.conn;
  seed_ok(conn, json{{"users", json::array({{{"id", 1}, {"username", "root"}}})}});
  auto before = dump(conn, true);
  // 200,000 new users; the last one's name is root's in other letters,
  // which only the database's unique index on lower(username) can see.
  auto users = bulk_users(2, 200000);
  users.back()["username"] = "ROOT";
  auto report = seed(conn, json{{"users", users}});
  REQUIRE(report.problems.size() == 1);
  CHECK_THAT(
    report.problems[0],
    Catch::Matchers::StartsWith("database: duplicate key value violates unique "
                                "constraint \"users_username_lower_idx\""));
  CHECK(query1(conn, "SELECT count(*) FROM users") == "1");
  CHECK(dump(conn, true) == before);
}
