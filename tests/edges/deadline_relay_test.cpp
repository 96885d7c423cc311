// The deadline relay that HTTP threads wait on with caf::infinite,
// deterministic: CAF's test coordinator moves the clock, so the relay's
// deadline and a late reply are exact, not slept for.

#include "edges/deadline_relay.hpp"
#include "messages/errors.hpp"
#include "tests/support/deterministic.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

// The echo keeps its promise in a message to itself (never serialized).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(caf::typed_response_promise<std::string>)

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;

namespace {

// Replies "wake" after `delay_ms` of the test clock.
caf::behavior slow_echo(caf::event_based_actor* self) {
  return {
    [=](int delay_ms) -> caf::result<std::string> {
      if (delay_ms == 0)
        return std::string{"wake"};
      auto rp = self->make_response_promise<std::string>();
      self->delayed_anon_send(self, std::chrono::milliseconds(delay_ms),
                              std::string{"wake"}, rp);
      return rp;
    },
    [=](std::string& text, caf::typed_response_promise<std::string>& rp) {
      rp.deliver(text);
    },
  };
}

struct relay_fixture : deterministic {
  caf::actor relay = spawn(deadline_relay<std::string>);
  caf::actor echo = spawn(slow_echo);

  // Sends a request through the relay with a 100 ms deadline, as an HTTP
  // thread does; the answer is read later.
  auto send(int delay_ms) {
    return self->request(relay, caf::infinite, atom::relay::value,
                         caf::timespan{100ms}, echo,
                         caf::make_message(delay_ms));
  }
};

} // namespace

TEST_CASE_METHOD(relay_fixture, "the deadline relay passes a reply on",
                 "[edge][deadline_relay]") {
  auto fast = send(0);
  run();
  REQUIRE_FALSE(self->mailbox().empty());
  fast.receive([](std::string& s) { CHECK(s == "wake"); },
               [](caf::error& e) { FAIL(render(e)); });
}

TEST_CASE_METHOD(relay_fixture,
                 "the deadline relay answers a timeout at its "
                 "deadline, and the late reply leaves nothing",
                 "[edge][deadline_relay]") {
  auto slow = send(1000);
  run();
  CHECK(self->mailbox().empty());
  advance(99ms);
  CHECK(self->mailbox().empty());
  advance(1ms);
  REQUIRE_FALSE(self->mailbox().empty());
  slow.receive([](std::string&) { FAIL("a reply after the deadline"); },
               [](caf::error& e) { CHECK(classify(e) == errc::timeout); });
  // The echo answers the relay late; nothing reaches the waiting caller.
  advance(1s);
  CHECK(self->mailbox().empty());
  auto again = send(0);
  run();
  again.receive([](std::string& s) { CHECK(s == "wake"); },
                [](caf::error& e) { FAIL(render(e)); });
}

TEST_CASE_METHOD(relay_fixture,
                 "the deadline relay answers an error for a "
                 "dead destination",
                 "[edge][deadline_relay]") {
  self->send_exit(echo, caf::exit_reason::user_shutdown);
  run();
  auto dead = send(0);
  run();
  REQUIRE_FALSE(self->mailbox().empty());
  dead.receive([](std::string&) { FAIL("an answer from a dead actor"); },
               [](caf::error& e) { CHECK(classify(e) == errc::unavailable); });
}
