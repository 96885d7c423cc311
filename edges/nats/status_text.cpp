#include "edges/nats/status_text.hpp"

namespace gatehouse::nats {

std::string status_text(natsStatus s, jsErrCode jerr) {
  std::string out = natsStatus_GetText(s);
  if (jerr != 0)
    out += " (jetstream error " + std::to_string(static_cast<int>(jerr)) + ")";
  if (const char* last = nats_GetLastError(nullptr); last && *last)
    out += std::string{": "} + last;
  return out;
}

} // namespace gatehouse::nats
