#include "common/log.hpp"

#include "common/json_text.hpp"

#include <algorithm>
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
/// request 0.3-1.4 s (bench/scale.sh's post_receive phase). The writer is
/// woken by the first line after it went idle, then gathers for
/// `gather_time` (or until `gather_bytes` wait), so a busy server makes
/// hundreds of writes and wake-ups a second instead of one per request, and
/// callers hold the lock only to append. The queue is bounded: past
/// max_pending bytes a caller waits, so lines are never dropped. Lines keep
/// their order.
class line_writer {
public:
  /// Bytes queued at most before callers wait.
  static constexpr std::size_t max_pending = 4u << 20;
  /// Bytes that end a gathering early.
  static constexpr std::size_t gather_bytes = 64u << 10;
  static constexpr std::chrono::milliseconds gather_time{2};

  void push(std::string&& line) {
    bool wake = false;
    {
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
      // One wake-up per batch: when the writer sleeps with nothing queued,
      // or when a gathering batch is full.
      if (state_ == writer_state::idle && !woken_) {
        woken_ = true;
        wake = true;
      } else if (state_ == writer_state::gathering && !woken_
                 && pending_.size() >= gather_bytes) {
        woken_ = true;
        wake = true;
      }
    }
    if (wake)
      ready_.notify_one();
  }

  /// Writes everything queued, then every later line directly (at exit:
  /// static destructors may still log).
  void finish() {
    {
      std::unique_lock<std::mutex> lock{mtx_};
      direct_ = true;
      ready_.notify_one();
      idle_.wait(lock, [this] {
        return (pending_.empty() && state_ != writer_state::writing)
          || !thread_.joinable();
      });
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
  enum class writer_state { idle, gathering, writing };

  void run() {
    std::string batch;
    std::unique_lock<std::mutex> lock{mtx_};
    for (;;) {
      state_ = writer_state::idle;
      woken_ = false;
      if (pending_.empty())
        idle_.notify_all();
      ready_.wait(lock, [this] { return !pending_.empty() || direct_; });
      if (pending_.empty())
        return; // direct_: finish() writes nothing more through here
      if (!direct_) {
        state_ = writer_state::gathering;
        woken_ = false;
        ready_.wait_for(lock, gather_time, [this] {
          return pending_.size() >= gather_bytes || direct_;
        });
      }
      batch.swap(pending_);
      state_ = writer_state::writing;
      lock.unlock();
      space_.notify_all();
      write_stdout(batch);
      batch.clear();
      if (batch.capacity() > max_pending)
        std::string{}.swap(batch);
      lock.lock();
    }
  }

  std::mutex mtx_;
  std::condition_variable ready_;
  std::condition_variable space_;
  std::condition_variable idle_;
  std::string pending_;
  writer_state state_ = writer_state::idle;
  /// The writer was notified since it last changed state_.
  bool woken_ = false;
  bool direct_ = false;
  std::thread thread_;
};

} // namespace

void flush() {
  line_writer::instance().finish();
}

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

void write_fields(level lvl, std::string_view msg,
                  std::initializer_list<field> fields) {
  const std::string ts = timestamp();
  const field head[] = {{"ts", ts}, {"level", to_string(lvl)}, {"msg", msg}};
  // write()'s order: nlohmann keeps an object's keys sorted bytewise.
  constexpr std::size_t max_fields = 32;
  const field* sorted[max_fields];
  std::size_t n = 0;
  for (const auto& f : head)
    sorted[n++] = &f;
  for (const auto& f : fields)
    if (n < max_fields)
      sorted[n++] = &f;
  std::sort(sorted, sorted + n,
            [](const field* a, const field* b) { return a->key < b->key; });
  std::string line;
  line.reserve(256);
  const bool json = current_format == log_format::json;
  auto append_value = [&](const field& f) {
    switch (f.type) {
      case field::kind::text:
        if (json)
          json_text::append_string(line, f.text);
        else
          line += f.text;
        break;
      case field::kind::integer:
        line += std::to_string(f.integer);
        break;
      case field::kind::number:
        json_text::append_number(line, f.number);
        break;
    }
  };
  if (json) {
    line += '{';
    for (std::size_t i = 0; i < n; ++i) {
      if (i > 0)
        line += ',';
      json_text::append_string(line, sorted[i]->key);
      line += ':';
      append_value(*sorted[i]);
    }
    line += '}';
  } else {
    line += ts;
    line += ' ';
    line += to_string(lvl);
    line += ' ';
    line += msg;
    for (std::size_t i = 0; i < n; ++i) {
      const auto* f = sorted[i];
      if (f == &head[0] || f == &head[1] || f == &head[2])
        continue;
      line += ' ';
      line += f->key;
      line += '=';
      append_value(*f);
    }
  }
  line += '\n';
  line_writer::instance().push(std::move(line));
}

} // namespace gatehouse::log
