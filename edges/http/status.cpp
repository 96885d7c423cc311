#include "edges/http/status.hpp"

#include <nlohmann/json.hpp>

namespace gatehouse::http {

namespace {

http_error message(int status, const std::string& text) {
  return {status, nlohmann::json{{"message", text}}.dump(
                    -1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

} // namespace

http_error error_response(errc code, const std::string& detail,
                          std::optional<jwt::caller> who) {
  switch (code) {
    case errc::unauthenticated:
      if (who == jwt::caller::kas)
        return message(401, "KAS JWT authentication invalid");
      if (who == jwt::caller::workhorse)
        return message(403, "403 Forbidden");
      return message(401, "401 Unauthorized");
    case errc::bad_request:
      return message(400, detail.empty() ? "400 Bad request"
                                         : "400 Bad request - " + detail);
    case errc::not_found:
      return message(404, detail.empty() ? "404 Not Found"
                                         : "404 " + detail + " Not Found");
    case errc::timeout:
    case errc::unavailable:
      return message(503, "503 Service Unavailable");
    case errc::internal:
      break;
  }
  return message(500, "500 Internal Server Error");
}

http_error route_not_found() {
  return {404, R"({"error":"404 Not Found"})"};
}

http_error payload_too_large() {
  return {413, R"({"message":"413 Request Entity Too Large"})"};
}

} // namespace gatehouse::http
