// The HTTP threads' one-round-trip ask (edges/http/bridge.hpp) on a real
// actor system: a blocking wait has no test clock. The deadlines here only
// bound how long a broken build could hang; no assertion depends on them.

#include "edges/http/bridge.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

#include <memory>
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
