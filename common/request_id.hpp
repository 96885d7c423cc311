#pragma once

#include <string>

namespace gatehouse {

/// Whether a caller-supplied request id (X-Request-Id, Gatehouse-Request-Id)
/// may be used as it is: printable ASCII without spaces, 1 to 128 characters,
/// so it is safe to log, echo and store.
inline bool acceptable_request_id(const std::string& id) {
  if (id.empty() || id.size() > 128)
    return false;
  for (unsigned char c : id)
    if (c < 0x21 || c > 0x7e)
      return false;
  return true;
}

} // namespace gatehouse
