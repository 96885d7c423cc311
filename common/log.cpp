#include "common/log.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>

namespace gatehouse::log {

namespace {

std::atomic<log_format> current_format{log_format::json};

const char* to_string(level lvl) {
  switch (lvl) {
    case level::debug:
      return "debug";
    case level::info:
      return "info";
    case level::warn:
      return "warn";
    case level::error:
      return "error";
  }
  return "info";
}

std::string timestamp() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto millis
    = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(millis));
  return buf;
}

/// Writes all of `text` to stdout; gives up on an error other than EINTR
/// (a closed stdout must not stop the server).
void write_stdout(const std::string& text) {
  std::size_t at = 0;
  while (at < text.size()) {
    auto n = ::write(STDOUT_FILENO, text.data() + at, text.size() - at);
    if (n > 0)
      at += static_cast<std::size_t>(n);
    else if (n < 0 && errno == EINTR)
      continue;
    else
      return;
  }
}

/// Lines reach stdout from one thread of their own. A write(2) to a file
/// can block for a long time: while PostgreSQL's checkpoint dirtied the
/// page cache, the kernel throttled every writer, and HTTP threads that
/// wrote their access-log line themselves held their connection's next
/// request 0.3-1.4 s (bench/scale.sh's post_receive phase). Whatever queued
/// during a write goes out in the next one, so a busy server also makes far
/// fewer system calls. The queue is bounded: past max_pending bytes a caller
/// waits, so lines are never dropped. Lines keep their order.
class line_writer {
public:
  /// Bytes queued at most before callers wait.
  static constexpr std::size_t max_pending = 4u << 20;

  void push(std::string&& line) {
    std::unique_lock<std::mutex> lock{mtx_};
    if (direct_) {
      lock.unlock();
      write_stdout(line);
      return;
    }
    if (!thread_.joinable()) {
      thread_ = std::thread{[this] { run(); }};
      std::atexit([] { instance().finish(); });
    }
    space_.wait(lock, [this] { return pending_.size() < max_pending; });
    pending_ += line;
    if (!writing_)
      ready_.notify_one();
  }

  /// Writes everything queued, then every later line directly (at exit:
  /// static destructors may still log).
  void finish() {
    {
      std::unique_lock<std::mutex> lock{mtx_};
      direct_ = true;
      ready_.notify_one();
      idle_.wait(lock, [this] { return pending_.empty() && !writing_; });
    }
    // The writer has returned or is about to; joined, so that no thread
    // outlives main unjoined (ThreadSanitizer reports that).
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id())
      thread_.join();
  }

  static line_writer& instance() {
    // Never destroyed: lines may come from other static destructors.
    static auto* writer = new line_writer;
    return *writer;
  }

private:
  void run() {
    std::string batch;
    std::unique_lock<std::mutex> lock{mtx_};
    for (;;) {
      ready_.wait(lock, [this] { return !pending_.empty() || direct_; });
      if (pending_.empty()) {
        idle_.notify_all();
        if (direct_)
          return;
        continue;
      }
      batch.swap(pending_);
      writing_ = true;
      lock.unlock();
      space_.notify_all();
      write_stdout(batch);
      batch.clear();
      if (batch.capacity() > max_pending)
        std::string{}.swap(batch);
      lock.lock();
      writing_ = false;
      if (pending_.empty())
        idle_.notify_all();
    }
  }

  std::mutex mtx_;
  std::condition_variable ready_;
  std::condition_variable space_;
  std::condition_variable idle_;
  std::string pending_;
  bool writing_ = false;
  bool direct_ = false;
  std::thread thread_;
};

} // namespace

void set_format(log_format fmt) {
  current_format = fmt;
}

void write(level lvl, std::string_view msg, const nlohmann::json& fields) {
  std::string line;
  if (current_format == log_format::json) {
    nlohmann::json obj
      = {{"ts", timestamp()}, {"level", to_string(lvl)}, {"msg", msg}};
    if (fields.is_object())
      for (auto it = fields.begin(); it != fields.end(); ++it)
        obj[it.key()] = it.value();
    // Replace invalid UTF-8 rather than throw: input may come from the wire.
    line = obj.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = timestamp() + " " + to_string(lvl) + " " + std::string{msg};
    if (fields.is_object())
      for (auto it = fields.begin(); it != fields.end(); ++it)
        line += " " + it.key() + "="
          + (it.value().is_string()
               ? it.value().get<std::string>()
               : it.value().dump(-1, ' ', false,
                                 nlohmann::json::error_handler_t::replace));
  }
  line += '\n';
  line_writer::instance().push(std::move(line));
}

} // namespace gatehouse::log
