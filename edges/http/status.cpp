#include "edges/http/status.hpp"

#include "edges/error_status.hpp"

#include <nlohmann/json.hpp>

namespace gatehouse::http {

namespace {

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace

http_error error_response(const error_status& e) {
  switch (e.shape) {
    case error_shape::error:
      return {e.status, dump({{"error", e.message}})};
    case error_shape::nested_error:
      return {e.status, dump({{"message", {{"error", e.message}}}})};
    case error_shape::plain_text:
      return {e.status, e.message, "text/plain"};
    case error_shape::message:
      break;
  }
  return {e.status, dump({{"message", e.message}})};
}

http_error error_response(errc code, const std::string& detail,
                          std::optional<jwt::caller> who) {
  return error_response(status_of(code, detail, who));
}

http_error error_response(const caf::error& err) {
  return error_response(status_of(err));
}

http_error route_not_found() {
  return {404, R"({"error":"404 Not Found"})"};
}

http_error payload_too_large() {
  return {413, R"({"message":"413 Request Entity Too Large"})"};
}

http_error protocol_error(int status, const std::string& detail) {
  switch (status) {
    case 400:
      return error_response(errc::bad_request, detail);
    case 404:
      return route_not_found();
    case 408:
      return {408, R"({"message":"408 Request Timeout"})"};
    case 413:
      return payload_too_large();
    case 414:
      return {414, R"({"message":"414 URI Too Long"})"};
    case 431:
      return {431, R"({"message":"431 Request Header Fields Too Large"})"};
    default:
      break;
  }
  return {status, dump({{"message", std::to_string(status)}})};
}

} // namespace gatehouse::http
