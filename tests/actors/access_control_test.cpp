// The access-control actor, deterministic: CAF's test coordinator and an
// injected clock, typed mocks of its peers. What is tested here is the
// actor's own part: validation and GitLab's texts, the rate limit, writes
// off the answer's path, git that does not answer. The decision itself is
// tested as pure functions in tests/access.

#include "actors/access/access_control.hpp"
#include "actors/gitlab_paths.hpp"
#include "messages/calls.hpp"
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
constexpr std::int64_t outsider = 6;

const std::string rate_text
  = "This endpoint has been requested too many times. Try again later.";

// acme/widgets (10, private): dev is a developer, outsider nobody; key
// 100 + id belongs to user id.
world small_world() {
  world w;
  w.ns(5, "acme");
  w.project(10, 5, "widgets");
  w.user(dev, "dev");
  w.user(outsider, "outsider");
  w.key(100 + dev, dev);
  w.key(100 + outsider, outsider);
  w.member(dev, 10, 30);
  w.s.settings.gitlab_shell_operation_limit = 0;
  return w;
}

struct access_fixture : deterministic {
  loader_script loader_script_;
  git_script git;
  /// The expensive lane's git, used when `cheap_lane` is set.
  git_script heavy_git;
  bool cheap_lane = false;
  access_store_script store;
  unix_time clock = access::test::now;
  access_control_actor actor;

  void start(const world& w, bool loaded = true) {
    if (loaded)
      loader_script_.snap = std::make_shared<snapshot>(w.s);
    auto loader = spawn(mock_loader, &loader_script_);
    std::vector<git_actor> gits{spawn(mock_git, &git)};
    if (cheap_lane)
      gits.push_back(spawn(mock_git, &heavy_git));
    auto store_actor = spawn(mock_access_store, &store);
    access_control_settings settings;
    settings.cheap_git_workers = cheap_lane ? 1 : 0;
    settings.git_timeout = 1s;
    settings.store_timeout = 1s;
    settings.now = [this] {
      return clock;
    };
    for (int i = 0; i < partitions; ++i)
      domains.access.push_back(
        spawn(access_control, settings, loader, gits, store_actor));
    actor = domains.access.front();
    run();
  }

  /// How many access actors start() spawns; `actor` is the first.
  int partitions = 1;
  domain_actors domains;

  /// Asks the partition the request's caller hashes to, as the edges do.
  template <call_id Id>
  auto routed(typename call_types<Id>::request r) {
    auto dest = call_types<Id>::actor(domains, r);
    return ask<typename call_types<Id>::answer>(dest, std::move(r));
  }

  caf::expected<access::allowed_outcome> allowed(access::allowed_params p) {
    return ask<access::allowed_outcome>(actor, std::move(p));
  }
};

access::allowed_params clone_by(std::int64_t user) {
  return access::test::by_key(100 + user, "acme/widgets");
}

void require_error(const caf::error& err, errc code, const std::string& text) {
  CHECK(classify(err) == code);
  CHECK(error_detail(err) == text);
}

} // namespace

TEST_CASE_METHOD(access_fixture,
                 "the rate limit counts per minute of the actor's clock",
                 "[actor][access_control]") {
  auto w = small_world();
  w.s.settings.gitlab_shell_operation_limit = 2;
  start(w);
  clock = 60 * 1000; // the start of a minute
  CHECK(allowed(clone_by(dev))->status == 200);
  clock += 59;
  CHECK(allowed(clone_by(dev))->status == 200);
  auto limited = allowed(clone_by(dev));
  REQUIRE_FALSE(limited);
  require_error(limited.error(), errc::rate_limited, rate_text);
  // Another caller has a scope of its own.
  CHECK(allowed(clone_by(outsider))->status == 404);
  clock += 1; // the next minute
  CHECK(allowed(clone_by(dev))->status == 200);
}

TEST_CASE_METHOD(access_fixture,
                 "a malformed Gitaly client context is refused with GitLab's "
                 "reason, even before the read model is loaded",
                 "[actor][access_control]") {
  start(small_world(), false);
  auto p = clone_by(dev);
  p.gitaly_client_context_bin = "not base64!";
  auto refused = allowed(p);
  REQUIRE_FALSE(refused);
  require_error(refused.error(), errc::bad_request,
                "malformed gitaly_client_context_bin");
  p.gitaly_client_context_bin = "WzFd"; // base64 of [1]
  refused = allowed(p);
  REQUIRE_FALSE(refused);
  require_error(refused.error(), errc::bad_request,
                "Decoded gitaly_client_context_bin is not a valid JSON object");
  p.gitaly_client_context_bin = "e30="; // {}
  auto unloaded = allowed(p);
  REQUIRE_FALSE(unloaded);
  CHECK(classify(unloaded.error()) == errc::unavailable);
}

TEST_CASE_METHOD(access_fixture,
                 "the git audit event checks GitLab's required fields, the "
                 "action, then access",
                 "[actor][access_control]") {
  start(small_world());
  access::audit_query q;
  auto missing = ask<access::audit_answer>(actor, q);
  REQUIRE_FALSE(missing);
  require_error(missing.error(), errc::invalid_params,
                "action is missing, protocol is missing, gl_repository is "
                "missing, changes is missing");
  q.action = "git-upload-pack";
  q.protocol = "ssh";
  missing = ask<access::audit_answer>(actor, q);
  REQUIRE_FALSE(missing);
  require_error(missing.error(), errc::invalid_params,
                "gl_repository is missing, changes is missing");
  q.gl_repository = "project-10";
  q.changes = "_any";
  q.action = "git-frobnicate";
  auto bad_action = ask<access::audit_answer>(actor, q);
  REQUIRE(bad_action);
  CHECK(bad_action->status == 400);
  CHECK(bad_action->message == "No valid action specified");
  q.action = "git-upload-pack";
  q.key_id = 100 + dev;
  auto fine = ask<access::audit_answer>(actor, q);
  REQUIRE(fine);
  CHECK(fine->status == 200);
  CHECK(fine->message == "No git audit event needed");
  q.key_id = 100 + outsider;
  auto denied = ask<access::audit_answer>(actor, q);
  REQUIRE(denied);
  CHECK(denied->status == 404);
  CHECK(denied->message
        == "The project you were looking for could not be found or you don't "
           "have permission to view it.");
}

TEST_CASE_METHOD(access_fixture,
                 "authorized_keys needs a key and answers 404 Key for an "
                 "unknown one",
                 "[actor][access_control]") {
  start(small_world());
  auto missing = ask<access::authorized_key>(actor, access::key_query{});
  REQUIRE_FALSE(missing);
  require_error(missing.error(), errc::invalid_params, "key is missing");
  auto unknown = ask<access::authorized_key>(
    actor, access::key_query{"AAAAC3NzaC1lZDI1NTE5"});
  REQUIRE_FALSE(unknown);
  require_error(unknown.error(), errc::not_found, "Key");
}

TEST_CASE_METHOD(access_fixture,
                 "discover reads Rails' identifier for the ids not given",
                 "[actor][access_control]") {
  start(small_world());
  access::discover_query q;
  q.identifier = "user-3";
  auto found = ask<access::discover_answer>(actor, q);
  REQUIRE(found);
  REQUIRE(found->user);
  CHECK(found->user->username == "dev");
  q.identifier = "key-" + std::to_string(100 + outsider);
  found = ask<access::discover_answer>(actor, q);
  REQUIRE(found->user);
  CHECK(found->user->username == "outsider");
  // Explicit ids win over the identifier.
  q.key_id = 100 + dev;
  found = ask<access::discover_answer>(actor, q);
  CHECK(found->user->username == "dev");
  q = {};
  q.identifier = "key-12abc";
  found = ask<access::discover_answer>(actor, q);
  REQUIRE(found);
  CHECK_FALSE(found->user);
}

TEST_CASE_METHOD(access_fixture,
                 "the OTP checks answer the community edition's text",
                 "[actor][access_control]") {
  start(small_world());
  auto answer = ask<access::shell_answer>(actor, access::otp_query{});
  REQUIRE(answer);
  CHECK_FALSE(answer->success);
  CHECK(answer->message == "Feature is not available");
}

TEST_CASE_METHOD(access_fixture,
                 "recovery codes and tokens refuse a user_id without a key, "
                 "as the newest Rails does",
                 "[actor][access_control]") {
  start(small_world());
  access::recovery_query codes;
  codes.caller.user_id = dev;
  CHECK(ask<access::shell_answer>(actor, codes)->message
        == "Could not find the given key");
  codes.caller.user_id = 4242;
  CHECK(ask<access::shell_answer>(actor, codes)->message
        == "Could not find the given user");
  codes.caller = {};
  CHECK(ask<access::shell_answer>(actor, codes)->message
        == "Could not find the given key");
  access::pat_query pat;
  pat.caller.user_id = dev;
  pat.name = "ci";
  pat.scopes = std::vector<std::string>{"read_api"};
  CHECK(ask<access::shell_answer>(actor, pat)->message
        == "Could not find the given key");
  // An unknown key beside a user id: the user could not be resolved.
  pat.caller.key_id = 999;
  CHECK(ask<access::shell_answer>(actor, pat)->message
        == "Could not find the given user");
  CHECK(store.pats.empty());
  pat.caller = {100 + dev, std::nullopt};
  auto created = ask<access::shell_answer>(actor, pat);
  REQUIRE(created);
  CHECK(created->success);
  CHECK(created->token == "glpat-test");
  REQUIRE(store.pats.size() == 1);
  CHECK(store.pats[0].user_id == dev);
}

TEST_CASE_METHOD(access_fixture,
                 "a store failure answers its class, not PostgreSQL's text",
                 "[actor][access_control]") {
  start(small_world());
  store.fail = errc::bad_request;
  access::pat_query pat;
  pat.caller.key_id = 100 + dev;
  pat.name = "ci";
  pat.scopes = std::vector<std::string>{"read_api"};
  auto failed = ask<access::shell_answer>(actor, pat);
  REQUIRE_FALSE(failed);
  CHECK(classify(failed.error()) == errc::bad_request);
  CHECK(error_detail(failed.error()).empty());
}

TEST_CASE_METHOD(access_fixture,
                 "a key's last use is written once a day of the actor's clock",
                 "[actor][access_control]") {
  start(small_world());
  clock = 86400 * 20000 + 10;
  CHECK(allowed(clone_by(dev))->status == 200);
  CHECK(allowed(clone_by(dev))->status == 200);
  CHECK(store.touched == std::vector<std::int64_t>{100 + dev});
  clock += 86400;
  CHECK(allowed(clone_by(dev))->status == 200);
  CHECK(store.touched.size() == 2);
}

TEST_CASE_METHOD(access_fixture,
                 "git that never answers ends in GitLab's 503 once the "
                 "access check's budget is spent",
                 "[actor][access_control]") {
  auto w = small_world();
  w.protect_branch(10, "main", 30, 30);
  start(w);
  git.silent = true;
  using access::test::A;
  using access::test::B;
  auto p = access::test::hook(dev, 10,
                              access::test::change(A, B, "refs/heads/main"));
  auto handle = self->request(actor, caf::infinite, p);
  run();
  CHECK(git.inspected == 1);
  CHECK(self->mailbox().empty());
  advance(1s);
  CHECK(self->mailbox().empty()); // the budget, plus a twentieth for git
  advance(50ms);
  REQUIRE_FALSE(self->mailbox().empty());
  handle.receive(
    [](access::allowed_outcome& o) {
      CHECK(o.status == 503);
      CHECK(o.message
            == "Push operation timed out\n\nTiming information for "
               "debugging purposes:\n");
    },
    [](caf::error& err) { FAIL(render(err)); });
}

TEST_CASE_METHOD(access_fixture,
                 "git's own timeout is GitLab's 503 with the timing lines",
                 "[actor][access_control]") {
  auto w = small_world();
  w.protect_branch(10, "main", 30, 30);
  start(w);
  git.facts.timed_out = true;
  git.facts.unavailable_reason = "git merge-base timed out after 750 ms";
  git.facts.steps = {
    {access::git_check::emptiness, std::chrono::microseconds{1234}, false,
     false},
    {access::git_check::ancestry, std::chrono::microseconds{750'000}, true,
     false},
    {access::git_check::branch_basis, {}, false, true}};
  using access::test::A;
  using access::test::B;
  auto o = allowed(
    access::test::hook(dev, 10, access::test::change(A, B, "refs/heads/main")));
  REQUIRE(o);
  CHECK(o->status == 503);
  CHECK(o->message
        == "Push operation timed out\n\nTiming information for debugging "
           "purposes:\nChecking if the repository is empty... (1.23ms)\n"
           "Checking if you are force pushing to a protected branch... "
           "(cancelled after 750.0ms)\nChecking if you are allowed to "
           "create a protected branch... (cancelled)");
  // A push that needed no missing answer is decided as usual.
  git.facts.repository_empty = false;
  git.facts.steps.erase(git.facts.steps.begin());
  CHECK(allowed(access::test::hook(
                  dev, 10, access::test::change(A, B, "refs/heads/topic")))
          ->status
        == 200);
}

TEST_CASE_METHOD(access_fixture,
                 "an inspection of many questions takes the expensive lane, "
                 "an ordinary push the cheap one",
                 "[actor][access_control]") {
  auto w = small_world();
  w.protect_branch(10, "*", 30, 30);
  cheap_lane = true;
  start(w);
  heavy_git.silent = true; // busy for good: must not hold the cheap lane
  using access::test::A;
  using access::test::B;
  std::string many;
  for (int i = 0; i < 10; ++i)
    many += access::test::change(std::string(39, 'c') + "0123456789"[i], B,
                                 "refs/heads/b" + std::to_string(i));
  [[maybe_unused]] auto heavy = self->request(actor, caf::infinite,
                             access::test::hook(dev, 10, many));
  run();
  CHECK(heavy_git.inspected == 1);
  CHECK(git.inspected == 0);
  git.facts.repository_empty = false;
  git.facts.is_ancestor[{std::string(A), std::string(B)}] = true;
  auto o = allowed(
    access::test::hook(dev, 10, access::test::change(A, B, "refs/heads/main")));
  REQUIRE(o);
  CHECK(o->status == 200);
  CHECK(git.inspected == 1);
  CHECK(heavy_git.inspected == 1);
}

TEST_CASE_METHOD(access_fixture,
                 "a redirected path keeps the moved message before answering",
                 "[actor][access_control]") {
  auto w = small_world();
  w.redirect("acme/old-widgets", 10);
  start(w);
  auto p = access::test::by_key(100 + dev, "acme/old-widgets");
  auto outcome = allowed(p);
  REQUIRE(outcome);
  CHECK(outcome->status == 200);
  REQUIRE(store.moved.size() == 1);
  CHECK(std::get<0>(store.moved[0]) == dev);
  CHECK(std::get<1>(store.moved[0]) == 10);
  CHECK_THAT(std::get<2>(store.moved[0]), Catch::Contains("acme/widgets"));
}

TEST_CASE_METHOD(access_fixture,
                 "more change lines than Gatehouse takes on answer 413 before "
                 "anything is asked",
                 "[actor][access_control]") {
  auto w = small_world();
  start(w);
  using access::test::A;
  using access::test::B;
  const auto line = access::test::change(A, B, "refs/heads/topic");
  std::string changes;
  for (std::size_t i = 0; i < gitlab::max_change_lines; ++i)
    changes += line;
  // At the limit: decided as usual.
  auto at_limit = allowed(access::test::hook(dev, 10, changes));
  REQUIRE(at_limit);
  CHECK(at_limit->status == 200);
  // One more line, even without its newline: refused, git never asked.
  const int inspected = git.inspected;
  changes += line.substr(0, line.size() - 1);
  auto over = allowed(access::test::hook(dev, 10, changes));
  REQUIRE_FALSE(over);
  CHECK(classify(over.error()) == errc::too_large);
  CHECK(git.inspected == inspected);
}


// -- partitions ------------------------------------------------------------

TEST_CASE("a caller hashes to one partition whichever way it is named",
          "[actor][access_control][partitions]") {
  access::allowed_params by_key;
  by_key.key_id = 42;
  access::allowed_params by_identifier;
  by_identifier.identifier = "key-42";
  access::audit_query audit;
  audit.key_id = 42;
  access::lfs_query lfs;
  lfs.caller.key_id = 42;
  access::pat_query pat;
  pat.caller = {42, 7}; // the key wins, as in /allowed
  auto h = access::partition_hash(by_key);
  REQUIRE(h);
  CHECK(access::partition_hash(by_identifier) == h);
  CHECK(access::partition_hash(audit) == h);
  CHECK(access::partition_hash(lfs) == h);
  CHECK(access::partition_hash(pat) == h);
  CHECK(access::partition_hash(access::recovery_query{{42, std::nullopt}})
        == h);
  access::allowed_params by_user;
  by_user.user_id = 7;
  CHECK(access::partition_hash(access::recovery_query{{std::nullopt, 7}})
        == access::partition_hash(by_user));
  // Read-model-only answers: any partition.
  CHECK_FALSE(access::partition_hash(access::key_query{"AAAA"}));
  CHECK_FALSE(access::partition_hash(access::discover_query{}));
  CHECK_FALSE(access::partition_hash(access::otp_query{}));
}

TEST_CASE_METHOD(access_fixture,
                 "across partitions, a caller's operations count in one and "
                 "its key is marked used once a day",
                 "[actor][access_control][partitions]") {
  partitions = 8;
  auto w = small_world();
  w.s.settings.gitlab_shell_operation_limit = 3;
  start(w);
  clock = 86400 * 20000 + 10;
  auto by_identifier = [](std::int64_t user) {
    auto p = clone_by(user);
    p.identifier = "key-" + std::to_string(*p.key_id);
    p.key_id.reset();
    return p;
  };
  CHECK(routed<call_id::allowed>(clone_by(dev))->status == 200);
  CHECK(routed<call_id::allowed>(by_identifier(dev))->status == 200);
  CHECK(routed<call_id::allowed>(clone_by(dev))->status == 200);
  auto limited = routed<call_id::allowed>(by_identifier(dev));
  REQUIRE_FALSE(limited);
  require_error(limited.error(), errc::rate_limited, rate_text);
  CHECK(store.touched == std::vector<std::int64_t>{100 + dev});
  // Another caller, likely another partition, counts on its own.
  CHECK(routed<call_id::allowed>(clone_by(outsider))->status == 404);
}

TEST_CASE_METHOD(access_fixture,
                 "without access partitions the access calls have no actor",
                 "[actor][access_control][partitions]") {
  domain_actors none;
  CHECK_FALSE(call_types<call_id::allowed>::present(none));
  CHECK_FALSE(call_types<call_id::authorized_keys>::actor(
    none, access::key_query{"AAAA"}));
  partitions = 3;
  start(small_world());
  CHECK(call_types<call_id::authorized_keys>::present(domains));
  // A read-model-only call goes to this thread's partition, every time.
  auto first = call_types<call_id::authorized_keys>::actor(
    domains, access::key_query{"AAAA"});
  CHECK(call_types<call_id::authorized_keys>::actor(
          domains, access::key_query{"BBBB"})
        == first);
}
