// Seed validation without a database: each class of problem with its exact
// path and message.

#include "storage/migrate.hpp"
#include "storage/seed.hpp"
#include "storage/seed/ssh_key.hpp"
#include "tests/storage/seed_fixtures.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

using json = nlohmann::json;
using problems = std::vector<std::string>;

namespace {

/// The document's text with its top-level keys in the order of the seed
/// format (json objects iterate in name order), as a document is written.
std::string text_in_kind_order(const json& doc) {
  static const std::vector<std::string> order{
    "settings",       "storages",           "users",
    "keys",           "deploy_keys",        "namespaces",
    "projects",       "members",            "protected_branches",
    "protected_tags", "personal_access_tokens", "cluster_agents", "runners",
    "pages_domains",  "pages_deployments",  "zoekt_nodes",
    "zoekt_enabled_namespaces", "webhooks"};
  if (!doc.is_object())
    return doc.dump();
  std::string text;
  auto add = [&](const std::string& key) {
    text += (text.empty() ? "{" : ",") + json(key).dump() + ":"
      + doc.at(key).dump();
  };
  for (const auto& key : order)
    if (doc.contains(key))
      add(key);
  for (const auto& item : doc.items())
    if (std::find(order.begin(), order.end(), item.key()) == order.end())
      add(item.key());
  return text.empty() ? "{}" : text + "}";
}

/// validate_seed of the document's text, read as `gatehouse seed` reads
/// a file.
template <class... Lookup>
problems validate_seed(const json& doc, const Lookup&... lookup) {
  std::istringstream in{text_in_kind_order(doc)};
  return gatehouse::storage::validate_seed(in, lookup...);
}

/// A small valid document that the tests break one field at a time.
json base() {
  return json::parse(R"({
    "storages": [{"name": "default", "gitaly_address": "tcp://gitaly:8075"}],
    "users": [{"id": 1, "username": "root"}, {"id": 2, "username": "dev"}],
    "namespaces": [{"id": 5, "path": "acme"}],
    "projects": [{"id": 10, "namespace_id": 5, "path": "widgets"}]
  })");
}

/// validate_seed(base() with `patch` merged in, RFC 7386 style).
problems validate_with(const json& patch) {
  auto doc = base();
  doc.merge_patch(patch);
  return validate_seed(doc);
}

} // namespace

TEST_CASE("the demo document of seed-format.md is valid", "[unit][seed]") {
  CHECK(validate_seed(gatehouse::test::demo_seed()) == problems{});
  CHECK(validate_seed(base()) == problems{});
}

TEST_CASE("every top-level key is optional", "[unit][seed]") {
  CHECK(validate_seed(json::object()) == problems{});
  CHECK(validate_seed(json::parse(R"({"settings": {}})")) == problems{});
  CHECK(validate_seed(json::parse(R"({"users": []})")) == problems{});
}

TEST_CASE("a document that is not an object is rejected", "[unit][seed]") {
  CHECK(validate_seed(json::array())
        == problems{"document: must be a JSON object"});
}

TEST_CASE("unknown keys are reported at every level", "[unit][seed]") {
  CHECK(validate_with({{"usres", json::array()}})
        == problems{"document: unknown key \"usres\""});
  auto doc = base();
  doc["projects"][0]["visibilty"] = "public";
  CHECK(validate_seed(doc)
        == problems{"projects[0]: unknown key \"visibilty\""});
  CHECK(validate_with({{"settings", {{"gitlab_versoin", "18.6.0"}}}})
        == problems{"settings: unknown key \"gitlab_versoin\""});
  auto deploy = json::parse(R"({"deploy_keys": [{"id": 100, "key": "",
    "projects": [{"project_id": 10, "can_pushh": true}]}]})");
  deploy["deploy_keys"][0]["key"] = gatehouse::test::key_b;
  CHECK(validate_with(deploy)
        == problems{"deploy_keys[0].projects[0]: unknown key \"can_pushh\""});
}

TEST_CASE("types are checked", "[unit][seed]") {
  auto doc = base();
  doc["users"][0]["admin"] = "yes";
  CHECK(validate_seed(doc)
        == problems{"users[0].admin: must be true or false"});
  doc = base();
  doc["users"][1]["name"] = 5;
  CHECK(validate_seed(doc) == problems{"users[1].name: must be a string"});
  CHECK(validate_with({{"users", 3}}) == problems{"users: must be an array"});
  CHECK(validate_with({{"users", {1}}})
        == problems{"users[0]: must be an object"});
  CHECK(validate_with({{"settings", {{"gitlab_shell_operation_limit", -1}}}})
        == problems{
          "settings.gitlab_shell_operation_limit: must be an integer >= 0"});
  CHECK(
    validate_with({{"settings", {{"external_url", "gitlab.example.com"}}}})
    == problems{"settings.external_url: must be an http:// or https:// URL"});
  CHECK(
    validate_with(
      {{"settings", {{"allow_local_requests_from_web_hooks_and_services", 1}}}})
    == problems{"settings.allow_local_requests_from_web_hooks_and_services: "
                "must be true or false"});
}

TEST_CASE("ids are positive integers, unique per kind", "[unit][seed]") {
  for (auto bad : {json(0), json(-3), json("1"), json(1.5), json(nullptr)}) {
    auto doc = base();
    doc["users"][1]["id"] = bad;
    CHECK(validate_seed(doc)
          == problems{"users[1].id: must be a positive integer"});
  }
  auto doc = base();
  doc["users"][1].erase("id");
  CHECK(validate_seed(doc) == problems{"users[1].id: is required"});
  doc = base();
  doc["users"][1]["id"] = 1;
  CHECK(validate_seed(doc)
        == problems{"users[1].id: id 1 is also used by users[0]"});
}

TEST_CASE("keys and deploy keys share one id space", "[unit][seed]") {
  auto doc = base();
  doc["keys"] = {{{"id", 7}, {"user_id", 1}, {"key", gatehouse::test::key_a}}};
  doc["deploy_keys"] = {{{"id", 7}, {"key", gatehouse::test::key_b}}};
  CHECK(validate_seed(doc)
        == problems{"deploy_keys[0].id: id 7 is also used by keys[0]"});
}

TEST_CASE("enums are checked", "[unit][seed]") {
  auto doc = base();
  doc["projects"][0]["visibility"] = "secret";
  doc["projects"][0]["repository_access_level"] = "on";
  doc["users"][0]["state"] = "asleep";
  CHECK(validate_seed(doc)
        == problems{
          "users[0].state: must be one of active, blocked, deactivated, "
          "blocked_pending_approval, banned",
          "projects[0].visibility: must be one of private, internal, public",
          "projects[0].repository_access_level: must be one of enabled, "
          "private, disabled"});
  CHECK(
    validate_with({{"settings", {{"enabled_git_access_protocol", "ftp"}}}})
    == problems{
      "settings.enabled_git_access_protocol: must be one of all, ssh, http"});
  CHECK(
    validate_with(json::parse(R"({"members": [
          {"user_id": 1, "project_id": 10, "access_level": 35}]})"))
    == problems{"members[0].access_level: must be one of 10, 20, 30, 40, 50"});
  CHECK(
    validate_with(json::parse(R"({"protected_branches": [
          {"id": 1, "project_id": 10, "name": "main", "push_access_level": 50}]})"))
    == problems{
      "protected_branches[0].push_access_level: must be one of 0, 30, 40, 60"});
  auto keys = base();
  keys["keys"] = {{{"id", 1},
                   {"user_id", 1},
                   {"key", gatehouse::test::key_a},
                   {"usage_type", "login"}}};
  CHECK(
    validate_seed(keys)
    == problems{
      "keys[0].usage_type: must be one of auth, signing, auth_and_signing"});
}

TEST_CASE("members name exactly one of project_id and namespace_id",
          "[unit][seed]") {
  CHECK(validate_with(json::parse(R"({"members": [
          {"user_id": 1, "access_level": 30},
          {"user_id": 1, "project_id": 10, "namespace_id": 5, "access_level": 30}]})"))
        == problems{
          "members[0]: exactly one of project_id or namespace_id is required",
          "members[1]: exactly one of project_id or namespace_id is required"});
  CHECK(
    validate_with(json::parse(R"({"members": [
          {"user_id": 1, "project_id": 10, "access_level": 30},
          {"user_id": 1, "project_id": 10, "access_level": 40}]})"))
    == problems{"members[1]: user 1 is already a member there in members[0]"});
}

TEST_CASE("references must resolve", "[unit][seed]") {
  auto doc = base();
  doc["projects"].push_back({{"id", 11},
                             {"namespace_id", 9},
                             {"path", "gadgets"},
                             {"storage", "fast"}});
  doc["deploy_keys"]
    = {{{"id", 100},
        {"key", gatehouse::test::key_b},
        {"projects", {{{"project_id", 10}}, {{"project_id", 12}}}}}};
  doc["members"]
    = {{{"user_id", 4}, {"namespace_id", 5}, {"access_level", 10}}};
  CHECK(
    validate_seed(doc)
    == problems{"deploy_keys[0].projects[1].project_id: no project with id 12",
                "projects[1].namespace_id: no namespace with id 9",
                "projects[1].storage: no storage named \"fast\"",
                "members[0].user_id: no user with id 4"});
}

TEST_CASE("a lookup resolves references to objects outside the document",
          "[unit][seed]") {
  auto doc = json::parse(R"({"members": [
    {"user_id": 2, "project_id": 10, "access_level": 30},
    {"user_id": 3, "project_id": 10, "access_level": 30}]})");
  gatehouse::storage::seed_lookup lookup =
    [](const std::string& kind, const std::set<std::string>& keys) {
      std::set<std::string> found;
      for (const auto& k : keys)
        if ((kind == "users" && k == "2") || (kind == "projects" && k == "10"))
          found.insert(k);
      return found;
    };
  CHECK(validate_seed(doc, lookup)
        == problems{"members[1].user_id: no user with id 3"});
}

TEST_CASE("namespace parent cycles are reported", "[unit][seed]") {
  auto doc = base();
  doc["namespaces"] = json::parse(R"([
    {"id": 5, "path": "acme", "parent_id": 7},
    {"id": 6, "path": "a", "parent_id": 6},
    {"id": 7, "path": "b", "parent_id": 5}])");
  CHECK(validate_seed(doc)
        == problems{
          "namespaces[0].parent_id: namespace 5 would be its own ancestor",
          "namespaces[1].parent_id: namespace 6 would be its own ancestor",
          "namespaces[2].parent_id: namespace 7 would be its own ancestor"});
}

TEST_CASE("paths are checked and unique where GitLab needs them",
          "[unit][seed]") {
  auto doc = base();
  doc["namespaces"].push_back({{"id", 6}, {"path", "ACME"}});
  doc["projects"].push_back(
    {{"id", 11}, {"namespace_id", 5}, {"path", "Widgets"}});
  doc["projects"][0]["redirects"] = {"acme/old", "nope"};
  CHECK(
    validate_seed(doc)
    == problems{
      "projects[0].redirects[1]: must be a full path like \"group/project\"",
      "projects[1].path: path \"Widgets\" is also used by projects[0] in "
      "the same namespace",
      // The namespace tree is checked once the whole document is read.
      "namespaces[1].path: path \"ACME\" is also used by namespaces[0] "
      "under the same parent"});
  doc = base();
  doc["namespaces"][0]["path"] = "a/b";
  CHECK(
    validate_seed(doc)
    == problems{
      "namespaces[0].path: must be a path of letters, digits, '_', '-' "
      "and '.' (not starting with '-' or '.', not ending in .git or .atom)"});
}

TEST_CASE("SSH keys must parse", "[unit][seed]") {
  using namespace gatehouse::test;
  auto with_key = [](const std::string& key) {
    auto doc = base();
    doc["keys"] = {{{"id", 1}, {"user_id", 1}, {"key", key}}};
    return validate_seed(doc);
  };
  CHECK(with_key(key_a) == problems{});
  CHECK(with_key(key_rsa) == problems{});
  CHECK(with_key(key_ecdsa) == problems{});
  CHECK(with_key("ssh-foo AAAA")
        == problems{
          "keys[0].key: unsupported key type \"ssh-foo\" (expected a line like "
          "\"ssh-ed25519 AAAA... comment\")"});
  CHECK(with_key("ssh-ed25519")
        == problems{"keys[0].key: has no key data after \"ssh-ed25519\""});
  CHECK(with_key("ssh-ed25519 AAAA!!!! x")
        == problems{"keys[0].key: key data is not valid base64"});
  // An RSA blob labelled as ed25519.
  CHECK(with_key("ssh-ed25519" + key_rsa.substr(7))
        == problems{"keys[0].key: key data is a ssh-rsa key, not ssh-ed25519"});
  // The ed25519 blob cut short (still valid base64).
  CHECK(
    with_key(
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID72VztSZsPMmsTmHFHnqhQ3DKLjzzr7")
    == problems{"keys[0].key: key data is not a well-formed ssh-ed25519 key"});
  CHECK(with_key("") == problems{"keys[0].key: must not be empty"});
}

TEST_CASE("key line errors survive any bytes", "[unit][seed]") {
  using gatehouse::storage::seeding::parse_ssh_key;
  std::string error;
  // Found by tests/fuzz (ssh_key): a type that is not UTF-8 made the
  // error's JSON quoting throw instead of refusing the line.
  CHECK_FALSE(parse_ssh_key("ssh\xc3-rsa AAAA", error));
  CHECK(error
        == "unsupported key type \"ssh\xef\xbf\xbd-rsa\" (expected a line "
           "like \"ssh-ed25519 AAAA... comment\")");
  // A blob naming a type made of control bytes: not echoed to the terminal.
  // base64 of "\0\0\0\x05\x1b[31m".
  CHECK_FALSE(parse_ssh_key("ssh-ed25519 AAAABRtbMzFt", error));
  CHECK(error == "key data is a ?[31m key, not ssh-ed25519");
}

TEST_CASE("the same key may not be registered twice", "[unit][seed]") {
  using namespace gatehouse::test;
  auto doc = base();
  doc["keys"] = {{{"id", 1}, {"user_id", 1}, {"key", key_a}}};
  // Same blob, other comment.
  doc["deploy_keys"]
    = {{{"id", 2}, {"key", key_a.substr(0, key_a.rfind(' ')) + " other"}}};
  CHECK(validate_seed(doc)
        == problems{"deploy_keys[0].key: same key as keys[0] ("
                    + key_a_fingerprint + ")"});
}

TEST_CASE("times are ISO-8601 UTC and dates YYYY-MM-DD", "[unit][seed]") {
  using namespace gatehouse::test;
  auto with_expiry = [](const json& time, const json& date) {
    auto doc = base();
    doc["keys"]
      = {{{"id", 1}, {"user_id", 1}, {"key", key_a}, {"expires_at", time}}};
    doc["personal_access_tokens"] = {{{"id", 1},
                                      {"user_id", 1},
                                      {"name", "t"},
                                      {"token", "x"},
                                      {"expires_at", date}}};
    return validate_seed(doc);
  };
  CHECK(with_expiry("2030-01-31T23:59:59Z", "2024-02-29") == problems{});
  CHECK(with_expiry("2030-01-31T23:59:59.123+00:00", nullptr) == problems{});
  const std::string time_problem = "keys[0].expires_at: must be an ISO-8601 "
                                   "UTC time like 2026-01-01T00:00:00Z or null";
  const std::string date_problem = "personal_access_tokens[0].expires_at: must "
                                   "be a date like 2027-12-31 or null";
  CHECK(with_expiry("2030-01-31 23:59:59", "2023-02-29")
        == problems{time_problem, date_problem});
  CHECK(with_expiry("2030-01-31T23:59:59+02:00", "2027-12-31T00:00:00Z")
        == problems{time_problem, date_problem});
  CHECK(with_expiry("2030-13-01T00:00:00Z", "2027-1-31")
        == problems{time_problem, date_problem});
}

TEST_CASE("tokens are required and unique", "[unit][seed]") {
  CHECK(validate_with(json::parse(R"({"personal_access_tokens": [
          {"id": 1, "user_id": 1, "name": "a", "token": "glpat-same"},
          {"id": 2, "user_id": 2, "name": "b", "token": "glpat-same"},
          {"id": 3, "user_id": 2, "name": "c"}]})"))
        == problems{"personal_access_tokens[1].token: same token as "
                    "personal_access_tokens[0]",
                    "personal_access_tokens[2].token: is required"});
}

TEST_CASE("all problems are reported together", "[unit][seed]") {
  auto doc = json::parse(R"({
    "users": [{"id": 1, "username": "root", "state": "sleepy"}],
    "projects": [{"id": 10, "namespace_id": 9, "path": "w", "visibilty": "public"}],
    "members": [{"user_id": 1, "project_id": 10, "access_level": 60}],
    "webhooks": [{"id": 1, "project_id": 10, "url": "ftp://x"}]
  })");
  CHECK(
    validate_seed(doc)
    == problems{"users[0].state: must be one of active, blocked, deactivated, "
                "blocked_pending_approval, banned",
                "projects[0]: unknown key \"visibilty\"",
                "members[0].access_level: must be one of 10, 20, 30, 40, 50",
                "webhooks[0].url: must be an http:// or https:// URL",
                "projects[0].namespace_id: no namespace with id 9",
                "projects[0].storage: no storage named \"default\""});
}

TEST_CASE("the schema is embedded in name order", "[unit][migrate]") {
  const auto& migrations = gatehouse::storage::embedded_migrations();
  REQUIRE(!migrations.empty());
  CHECK(migrations.front().name == "001_core.sql");
  CHECK(migrations.front().sql.find("CREATE TABLE IF NOT EXISTS settings")
        != std::string::npos);
  for (std::size_t i = 1; i < migrations.size(); ++i)
    CHECK(migrations[i - 1].name < migrations[i].name);
}

TEST_CASE("a disk_path that climbs out of the storage root is refused",
          "[unit][seed]") {
  auto with_disk_path = [](const std::string& path) {
    auto doc = base();
    doc["projects"][0]["disk_path"] = path;
    return validate_seed(doc);
  };
  const problems refused{
    "projects[0].disk_path: Invalid path: must stay below the storage root"};
  for (auto path : {"../../../../etc/x", "..", "@hashed/../../x", "a/..",
                    "/etc/passwd", "a\\..\\b", "a\nb", "."}) {
    INFO(path);
    CHECK(with_disk_path(path) == refused);
  }
  for (auto path :
       {"@hashed/6b/86/6b86b273", "group/project", "a..b/c", "..a/b"}) {
    INFO(path);
    CHECK(with_disk_path(path) == problems{});
  }
}

namespace {

problems validate_text(const std::string& text) {
  std::istringstream in{text};
  return gatehouse::storage::validate_seed(in);
}

} // namespace

TEST_CASE("a streamed document is checked as it is read", "[unit][seed]") {
  CHECK(validate_text(R"({"users": [{"id": 1, "username": "root"}]})")
        == problems{});
  // Problems come in document order.
  CHECK(validate_text(R"({"users": [{"id": 1}, 7, [1]],
                          "usres": [], "keys": {}})")
        == problems{"users[0].username: is required",
                    "users[1]: must be an object", "users[2]: must be an object",
                    "document: unknown key \"usres\"",
                    "keys: must be an array"});
  CHECK(validate_text("[1, 2]") == problems{"document: must be a JSON object"});
  CHECK(validate_text("7") == problems{"document: must be a JSON object"});
  // The whole-document parser would keep only the last; the stream says so.
  CHECK(validate_text(R"({"users": [], "users": []})")
        == problems{"document: key \"users\" is given more than once"});
}

TEST_CASE("a streamed document that is not JSON is one problem",
          "[unit][seed]") {
  // Elements checked before the error add nothing.
  auto found = validate_text(
    R"({"usres": [], "users": [{"id": 1}, {"id": 2, "username": "ro)");
  REQUIRE(found.size() == 1);
  CHECK_THAT(found[0],
             Catch::Matchers::StartsWith("document: not valid JSON: "));
  // A number past a double's range (found by the seed fuzzer).
  found = validate_text(R"({"users": [{"id": 1e881}]})");
  REQUIRE(found.size() == 1);
  CHECK_THAT(found[0],
             Catch::Matchers::StartsWith("document: not valid JSON: "));
}

TEST_CASE("a streamed document resolves references in either order",
          "[unit][seed]") {
  // Members before the users and projects they name.
  CHECK(validate_text(R"({
    "members": [{"user_id": 1, "project_id": 10, "access_level": 30}],
    "projects": [{"id": 10, "namespace_id": 5, "path": "widgets"}],
    "namespaces": [{"id": 6, "path": "sub", "parent_id": 5},
                   {"id": 5, "path": "acme"}],
    "users": [{"id": 1, "username": "root"}],
    "storages": [{"name": "default", "gitaly_address": "tcp://gitaly:8075"}]
  })") == problems{});
  CHECK(validate_text(R"({
    "members": [{"user_id": 2, "project_id": 10, "access_level": 30}],
    "users": [{"id": 1, "username": "root"}]
  })") == problems{"members[0].user_id: no user with id 2",
                   "members[0].project_id: no project with id 10"});
}
