#pragma once

#include "common/jwt.hpp"

#include <optional>
#include <stdexcept>
#include <string>

namespace gatehouse {

/// A secret file that cannot be used; what() is one line for the operator,
/// naming the file but never its content.
struct secret_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The HMAC key of one caller, loaded from its secret file.
struct loaded_secret {
  std::string key;
  /// Set when the file is readable by group or others.
  std::optional<std::string> warning;
};

/// Reads `path` for caller `who`:
/// - shell: the file's text trimmed of surrounding whitespace, as the Go
///   clients do; empty after trimming is an error.
/// - workhorse, kas, pages: base64 (one trailing newline tolerated) that
///   decodes to exactly 32 bytes, as Rails requires.
/// Throws secret_error when unreadable or invalid.
loaded_secret load_secret(jwt::caller who, const std::string& path);

/// Writes a fresh secret for `who` to `path` with mode 0600 when the file does
/// not exist: 32 hex characters for shell (what Rails writes), base64 of 32
/// random bytes otherwise. Returns false when the file already existed.
bool create_secret_file(jwt::caller who, const std::string& path);

} // namespace gatehouse
