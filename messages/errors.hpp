#pragma once

#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>

#include <cstdint>
#include <string>

namespace gatehouse {

/// The one error enum of the service. Both edges map each code to a status
/// through the one status table (edges/error_status.hpp). The message of an
/// error made with caf::make_error(code, text) is GitLab's text or its detail
/// (error_detail).
enum class errc : uint8_t {
  /// The caller's credentials are missing or invalid.
  unauthenticated = 1,
  /// The input is malformed or fails validation.
  bad_request,
  /// The named resource does not exist.
  not_found,
  /// The request ran out of time inside the system.
  timeout,
  /// A dependency (PostgreSQL, NATS) cannot be reached.
  unavailable,
  /// An invariant broke; a bug or an unexpected library failure.
  internal,
  /// A required parameter is missing or has the wrong type (Grape's
  /// parameter validation: 400 {"error": "<name> is missing"}).
  invalid_params,
  /// The caller exceeded a rate limit (429).
  rate_limited,
  /// The request is larger than Gatehouse takes on (413).
  too_large,
};

/// "unauthenticated", "bad_request", ...
const char* to_string(errc x);

/// The errc of `err`, or errc::internal when `err` belongs to another
/// category, except CAF's own request timeout and dead receivers, which map
/// to errc::timeout and errc::unavailable.
errc classify(const caf::error& err);

/// The text an error was made with (its first string), or "".
std::string error_detail(const caf::error& err);

/// A readable rendering without an actor system: "timeout: pg probe".
std::string render(const caf::error& err);

} // namespace gatehouse

CAF_ERROR_CODE_ENUM(gatehouse::errc, "gatehouse")
