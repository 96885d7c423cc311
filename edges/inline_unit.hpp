#pragma once

// Runs the actors an edge thread's sends wake on that thread, instead of
// waking a scheduler worker for them. Shared by the edges; header-only.

#include <caf/actor_system.hpp>
#include <caf/execution_unit.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

#include <cstddef>
#include <deque>
#include <thread>

namespace gatehouse {

/// The execution unit of a thread outside CAF's scheduler that sends to
/// actors (an HTTP pool thread, a nats.c delivery thread). A send that
/// wakes an idle actor hands the actor to the sender's unit to schedule;
/// this unit keeps it, and run_kept() runs it on the thread, together with
/// the actors it wakes in turn (an answer to a bridge actor, say). A call
/// then costs no thread switch: on two cores the switches to a worker and
/// back were most of what a round trip to an actor cost.
///
/// The actors stay actors: CAF runs one turn of an actor at a time,
/// whichever thread runs it, and it sees its messages in the same order.
/// A busy actor is not kept (its running thread takes the message), and
/// the thread runs a bounded number of turns; the scheduler gets the rest.
class inline_unit : public caf::execution_unit {
public:
  /// Messages one turn of a kept actor handles before the scheduler takes
  /// it over: what it was woken for (its mailbox was empty), then what other
  /// senders queued meanwhile, cheaper to answer here than to wake a
  /// worker for.
  static constexpr std::size_t turn_messages = 16;

  /// Turns one run_kept() runs.
  static constexpr std::size_t max_turns = 8;

  explicit inline_unit(caf::actor_system& sys)
    : caf::execution_unit(&sys), thread_(std::this_thread::get_id()) {
    // nop
  }

  inline_unit(const inline_unit&) = delete;
  inline_unit& operator=(const inline_unit&) = delete;

  ~inline_unit() override {
    hand_to_scheduler();
  }

  /// Keeps `job` for run_kept(). Called by CAF on the thread whose send (or
  /// whose kept actor) woke `job`; from any other thread, which could only
  /// hold a stale pointer to this unit, the scheduler gets it.
  void exec_later(caf::resumable* job) override {
    if (std::this_thread::get_id() == thread_) {
      kept_.push_back(job);
      return;
    }
    system().scheduler().enqueue(job);
  }

  /// Runs what this thread's sends woke, up to max_turns turns of
  /// turn_messages messages; leaves nothing kept.
  void run_kept() {
    for (std::size_t turns = 0; !kept_.empty() && turns < max_turns;
         ++turns) {
      auto* job = kept_.front();
      kept_.pop_front();
      auto result = job->resume(this, turn_messages);
      // As the scheduler's workers do: the reference taken when the actor
      // was scheduled goes with it back to the scheduler, or is dropped.
      if (result == caf::resumable::resume_later)
        system().scheduler().enqueue(job);
      else
        caf::intrusive_ptr_release(job);
    }
    hand_to_scheduler();
  }

private:
  void hand_to_scheduler() {
    while (!kept_.empty()) {
      system().scheduler().enqueue(kept_.front());
      kept_.pop_front();
    }
  }

  std::thread::id thread_;
  std::deque<caf::resumable*> kept_;
};

} // namespace gatehouse
