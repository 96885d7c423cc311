#include "common/stop_watchdog.hpp"

#include "common/log.hpp"

#include <cstdlib>

namespace gatehouse {

stop_watchdog::stop_watchdog(std::string message,
                             std::chrono::milliseconds limit)
  : message_(std::move(message)), limit_(limit) {}

stop_watchdog::~stop_watchdog() {
  disarm();
}

void stop_watchdog::arm() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (countdown_.joinable() || finished_)
    return;
  countdown_ = std::thread{[this] {
    std::unique_lock<std::mutex> lock{mtx_};
    if (cv_.wait_for(lock, limit_, [this] { return finished_; }))
      return;
    log::warn(message_, {{"deadline_ms", limit_.count()}});
    log::flush();
    std::_Exit(0);
  }};
}

void stop_watchdog::disarm() {
  std::thread countdown;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    finished_ = true;
    countdown = std::move(countdown_);
  }
  cv_.notify_all();
  if (countdown.joinable())
    countdown.join();
}

} // namespace gatehouse
