#pragma once

// What route handlers share: the call context, the route entry, and the
// helpers that read parameters and write GitLab-shaped JSON answers.
// Internal to the HTTP edge.

#include "edges/http/status.hpp"
#include "messages/calls.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace gatehouse::http {

using json = nlohmann::json;

/// The context a route handler gets: the request, the response, and the
/// merged query/form/JSON parameters.
struct call {
  const httplib::Request& req;
  httplib::Response& res;
  json params;
};

using handler_fn = std::function<void(call&)>;

/// One line of the route table.
struct route {
  const char* method;
  /// Path below the relative URL root.
  std::string path;
  caller_rule auth;
  handler_fn fn;
};

inline std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

inline void send_json(httplib::Response& res, int status,
                      const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

inline void send_json(httplib::Response& res, int status, const json& body) {
  send_json(res, status, dump(body));
}

inline void send_error(httplib::Response& res, const http_error& err) {
  res.status = err.status;
  res.set_content(err.body, err.content_type.c_str());
}

/// A string parameter; numbers and booleans are accepted in their JSON text
/// as Grape coerces them. nullopt when absent, null or empty.
std::optional<std::string> string_param(const json& params, const char* name);

/// An id parameter: a JSON integer or a string of digits (GitLab Shell sends
/// `key_id` as a string, `user_id` as a number). nullopt when absent, null
/// or empty; sets `invalid` (Grape's "<name> is invalid") when it is neither.
std::optional<std::int64_t> id_param(const json& params, const char* name,
                                     std::string& invalid);

/// A list of strings: a JSON array of strings, or one string.
std::optional<std::vector<std::string>> strings_param(const json& params,
                                                      const char* name);

} // namespace gatehouse::http
