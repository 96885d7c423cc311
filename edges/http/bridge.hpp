#pragma once

#include "edges/deadline_relay.hpp"
#include "messages/atoms.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <memory>

namespace gatehouse::http {

/// The scoped actor of the calling (httplib) thread. Reused for the
/// thread's life: a scoped actor per request costs about a third of the
/// throughput (toolchain.md §5.1). Safe only because every request it makes
/// goes to a deadline relay, which always answers, so waiting with
/// caf::infinite leaves no stale timeout in its mailbox.
inline caf::scoped_actor& thread_actor(caf::actor_system& sys) {
  thread_local std::unique_ptr<caf::scoped_actor> self;
  thread_local caf::actor_system* owner = nullptr;
  if (!self || owner != &sys) {
    self = std::make_unique<caf::scoped_actor>(sys, true);
    owner = &sys;
  }
  return *self;
}

/// Asks `dest` with `xs...` through `relay` (a deadline_relay<Result>) and
/// waits for the reply or an error; never longer than `deadline` plus the
/// relay's own queueing.
template <class Result, class Handle, class... Ts>
caf::expected<Result> ask(caf::actor_system& sys, const caf::actor& relay,
                          const Handle& dest,
                          std::chrono::milliseconds deadline, Ts&&... xs) {
  caf::expected<Result> out{caf::error{}};
  auto& self = thread_actor(sys);
  self
    ->request(relay, caf::infinite, atom::relay::value, caf::timespan{deadline},
              caf::actor_cast<caf::actor>(dest),
              caf::make_message(std::forward<Ts>(xs)...))
    .receive([&](Result& reply) { out = std::move(reply); },
             [&](caf::error& err) { out = std::move(err); });
  return out;
}

} // namespace gatehouse::http
