#include "messages/errors.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace gatehouse {

const char* to_string(errc x) {
  switch (x) {
    case errc::unauthenticated:
      return "unauthenticated";
    case errc::bad_request:
      return "bad_request";
    case errc::not_found:
      return "not_found";
    case errc::timeout:
      return "timeout";
    case errc::unavailable:
      return "unavailable";
    case errc::internal:
      return "internal";
    case errc::invalid_params:
      return "invalid_params";
    case errc::rate_limited:
      return "rate_limited";
    case errc::too_large:
      return "too_large";
  }
  return "unknown";
}

errc classify(const caf::error& err) {
  if (err.category() == caf::detail::error_factory<errc>::category)
    return static_cast<errc>(err.code());
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
      case caf::sec::request_timeout:
        return errc::timeout;
      case caf::sec::request_receiver_down:
        return errc::unavailable;
      default:
        break;
    }
  }
  return errc::internal;
}

std::string error_detail(const caf::error& err) {
  const auto& ctx = err.context();
  for (size_t i = 0; i < ctx.size(); ++i)
    if (ctx.match_element<std::string>(i))
      return ctx.get_as<std::string>(i);
  return {};
}

std::string render(const caf::error& err) {
  std::string out;
  if (err.category() == caf::detail::error_factory<errc>::category)
    out = to_string(static_cast<errc>(err.code()));
  else if (err.category() == caf::atom("system"))
    out = caf::to_string(static_cast<caf::sec>(err.code()));
  else
    out = "error " + std::to_string(err.code());
  if (!err.context().empty())
    out += ": " + caf::to_string(err.context());
  return out;
}

} // namespace gatehouse
