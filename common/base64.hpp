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

/// SHA-256 digest (32 raw bytes).
std::string sha256(std::string_view bytes);

/// `n` bytes from the OS CSPRNG.
std::string random_bytes(std::size_t n);

} // namespace gatehouse
