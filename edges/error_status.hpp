#pragma once

// The one table from errc to GitLab's status and message, shared by both
// edges: the HTTP edge wraps it in Grape's {"message":…} body
// (edges/http/status.cpp), the NATS edge sends the status in the
// Gatehouse-Status header and the text in an Error message. Pure and
// header-only, so neither edge links the other.

#include "common/jwt.hpp"
#include "messages/errors.hpp"

#include <optional>
#include <string>

namespace gatehouse {

/// A status and GitLab's message text for it.
struct error_status {
  int status;
  std::string message;
};

/// What `code` answers. `detail` fills GitLab's templated texts (the reason
/// of a 400, the resource of a 404). `who` selects the caller-specific
/// authentication failure (KAS and Workhorse answer differently from Shell
/// and Pages).
inline error_status status_of(errc code, const std::string& detail = {},
                              std::optional<jwt::caller> who = std::nullopt) {
  switch (code) {
    case errc::unauthenticated:
      if (who == jwt::caller::kas)
        return {401, "KAS JWT authentication invalid"};
      if (who == jwt::caller::workhorse)
        return {403, "403 Forbidden"};
      return {401, "401 Unauthorized"};
    case errc::bad_request:
      return {400, detail.empty() ? "400 Bad request"
                                  : "400 Bad request - " + detail};
    case errc::not_found:
      return {404, detail.empty() ? "404 Not Found"
                                  : "404 " + detail + " Not Found"};
    case errc::timeout:
    case errc::unavailable:
      return {503, "503 Service Unavailable"};
    case errc::internal:
      break;
  }
  return {500, "500 Internal Server Error"};
}

} // namespace gatehouse
