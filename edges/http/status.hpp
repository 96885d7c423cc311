#pragma once

#include "common/jwt.hpp"
#include "edges/error_status.hpp"
#include "messages/errors.hpp"

#include <caf/error.hpp>

#include <optional>
#include <string>

namespace gatehouse::http {

/// A status and a body, as GitLab shapes its errors: JSON from Grape, plain
/// text from the few Rack middlewares that answer before it.
struct http_error {
  int status;
  std::string body;
  std::string content_type = "application/json";
};

/// An entry of the one status table (edges/error_status.hpp) in Grape's
/// body shape.
http_error error_response(const error_status& e);

/// What `code` answers on the wire (status_of explains the arguments).
http_error error_response(errc code, const std::string& detail = {},
                          std::optional<jwt::caller> who = std::nullopt);

/// What a failed request answers: its errc and the text it was made with.
http_error error_response(const caf::error& err);

/// Answers that do not come from an errc.
http_error route_not_found(); // 404 {"error":"404 Not Found"}
http_error
payload_too_large(); // 413 {"message":"413 Request Entity Too Large"}

/// What the edge answers a request it refuses at the HTTP level (framing,
/// size and time limits), in Grape's error!("<status> <reason>") shape: 400
/// is bad_request with `detail` as its reason, 404 and 413 the answers
/// above, 408, 414 and 431 {"message":"<status> <Rack's reason phrase>"},
/// any other status {"message":"<status>"}.
http_error protocol_error(int status, const std::string& detail = {});

} // namespace gatehouse::http
