// build_events(): one Push Hook / Tag Push Hook body per pushed ref.

#include "tests/push/push_world.hpp"

#include <catch2/catch.hpp>

#include <regex>
#include <set>

using namespace gatehouse;
using namespace gatehouse::push;
using namespace gatehouse::push::test;
using json = nlohmann::json;
using ordered = nlohmann::ordered_json;

namespace {

commit make_commit(const std::string& id, const std::string& message) {
  commit c;
  c.id = id;
  c.message = message;
  c.title = message.substr(0, message.find('\n'));
  c.timestamp = "2026-01-01T10:00:00+02:00";
  c.author_name = "Ada Lovelace";
  c.author_email = "ada@example.com";
  c.added = {"new.txt"};
  c.modified = {"README.md"};
  c.removed = {"old.txt"};
  return c;
}

std::vector<push_event> events(const world& w, const post_receive_params& p,
                               const commit_facts& facts) {
  uuid_counter = 0;
  return build_events(w.s, resolve(w.s, p), p, facts, &counting_uuid);
}

commit_facts facts_for(std::map<std::string, ref_commits> by_ref) {
  commit_facts f;
  f.available = true;
  f.by_ref = std::move(by_ref);
  return f;
}

json body(const push_event& e) {
  return json::parse(e.body);
}

} // namespace

TEST_CASE("a branch update becomes one Push Hook body", "[push][events]") {
  world w;
  ref_commits rc;
  rc.commits = {make_commit(B, "Add widgets\n\nWith a body.\n"),
                make_commit(C, "Fix widgets\n")};
  rc.total = 2;
  auto p = params("project-10", "user-2", line(A, C, "refs/heads/main"),
                  {"ci.skip"});
  auto evs = events(w, p, facts_for({{"refs/heads/main", rc}}));
  REQUIRE(evs.size() == 1);
  const auto& e = evs[0];
  CHECK(e.event_id == "uuid-1");
  CHECK(e.kind == "push");
  CHECK(e.subject == "gitlab.events.push.10");
  CHECK(e.project_id == 10);
  CHECK_FALSE(e.bulk);
  CHECK_FALSE(e.commits_unavailable);

  // GitLab's key order, checked on the raw text.
  auto o = ordered::parse(e.body);
  std::vector<std::string> keys;
  for (auto it = o.begin(); it != o.end(); ++it)
    keys.push_back(it.key());
  CHECK(keys
        == std::vector<std::string>{
          "object_kind", "event_name", "before", "after", "ref",
          "ref_protected", "checkout_sha", "message", "user_id", "user_name",
          "user_username", "user_email", "user_avatar", "project_id", "project",
          "commits", "total_commits_count", "push_options", "repository"});

  auto expected = json::parse(R"({
    "object_kind": "push",
    "event_name": "push",
    "before": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "after": "cccccccccccccccccccccccccccccccccccccccc",
    "ref": "refs/heads/main",
    "ref_protected": true,
    "checkout_sha": "cccccccccccccccccccccccccccccccccccccccc",
    "message": null,
    "user_id": 2,
    "user_name": "Alice Liddell",
    "user_username": "alice",
    "user_email": "",
    "user_avatar": null,
    "project_id": 10,
    "project": {
      "id": 10,
      "name": "Widgets",
      "description": "",
      "web_url": "https://gitlab.example.com/acme/widgets",
      "avatar_url": null,
      "git_ssh_url": "git@gitlab.example.com:acme/widgets.git",
      "git_http_url": "https://gitlab.example.com/acme/widgets.git",
      "namespace": "acme",
      "visibility_level": 0,
      "path_with_namespace": "acme/widgets",
      "default_branch": "main",
      "ci_config_path": null,
      "homepage": "https://gitlab.example.com/acme/widgets",
      "url": "git@gitlab.example.com:acme/widgets.git",
      "ssh_url": "git@gitlab.example.com:acme/widgets.git",
      "http_url": "https://gitlab.example.com/acme/widgets.git"
    },
    "commits": [
      {
        "id": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "message": "Add widgets\n\nWith a body.\n",
        "title": "Add widgets",
        "timestamp": "2026-01-01T10:00:00+02:00",
        "url": "https://gitlab.example.com/acme/widgets/-/commit/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "author": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "added": ["new.txt"],
        "modified": ["README.md"],
        "removed": ["old.txt"]
      },
      {
        "id": "cccccccccccccccccccccccccccccccccccccccc",
        "message": "Fix widgets\n",
        "title": "Fix widgets",
        "timestamp": "2026-01-01T10:00:00+02:00",
        "url": "https://gitlab.example.com/acme/widgets/-/commit/cccccccccccccccccccccccccccccccccccccccc",
        "author": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "added": ["new.txt"],
        "modified": ["README.md"],
        "removed": ["old.txt"]
      }
    ],
    "total_commits_count": 2,
    "push_options": {"ci": {"skip": true}},
    "repository": {
      "name": "Widgets",
      "url": "git@gitlab.example.com:acme/widgets.git",
      "description": "",
      "homepage": "https://gitlab.example.com/acme/widgets",
      "git_http_url": "https://gitlab.example.com/acme/widgets.git",
      "git_ssh_url": "git@gitlab.example.com:acme/widgets.git",
      "visibility_level": 0
    }
  })");
  CHECK(body(e) == expected);
}

TEST_CASE("project URLs follow the settings", "[push][events]") {
  world w;
  w.s.settings.ssh_clone_url_root = "ssh://git@ssh.example.com:2222/";
  w.s.settings.external_url = "http://[::1]:8080";
  auto p = params("project-11", "user-1", line(A, B, "refs/heads/master"));
  auto evs = events(w, p, facts_for({{"refs/heads/master", {}}}));
  REQUIRE(evs.size() == 1);
  auto project = body(evs[0])["project"];
  CHECK(project["git_ssh_url"]
        == "ssh://git@ssh.example.com:2222/other/thing.git");
  CHECK(project["git_http_url"] == "http://[::1]:8080/other/thing.git");
  CHECK(project["visibility_level"] == 20);
  CHECK(project["namespace"] == "other");
  // The seeded display name, description and public email win when set.
  std::vector<std::int64_t> others;
  w.s.namespaces.for_each([&](std::int64_t id, const namespace_record& ns) {
    if (ns.path == "other")
      others.push_back(id);
  });
  for (auto id : others)
    w.s.namespaces[id].name = "Other Things";
  w.s.projects[11].description = "Things, mostly";
  w.s.users[1].public_email = "root@public.example.com";
  auto named = body(events(w, p, facts_for({{"refs/heads/master", {}}}))[0]);
  CHECK(named["project"]["namespace"] == "Other Things");
  CHECK(named["project"]["description"] == "Things, mostly");
  CHECK(named["repository"]["description"] == "Things, mostly");
  CHECK(named["user_email"] == "root@public.example.com");
  CHECK(body(evs[0])["ref_protected"] == false);
  CHECK(evs[0].subject == "gitlab.events.push.11");

  w.s.settings.ssh_clone_url_root.clear();
  w.s.projects[11].visibility = "internal";
  w.s.projects[11].default_branch.clear();
  project = body(events(w, p, facts_for({}))[0])["project"];
  CHECK(project["git_ssh_url"] == "[git@::1]:other/thing.git");
  CHECK(project["visibility_level"] == 10);
  CHECK(project["default_branch"].is_null());
}

TEST_CASE("tags become Tag Push Hook bodies", "[push][events][tags]") {
  world w;
  ref_commits annotated;
  annotated.tag_target = C;
  annotated.tag_message = "Release 1.0\n";
  annotated.commits = {make_commit(C, "Fix widgets\n")};
  annotated.total = 1;
  ref_commits lightweight;
  lightweight.tag_target = B;
  lightweight.tag_message = "";
  lightweight.commits = {make_commit(B, "Add widgets\n")};
  lightweight.total = 1;
  auto p = params("project-10", "user-1",
                  line(Z, D, "refs/tags/v1.0") + line(Z, B, "refs/tags/light"));
  auto evs = events(w, p,
                    facts_for({{"refs/tags/v1.0", annotated},
                               {"refs/tags/light", lightweight}}));
  REQUIRE(evs.size() == 2);
  CHECK(evs[0].kind == "tag_push");
  CHECK(evs[0].subject == "gitlab.events.tag_push.10");
  auto b = body(evs[0]);
  CHECK(b["object_kind"] == "tag_push");
  CHECK(b["event_name"] == "tag_push");
  CHECK(b["before"] == Z);
  CHECK(b["after"] == D);
  CHECK(b["checkout_sha"] == C); // peeled
  CHECK(b["message"] == "Release 1.0\n");
  CHECK(b["ref_protected"] == true); // v*
  CHECK(b["total_commits_count"] == 1);
  REQUIRE(b["commits"].size() == 1);
  CHECK(b["commits"][0]["id"] == C);

  b = body(evs[1]);
  CHECK(b["checkout_sha"] == B);
  CHECK(b["message"] == "");
  CHECK(b["ref_protected"] == false);

  SECTION("a tag of a tree or blob has no commit") {
    ref_commits blob;
    blob.tag_message = "";
    auto pb = params("project-10", "user-1", line(Z, D, "refs/tags/blob"));
    auto eb = events(w, pb, facts_for({{"refs/tags/blob", blob}}));
    REQUIRE(eb.size() == 1);
    auto bb = body(eb[0]);
    CHECK(bb["checkout_sha"].is_null());
    CHECK(bb["commits"] == json::array());
    CHECK(bb["total_commits_count"] == 0);
    CHECK_FALSE(eb[0].commits_unavailable);
  }
}

TEST_CASE("deletions carry no commits and need no git", "[push][events]") {
  world w;
  auto p = params("project-10", "user-1",
                  line(A, Z, "refs/heads/gone") + line(D, Z, "refs/tags/v0")
                    + line(A + A.substr(0, 24), Z64, "refs/heads/sha256"));
  commit_facts none; // git was never asked
  none.unavailable_reason = "the repository storage has no local path";
  auto evs = events(w, p, none);
  REQUIRE(evs.size() == 3);
  for (const auto& e : evs) {
    auto b = body(e);
    CHECK(b["checkout_sha"].is_null());
    CHECK(b["message"].is_null());
    CHECK(b["commits"] == json::array());
    CHECK(b["total_commits_count"] == 0);
    CHECK_FALSE(e.commits_unavailable);
  }
  CHECK(evs[0].kind == "push");
  CHECK(evs[1].kind == "push");
  CHECK(evs[2].kind == "tag_push");
}

TEST_CASE("without commit facts, events go out marked", "[push][events]") {
  world w;
  commit_facts unavailable;
  unavailable.unavailable_reason = "git failed";
  auto p = params("project-10", "user-1",
                  line(A, B, "refs/heads/main") + line(Z, D, "refs/tags/v2"));
  auto evs = events(w, p, unavailable);
  REQUIRE(evs.size() == 2);
  for (const auto& e : evs) {
    CHECK(e.commits_unavailable);
    auto b = body(e);
    CHECK(b["commits"] == json::array());
    CHECK(b["total_commits_count"] == 0);
    CHECK(b["message"].is_null());
  }
  CHECK(body(evs[0])["checkout_sha"] == B); // a branch's is known anyway
  CHECK(body(evs[1])["checkout_sha"].is_null());

  SECTION("per ref: only the refs git could not answer") {
    commit_facts partial;
    partial.available = false;
    partial.by_ref["refs/heads/main"] = ref_commits{};
    auto ep = events(w, p, partial);
    CHECK_FALSE(ep[0].commits_unavailable);
    CHECK(ep[1].commits_unavailable);
  }
}

TEST_CASE("payloads list the newest 20 commits, oldest first",
          "[push][events]") {
  world w;
  ref_commits rc;
  for (int i = 1; i <= 25; ++i) {
    auto id = std::string(38, '0') + (i < 10 ? "0" : "") + std::to_string(i);
    rc.commits.push_back(make_commit(id, "commit " + std::to_string(i)));
  }
  rc.total = 30;
  auto p = params("project-10", "user-1", line(A, B, "refs/heads/main"));
  auto b = body(events(w, p, facts_for({{"refs/heads/main", rc}}))[0]);
  REQUIRE(b["commits"].size() == 20);
  CHECK(b["commits"][0]["message"] == "commit 6");
  CHECK(b["commits"][19]["message"] == "commit 25");
  CHECK(b["total_commits_count"] == 30);
}

TEST_CASE("bulk: more than 3 refs of one kind and action",
          "[push][events][bulk]") {
  world w;
  auto facts = facts_for({});
  std::string four_new;
  for (auto name : {"a", "b", "c", "d"})
    four_new += line(Z, B, std::string{"refs/heads/"} + name);

  SECTION("four new branches") {
    auto evs = events(w, params("project-10", "user-1", four_new), facts);
    REQUIRE(evs.size() == 4);
    for (const auto& e : evs)
      CHECK(e.bulk);
  }
  SECTION("three new branches and one update") {
    auto changes = line(Z, B, "refs/heads/a") + line(Z, B, "refs/heads/b")
      + line(A, B, "refs/heads/main") + line(Z, B, "refs/heads/c");
    auto evs = events(w, params("project-10", "user-1", changes), facts);
    REQUIRE(evs.size() == 4);
    for (const auto& e : evs)
      CHECK_FALSE(e.bulk);
  }
  SECTION("kinds count apart") {
    std::string changes = line(A, B, "refs/heads/main");
    for (auto name : {"t1", "t2", "t3", "t4"})
      changes += line(Z, C, std::string{"refs/tags/"} + name);
    changes += line(Z, C, "refs/tags/t5");
    changes += line(C, Z, "refs/tags/t0");
    auto evs = events(w, params("project-10", "user-1", changes), facts);
    REQUIRE(evs.size() == 7);
    CHECK(evs[0].kind == "push");
    CHECK_FALSE(evs[0].bulk);
    for (std::size_t i = 1; i <= 5; ++i) {
      CHECK(evs[i].kind == "tag_push");
      CHECK(evs[i].bulk);
    }
    CHECK(evs[6].kind == "tag_push");
    CHECK(body(evs[6])["ref"] == "refs/tags/t0");
    CHECK_FALSE(evs[6].bulk); // the only removal
  }
  SECTION("exactly three is not bulk") {
    auto changes = line(Z, B, "refs/heads/a") + line(Z, B, "refs/heads/b")
      + line(Z, B, "refs/heads/c");
    for (const auto& e :
         events(w, params("project-10", "user-1", changes), facts))
      CHECK_FALSE(e.bulk);
  }
}

TEST_CASE("events follow GitLab's processing order", "[push][events]") {
  world w;
  auto changes = line(Z, C, "refs/tags/v9") + line(A, B, "refs/heads/main")
    + line(Z, B, "refs/heads/new1") + line(A, Z, "refs/heads/old")
    + line(A, C, "refs/heads/fix") + line(Z, B, "refs/heads/new2")
    + line(Z, A, "refs/merge-requests/1/head");
  auto evs = events(w, params("project-10", "user-1", changes), facts_for({}));
  std::vector<std::string> refs;
  for (const auto& e : evs)
    refs.push_back(body(e)["ref"]);
  // Branches by action in order of first appearance (pushed, created,
  // removed), then tags; other refs give no event.
  CHECK(refs
        == std::vector<std::string>{"refs/heads/main", "refs/heads/fix",
                                    "refs/heads/new1", "refs/heads/new2",
                                    "refs/heads/old", "refs/tags/v9"});
  std::set<std::string> ids;
  for (const auto& e : evs)
    ids.insert(e.event_id);
  CHECK(ids.size() == evs.size());
}

TEST_CASE("ref_protected follows protected branch and tag patterns",
          "[push][events]") {
  world w;
  auto changes = line(A, B, "refs/heads/main")
    + line(A, B, "refs/heads/release/1.x") + line(A, B, "refs/heads/Main")
    + line(Z, B, "refs/tags/v1") + line(Z, B, "refs/tags/x1");
  auto evs = events(w, params("project-10", "user-1", changes), facts_for({}));
  REQUIRE(evs.size() == 5);
  std::map<std::string, bool> got;
  for (const auto& e : evs) {
    auto b = body(e);
    got[b["ref"]] = b["ref_protected"];
  }
  CHECK(got["refs/heads/main"]);
  CHECK(got["refs/heads/release/1.x"]);
  CHECK_FALSE(got["refs/heads/Main"]);
  CHECK(got["refs/tags/v1"]);
  CHECK_FALSE(got["refs/tags/x1"]);
}

TEST_CASE("push options are parsed as GitLab does", "[push][events][options]") {
  world w;
  auto options_of = [&](std::vector<std::string> raw) {
    auto p = params("project-10", "user-1", line(A, B, "refs/heads/main"),
                    std::move(raw));
    return ordered::parse(events(w, p, facts_for({}))[0].body)["push_options"];
  };
  CHECK(options_of({}) == ordered::object());
  CHECK(options_of({"ci.skip"}).dump() == R"({"ci":{"skip":true}})");
  CHECK(options_of({"unknown.option", "ci.bogus", "ci", "", "skip"})
        == ordered::object());
  CHECK(options_of({"mr.create", "mr.target=main", "merge_request.title= T "})
          .dump()
        == R"({"merge_request":{"create":true,"target":"main","title":"T"}})");
  CHECK(options_of(
          {"ci.variable=A=1", "ci.variable=B=2", "ci.variable=A=1", "ci.skip"})
          .dump()
        == R"({"ci":{"variable":{"A=1":2,"B=2":1},"skip":true}})");
  CHECK(options_of({"merge_request.label=bug", "merge_request.label"}).dump()
        == R"({"merge_request":{"label":{"bug":1,"true":1}}})");
  CHECK(
    options_of({"integrations.skip_ci", "secret_detection.skip_all=  "}).dump()
    == R"({"integrations":{"skip_ci":true},"secret_detection":{"skip_all":true}})");
  CHECK(options_of({"ci.skip=false", "ci.skip=no"}).dump()
        == R"({"ci":{"skip":"no"}})"); // the last single value wins
  CHECK(options_of({" ci . skip "}).dump() == R"({"ci":{"skip":true}})");
}

TEST_CASE("no events without project and user, nor for wikis",
          "[push][events]") {
  world w;
  auto changes = line(A, B, "refs/heads/main");
  CHECK(
    events(w, params("project-999", "user-1", changes), facts_for({})).empty());
  CHECK(events(w, params("project-10", "user-999", changes), facts_for({}))
          .empty());
  CHECK(
    events(w, params("project-10", "key-101", changes), facts_for({})).empty());
  CHECK(events(w, params("wiki-10", "user-1", changes), facts_for({})).empty());
  CHECK(
    events(w, params("project-10", "user-1", "_any"), facts_for({})).empty());

  SECTION("a deploy key's push is its creator's") {
    auto evs
      = events(w, params("project-10", "key-100", changes), facts_for({}));
    REQUIRE(evs.size() == 1);
    CHECK(body(evs[0])["user_username"] == "root");
  }
}

TEST_CASE("bodies survive text that is not UTF-8", "[push][events]") {
  world w;
  ref_commits rc;
  rc.commits = {make_commit(B, "caf\xe9\n")};
  rc.total = 1;
  auto p = params("project-10", "user-1", line(A, B, "refs/heads/main"));
  auto evs = events(w, p, facts_for({{"refs/heads/main", rc}}));
  REQUIRE(evs.size() == 1);
  CHECK(body(evs[0])["commits"][0]["message"] == "caf\xef\xbf\xbd\n");
}

TEST_CASE("random_uuid makes version 4 UUIDs", "[push][uuid]") {
  static const std::regex v4{
    "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"};
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto id = random_uuid();
    CHECK(std::regex_match(id, v4));
    seen.insert(id);
  }
  CHECK(seen.size() == 100);

  world w;
  auto p = params("project-10", "user-1", line(A, B, "refs/heads/main"));
  auto evs = build_events(w.s, resolve(w.s, p), p, facts_for({}), nullptr);
  REQUIRE(evs.size() == 1);
  CHECK(std::regex_match(evs[0].event_id, v4));
}
