// The git actor's commit listing for push events, against real repositories.

#include "storage/git_actor.hpp"

#include "messages/errors.hpp"
#include "storage/git_repository.hpp"
#include "tests/git/git_fixture.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

using namespace gatehouse;
using namespace std::chrono_literals;

namespace {

const std::string blank(40, '0');

access::ref_change change(const std::string& oldrev, const std::string& newrev,
                          const std::string& ref) {
  return access::ref_change{oldrev, newrev, ref};
}

push::commit_facts ask(const test::git_scratch& s,
                       std::vector<access::ref_change> changes,
                       const std::string& default_branch = "main",
                       std::size_t limit = 20) {
  push::commit_questions q;
  q.location = s.bare_location();
  q.changes = std::move(changes);
  q.default_branch = default_branch;
  q.limit = limit;
  return storage::answer_commits(q, 10s);
}

std::vector<std::string> ids(const push::ref_commits& rc) {
  std::vector<std::string> out;
  for (const auto& c : rc.commits)
    out.push_back(c.id);
  return out;
}

} // namespace

TEST_CASE("a branch update lists old..new, oldest first", "[push][git]") {
  test::git_scratch s;
  s.make_repos();
  s.write("a.txt", "1");
  auto c1 = s.commit("one");
  s.push("main");
  s.write("a.txt", "2");
  s.write("dir/b.txt", "b");
  auto c2 = s.commit("two\n\nbody");
  std::filesystem::remove(s.work + "/a.txt");
  auto c3 = s.commit("three");
  s.push("main");

  auto facts = ask(s, {change(c1, c3, "refs/heads/main")});
  CHECK(facts.available);
  CHECK(facts.unavailable_reason.empty());
  const auto& rc = facts.by_ref.at("refs/heads/main");
  CHECK(ids(rc) == std::vector<std::string>{c2, c3});
  CHECK(rc.total == 2);
  CHECK_FALSE(rc.tag_target);
  CHECK_FALSE(rc.tag_message);
  const auto& two = rc.commits[0];
  CHECK(two.message == "two\n\nbody\n");
  CHECK(two.title == "two");
  CHECK(two.author_name == "Ada Lovelace");
  CHECK(two.author_email == "ada@example.com");
  CHECK(two.timestamp == "2026-01-01T10:08:00+00:00");
  CHECK(two.added == std::vector<std::string>{"dir/b.txt"});
  CHECK(two.modified == std::vector<std::string>{"a.txt"});
  CHECK(two.removed.empty());
  CHECK(rc.commits[1].removed == std::vector<std::string>{"a.txt"});
}

TEST_CASE("timestamps keep the committer's offset", "[push][git]") {
  test::git_scratch s;
  s.make_repos();
  s.offset = "+0200";
  auto c1 = s.commit("one");
  s.push("main");
  auto rc = ask(s, {change(blank, c1, "refs/heads/main")})
              .by_ref.at("refs/heads/main");
  REQUIRE(rc.commits.size() == 1);
  CHECK(rc.commits[0].timestamp == "2026-01-01T12:04:00+02:00");
}

TEST_CASE("a new branch lists the commits not on the default branch",
          "[push][git]") {
  test::git_scratch s;
  s.make_repos();
  auto c1 = s.commit("one");
  auto c2 = s.commit("two");
  auto c3 = s.commit("three");
  s.push("main");
  s.git(s.work, {"checkout", "-q", "-b", "topic", c2});
  auto f1 = s.commit("f1");
  auto f2 = s.commit("f2");
  s.push("topic");

  auto facts = ask(s, {change(blank, f2, "refs/heads/topic")});
  const auto& rc = facts.by_ref.at("refs/heads/topic");
  CHECK(ids(rc) == std::vector<std::string>{f1, f2});
  CHECK(rc.total == 2);

  SECTION("a new branch without new commits lists nothing") {
    s.push(c3 + ":refs/heads/copy");
    auto copy = ask(s, {change(blank, c3, "refs/heads/copy")})
                  .by_ref.at("refs/heads/copy");
    CHECK(copy.commits.empty());
    CHECK(copy.total == 0);
  }
  SECTION("the default branch itself, new: everything reachable") {
    auto whole = ask(s, {change(blank, c3, "refs/heads/main")})
                   .by_ref.at("refs/heads/main");
    CHECK(ids(whole) == std::vector<std::string>{c1, c2, c3});
    CHECK(whole.total == 3);
  }
  SECTION("a default branch missing from the repository: everything") {
    auto all = ask(s, {change(blank, f2, "refs/heads/topic")}, "trunk")
                 .by_ref.at("refs/heads/topic");
    CHECK(ids(all) == std::vector<std::string>{c1, c2, f1, f2});
    CHECK(all.total == 4);
  }
  SECTION("no default branch known: everything") {
    auto all = ask(s, {change(blank, f2, "refs/heads/topic")}, "")
                 .by_ref.at("refs/heads/topic");
    CHECK(all.total == 4);
  }
}

TEST_CASE("the first push of the default branch into an empty repository",
          "[push][git]") {
  test::git_scratch s;
  s.make_repos();
  auto c1 = s.commit("one");
  auto c2 = s.commit("two");
  s.push("main");
  auto facts = ask(s, {change(blank, c2, "refs/heads/main")});
  CHECK(facts.available);
  const auto& rc = facts.by_ref.at("refs/heads/main");
  CHECK(ids(rc) == std::vector<std::string>{c1, c2});
  CHECK(rc.total == 2);
  CHECK(rc.commits[0].added.empty()); // an empty root commit
}

TEST_CASE("a force push lists only the new side", "[push][git]") {
  test::git_scratch s;
  s.make_repos();
  auto c1 = s.commit("one");
  s.commit("two");
  auto c3 = s.commit("three");
  s.push("main");
  s.git(s.work, {"reset", "-q", "--hard", c1});
  s.write("x.txt", "x");
  auto x1 = s.commit("rewritten");
  s.push("+main");
  auto rc
    = ask(s, {change(c3, x1, "refs/heads/main")}).by_ref.at("refs/heads/main");
  CHECK(ids(rc) == std::vector<std::string>{x1});
  CHECK(rc.total == 1);
  CHECK(rc.commits[0].added == std::vector<std::string>{"x.txt"});
}

TEST_CASE("the newest 20 of 25 commits, with the total", "[push][git]") {
  test::git_scratch s;
  s.make_repos();
  std::vector<std::string> all;
  for (int i = 1; i <= 25; ++i)
    all.push_back(s.commit("commit " + std::to_string(i)));
  s.push("main");
  auto rc = ask(s, {change(blank, all.back(), "refs/heads/main")})
              .by_ref.at("refs/heads/main");
  REQUIRE(rc.commits.size() == 20);
  CHECK(rc.total == 25);
  CHECK(rc.commits.front().id == all[5]);
  CHECK(rc.commits.back().id == all[24]);
  CHECK(rc.commits.front().title == "commit 6");

  auto exact = ask(s, {change(all[4], all.back(), "refs/heads/main")})
                 .by_ref.at("refs/heads/main");
  CHECK(exact.commits.size() == 20);
  CHECK(exact.total == 20);

  auto none = ask(s, {change(all[4], all.back(), "refs/heads/main")}, "main", 0)
                .by_ref.at("refs/heads/main");
  CHECK(none.commits.empty());
  CHECK(none.total == 20);
}

TEST_CASE("tags: the tagged commit, the peeled target, the message",
          "[push][git][tags]") {
  test::git_scratch s;
  s.make_repos();
  auto c1 = s.commit("one");
  s.write("a.txt", "a");
  auto c2 = s.commit("two");
  s.push("main");
  s.git(s.work, {"tag", "-a", "v1.0", "-m", "Release 1.0\n\nNotes.", c1});
  s.git(s.work, {"tag", "light", c2});
  s.push("refs/tags/v1.0");
  s.push("refs/tags/light");
  auto tag_object = s.git(s.work, {"rev-parse", "refs/tags/v1.0"});
  REQUIRE(tag_object != c1);

  auto facts = ask(s,
                   {change(blank, tag_object, "refs/tags/v1.0"),
                    change(blank, c2, "refs/tags/light")});
  CHECK(facts.available);
  const auto& annotated = facts.by_ref.at("refs/tags/v1.0");
  CHECK(annotated.tag_target == c1);
  CHECK(annotated.tag_message == "Release 1.0\n\nNotes.\n");
  CHECK(ids(annotated) == std::vector<std::string>{c1});
  CHECK(annotated.total == 1);

  const auto& light = facts.by_ref.at("refs/tags/light");
  CHECK(light.tag_target == c2);
  CHECK(light.tag_message == "");
  CHECK(ids(light) == std::vector<std::string>{c2});
  CHECK(light.total == 1);
  CHECK(light.commits[0].added == std::vector<std::string>{"a.txt"});

  SECTION("a tag of a blob has no commit") {
    s.write("blob.txt", "just a blob");
    auto blob = s.git(s.work, {"hash-object", "-w", "blob.txt"});
    s.git(s.work, {"tag", "blobtag", blob});
    s.git(s.work, {"tag", "-a", "blobnote", "-m", "on a blob", blob});
    s.push("refs/tags/blobtag");
    s.push("refs/tags/blobnote");
    auto note = s.git(s.work, {"rev-parse", "refs/tags/blobnote"});
    auto f = ask(s,
                 {change(blank, blob, "refs/tags/blobtag"),
                  change(blank, note, "refs/tags/blobnote")});
    CHECK(f.available);
    const auto& b = f.by_ref.at("refs/tags/blobtag");
    CHECK_FALSE(b.tag_target);
    CHECK(b.tag_message == "");
    CHECK(b.commits.empty());
    CHECK(b.total == 0);
    const auto& n = f.by_ref.at("refs/tags/blobnote");
    CHECK_FALSE(n.tag_target);
    CHECK(n.tag_message == "on a blob\n");
    CHECK(n.total == 0);
  }
}

TEST_CASE("deletions and other refs need no git", "[push][git]") {
  test::git_scratch s;
  s.make_repos();
  auto c1 = s.commit("one");
  s.push("main");
  auto facts = ask(s,
                   {change(c1, blank, "refs/heads/gone"),
                    change(c1, blank, "refs/tags/old"),
                    change(blank, c1, "refs/merge-requests/1/head")});
  CHECK(facts.available);
  REQUIRE(facts.by_ref.size() == 2);
  CHECK(facts.by_ref.at("refs/heads/gone").commits.empty());
  CHECK(facts.by_ref.at("refs/heads/gone").total == 0);
  CHECK(facts.by_ref.at("refs/tags/old").total == 0);
  CHECK_FALSE(facts.by_ref.at("refs/tags/old").tag_target);
}

TEST_CASE("failures leave refs unanswered", "[push][git]") {
  test::git_scratch s;
  s.make_repos();
  auto c1 = s.commit("one");
  s.push("main");
  const std::string missing(40, 'e');

  auto facts = ask(s,
                   {change(blank, missing, "refs/heads/ghost"),
                    change(blank, c1, "refs/heads/main"),
                    change("not-a-sha", c1, "refs/heads/bad")});
  CHECK_FALSE(facts.available);
  CHECK_FALSE(facts.unavailable_reason.empty());
  CHECK(facts.by_ref.count("refs/heads/ghost") == 0);
  CHECK(facts.by_ref.count("refs/heads/bad") == 0);
  CHECK(facts.by_ref.at("refs/heads/main").total == 1);

  push::commit_questions q;
  q.changes = {change(blank, c1, "refs/heads/main")};
  auto none = storage::answer_commits(q, 10s);
  CHECK_FALSE(none.available);
  CHECK(none.unavailable_reason == "the repository storage has no local path");
  CHECK(none.by_ref.empty());
}

TEST_CASE("the git actor answers commit questions", "[push][git][actor]") {
  test::git_scratch s;
  s.make_repos();
  auto c1 = s.commit("one");
  auto c2 = s.commit("two");
  s.push("main");

  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  storage::git_settings settings;
  settings.per_call_timeout = 10s;
  auto git = sys.spawn<caf::detached>(storage::git, settings);
  caf::scoped_actor self{sys};

  auto request = [&](const push::commit_questions& q) {
    push::commit_facts out;
    self->request(git, 20s, atom::commits::value, q)
      .receive([&](push::commit_facts& facts) { out = std::move(facts); },
               [&](caf::error& e) { FAIL(render(e)); });
    return out;
  };

  push::commit_questions q;
  q.location = s.bare_location();
  q.changes = {change(c1, c2, "refs/heads/main")};
  q.default_branch = "main";
  auto facts = request(q);
  CHECK(facts.available);
  CHECK(ids(facts.by_ref.at("refs/heads/main"))
        == std::vector<std::string>{c2});

  q.location.reset();
  facts = request(q);
  CHECK_FALSE(facts.available);
  CHECK(facts.unavailable_reason == "the repository storage has no local path");

  self->send_exit(git, caf::exit_reason::user_shutdown);
}
