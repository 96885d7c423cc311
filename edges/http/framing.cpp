#include "edges/http/framing.hpp"

#include <cctype>

namespace gatehouse::http {

std::optional<body_framing> read_framing(const httplib::Headers& headers,
                                         std::string& problem) {
  // httplib's Headers compare names case-insensitively.
  auto codings = headers.count("Transfer-Encoding");
  auto lengths = headers.count("Content-Length");
  body_framing framing;
  if (codings > 1) {
    problem = "more than one Transfer-Encoding header";
    return std::nullopt;
  }
  if (codings == 1) {
    // We decode no other coding, and with another final coding the body's
    // end cannot be known (RFC 9112 §6.3: 400, then close).
    auto coding = headers.find("Transfer-Encoding")->second;
    for (auto& c : coding)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (coding != "chunked") {
      problem = "Transfer-Encoding other than chunked";
      return std::nullopt;
    }
    if (lengths > 0) {
      problem = "both Transfer-Encoding and Content-Length";
      return std::nullopt;
    }
    framing.chunked = true;
    return framing;
  }
  if (lengths > 1) {
    problem = "more than one Content-Length header";
    return std::nullopt;
  }
  if (lengths == 1) {
    const auto& text = headers.find("Content-Length")->second;
    // 19 digits always fit in 64 bits.
    bool digits = !text.empty() && text.size() <= 19;
    for (char c : text)
      digits = digits && c >= '0' && c <= '9';
    if (!digits) {
      problem = "invalid Content-Length";
      return std::nullopt;
    }
    framing.length = std::stoull(text);
  }
  return framing;
}

} // namespace gatehouse::http
