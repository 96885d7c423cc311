#pragma once

// The one table from errc to GitLab's status and message, shared by both
// edges: the HTTP edge wraps it in Grape's body shape (edges/http/status.cpp),
// the NATS edge sends the status in the Gatehouse-Status header and the text
// in an Error message. Pure and header-only, so neither edge links the other.

#include "common/jwt.hpp"
#include "messages/errors.hpp"

#include <optional>
#include <string>

namespace gatehouse {

/// How Grape shapes an error body.
enum class error_shape {
  /// {"message": text}: error!(text), the common case.
  message,
  /// {"error": text}: a failed parameter validation.
  error,
  /// {"message": {"error": text}}: the rate limiter's answer.
  nested_error,
  /// The text itself as text/plain: answers of GitLab's Rack middleware
  /// (HandleMalformedStrings), which run before Grape.
  plain_text,
};

/// A status, GitLab's message text for it, and the body's shape.
struct error_status {
  int status;
  std::string message;
  error_shape shape = error_shape::message;
};

/// What `code` answers. `detail` is the text the error was made with: it
/// fills GitLab's templated texts (the reason of a 400 or 403, the resource
/// of a 404) or is the whole text (parameter validation, rate limit). `who`
/// selects the caller-specific authentication failure (KAS and Workhorse
/// answer differently from Shell and Pages).
inline error_status status_of(errc code, const std::string& detail = {},
                              std::optional<jwt::caller> who = std::nullopt) {
  switch (code) {
    case errc::unauthenticated:
      if (who == jwt::caller::kas)
        return {401, "KAS JWT authentication invalid"};
      if (who == jwt::caller::workhorse)
        return {403,
                detail.empty() ? "403 Forbidden" : "403 Forbidden - " + detail};
      return {401, "401 Unauthorized"};
    case errc::bad_request:
      return {400,
              detail.empty() ? "400 Bad request"
                             : "400 Bad request - " + detail};
    case errc::invalid_params:
      return {400, detail.empty() ? "400 Bad request" : detail,
              error_shape::error};
    case errc::rate_limited:
      return {
        429,
        detail.empty()
          ? "This endpoint has been requested too many times. Try again later."
          : detail,
        error_shape::nested_error};
    case errc::too_large:
      return {413, "413 Request Entity Too Large"};
    case errc::not_found:
      return {
        404, detail.empty() ? "404 Not Found" : "404 " + detail + " Not Found"};
    case errc::timeout:
    case errc::unavailable:
      return {503, "503 Service Unavailable"};
    case errc::internal:
      break;
  }
  return {500, "500 Internal Server Error"};
}

/// What a failed request answers: CAF's request timeout and dead receivers
/// are 503 (classify), our errc with the text it was made with.
inline error_status status_of(const caf::error& err) {
  return status_of(classify(err), error_detail(err));
}

} // namespace gatehouse
