#include "common/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
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
  // One write(2) per line: atomic for pipes up to PIPE_BUF and in practice
  // unbroken for files, without a lock shared by every HTTP thread.
  auto rc = ::write(STDOUT_FILENO, line.data(), line.size());
  (void)rc;
}

} // namespace gatehouse::log
