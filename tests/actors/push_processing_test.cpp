// The push-processing actor, deterministic: CAF's test coordinator and
// typed mocks of the push store and git. The event bodies and messages are
// tested as pure functions in tests/push; here, the actor's own part: GitLab's
// required fields, the request id reaching the store, answering only after
// the store committed, and a failing store or git.

#include "actors/push/push_processing.hpp"
#include "actors/gitlab_paths.hpp"
#include "tests/access/world.hpp"
#include "tests/actors/peers.hpp"
#include "tests/support/deterministic.hpp"

#include <catch2/catch.hpp>

#include <memory>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;
using access::test::world;

namespace {

constexpr std::int64_t dev = 3;

world push_world() {
  world w;
  w.ns(5, "acme");
  w.project(10, 5, "widgets");
  w.user(dev, "dev");
  w.key(100 + dev, dev);
  w.member(dev, 10, 30);
  return w;
}

struct push_fixture : deterministic {
  loader_script loader_script_;
  git_script git;
  push_store_script store;
  /// A second PostgreSQL session: writes go to the two in turn.
  push_store_script second_store;
  push_processing_actor actor;

  void start(const world& w) {
    loader_script_.snap = std::make_shared<snapshot>(w.s);
    auto loader = spawn(mock_loader, &loader_script_);
    auto git_actor_ = spawn(mock_git, &git);
    auto store_actor = spawn(mock_push_store, &store);
    auto second_store_actor = spawn(mock_push_store, &second_store);
    push_processing_settings settings;
    settings.git_timeout = 1s;
    actor = spawn(push_processing, settings, loader,
                  std::vector<git_actor>{git_actor_},
                  std::vector<push_store_actor>{store_actor,
                                                second_store_actor});
    run();
  }
};

push::post_receive_params branch_push(const std::string& branch) {
  push::post_receive_params p;
  p.gl_repository = "project-10";
  p.identifier = "key-" + std::to_string(100 + dev);
  p.changes = access::test::change(access::test::Z, access::test::A,
                                   "refs/heads/" + branch);
  return p;
}

} // namespace

TEST_CASE_METHOD(push_fixture,
                 "pre_receive needs gl_repository and passes the request id "
                 "to the store",
                 "[actor][push_processing]") {
  start(push_world());
  auto missing
    = ask<push::pre_receive_answer>(actor, push::pre_receive_params{});
  REQUIRE_FALSE(missing);
  CHECK(classify(missing.error()) == errc::invalid_params);
  CHECK(error_detail(missing.error()) == "gl_repository is missing");
  CHECK(store.counted.empty());
  auto counted = ask<push::pre_receive_answer>(
    actor, push::pre_receive_params{"project-10", ""});
  REQUIRE(counted);
  CHECK(counted->reference_counter_increased);
  counted = ask<push::pre_receive_answer>(
    actor, push::pre_receive_params{"project-10", "retry-1"});
  REQUIRE(counted);
  // The two sessions in turn.
  REQUIRE(store.counted.size() == 1);
  REQUIRE(second_store.counted.size() == 1);
  CHECK(store.counted[0] == std::vector<std::string>{"project-10"});
  CHECK(second_store.counted[0]
        == std::vector<std::string>{"project-10", "retry-1"});
}

TEST_CASE_METHOD(push_fixture,
                 "pre_receive answers false when the counter store fails, as "
                 "GitLab does",
                 "[actor][push_processing]") {
  start(push_world());
  store.fail = errc::unavailable;
  second_store.fail = errc::unavailable;
  auto counted = ask<push::pre_receive_answer>(
    actor, push::pre_receive_params{"project-10", ""});
  REQUIRE(counted);
  CHECK_FALSE(counted->reference_counter_increased);
}

TEST_CASE_METHOD(push_fixture,
                 "post_receive names every missing field in GitLab's order",
                 "[actor][push_processing]") {
  start(push_world());
  auto missing
    = ask<push::post_receive_answer>(actor, push::post_receive_params{});
  REQUIRE_FALSE(missing);
  CHECK(classify(missing.error()) == errc::invalid_params);
  CHECK(
    error_detail(missing.error())
    == "gl_repository is missing, identifier is missing, changes is missing");
  push::post_receive_params p;
  p.identifier = "key-1";
  missing = ask<push::post_receive_answer>(actor, p);
  REQUIRE_FALSE(missing);
  CHECK(error_detail(missing.error())
        == "gl_repository is missing, changes is missing");
  CHECK(store.written.empty());
  CHECK(second_store.written.empty());
}

TEST_CASE_METHOD(push_fixture,
                 "post_receive commits the events with the request id before "
                 "it answers",
                 "[actor][push_processing]") {
  start(push_world());
  git.commits.available = true;
  store.moved_message = "Project 'acme/old' was moved to 'acme/widgets'.";
  auto p = branch_push("topic");
  p.request_id = "retry-7";
  auto answer = ask<push::post_receive_answer>(actor, p);
  REQUIRE(answer);
  CHECK(answer->reference_counter_decreased);
  REQUIRE(store.written.size() == 1);
  auto& w = store.written[0];
  CHECK(w.request_id == "retry-7");
  CHECK(w.project_id == 10);
  CHECK(w.user_id == dev);
  REQUIRE(w.events.size() == 1);
  CHECK(w.events[0].subject == "gitlab.events.push.10");
  CHECK(git.listed == 1);
  bool moved_printed = false;
  for (auto& m : answer->messages)
    moved_printed = moved_printed || m.message == store.moved_message;
  CHECK(moved_printed);
}

TEST_CASE_METHOD(push_fixture,
                 "git that never answers still commits the events, marked "
                 "without commits",
                 "[actor][push_processing]") {
  start(push_world());
  git.silent = true;
  auto handle = self->request(actor, caf::infinite, branch_push("topic"));
  run();
  CHECK(store.written.empty());
  CHECK(self->mailbox().empty());
  advance(1s);
  REQUIRE(store.written.size() == 1);
  REQUIRE(store.written[0].events.size() == 1);
  CHECK(store.written[0].events[0].commits_unavailable);
  handle.receive([](push::post_receive_answer&) {},
                 [](caf::error& err) { FAIL(render(err)); });
}

TEST_CASE_METHOD(push_fixture,
                 "a failed commit is the caller's error: nothing is answered "
                 "as applied",
                 "[actor][push_processing]") {
  start(push_world());
  store.fail = errc::unavailable;
  auto answer = ask<push::post_receive_answer>(actor, branch_push("topic"));
  REQUIRE_FALSE(answer);
  CHECK(classify(answer.error()) == errc::unavailable);
}

TEST_CASE_METHOD(push_fixture,
                 "an unparsable gl_repository is GitLab's 500: nothing is "
                 "counted down or written",
                 "[actor][push_processing]") {
  start(push_world());
  for (auto glr : {"nonsense", "project-", "project-x", "project-0", "repo-10",
                   "group-5", "group-x-wiki"}) {
    INFO(glr);
    auto p = branch_push("topic");
    p.gl_repository = glr;
    auto answer = ask<push::post_receive_answer>(actor, p);
    REQUIRE_FALSE(answer);
    CHECK(classify(answer.error()) == errc::internal);
  }
  CHECK(store.written.empty());
  CHECK(second_store.written.empty());
  // Every form GitLab writes is taken (unknown ones attribute nothing).
  for (auto glr : {"project-10", "wiki-10", "snippet-3", "design-4",
                   "group-5-wiki", "project-999"}) {
    INFO(glr);
    auto p = branch_push("topic");
    p.gl_repository = glr;
    CHECK(ask<push::post_receive_answer>(actor, p));
  }
  // Spread over both sessions.
  CHECK(store.written.size() == 3);
  CHECK(second_store.written.size() == 3);
}

TEST_CASE_METHOD(push_fixture,
                 "more change lines than Gatehouse takes on answer 413 and "
                 "change nothing",
                 "[actor][push_processing]") {
  start(push_world());
  auto p = branch_push("topic");
  std::string line = p.changes;
  std::string many;
  many.reserve(line.size() * (gitlab::max_change_lines + 1));
  for (std::size_t i = 0; i <= gitlab::max_change_lines; ++i)
    many += line;
  p.changes = many;
  auto answer = ask<push::post_receive_answer>(actor, p);
  REQUIRE_FALSE(answer);
  CHECK(classify(answer.error()) == errc::too_large);
  CHECK(store.written.empty());
  CHECK(second_store.written.empty());
  CHECK(git.listed == 0);
}

