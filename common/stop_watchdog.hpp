#pragma once

// The last resort of a process's stop. Once a stop signal has arrived, the
// orderly stop may wait on a dependency that is gone or hangs (a PostgreSQL
// connection attempt, a NATS flush, a detached actor inside a statement);
// a container runtime or systemd would then kill the process after its
// grace period. The watchdog ends it first, at a known moment, with a log
// line that says why.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace gatehouse {

class stop_watchdog {
public:
  /// `message` is logged (warn) when the limit passes; `limit` counts from
  /// arm().
  stop_watchdog(std::string message, std::chrono::milliseconds limit);

  /// Disarms.
  ~stop_watchdog();

  stop_watchdog(const stop_watchdog&) = delete;
  stop_watchdog& operator=(const stop_watchdog&) = delete;

  /// Starts the countdown; later calls do nothing. At its end the process
  /// exits with status 0 (a stop was asked for), without running exit
  /// handlers or destructors that may be what hangs.
  void arm();

  /// The orderly stop has finished: no forced exit.
  void disarm();

private:
  std::string message_;
  std::chrono::milliseconds limit_;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool finished_ = false;
  std::thread countdown_;
};

} // namespace gatehouse
