#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace gatehouse {

/// A database id written as decimal digits ("42"), as GitLab's callers send
/// ids in strings; nullopt for anything else, empty text included, and for
/// values past 18 digits (beyond any id, and safely inside int64).
inline std::optional<std::int64_t> parse_id(std::string_view text) {
  if (text.empty() || text.size() > 18)
    return std::nullopt;
  std::int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

} // namespace gatehouse
