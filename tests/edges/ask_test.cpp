// The HTTP threads' one-round-trip ask (edges/http/bridge.hpp) on a real
// actor system: a blocking wait has no test clock. The deadlines here only
// bound how long a broken build could hang; no assertion depends on them.

#include "edges/http/bridge.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace gatehouse;
using namespace std::chrono_literals;

namespace {

using release_atom = caf::atom_constant<caf::atom("release")>;

// Echoes an int as text at once; holds a negative one until released.
caf::behavior holder(caf::event_based_actor* self) {
  auto held = std::make_shared<std::vector<caf::response_promise>>();
  return {
    [=](int x) -> caf::result<std::string> {
      if (x >= 0)
        return std::to_string(x);
      held->push_back(self->make_response_promise());
      return caf::delegated<std::string>{};
    },
    [=](release_atom) -> std::string {
      for (auto& rp : *held)
        rp.deliver(std::string{"late"});
      held->clear();
      return "released";
    },
  };
}

struct ask_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::actor dest = sys.spawn(holder);

  ~ask_fixture() {
    http::this_thread_caller().forget();
  }
};

} // namespace

TEST_CASE_METHOD(ask_fixture,
                 "ask passes the reply on and keeps the thread's actor",
                 "[edge][ask]") {
  auto first = http::ask<std::string>(sys, dest, 5s, 1);
  REQUIRE(first);
  CHECK(*first == "1");
  auto* kept = http::this_thread_caller().self.get();
  for (int i = 2; i < 50; ++i) {
    auto next = http::ask<std::string>(sys, dest, 5s, i);
    REQUIRE(next);
    CHECK(*next == std::to_string(i));
  }
  CHECK(http::this_thread_caller().self.get() == kept);
  CHECK_FALSE(http::this_thread_caller().get(sys)->has_next_message());
}

TEST_CASE_METHOD(ask_fixture,
                 "ask answers a timeout at its deadline, and the late "
                 "reply reaches nobody",
                 "[edge][ask]") {
  auto slow = http::ask<std::string>(sys, dest, 50ms, -1);
  REQUIRE_FALSE(slow);
  CHECK(classify(slow.error()) == errc::timeout);
  CHECK(http::this_thread_caller().self == nullptr);
  // The holder sends the late reply before it answers this ask, so by the
  // time this returns the late one has gone wherever it goes.
  auto released = http::ask<std::string>(sys, dest, 5s, release_atom::value);
  REQUIRE(released);
  CHECK(*released == "released");
  CHECK_FALSE(http::this_thread_caller().get(sys)->has_next_message());
  auto again = http::ask<std::string>(sys, dest, 5s, 7);
  REQUIRE(again);
  CHECK(*again == "7");
}

TEST_CASE_METHOD(ask_fixture, "ask answers an error for a dead destination",
                 "[edge][ask]") {
  caf::anon_send_exit(dest, caf::exit_reason::user_shutdown);
  caf::scoped_actor waiter{sys};
  waiter->wait_for(dest);
  auto dead = http::ask<std::string>(sys, dest, 5s, 1);
  REQUIRE_FALSE(dead);
  CHECK(classify(dead.error()) == errc::unavailable);
}

namespace {

using where_atom = caf::atom_constant<caf::atom("where")>;

// The thread a turn of it runs on, as text.
std::string thread_text() {
  std::ostringstream out;
  out << std::this_thread::get_id();
  return out.str();
}

caf::behavior reporter(caf::event_based_actor*) {
  return {
    [](where_atom) { return thread_text(); },
  };
}

// Asks `next` where it runs and answers that, through a response promise:
// one actor waking another.
caf::behavior relay(caf::event_based_actor* self, caf::actor next) {
  return {
    [=](where_atom) -> caf::result<std::string> {
      auto rp = self->make_response_promise<std::string>();
      self->request(next, caf::infinite, where_atom::value)
        .then([rp](std::string& where) mutable { rp.deliver(where); });
      return rp;
    },
  };
}

} // namespace

TEST_CASE_METHOD(ask_fixture,
                 "an idle actor, and the actors it wakes, run their turns on "
                 "the asking thread",
                 "[edge][ask]") {
  auto here = thread_text();
  // Lazily: a spawned actor is otherwise scheduled at once, to start.
  auto direct = sys.spawn<caf::lazy_init>(reporter);
  auto where = http::ask<std::string>(sys, direct, 5s, where_atom::value);
  REQUIRE(where);
  CHECK(*where == here);
  auto chained = sys.spawn<caf::lazy_init>(relay, direct);
  where = http::ask<std::string>(sys, chained, 5s, where_atom::value);
  REQUIRE(where);
  CHECK(*where == here);
  caf::anon_send_exit(direct, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(chained, caf::exit_reason::user_shutdown);
}

TEST_CASE("an inline unit hands what it did not run to the scheduler",
          "[edge][ask]") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto dest = sys.spawn(reporter);
  caf::scoped_actor self{sys};
  auto* original = self->context();
  auto unit = std::make_unique<inline_unit>(sys);
  self->context(unit.get());
  self->send(dest, where_atom::value);
  self->context(original);
  // Kept and never run: the unit's end schedules it, and a worker answers.
  unit.reset();
  std::string answer;
  self->receive([&](std::string& where) { answer = where; },
                caf::after(std::chrono::seconds(5)) >> [] {});
  CHECK_FALSE(answer.empty());
  CHECK(answer != thread_text());
  caf::anon_send_exit(dest, caf::exit_reason::user_shutdown);
}
