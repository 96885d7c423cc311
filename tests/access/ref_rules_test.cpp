// parse_changes, ref patterns and names, access levels, questions_for.

#include "tests/access/world.hpp"

#include <catch2/catch.hpp>

using namespace gatehouse;
using namespace gatehouse::access;
using namespace gatehouse::access::test;

TEST_CASE("parse_changes splits lines like Rails", "[access][changes]") {
  SECTION("_any yields nothing") {
    CHECK(parse_changes("_any").empty());
  }
  SECTION("lines are stripped, blanks dropped, fields split on whitespace") {
    const auto changes
      = parse_changes("  " + A + "   " + B + "\trefs/heads/main \r\n\n\n" + Z
                      + " " + C + " refs/tags/v1\n");
    REQUIRE(changes.size() == 2);
    CHECK(changes[0].oldrev == A);
    CHECK(changes[0].newrev == B);
    CHECK(changes[0].ref == "refs/heads/main");
    CHECK(changes[1].oldrev == Z);
    CHECK(changes[1].newrev == C);
    CHECK(changes[1].ref == "refs/tags/v1");
  }
  SECTION("malformed lines are dropped, extra fields ignored") {
    const auto changes = parse_changes(A + " " + B + "\n" + A + " " + B
                                       + " refs/heads/x extra\n");
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].ref == "refs/heads/x");
  }
  SECTION("empty string") {
    CHECK(parse_changes("").empty());
  }
}

TEST_CASE("blank revisions are 40 or 64 zeros", "[access][changes]") {
  CHECK(is_blank_rev(Z));
  CHECK(is_blank_rev(Z64));
  CHECK_FALSE(is_blank_rev(std::string(39, '0')));
  CHECK_FALSE(is_blank_rev(A));
  CHECK_FALSE(is_blank_rev(""));
}

TEST_CASE("ref_pattern_matches: exact names and '*' wildcards",
          "[access][patterns]") {
  CHECK(ref_pattern_matches("main", "main"));
  CHECK_FALSE(ref_pattern_matches("main", "Main"));
  CHECK_FALSE(ref_pattern_matches("main", "main2"));
  CHECK(ref_pattern_matches("feat*", "feature"));
  CHECK(ref_pattern_matches("feat*", "feat"));
  CHECK(ref_pattern_matches("feat*", "feat/a/b"));
  CHECK_FALSE(ref_pattern_matches("feat*", "xfeature"));
  CHECK(ref_pattern_matches("*-stable", "11-stable"));
  CHECK_FALSE(ref_pattern_matches("*-stable", "11-stable-x"));
  CHECK(ref_pattern_matches("release/*/hotfix", "release/1.2/hotfix"));
  CHECK(ref_pattern_matches("*", "anything/at/all"));
  CHECK(ref_pattern_matches("a*b*c", "aXXbYYbZc"));
  CHECK_FALSE(ref_pattern_matches("a*b*c", "aXXbYY"));
  CHECK_FALSE(ref_pattern_matches("*", ""));
  CHECK(ref_pattern_matches("v1.*", "v1.0"));
  CHECK_FALSE(ref_pattern_matches("v1.*", "v1x0"));
}

TEST_CASE("valid_ref_name follows GitRefValidator", "[access][names]") {
  for (const char* ok : {"main", "feature/x", "fix-123", "a.b", "v1.0.0",
                         "release/2024-01", "@x", "@", "ünïcode"}) {
    INFO(ok);
    CHECK(valid_ref_name(ok));
  }
  for (const char* bad : {"",
                          "-wrong",
                          "HEAD",
                          "refs/heads/main",
                          "refs/remotes/x",
                          "a..b",
                          "a b",
                          "a~b",
                          "a^b",
                          "a:b",
                          "a?b",
                          "a*b",
                          "a[b",
                          "a\\b",
                          "/a",
                          "a/",
                          "a//b",
                          ".a",
                          "a/.b",
                          "a.lock",
                          "a/b.lock/c",
                          "a.",
                          "a@{b",
                          "a\x01"}) {
    INFO(bad);
    CHECK_FALSE(valid_ref_name(bad));
  }
}

TEST_CASE("starts_with_full_sha and valid_utf8", "[access][names]") {
  CHECK(starts_with_full_sha("267208abfe40e546f5e847444276f7d43a39503e"));
  CHECK(starts_with_full_sha("267208ABFE40E546F5E847444276F7D43A39503E-x"));
  CHECK(starts_with_full_sha(
    "09b9fd3ea68e9b95a51b693a29568c898e27d1476bbd83c825664f18467fc175"));
  CHECK_FALSE(
    starts_with_full_sha("fix-267208abfe40e546f5e847444276f7d43a39503e"));
  CHECK_FALSE(starts_with_full_sha("267208abfe40e546f5e847444276f7d43a3950"));
  CHECK(valid_utf8("plain"));
  CHECK(valid_utf8("v1-\xc3\xa9t\xc3\xa9"));
  CHECK(valid_utf8("\xf0\x9f\x98\x80"));
  CHECK_FALSE(valid_utf8("bad\xff"));
  CHECK_FALSE(valid_utf8("\xc3"));
  CHECK_FALSE(valid_utf8("\xc0\xaf"));     // overlong
  CHECK_FALSE(valid_utf8("\xed\xa0\x80")); // surrogate
}

TEST_CASE("access_level takes the highest of project and namespace chain",
          "[access][levels]") {
  world w;
  w.ns(1, "top");
  w.ns(2, "top/mid", 1);
  w.ns(3, "top/mid/low", 2);
  w.ns(9, "other");
  auto& p = w.project(10, 3, "proj");
  w.user(5, "u");

  CHECK(access_level(w.s, 5, p) == 0);
  w.member(5, 10, 10);
  CHECK(access_level(w.s, 5, p) == 10);
  w.ns_member(5, 1, 30);
  CHECK(access_level(w.s, 5, p) == 30);
  w.ns_member(5, 2, 20);
  CHECK(access_level(w.s, 5, p) == 30);
  w.ns_member(5, 9, 50); // unrelated namespace
  CHECK(access_level(w.s, 5, p) == 30);
  w.member(5, 10, 40);
  CHECK(access_level(w.s, 5, p) == 40);
  CHECK(root_namespace_id(w.s, p) == 1);
  auto& q = w.project(11, 9, "q");
  CHECK(root_namespace_id(w.s, q) == 9);
}

namespace {

world questions_world() {
  world w;
  w.ns(5, "acme");
  w.project(10, 5, "widgets");
  w.user(2, "maint");
  w.user(3, "dev");
  w.member(2, 10, 40);
  w.member(3, 10, 30);
  w.protect_branch(10, "feat*", 40, 30);
  return w;
}

} // namespace

TEST_CASE("questions_for: location and quarantine directories",
          "[access][questions]") {
  world w = questions_world();
  auto p = hook(2, 10, change(A, B, "refs/heads/master"));
  p.env
    = R"({"GIT_OBJECT_DIRECTORY_RELATIVE":"objects/incoming-abc",)"
      R"("GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE":["objects","/abs/alt"]})";

  SECTION("directories made absolute against the repository directory") {
    const auto q = questions_for(w.s, p);
    REQUIRE(q.location);
    const std::string repo
      = "/var/opt/gitlab/git-data/repositories/@hashed/4a/44/4a44dc1510.git";
    CHECK(q.location->repo_dir == repo);
    CHECK(q.location->object_directory == repo + "/objects/incoming-abc");
    REQUIRE(q.location->alternate_object_directories.size() == 2);
    CHECK(q.location->alternate_object_directories[0] == repo + "/objects");
    CHECK(q.location->alternate_object_directories[1] == "/abs/alt");
  }
  SECTION("Gitaly's relative_path (a snapshot) is the base when safe") {
    p.relative_path = "+gitaly/staging/1/@hashed/4a/44/x.git";
    auto q = questions_for(w.s, p);
    REQUIRE(q.location);
    CHECK(
      q.location->repo_dir
      == "/var/opt/gitlab/git-data/repositories/+gitaly/staging/1/@hashed/4a/"
         "44/x.git");
    p.relative_path = "../../etc";
    q = questions_for(w.s, p);
    REQUIRE(q.location);
    CHECK(
      q.location->repo_dir
      == "/var/opt/gitlab/git-data/repositories/@hashed/4a/44/4a44dc1510.git");
  }
  SECTION("invalid env JSON leaves no quarantine directories") {
    p.env = "{not json";
    const auto q = questions_for(w.s, p);
    REQUIRE(q.location);
    CHECK(q.location->object_directory.empty());
    CHECK(q.location->alternate_object_directories.empty());
  }
  SECTION("no location without a storage path") {
    w.s.storages["default"].path.clear();
    const auto q = questions_for(w.s, p);
    CHECK_FALSE(q.location);
  }
}

TEST_CASE("questions_for: which facts are needed", "[access][questions]") {
  world w = questions_world();

  SECTION("_any and pulls need nothing") {
    auto p = by_user(2, "acme/widgets.git", "git-receive-pack", "_any");
    CHECK(questions_for(w.s, p).empty());
    CHECK_FALSE(questions_for(w.s, p).location);
    p = hook(2, 10, change(A, B, "refs/heads/feature"));
    p.action = "git-upload-pack";
    CHECK(questions_for(w.s, p).empty());
  }
  SECTION("unknown project needs nothing") {
    CHECK(questions_for(w.s, hook(2, 99, change(A, B, "refs/heads/feature")))
            .empty());
  }
  SECTION("update of a protected branch asks ancestry and emptiness") {
    const auto q
      = questions_for(w.s, hook(2, 10, change(A, B, "refs/heads/feature")));
    CHECK(q.ancestry == std::set<std::pair<std::string, std::string>>{{A, B}});
    CHECK(q.ask_empty);
    CHECK(q.branches_containing.empty());
  }
  SECTION(
    "a maintainer's push to unprotected branches and tags needs nothing") {
    const auto q = questions_for(
      w.s,
      hook(2, 10,
           change(A, B, "refs/heads/master") + change(Z, B, "refs/tags/v1")));
    CHECK(q.empty());
    CHECK(q.location); // still known, for whoever wants it
  }
  SECTION("a developer's branch push asks whether the repository is empty") {
    const auto q
      = questions_for(w.s, hook(3, 10, change(A, B, "refs/heads/master")));
    CHECK(q.ask_empty);
    CHECK(q.ancestry.empty());
  }
  SECTION(
    "creation of a protected branch by a merger asks containing branches") {
    const auto q
      = questions_for(w.s, hook(3, 10, change(Z, C, "refs/heads/feature-2")));
    CHECK(q.branches_containing == std::set<std::string>{C});
    CHECK(q.ancestry.empty());
  }
  SECTION("creation by someone who can push asks no containing branches") {
    const auto q
      = questions_for(w.s, hook(2, 10, change(Z, C, "refs/heads/feature-2")));
    CHECK(q.branches_containing.empty());
    CHECK(q.ask_empty);
  }
  SECTION("deletions ask no ancestry") {
    const auto q
      = questions_for(w.s, hook(2, 10, change(A, Z, "refs/heads/feature")));
    CHECK(q.ancestry.empty());
    CHECK(q.ask_empty);
  }
}
