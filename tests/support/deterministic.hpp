#pragma once

// A deterministic actor system for tests of one actor: CAF's test
// coordinator runs every message on the test's thread, in order, and its
// clock moves only when the test says so. No sleeps, no races: a test sends,
// runs, and reads the answer from its scoped actor's mailbox.

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/exit_reason.hpp>
#include <caf/expected.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <vector>

namespace gatehouse::test {

class deterministic {
public:
  deterministic() : sys_(configure(cfg_)), self(sys_, true) {
    sched_ = &dynamic_cast<caf::scheduler::test_coordinator&>(sys_.scheduler());
  }

  /// Ends every actor spawned through spawn() and runs until they are gone:
  /// the actor system waits for all actors when it shuts down, and nothing
  /// runs them after this.
  ~deterministic() {
    for (auto& a : spawned_)
      self->send_exit(a, caf::exit_reason::user_shutdown);
    spawned_.clear();
    run();
  }

  caf::actor_system& sys() {
    return sys_;
  }

  /// Spawns an actor that the fixture ends on destruction.
  template <class... Ts>
  auto spawn(Ts&&... xs) {
    auto handle = sys_.spawn(std::forward<Ts>(xs)...);
    spawned_.push_back(caf::actor_cast<caf::actor>(handle));
    return handle;
  }

  /// Runs every pending message; returns how many ran.
  size_t run() {
    return sched_->run();
  }

  /// Moves the clock forward, fires what became due, and runs.
  void advance(caf::timespan d) {
    sched_->clock().advance_time(d);
    run();
  }

  /// Asks `dest` and runs until the answer is in: the reply, or the error.
  /// An actor that never answers is an error here, not a hang.
  template <class Result, class Handle, class... Ts>
  caf::expected<Result> ask(const Handle& dest, Ts&&... xs) {
    auto handle = self->request(dest, caf::infinite, std::forward<Ts>(xs)...);
    run();
    caf::expected<Result> out{
      caf::make_error(caf::sec::request_timeout, "no answer after running")};
    if (self->mailbox().empty())
      return out;
    handle.receive([&](Result& x) { out = std::move(x); },
                   [&](caf::error& err) { out = std::move(err); });
    return out;
  }

  /// Sends without expecting an answer, and runs.
  template <class Handle, class... Ts>
  void tell(const Handle& dest, Ts&&... xs) {
    self->send(dest, std::forward<Ts>(xs)...);
    run();
  }

private:
  static caf::actor_system_config& configure(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.verbosity", caf::atom("quiet"));
    return cfg;
  }

  caf::actor_system_config cfg_;
  caf::actor_system sys_;
  caf::scheduler::test_coordinator* sched_ = nullptr;
  std::vector<caf::actor> spawned_;

public:
  /// The test's own actor; answers arrive in its mailbox.
  caf::scoped_actor self;
};

} // namespace gatehouse::test
