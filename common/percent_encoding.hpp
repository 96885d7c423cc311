#pragma once

// Percent-decoding of URL parts, shared by the HTTP edge (query strings and
// form bodies) and webhook delivery (user info in hook URLs).

#include <string>
#include <string_view>

namespace gatehouse {

/// Replaces every "%XX" (two hex digits, either case) with its byte; a '%'
/// not followed by two hex digits stays as it is, as browsers and Rack
/// leave it. With `plus_is_space` ("application/x-www-form-urlencoded"),
/// '+' becomes a space.
std::string percent_decode(std::string_view text, bool plus_is_space);

} // namespace gatehouse
