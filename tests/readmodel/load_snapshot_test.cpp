// load_snapshot against a real PostgreSQL server. Hidden tag [.pg]: run with
// `gatehouse_readmodel_tests "[.pg]"` and GATEHOUSE_TEST_DATABASE_URL set.

#include "storage/read_model_loader.hpp"
#include "tests/readmodel/fixtures.hpp"

#include <ctime>
#include <map>
#include <utility>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using json = nlohmann::json;

namespace {

std::int64_t now_seconds() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

} // namespace

TEST_CASE("load_snapshot reads every object of the demo document", "[.pg]") {
  seeded_database m;
  exec(*m.conn,
       "UPDATE keys SET last_used_at = '2027-03-04T05:06:07.8Z' "
       "WHERE id = 2");
  // On one connection, and with the keys on a second one that imports the
  // first one's snapshot: every check below holds for both.
  bool two_connections = GENERATE(false, true);
  INFO("two connections: " << two_connections);
  auto helper = storage::connect(m.db.url(), std::chrono::seconds{30});
  auto snap = storage::load_snapshot(*m.conn,
                                     two_connections ? helper.get() : nullptr);

  SECTION("settings, broadcast messages included") {
    const auto& s = snap.settings;
    CHECK(s.external_url == "https://gitlab.example.com");
    CHECK(s.ssh_clone_url_root == "git@gitlab.example.com:");
    CHECK(s.enabled_git_access_protocol == "all");
    CHECK(s.receive_max_input_size_mb == 0);
    CHECK(s.gitlab_version == "18.6.0");
    CHECK(s.pages_host == "pages.example.com");
    CHECK(s.gitlab_shell_operation_limit == 600);
    CHECK_FALSE(s.allow_local_requests_from_web_hooks_and_services);
    REQUIRE(s.broadcast_messages.size() == 1);
    const auto& b = s.broadcast_messages[0];
    CHECK(b.id == 1);
    CHECK(b.message == "Maintenance tonight");
    CHECK_FALSE(b.target_path);
    CHECK(b.starts_at == unix_time{1767225600}); // 2026-01-01T00:00:00Z
    CHECK(b.ends_at == unix_time{4070908800});   // 2099-01-01T00:00:00Z
  }

  SECTION("storages") {
    REQUIRE(snap.storages.size() == 1);
    const auto& st = snap.storages.at("default");
    CHECK(st.name == "default");
    CHECK(st.gitaly_address == "unix:/var/opt/gitlab/gitaly/gitaly.socket");
    CHECK(st.gitaly_token.empty());
    CHECK(st.path == "/var/opt/gitlab/git-data/repositories");
  }

  SECTION("users") {
    REQUIRE(snap.users.size() == 3);
    const auto& root = snap.users.at(1);
    CHECK(root.username == "root");
    CHECK(root.name == "Administrator");
    CHECK(root.email == "admin@example.com");
    CHECK(root.state == "active");
    CHECK(root.admin);
    CHECK_FALSE(root.external);
    CHECK(root.can_create_project);
    CHECK_FALSE(root.two_factor_enabled);
    CHECK_FALSE(snap.users.at(2).admin);
    CHECK(snap.user_by_username.to_unordered_map()
          == std::unordered_map<std::string, std::int64_t>{
            {"root", 1}, {"dev", 2}, {"lead", 3}});
  }

  SECTION("personal and deploy keys with fingerprints") {
    REQUIRE(snap.keys.size() == 3);
    const auto& a = snap.keys.at(1);
    CHECK_FALSE(a.deploy);
    CHECK(a.user_id == std::int64_t{1});
    CHECK(a.title == "laptop");
    CHECK(a.key_type == "ssh-ed25519");
    CHECK(a.blob
          == "AAAAC3NzaC1lZDI1NTE5AAAAID72VztSZsPMmsTmHFHnqhQ3DKLjzzr7+"
             "I9n3bASRYnv");
    CHECK(a.usage_type == "auth_and_signing");
    CHECK_FALSE(a.expires_at);
    CHECK_FALSE(a.last_used_at);
    CHECK(a.created_at > now_seconds() - 600);
    CHECK(a.created_at <= now_seconds() + 1);
    CHECK(a.deploy_projects.empty());
    const auto& c = snap.keys.at(2);
    CHECK(c.usage_type == "auth");
    CHECK(c.expires_at == unix_time{1909051200});   // 2030-06-30T12:00:00Z
    CHECK(c.last_used_at == unix_time{1804136767}); // 2027-03-04T05:06:07Z
    const auto& d = snap.keys.at(100);
    CHECK(d.deploy);
    CHECK(d.user_id == std::int64_t{1});
    CHECK(d.usage_type == "auth");
    CHECK(d.deploy_projects == std::map<std::int64_t, bool>{{10, false}});
    CHECK(snap.key_by_fingerprint.to_unordered_map()
          == std::unordered_map<std::string, std::int64_t>{
            {key_a_fingerprint, 1},
            {key_c_fingerprint, 2},
            {key_b_fingerprint, 100}});
  }

  SECTION("nested namespaces and projects") {
    REQUIRE(snap.namespaces.size() == 2);
    const auto& acme = snap.namespaces.at(5);
    CHECK_FALSE(acme.parent_id);
    CHECK(acme.path == "acme");
    CHECK(acme.full_path == "acme");
    CHECK(acme.kind == "group");
    const auto& tools = snap.namespaces.at(6);
    CHECK(tools.parent_id == std::int64_t{5});
    CHECK(tools.full_path == "acme/tools");
    REQUIRE(snap.projects.size() == 2);
    const auto& w = snap.projects.at(10);
    CHECK(w.namespace_id == 5);
    CHECK(w.path == "widgets");
    CHECK(w.full_path == "acme/widgets");
    CHECK(w.name == "Widgets");
    CHECK(w.visibility == "private");
    CHECK_FALSE(w.archived);
    CHECK(w.default_branch == "main");
    CHECK(w.storage == "default");
    CHECK(
      w.disk_path
      == "@hashed/4a/44/"
         "4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5");
    CHECK(w.repository_access_level == "enabled");
    CHECK(w.merge_requests_enabled);
    CHECK(w.lfs_enabled);
    CHECK(w.repository_exists);
    const auto& h = snap.projects.at(11);
    CHECK(h.namespace_id == 6);
    CHECK(h.full_path == "acme/tools/hammer");
    CHECK(snap.project_by_path.to_unordered_map()
          == std::unordered_map<std::string, std::int64_t>{
            {"acme/widgets", 10}, {"acme/tools/hammer", 11}});
    CHECK(snap.redirects.to_unordered_map()
          == std::unordered_map<std::string, std::int64_t>{
            {"acme/old-widgets", 10}});
  }

  SECTION("memberships") {
    CHECK(snap.project_members.size() == 1);
    CHECK(snap.project_members.at({2, 10}) == 30);
    CHECK(snap.namespace_members.size() == 1);
    CHECK(snap.namespace_members.at({3, 5}) == 40);
  }

  SECTION("protected branches and tags") {
    REQUIRE(snap.protected_branches.size() == 1);
    REQUIRE(snap.protected_branches.at(10).size() == 1);
    const auto& b = snap.protected_branches.at(10)[0];
    CHECK(b.id == 1);
    CHECK(b.project_id == 10);
    CHECK(b.name == "main");
    CHECK(b.push_access_level == 40);
    CHECK(b.merge_access_level == 40);
    CHECK_FALSE(b.allow_force_push);
    REQUIRE(snap.protected_tags.size() == 1);
    REQUIRE(snap.protected_tags.at(10).size() == 1);
    const auto& t = snap.protected_tags.at(10)[0];
    CHECK(t.name == "v*");
    CHECK(t.create_access_level == 40);
  }

  SECTION("the load time") {
    CHECK(snap.loaded_at >= now_seconds() - 5);
    CHECK(snap.loaded_at <= now_seconds() + 1);
  }
}

TEST_CASE("load_snapshot lower-cases path and username keys", "[.pg]") {
  seeded_database m;
  seed_ok(*m.conn, json::parse(R"({
    "users": [{"id": 4, "username": "MixedCase"}],
    "namespaces": [{"id": 7, "path": "Deep", "parent_id": 6}],
    "projects": [{"id": 12, "namespace_id": 7, "path": "Saw",
                  "redirects": ["Acme/Old-Saw", "OTHER/place"]}],
    "protected_branches": [
      {"id": 3, "project_id": 12, "name": "release/*", "push_access_level": 30},
      {"id": 2, "project_id": 12, "name": "main", "allow_force_push": true}]
  })"));
  auto snap = storage::load_snapshot(*m.conn);
  CHECK(snap.users.at(4).username == "MixedCase");
  CHECK(snap.user_by_username.at("mixedcase") == 4);
  CHECK(snap.user_by_username.count("MixedCase") == 0);
  CHECK(snap.namespaces.at(7).full_path == "acme/tools/Deep");
  CHECK(snap.projects.at(12).full_path == "acme/tools/Deep/Saw");
  CHECK(snap.project_by_path.at("acme/tools/deep/saw") == 12);
  CHECK(snap.redirects.at("acme/old-saw") == 12);
  CHECK(snap.redirects.at("other/place") == 12);
  REQUIRE(snap.protected_branches.at(12).size() == 2);
  CHECK(snap.protected_branches.at(12)[0].name == "main"); // ordered by id
  CHECK(snap.protected_branches.at(12)[0].allow_force_push);
  CHECK(snap.protected_branches.at(12)[1].push_access_level == 30);
}

TEST_CASE("load_snapshot reads settings values as stored", "[.pg]") {
  seeded_database m;
  exec(*m.conn,
       "UPDATE settings SET value = '\"\"' WHERE key = "
       "'enabled_git_access_protocol';"
       "UPDATE settings SET value = '1024' WHERE key = "
       "'receive_max_input_size_mb';"
       "UPDATE settings SET value = 'true' WHERE key = "
       "'allow_local_requests_from_web_hooks_and_services';"
       "UPDATE settings SET value = '[{\"id\": 7, \"message\": \"Hi\", "
       "\"target_path\": \"acme/*\", \"starts_at\": "
       "\"2027-03-04T07:06:07.5+02:00\", \"ends_at\": null}, "
       "{\"id\": 8}, {\"id\": 9, \"message\": \"Bad time\", "
       "\"starts_at\": \"tomorrow\"}]' WHERE key = 'broadcast_messages';"
       "DELETE FROM settings WHERE key = 'pages_host'");
  auto snap = storage::load_snapshot(*m.conn);
  const auto& s = snap.settings;
  CHECK(s.enabled_git_access_protocol == "all"); // GitLab's blank
  CHECK(s.receive_max_input_size_mb == 1024);
  CHECK(s.allow_local_requests_from_web_hooks_and_services);
  CHECK(s.pages_host.empty()); // the default when the row is missing
  REQUIRE(s.broadcast_messages.size() == 2); // the one without text skipped
  CHECK(s.broadcast_messages[0].id == 7);
  CHECK(s.broadcast_messages[0].target_path == std::string{"acme/*"});
  CHECK(s.broadcast_messages[0].starts_at == unix_time{1804136767});
  CHECK_FALSE(s.broadcast_messages[0].ends_at);
  CHECK(s.broadcast_messages[1].message == "Bad time");
  CHECK_FALSE(s.broadcast_messages[1].starts_at);
}

TEST_CASE("load_snapshot of an empty database has the defaults", "[.pg]") {
  scratch_database db;
  auto conn = storage::connect(db.url(), std::chrono::seconds{30});
  storage::migrate(*conn);
  auto snap = storage::load_snapshot(*conn);
  CHECK(snap.users.empty());
  CHECK(snap.projects.empty());
  CHECK(snap.settings.external_url == "http://127.0.0.1:8080");
  CHECK(snap.settings.broadcast_messages.empty());
}
