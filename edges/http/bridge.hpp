#pragma once

#include "edges/inline_unit.hpp"

#include <caf/actor_system.hpp>
#include <caf/after.hpp>
#include <caf/blocking_actor.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>

#include <algorithm>
#include <chrono>
#include <memory>

namespace gatehouse::http {

/// The calling (httplib) thread's scoped actor. Reused for the thread's
/// life: a scoped actor per request costs about a third of the throughput
/// (toolchain.md §5.1). Its execution unit runs the actor a request wakes
/// on this thread (inline_unit.hpp).
struct thread_caller {
  std::unique_ptr<inline_unit> unit;
  std::unique_ptr<caf::scoped_actor> self;
  caf::actor_system* owner = nullptr;

  caf::scoped_actor& get(caf::actor_system& sys) {
    if (owner != &sys) {
      self.reset();
      unit = std::make_unique<inline_unit>(sys);
      owner = &sys;
    }
    if (!self) {
      self = std::make_unique<caf::scoped_actor>(sys, true);
      (*self)->context(unit.get());
    }
    return *self;
  }

  /// A blocking actor skips, and keeps for good, every response it no
  /// longer waits for; after a deadline passes, the late reply would be
  /// such a response. Dropping the actor drops whatever arrives for it.
  void forget() {
    self.reset();
    // What the actor's end woke.
    if (unit)
      unit->run_kept();
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
/// instead, and a call that runs out replaces the thread's actor. When the
/// request woke `dest`, this thread runs its turn first, so the reply is
/// usually there before the wait begins; the deadline counts that turn.
template <class Result, class Handle, class... Ts>
caf::expected<Result> ask(caf::actor_system& sys, const Handle& dest,
                          std::chrono::milliseconds deadline, Ts&&... xs) {
  auto until = std::chrono::steady_clock::now() + deadline;
  caf::expected<Result> out{caf::error{}};
  auto& caller = this_thread_caller();
  auto& self = caller.get(sys);
  auto pending = self->request(dest, caf::infinite, std::forward<Ts>(xs)...);
  caller.unit->run_kept();
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    until - std::chrono::steady_clock::now());
  bool ran_out = false;
  caf::blocking_actor::accept_one_cond once;
  self->varargs_receive(
    once, pending.id(), [&](Result& reply) { out = std::move(reply); },
    [&](caf::error& err) { out = std::move(err); },
    caf::after(std::max(left, std::chrono::milliseconds(0)))
      >> [&] { ran_out = true; });
  if (ran_out) {
    caller.forget();
    out = caf::make_error(caf::sec::request_timeout);
  }
  return out;
}

} // namespace gatehouse::http
