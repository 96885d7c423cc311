#pragma once

#include "common/config.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace gatehouse::log {

enum class level { debug, info, warn, error };

/// Chooses the line format for the process; call once at start.
void set_format(log_format fmt);

/// Writes one line to stdout: a JSON object with ts, level, msg and `fields`,
/// or "ts LEVEL msg k=v ..." in text form. Thread-safe: whole lines, in the
/// order of the calls, written by a thread of the log's own (log.cpp says
/// why) and flushed at exit. Callers must never put secrets or tokens in
/// `fields`.
void write(level lvl, std::string_view msg,
           const nlohmann::json& fields = nlohmann::json::object());

/// One field of write_fields(): text, an integer or a floating-point number.
struct field {
  enum class kind { text, integer, number };

  field(std::string_view k, std::string_view v)
    : key(k), type(kind::text), text(v) {}
  field(std::string_view k, const char* v)
    : key(k), type(kind::text), text(v) {}
  field(std::string_view k, const std::string& v)
    : key(k), type(kind::text), text(v) {}
  field(std::string_view k, int v)
    : key(k), type(kind::integer), integer(v) {}
  field(std::string_view k, std::int64_t v)
    : key(k), type(kind::integer), integer(v) {}
  field(std::string_view k, double v)
    : key(k), type(kind::number), number(v) {}

  std::string_view key;
  kind type;
  std::string_view text;
  std::int64_t integer = 0;
  double number = 0;
};

/// write() for a line per request: the same line, built without a JSON
/// document. Keys must be distinct and none of ts, level or msg.
void write_fields(level lvl, std::string_view msg,
                  std::initializer_list<field> fields);

/// Writes every queued line now and every later one directly, as at exit:
/// for a process that leaves with std::_Exit, which skips atexit.
void flush();

inline void info(std::string_view msg,
                 const nlohmann::json& fields = nlohmann::json::object()) {
  write(level::info, msg, fields);
}

inline void warn(std::string_view msg,
                 const nlohmann::json& fields = nlohmann::json::object()) {
  write(level::warn, msg, fields);
}

inline void error(std::string_view msg,
                  const nlohmann::json& fields = nlohmann::json::object()) {
  write(level::error, msg, fields);
}

} // namespace gatehouse::log
