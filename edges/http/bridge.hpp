#pragma once

#include <caf/actor_system.hpp>
#include <caf/after.hpp>
#include <caf/blocking_actor.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>

#include <chrono>
#include <memory>

namespace gatehouse::http {

/// The calling (httplib) thread's scoped actor. Reused for the thread's
/// life: a scoped actor per request costs about a third of the throughput
/// (toolchain.md §5.1).
struct thread_caller {
  std::unique_ptr<caf::scoped_actor> self;
  caf::actor_system* owner = nullptr;

  caf::scoped_actor& get(caf::actor_system& sys) {
    if (!self || owner != &sys) {
      self = std::make_unique<caf::scoped_actor>(sys, true);
      owner = &sys;
    }
    return *self;
  }

  /// A blocking actor skips, and keeps for good, every response it no
  /// longer waits for; after a deadline passes, the late reply would be
  /// such a response. Dropping the actor drops whatever arrives for it.
  void forget() {
    self.reset();
  }
};

inline thread_caller& this_thread_caller() {
  thread_local thread_caller caller;
  return caller;
}

/// Asks `dest` with `xs...` directly, one round trip, and waits for the
/// reply or an error, at most `deadline` (then `sec::request_timeout`).
/// The request carries no CAF timeout: that would leave a timeout message
/// behind after every timely reply. The wait is the receive's own timeout
/// instead, and a call that runs out replaces the thread's actor.
template <class Result, class Handle, class... Ts>
caf::expected<Result> ask(caf::actor_system& sys, const Handle& dest,
                          std::chrono::milliseconds deadline, Ts&&... xs) {
  caf::expected<Result> out{caf::error{}};
  auto& caller = this_thread_caller();
  auto& self = caller.get(sys);
  auto pending = self->request(dest, caf::infinite, std::forward<Ts>(xs)...);
  bool ran_out = false;
  caf::blocking_actor::accept_one_cond once;
  self->varargs_receive(
    once, pending.id(), [&](Result& reply) { out = std::move(reply); },
    [&](caf::error& err) { out = std::move(err); },
    caf::after(deadline) >> [&] { ran_out = true; });
  if (ran_out) {
    caller.forget();
    out = caf::make_error(caf::sec::request_timeout);
  }
  return out;
}

} // namespace gatehouse::http
