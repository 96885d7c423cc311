#pragma once

#include "common/config.hpp"

#include <nlohmann/json.hpp>

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
