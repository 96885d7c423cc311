#include "edges/http/status.hpp"

#include "edges/error_status.hpp"

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
  // The table itself is shared with the NATS edge (edges/error_status.hpp).
  auto e = status_of(code, detail, who);
  return message(e.status, e.message);
}

http_error route_not_found() {
  return {404, R"({"error":"404 Not Found"})"};
}

http_error payload_too_large() {
  return {413, R"({"message":"413 Request Entity Too Large"})"};
}

} // namespace gatehouse::http
