#pragma once

// How a request says where its body ends (RFC 9112 §6.3), refused when two
// parties could read it differently: httplib 0.11 takes the first of two
// Content-Length fields and reads a body by Content-Length when
// Transfer-Encoding is anything but exactly "chunked", so a proxy in front
// of Gatehouse and Gatehouse could split the same bytes into different
// requests. Internal to the HTTP edge.

#include <httplib.h>

#include <cstdint>
#include <optional>
#include <string>

namespace gatehouse::http {

/// The framing of a request body.
struct body_framing {
  bool chunked = false;
  /// Content-Length; 0 when absent or chunked.
  std::uint64_t length = 0;

  bool has_body() const {
    return chunked || length > 0;
  }
};

/// The framing `headers` declare, or nullopt with `problem` set (a reason
/// for a 400) when it is ambiguous or invalid: more than one
/// Transfer-Encoding or Content-Length field, a transfer coding other than
/// chunked, both headers at once, or a Content-Length that is not a number.
std::optional<body_framing> read_framing(const httplib::Headers& headers,
                                         std::string& problem);

} // namespace gatehouse::http
