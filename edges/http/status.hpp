#pragma once

#include "common/jwt.hpp"
#include "messages/errors.hpp"

#include <optional>
#include <string>

namespace gatehouse::http {

/// A status and a JSON body, as GitLab (Grape) shapes its errors.
struct http_error {
  int status;
  std::string body;
};

/// The edge's one status table: what `code` answers on the wire.
/// `detail` fills GitLab's templated texts (the reason of a 400, the resource
/// of a 404). `who` selects the caller-specific authentication failure
/// (KAS and Workhorse answer differently from Shell and Pages).
http_error error_response(errc code, const std::string& detail = {},
                          std::optional<jwt::caller> who = std::nullopt);

/// Answers that do not come from an errc.
http_error route_not_found();       // 404 {"error":"404 Not Found"}
http_error payload_too_large();     // 413 {"message":"413 Request Entity Too Large"}

} // namespace gatehouse::http
