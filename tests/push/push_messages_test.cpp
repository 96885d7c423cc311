// resolve(), questions_for() and the /post_receive messages.

#include "tests/push/push_world.hpp"

#include <catch2/catch.hpp>

using namespace gatehouse;
using namespace gatehouse::push;
using namespace gatehouse::push::test;

namespace {

std::vector<post_message> messages(const world& w, const post_receive_params& p,
                                   const std::string& moved = {},
                                   unix_time at = now, bool empty = false) {
  return post_receive_messages(w.s, resolve(w.s, p), p, moved, at, empty);
}

std::string mr_link(const std::string& branch, const std::string& escaped) {
  return "To create a merge request for " + branch
    + ", visit:\n  https://gitlab.example.com/acme/widgets/-/"
      "merge_requests/new?merge_request%5Bsource_branch%5D="
    + escaped;
}

} // namespace

// -- resolve
// ------------------------------------------------------------------------

TEST_CASE("resolve finds projects and wikis by gl_repository",
          "[push][resolve]") {
  world w;
  auto ctx = resolve(w.s, params("project-10", "user-1", ""));
  REQUIRE(ctx.project != nullptr);
  CHECK(ctx.project->id == 10);
  CHECK_FALSE(ctx.wiki);

  ctx = resolve(w.s, params("wiki-10", "user-1", ""));
  REQUIRE(ctx.project != nullptr);
  CHECK(ctx.project->id == 10);
  CHECK(ctx.wiki);

  for (auto glr :
       {"project-999", "snippet-10", "design-10", "group-5-wiki", "project-abc",
        "project-0", "project--10", "project-", "project-10x", "", "10"}) {
    INFO(glr);
    CHECK(resolve(w.s, params(glr, "user-1", "")).project == nullptr);
  }
}

TEST_CASE("resolve understands key-, user- and username- identifiers",
          "[push][resolve]") {
  world w;
  auto ctx = resolve(w.s, params("project-10", "user-2", ""));
  REQUIRE(ctx.user != nullptr);
  CHECK(ctx.user->id == 2);
  CHECK_FALSE(ctx.key_id);

  ctx = resolve(w.s, params("project-10", "key-1", ""));
  REQUIRE(ctx.user != nullptr);
  CHECK(ctx.user->id == 1);
  CHECK(ctx.key_id == 1);

  SECTION("a deploy key stands for its creator") {
    ctx = resolve(w.s, params("project-10", "key-100", ""));
    REQUIRE(ctx.user != nullptr);
    CHECK(ctx.user->id == 1);
    CHECK(ctx.key_id == 100);
  }
  SECTION("an orphaned deploy key stands for nobody") {
    ctx = resolve(w.s, params("project-10", "key-101", ""));
    CHECK(ctx.user == nullptr);
    CHECK(ctx.key_id == 101);
  }
  SECTION("usernames are case-insensitive") {
    ctx = resolve(w.s, params("project-10", "username-Alice", ""));
    REQUIRE(ctx.user != nullptr);
    CHECK(ctx.user->id == 2);
  }
  SECTION("unknown and malformed identifiers resolve to nobody") {
    for (auto who : {"user-999", "key-999", "username-nobody", "user-", "key-x",
                     "user-1a", "deploy-token-1", "", "1", "username-"}) {
      INFO(who);
      auto c = resolve(w.s, params("project-10", who, ""));
      CHECK(c.user == nullptr);
      CHECK(c.project != nullptr);
    }
  }
}

// -- questions
// ----------------------------------------------------------------------

TEST_CASE("questions_for asks about pushed branches and tags only",
          "[push][questions]") {
  world w;
  auto p = params("project-10", "user-1",
                  line(A, B, "refs/heads/main") + line(Z, C, "refs/heads/topic")
                    + line(C, Z, "refs/heads/gone") + line(Z, D, "refs/tags/v1")
                    + line(D, Z, "refs/tags/old")
                    + line(Z, A, "refs/merge-requests/1/head")
                    + line(Z, A, "refs/keep-around/" + A));
  auto q = questions_for(w.s, resolve(w.s, p), p);
  REQUIRE(q.location);
  CHECK(q.location->repo_dir
        == "/var/opt/gitlab/git-data/repositories/@hashed/4a/44/4a44dc15.git");
  CHECK(q.location->object_directory.empty());
  CHECK(q.default_branch == "main");
  CHECK(q.limit == 20);
  REQUIRE(q.changes.size() == 3);
  CHECK(q.changes[0].ref == "refs/heads/main");
  CHECK(q.changes[1].ref == "refs/heads/topic");
  CHECK(q.changes[2].ref == "refs/tags/v1");

  SECTION("wikis: their own repository, nothing to ask") {
    auto pw = params("wiki-10", "user-1", p.changes);
    auto qw = questions_for(w.s, resolve(w.s, pw), pw);
    REQUIRE(qw.location);
    CHECK(qw.location->repo_dir
          == "/var/opt/gitlab/git-data/repositories/@hashed/4a/44/"
             "4a44dc15.wiki.git");
    CHECK(qw.changes.empty());
  }
  SECTION("no local storage path: no location") {
    w.s.storages["default"].path.clear();
    CHECK_FALSE(questions_for(w.s, resolve(w.s, p), p).location);
  }
  SECTION("a disk path that leaves the storage: no location") {
    w.s.projects[10].disk_path = "../../etc/x";
    CHECK_FALSE(questions_for(w.s, resolve(w.s, p), p).location);
    w.s.projects[10].disk_path = "/abs";
    CHECK_FALSE(questions_for(w.s, resolve(w.s, p), p).location);
  }
  SECTION("unknown repository: nothing") {
    auto pu = params("project-999", "user-1", p.changes);
    auto qu = questions_for(w.s, resolve(w.s, pu), pu);
    CHECK_FALSE(qu.location);
    CHECK(qu.changes.empty());
  }
}

// -- broadcast banners
// -------------------------------------------------------------

TEST_CASE("the current broadcast banner comes first, as an alert",
          "[push][messages][broadcast]") {
  world w;
  auto p = params("project-10", "user-1", line(A, B, "refs/heads/main"));

  SECTION("current") {
    w.banner(1, "Maintenance tonight");
    auto m = messages(w, p);
    REQUIRE(m.size() == 1);
    CHECK(m[0].message == "Maintenance tonight");
    CHECK(m[0].type == "alert");
  }
  SECTION("expired") {
    w.banner(1, "Old news").ends_at = now - 1;
    CHECK(messages(w, p).empty());
    w.s.settings.broadcast_messages[0].ends_at = now; // ends_at must be > now
    CHECK(messages(w, p).empty());
  }
  SECTION("not started yet") {
    w.banner(1, "Soon").starts_at = now + 1;
    CHECK(messages(w, p).empty());
  }
  SECTION("starting right now") {
    w.banner(1, "Now").starts_at = now;
    CHECK(messages(w, p).size() == 1);
  }
  SECTION("the newest of several current banners") {
    w.banner(3, "three");
    w.banner(1, "one");
    w.banner(2, "two");
    auto m = messages(w, p);
    REQUIRE(m.size() == 1);
    CHECK(m[0].message == "three");
  }
  SECTION("blank banners are skipped") {
    w.banner(1, "  \n");
    CHECK(messages(w, p).empty());
  }
  SECTION("shown for an unknown repository too") {
    w.banner(1, "Global");
    auto m = messages(w, params("project-999", "user-1", p.changes));
    REQUIRE(m.size() == 1);
    CHECK(m[0].message == "Global");
  }
}

TEST_CASE("a banner with a target_path wins when it matches the project path",
          "[push][messages][broadcast]") {
  world w;
  auto p = params("project-10", "user-1", line(A, B, "refs/heads/main"));
  auto other = params("project-11", "user-1", line(A, B, "refs/heads/master"));
  auto first = [&](const post_receive_params& pp) {
    auto m = messages(w, pp);
    return m.empty() ? std::string{} : m[0].message;
  };

  w.banner(5, "Global");
  w.banner(1, "Acme only", "/acme/*");
  CHECK(first(p) == "Acme only");  // scoped wins over a newer global one
  CHECK(first(other) == "Global"); // no match: the global banner

  SECTION("matching is anchored, case-insensitive, '*' spans slashes") {
    w.s.settings.broadcast_messages.clear();
    w.banner(9, "Global");
    auto with_target = [&](const std::string& target) {
      w.s.settings.broadcast_messages.resize(1);
      w.banner(1, "Scoped", target);
      return first(p);
    };
    CHECK(with_target("/acme/widgets") == "Scoped");
    CHECK(with_target("/ACME/Widgets") == "Scoped");
    CHECK(with_target("*/widgets") == "Scoped");
    CHECK(with_target("/a*s") == "Scoped");
    CHECK(with_target("*") == "Scoped");
    CHECK(with_target("/acme/widgets*") == "Scoped");
    CHECK(with_target("/acme") == "Global");        // anchored at the end
    CHECK(with_target("acme/widgets") == "Global"); // path gets a leading /
    CHECK(with_target("/acme/widget") == "Global");
    CHECK(with_target("/acme/widgets/-/issues") == "Global");
    CHECK(with_target("/acme/w.dgets") == "Global"); // '.' is literal
    CHECK(with_target("/acme/[w]idgets") == "Global");
  }
  SECTION("a targeted banner never shows elsewhere, even without a global") {
    w.s.settings.broadcast_messages.erase(
      w.s.settings.broadcast_messages.begin());
    CHECK(first(other).empty());
    CHECK(first(p) == "Acme only");
  }
  SECTION("the newest matching targeted banner") {
    w.banner(2, "Widgets", "/acme/widgets");
    w.banner(3, "Other", "/other/*");
    CHECK(first(p) == "Widgets");
    CHECK(first(other) == "Other");
  }
  SECTION("a blank target_path counts as none") {
    w.s.settings.broadcast_messages.clear();
    w.banner(1, "Blank target", " ");
    CHECK(first(other) == "Blank target");
  }
}

// -- merge request links
// -------------------------------------------------------------

TEST_CASE("pushed non-default branches get a merge request link",
          "[push][messages][mr]") {
  world w;
  SECTION("exact text, in push order") {
    auto m = messages(w,
                      params("project-10", "user-1",
                             line(A, B, "refs/heads/main")
                               + line(Z, B, "refs/heads/topic")
                               + line(A, C, "refs/heads/fix")));
    REQUIRE(m.size() == 2);
    CHECK(m[0].message == mr_link("topic", "topic"));
    CHECK(m[0].type == "basic");
    CHECK(m[1].message == mr_link("fix", "fix"));
  }
  SECTION("branch names are CGI-escaped in the URL only") {
    auto m = messages(w,
                      params("project-10", "user-1",
                             line(Z, B, "refs/heads/feature/x+y&é~_.-#%")));
    REQUIRE(m.size() == 1);
    CHECK(
      m[0].message
      == mr_link("feature/x+y&é~_.-#%", "feature%2Fx%2By%26%C3%A9~_.-%23%25"));
  }
  SECTION("not for deletions, the default branch, tags or other refs") {
    auto m = messages(
      w,
      params("project-10", "user-1",
             line(A, Z, "refs/heads/gone") + line(A, B, "refs/heads/main")
               + line(Z, B, "refs/tags/v1") + line(Z, B, "refs/notes/x")
               + line(A, Z64, "refs/heads/gone256")));
    CHECK(m.empty());
  }
  SECTION("not when merge requests are disabled") {
    w.s.projects[10].merge_requests_enabled = false;
    CHECK(messages(
            w, params("project-10", "user-1", line(Z, B, "refs/heads/topic")))
            .empty());
  }
  SECTION("not for an empty repository") {
    CHECK(messages(w,
                   params("project-10", "user-1", line(Z, B, "refs/heads/t")),
                   {}, now, true)
            .empty());
  }
  SECTION("not for wikis or unknown repositories") {
    CHECK(messages(w, params("wiki-10", "user-1", line(Z, B, "refs/heads/t")))
            .empty());
    CHECK(
      messages(w, params("project-999", "user-1", line(Z, B, "refs/heads/t")))
        .empty());
  }
  SECTION("even for an unknown user (the link needs only the project)") {
    CHECK(messages(
            w, params("project-10", "user-999", line(Z, B, "refs/heads/topic")))
            .size()
          == 1);
  }
}

// -- moved message and order
// ---------------------------------------------------------

TEST_CASE("the moved message comes last, and only with user and project",
          "[push][messages][moved]") {
  world w;
  const std::string moved
    = "Project 'acme/old' was moved to 'acme/widgets'.\n\nPlease update your "
      "Git remote:\n\n  git remote set-url origin "
      "git@gitlab.example.com:acme/widgets.git\n";
  w.banner(1, "Maintenance tonight");
  auto p
    = params("project-10", "user-1",
             line(Z, B, "refs/heads/topic") + line(A, B, "refs/heads/main"));
  auto m = messages(w, p, moved);
  REQUIRE(m.size() == 3);
  CHECK(m[0].message == "Maintenance tonight");
  CHECK(m[0].type == "alert");
  CHECK(m[1].message == mr_link("topic", "topic"));
  CHECK(m[2].message == moved);
  CHECK(m[2].type == "basic");

  CHECK(messages(w, params("project-10", "key-101", p.changes), moved).size()
        == 2); // orphaned deploy key: no user
  CHECK(messages(w, params("project-10", "user-1", ""), "  ").size() == 1);
}

// -- push options
// ------------------------------------------------------------------

TEST_CASE("merge request push options on a wiki get a warning",
          "[push][messages][options]") {
  world w;
  w.banner(1, "Banner");
  auto p = params("wiki-10", "user-1", line(A, B, "refs/heads/main"),
                  {"merge_request.create", "ci.skip"});
  auto m = messages(w, p);
  REQUIRE(m.size() == 2);
  // Both alerts, the banner unshifted in front of the warning.
  CHECK(m[0].message == "Banner");
  CHECK(m[1].message
        == "WARNINGS:\nError encountered with push options "
           "'merge_request.create' 'ci.skip': Push options are only "
           "supported for projects");
  CHECK(m[1].type == "alert");

  SECTION("the mr alias counts") {
    auto alias = params("wiki-10", "user-1", "", {"mr.target=main"});
    auto a = messages(w, alias);
    REQUIRE(a.size() == 2);
    CHECK(a[1].message
          == "WARNINGS:\nError encountered with push options "
             "'mr.target=main': Push options are only supported for projects");
  }
  SECTION("no merge request option, no warning") {
    CHECK(messages(w, params("wiki-10", "user-1", "", {"ci.skip"})).size()
          == 1);
    CHECK(messages(w, params("wiki-10", "user-1", "", {"merge_request.bogus"}))
            .size()
          == 1);
  }
  SECTION("projects take merge request options silently") {
    CHECK(
      messages(w, params("project-10", "user-1", "", {"merge_request.create"}))
        .size()
      == 1);
  }
  SECTION("unknown wiki: no repository, no warning") {
    CHECK(messages(w, params("wiki-999", "user-1", "", {"mr.create"})).size()
          == 1);
  }
}
