#include "storage/git_repository.hpp"

#include "tests/git/git_fixture.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <unistd.h>

using namespace gatehouse;
using namespace gatehouse::storage;
using namespace std::chrono_literals;
using gatehouse::test::git_scratch;

namespace {

constexpr auto timeout = 10s;

std::vector<std::string> plain_env() {
  const char* path = std::getenv("PATH");
  return {std::string{"PATH="} + (path ? path : "/usr/bin:/bin")};
}

// A commit id of the right shape that no repository holds.
const std::string absent(40, 'e');

} // namespace

// -- validation ---------------------------------------------------------------

TEST_CASE("only full lower-case object ids pass as revisions", "[git]") {
  CHECK(is_object_id(std::string(40, 'a')));
  CHECK(is_object_id(std::string(64, '0')));
  CHECK(is_blank_object_id(std::string(40, '0')));
  CHECK_FALSE(is_blank_object_id(std::string(39, '0') + "1"));
  for (std::string bad :
       {std::string{}, std::string(39, 'a'), std::string(41, 'a'),
        std::string(40, 'A'), std::string(39, 'a') + "g", std::string{"HEAD"},
        std::string{"main"}, std::string{"--output=/tmp/x"},
        std::string(40, 'a') + "\n",
        std::string(20, 'a') + ".." + std::string(18, 'a')})
    CHECK_FALSE(is_object_id(bad));
}

TEST_CASE("branch names that read as options or revision syntax are refused",
          "[git]") {
  for (std::string good : {"main", "feature/x", "release-1.0", "a_b"})
    CHECK(is_branch_name(good));
  for (std::string bad : {"",       "-x",      "--upload-pack=evil",
                          "a..b",   "a b",     "a~1",
                          "a^",     "a:b",     "a@{1}",
                          "@",      "a/",      "/a",
                          "a//b",   ".hidden", "x/.y",
                          "x.lock", "a.",      "a\nb",
                          "a*",     "a?",      "a[",
                          "a\\b"})
    CHECK_FALSE(is_branch_name(bad));
}

// -- run_git ------------------------------------------------------------------

TEST_CASE("run_git points git at the repository and the quarantine", "[git]") {
  git_scratch s;
  s.make_repos();
  auto loc = s.bare_location();
  auto dir = run_git(loc, {"rev-parse", "--git-dir"}, timeout);
  CHECK(dir.exit_code == 0);
  CHECK(dir.out == s.bare + "\n");
  loc.object_directory = s.bare + "/objects/incoming-1";
  // git refuses a quarantine directory that does not exist (any more).
  CHECK(run_git(loc, {"rev-parse", "--git-dir"}, timeout).exit_code == 128);
  std::filesystem::create_directories(loc.object_directory);
  auto objects = run_git(loc, {"rev-parse", "--git-path", "objects"}, timeout);
  CHECK(objects.out == loc.object_directory + "\n");
  auto relative = run_git(repo_location{"relative/path", {}, {}},
                          {"rev-parse", "--git-dir"}, timeout);
  CHECK(relative.exit_code == -1);
}

// -- force pushes
// ---------------------------------------------------------------

TEST_CASE("is_ancestor tells a fast-forward from a rewritten history",
          "[git]") {
  git_scratch s;
  const auto commits = s.two_commits_pushed();
  const auto& c1 = commits.first;
  const auto& c2 = commits.second;
  auto loc = s.bare_location();

  // Fast-forward.
  s.write("a.txt", "3");
  auto c3 = s.commit("three");
  s.push("main");
  CHECK(is_ancestor(loc, c2, c3, timeout) == true);
  CHECK(is_ancestor(loc, c3, c3, timeout) == true);

  // Rewritten: c4 replaces c2..c3 on top of c1, force-pushed.
  s.git(s.work, {"reset", "-q", "--hard", c1});
  s.write("a.txt", "4");
  auto c4 = s.commit("four");
  s.push("+main");
  CHECK(is_ancestor(loc, c3, c4, timeout) == false);
  CHECK(is_ancestor(loc, c1, c4, timeout) == true);

  // Unknown objects and broken repositories: no answer.
  git_failure why;
  CHECK_FALSE(is_ancestor(loc, absent, c4, timeout, &why));
  CHECK(why.reason == "git merge-base failed (exit 128)");
  CHECK_FALSE(why.timed_out);
  CHECK_FALSE(
    is_ancestor(repo_location{s.root + "/nope.git", {}, {}}, c1, c4, timeout));
}

TEST_CASE("malicious revisions are refused before git runs", "[git]") {
  git_scratch s;
  s.make_repos();
  s.write("a.txt", "1");
  auto c1 = s.commit("one");
  s.push("main");
  auto loc = s.bare_location();
  auto pwned = s.root + "/pwned";
  for (const std::string& bad : std::vector<std::string>{
         "--output=" + pwned, "HEAD", "main", std::string(40, 'A'),
         c1 + " " + c1, "--all", "^" + c1.substr(1)}) {
    git_failure why;
    CHECK_FALSE(is_ancestor(loc, bad, c1, timeout, &why));
    CHECK(why.reason == "a revision is not a full object id");
    CHECK_FALSE(is_ancestor(loc, c1, bad, timeout));
    CHECK_FALSE(branches_containing(loc, bad, timeout));
    CHECK_FALSE(list_commits(loc, bad, c1, 10, timeout));
    CHECK_FALSE(count_commits(loc, c1, bad, timeout));
  }
  // The null id names no commit.
  CHECK_FALSE(is_ancestor(loc, std::string(40, '0'), c1, timeout));
  CHECK_FALSE(branch_commit(loc, "--output=" + pwned, timeout));
  CHECK_FALSE(std::filesystem::exists(pwned));
}

// -- quarantine ---------------------------------------------------------------

TEST_CASE("objects still in quarantine are visible only with the quarantine "
          "directory",
          "[git]") {
  // A colon in the repository path exercises the quoting of alternates.
  auto name = GENERATE(std::string{"bare.git"}, std::string{"odd:name.git"});
  git_scratch s;
  s.make_repos(name);
  s.write("a.txt", "1");
  auto c1 = s.commit("one");
  s.push("main");

  // What receive-pack does: new objects go to objects/incoming-*, the
  // repository's own objects are an alternate.
  auto quarantine = s.bare + "/objects/incoming-test";
  std::filesystem::create_directories(quarantine);
  auto pushed
    = s.git(s.root, {"commit-tree", c1 + "^{tree}", "-p", c1, "-m", "new"},
            {"GIT_DIR=" + s.bare, "GIT_OBJECT_DIRECTORY=" + quarantine,
             "GIT_ALTERNATE_OBJECT_DIRECTORIES=\"" + s.bare + "/objects\""});

  auto plain = s.bare_location();
  CHECK_FALSE(is_ancestor(plain, c1, pushed, timeout));

  // Gatehouse adds the repository's objects itself when the caller's
  // alternates lack them.
  repo_location quarantined{s.bare, quarantine, {}};
  CHECK(is_ancestor(quarantined, c1, pushed, timeout) == true);
  CHECK(is_ancestor(quarantined, pushed, c1, timeout) == false);
  repo_location as_gitaly{s.bare, quarantine, {s.bare + "/objects/"}};
  CHECK(is_ancestor(as_gitaly, c1, pushed, timeout) == true);
  CHECK(count_commits(quarantined, c1, pushed, timeout) == 1u);
}

// -- branches and emptiness
// -----------------------------------------------------

TEST_CASE("branches_containing names the branches whose tip holds a commit",
          "[git]") {
  git_scratch s;
  s.make_repos();
  s.write("a.txt", "1");
  auto c1 = s.commit("one");
  s.push("main:refs/heads/old");
  s.write("a.txt", "2");
  auto c2 = s.commit("two");
  s.push("main");
  s.push("main:refs/heads/feature/x");
  // A tag named like a branch must not make names ambiguous.
  s.push("main:refs/tags/main");
  auto loc = s.bare_location();

  CHECK(branches_containing(loc, c2, timeout)
        == std::vector<std::string>{"feature/x", "main"});
  CHECK(branches_containing(loc, c1, timeout)
        == std::vector<std::string>{"feature/x", "main", "old"});
  git_failure why;
  CHECK_FALSE(branches_containing(loc, absent, timeout, &why));
  CHECK(why.reason.rfind("git for-each-ref failed", 0) == 0);

  CHECK(branch_commit(loc, "feature/x", timeout) == c2);
  CHECK(branch_commit(loc, "old", timeout) == c1);
  CHECK_FALSE(branch_commit(loc, "nope", timeout, &why));
  CHECK(why.reason == "no such branch");
}

TEST_CASE("repository_empty is true until the first branch exists", "[git]") {
  git_scratch s;
  s.make_repos();
  auto loc = s.bare_location();
  CHECK(repository_empty(loc, timeout) == true);
  s.write("a.txt", "1");
  s.commit("one");
  s.push("main:refs/tags/v1");
  CHECK(repository_empty(loc, timeout) == true);
  s.push("main");
  CHECK(repository_empty(loc, timeout) == false);
  CHECK_FALSE(repository_empty(repo_location{s.root, {}, {}}, timeout));
}

TEST_CASE("a repository owned by another user still answers", "[git]") {
  if (::geteuid() != 0)
    return; // only root can hand the repository to someone else
  git_scratch s;
  s.make_repos();
  s.write("a.txt", "1");
  auto c1 = s.commit("one");
  s.push("main");
  auto chown
    = run_process({"chown", "-R", "65534:65534", s.bare}, plain_env(), timeout);
  REQUIRE(chown.exit_code == 0);
  auto loc = s.bare_location();
  CHECK(is_ancestor(loc, c1, c1, timeout) == true);
  CHECK(branches_containing(loc, c1, timeout)
        == std::vector<std::string>{"main"});
}

// -- commit lists
// ---------------------------------------------------------------

TEST_CASE("list_commits lists new commits newest first with their files",
          "[git]") {
  git_scratch s;
  s.make_repos();
  s.offset = "+0200";
  s.write("a.txt", "1");
  s.write("b.txt", "1");
  auto c1 = s.commit("root commit");
  s.offset = "+0000";
  s.write("a.txt", "2");
  std::filesystem::remove(s.work + "/b.txt");
  s.write("dir/c d.txt", "new");
  auto c2 = s.commit("second\n\nbody text");
  std::string long_title
    = "Fix the frobnicator so that it no longer frobs the widgets twice when "
      "the moon is full and the tide is high";
  s.write("ünï.txt", "x");
  auto c3 = s.commit(long_title + "\n\nmore");
  s.push("main");
  auto loc = s.bare_location();
  const std::string blank(40, '0');

  auto all = list_commits(loc, blank, c3, 10, timeout);
  REQUIRE(all);
  REQUIRE(all->size() == 3);
  CHECK((*all)[0].id == c3);
  CHECK((*all)[1].id == c2);
  CHECK((*all)[2].id == c1);

  const auto& root = (*all)[2];
  CHECK(root.message == "root commit\n");
  CHECK(root.title == "root commit");
  CHECK(root.author_name == "Ada Lovelace");
  CHECK(root.author_email == "ada@example.com");
  // Committer date, with the committer's offset (1767261600 + 4 minutes).
  CHECK(root.timestamp == "2026-01-01T12:04:00+02:00");
  CHECK(root.added == std::vector<std::string>{"a.txt", "b.txt"});
  CHECK(root.modified.empty());
  CHECK(root.removed.empty());

  const auto& second = (*all)[1];
  CHECK(second.message == "second\n\nbody text\n");
  CHECK(second.title == "second");
  CHECK(second.timestamp.size() == 25);
  CHECK(second.timestamp.substr(19) == "+00:00");
  CHECK(second.added == std::vector<std::string>{"dir/c d.txt"});
  CHECK(second.modified == std::vector<std::string>{"a.txt"});
  CHECK(second.removed == std::vector<std::string>{"b.txt"});

  const auto& third = (*all)[0];
  CHECK(third.added == std::vector<std::string>{"ünï.txt"});
  // GitLab's title: >= 100 characters are cut at the last space before
  // character 78, plus "...".
  CHECK(third.title
        == "Fix the frobnicator so that it no longer frobs the widgets twice "
           "when the moon...");

  auto since_c1 = list_commits(loc, c1, c3, 10, timeout);
  REQUIRE(since_c1);
  REQUIRE(since_c1->size() == 2);
  CHECK(since_c1->front().id == c3);
  auto limited = list_commits(loc, blank, c3, 1, timeout);
  REQUIRE(limited);
  REQUIRE(limited->size() == 1);
  CHECK(limited->front().id == c3);
  CHECK(list_commits(loc, c3, c3, 10, timeout)->empty());
  CHECK(list_commits(loc, c1, c3, 0, timeout)->empty());

  CHECK(count_commits(loc, blank, c3, timeout) == 3u);
  CHECK(count_commits(loc, c1, c3, timeout) == 2u);
  CHECK(count_commits(loc, c3, c1, timeout) == 0u);
  CHECK_FALSE(count_commits(loc, c1, blank, timeout));
}

TEST_CASE("list_commits lists a merge's files against its first parent",
          "[git]") {
  git_scratch s;
  s.make_repos();
  s.write("base.txt", "1");
  auto base = s.commit("base");
  s.git(s.work, {"checkout", "-q", "-b", "topic"});
  s.write("topic.txt", "t");
  s.commit("topic");
  s.git(s.work, {"checkout", "-q", "main"});
  s.write("main.txt", "m");
  auto on_main = s.commit("main");
  s.git(s.work, {"merge", "-q", "--no-ff", "-m", "merge topic", "topic"});
  auto merge = s.git(s.work, {"rev-parse", "HEAD"});
  s.push("main");
  auto loc = s.bare_location();

  auto commits = list_commits(loc, on_main, merge, 10, timeout);
  REQUIRE(commits);
  REQUIRE(commits->size() == 2); // the merge and the topic commit
  CHECK(commits->front().id == merge);
  CHECK(commits->front().added == std::vector<std::string>{"topic.txt"});
  CHECK(count_commits(loc, base, merge, timeout) == 3u);
}

// -- answer
// ---------------------------------------------------------------------

TEST_CASE("answer runs what the questions ask", "[git]") {
  git_scratch s;
  const auto commits = s.two_commits_pushed();
  const auto& c1 = commits.first;
  const auto& c2 = commits.second;

  access::git_questions q;
  SECTION("without a local path nothing is answered") {
    q.ask_empty = true;
    auto facts = answer(q, timeout);
    CHECK(facts.unavailable_reason
          == "the repository storage has no local path");
    CHECK_FALSE(facts.repository_empty);
  }
  SECTION("no questions, no work") {
    auto facts = answer(q, timeout);
    CHECK(facts.unavailable_reason.empty());
  }
  SECTION("every question gets its answer") {
    q.location = s.bare_location();
    q.ancestry = {{c1, c2}, {c2, c1}};
    q.branches_containing = {c1};
    q.ask_empty = true;
    auto facts = answer(q, timeout);
    CHECK(facts.unavailable_reason.empty());
    CHECK(facts.is_ancestor.at({c1, c2}) == true);
    CHECK(facts.is_ancestor.at({c2, c1}) == false);
    CHECK(facts.branches_containing.at(c1) == std::vector<std::string>{"main"});
    CHECK(facts.repository_empty == false);
  }
  SECTION("a failed question leaves its answer missing and says why") {
    q.location = s.bare_location();
    q.ancestry = {{c1, c2}, {"HEAD", c2}};
    q.branches_containing = {absent};
    auto facts = answer(q, timeout);
    CHECK(facts.is_ancestor.size() == 1);
    CHECK(facts.is_ancestor.at({c1, c2}) == true);
    CHECK(facts.branches_containing.empty());
    CHECK(facts.unavailable_reason == "a revision is not a full object id");
  }
  SECTION("after a timeout the rest is skipped") {
    q.location = s.bare_location();
    q.ancestry = {{c1, c2}};
    q.ask_empty = true;
    auto facts = answer(q, 0ms);
    CHECK(facts.is_ancestor.empty());
    CHECK_FALSE(facts.repository_empty);
    CHECK(facts.unavailable_reason.find("timed out") != std::string::npos);
  }
}

TEST_CASE("answer times each kind of question and stops at the deadline",
          "[git]") {
  git_scratch s;
  const auto commits = s.two_commits_pushed();
  const auto& c1 = commits.first;
  const auto& c2 = commits.second;

  access::git_questions q;
  q.location = s.bare_location();
  q.ancestry = {{c1, c2}};
  q.branches_containing = {c1};
  q.ask_empty = true;
  SECTION("in time: every kind answered and timed, emptiness first") {
    q.deadline = std::chrono::steady_clock::now() + timeout;
    auto facts = answer(q, timeout);
    CHECK_FALSE(facts.timed_out);
    REQUIRE(facts.steps.size() == 3);
    CHECK(facts.steps[0].check == access::git_check::emptiness);
    CHECK(facts.steps[1].check == access::git_check::ancestry);
    CHECK(facts.steps[2].check == access::git_check::branch_basis);
    for (auto& step : facts.steps) {
      CHECK_FALSE(step.cancelled);
      CHECK_FALSE(step.skipped);
      CHECK(step.elapsed.count() > 0);
    }
    CHECK(facts.is_ancestor.at({c1, c2}) == true);
  }
  SECTION("past the deadline: git does not run, the rest is skipped") {
    q.deadline = std::chrono::steady_clock::now();
    auto facts = answer(q, timeout);
    CHECK(facts.timed_out);
    CHECK_FALSE(facts.repository_empty);
    CHECK(facts.is_ancestor.empty());
    CHECK(facts.ran_out(access::git_check::emptiness));
    CHECK(facts.ran_out(access::git_check::ancestry));
    REQUIRE(facts.steps.size() == 3);
    CHECK(facts.steps[0].cancelled);
    CHECK(facts.steps[1].skipped);
    CHECK(facts.steps[2].skipped);
  }
}

TEST_CASE("answer finds every unknown revision in one batch", "[git]") {
  git_scratch s;
  const auto commits = s.two_commits_pushed();
  const auto& c1 = commits.first;
  const auto& c2 = commits.second;
  auto loc = s.bare_location();

  std::set<std::string> unknown;
  for (char c : std::string("0123456789abcdef"))
    unknown.insert(std::string(39, '7') + c);
  auto missing = missing_objects(loc, [&] {
    auto all = unknown;
    all.insert(c1);
    all.insert(c2);
    return all;
  }(), timeout);
  REQUIRE(missing);
  CHECK(*missing == unknown);
  CHECK_FALSE(missing_objects(loc, {"HEAD"}, timeout));

  access::git_questions q;
  q.location = loc;
  q.ancestry.insert({c1, c2});
  for (auto& u : unknown)
    q.ancestry.insert({u, c2});
  q.branches_containing = {*unknown.begin()};
  auto facts = answer(q, timeout);
  CHECK_FALSE(facts.timed_out);
  CHECK(facts.is_ancestor.size() == 1);
  CHECK(facts.is_ancestor.at({c1, c2}) == true);
  CHECK(facts.branches_containing.empty());
  CHECK(facts.unavailable_reason
        == "a pushed revision is not in the repository");
}

