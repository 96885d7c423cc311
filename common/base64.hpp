#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace gatehouse {

/// Standard base64 with padding.
std::string base64_encode(std::string_view bytes);

/// Strict standard base64; padding optional. nullopt on any other character.
std::optional<std::string> base64_decode(std::string_view text);

/// base64url without padding (JWT segments).
std::string base64url_encode(std::string_view bytes);

/// base64url with or without padding. nullopt on any invalid character.
std::optional<std::string> base64url_decode(std::string_view text);

/// Lower-case hex of `bytes`.
std::string hex_encode(std::string_view bytes);

/// The value of one hex digit (either case), or -1 for any other character.
int hex_digit_value(char c);

/// The bytes of an even-length hex text (either case); nullopt when the
/// length is odd or any character is not a hex digit.
std::optional<std::string> hex_decode(std::string_view hex);

/// SHA-256 digest (32 raw bytes).
std::string sha256(std::string_view bytes);

/// The only form in which secrets (access tokens, recovery codes) reach the
/// database: lower-case hex of their SHA-256. The seed loader writes it and
/// the access store writes and compares it, so both must use this function.
std::string token_digest(std::string_view secret);

/// `n` bytes from the OS CSPRNG.
std::string random_bytes(std::size_t n);

} // namespace gatehouse
