#include "common/base64.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <climits>
#include <stdexcept>

namespace gatehouse {

namespace {

// 6-bit value of a standard-alphabet character, or -1.
int std_value(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

// Validates `text` as base64 in the standard alphabet (after any url mapping)
// and returns it padded to a multiple of four. Padding is optional, but when
// present it must be complete and at the end. The unused low bits of the last
// character must be zero, so every byte string has exactly one encoding.
std::optional<std::string> canonical_padded(std::string text) {
  auto data_len = text.size();
  while (data_len > 0 && text[data_len - 1] == '=')
    --data_len;
  auto pads = text.size() - data_len;
  if (pads > 2)
    return std::nullopt;
  if (pads > 0 && text.size() % 4 != 0)
    return std::nullopt;
  auto rest = data_len % 4;
  if (rest == 1)
    return std::nullopt;
  if (pads > 0 && pads != 4 - rest)
    return std::nullopt;
  for (std::size_t i = 0; i < data_len; ++i)
    if (std_value(text[i]) < 0)
      return std::nullopt;
  if (rest == 2 && (std_value(text[data_len - 1]) & 0x0f) != 0)
    return std::nullopt;
  if (rest == 3 && (std_value(text[data_len - 1]) & 0x03) != 0)
    return std::nullopt;
  if (rest != 0 && pads == 0)
    text.append(4 - rest, '=');
  return text;
}

// Decodes text already checked by canonical_padded.
std::string decode_padded(const std::string& padded) {
  if (padded.empty())
    return {};
  std::string out(padded.size() / 4 * 3, '\0');
  auto n
    = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(padded.data()),
                      static_cast<int>(padded.size()));
  if (n < 0)
    throw std::logic_error("EVP_DecodeBlock rejected validated base64");
  // EVP_DecodeBlock counts each '=' as a zero byte.
  std::size_t pads = 0;
  for (auto i = padded.size(); i > 0 && padded[i - 1] == '='; --i)
    ++pads;
  out.resize(static_cast<std::size_t>(n) - pads);
  return out;
}

} // namespace

std::string base64_encode(std::string_view bytes) {
  if (bytes.empty())
    return {};
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  auto n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                           reinterpret_cast<const unsigned char*>(bytes.data()),
                           static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  auto padded = canonical_padded(std::string{text});
  if (!padded)
    return std::nullopt;
  return decode_padded(*padded);
}

std::string base64url_encode(std::string_view bytes) {
  auto out = base64_encode(bytes);
  while (!out.empty() && out.back() == '=')
    out.pop_back();
  for (auto& c : out) {
    if (c == '+')
      c = '-';
    else if (c == '/')
      c = '_';
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  std::string mapped{text};
  for (auto& c : mapped) {
    // '+' and '/' are not in the url alphabet; make them fail validation.
    if (c == '+' || c == '/')
      return std::nullopt;
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
  }
  auto padded = canonical_padded(std::move(mapped));
  if (!padded)
    return std::nullopt;
  return decode_padded(*padded);
}

std::string hex_encode(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0x0f]);
  }
  return out;
}

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::optional<std::string> hex_decode(std::string_view hex) {
  if (hex.size() % 2 != 0)
    return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = hex_digit_value(hex[i]);
    int lo = hex_digit_value(hex[i + 1]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string sha256(std::string_view bytes) {
  // Fetched once: EVP_sha256() makes OpenSSL 3 look the implementation up
  // by name on every digest, half of what hashing a key blob cost. Kept
  // for the process's life (OpenSSL's own cleanup runs at exit).
  static EVP_MD* const sha256_md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  std::string out(32, '\0');
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(),
                 reinterpret_cast<unsigned char*>(out.data()), &len,
                 sha256_md != nullptr ? sha256_md : EVP_sha256(), nullptr)
        != 1
      || len != 32)
    throw std::runtime_error("SHA-256 failed");
  return out;
}

std::string token_digest(std::string_view secret) {
  return hex_encode(sha256(secret));
}

std::string random_bytes(std::size_t n) {
  if (n > static_cast<std::size_t>(INT_MAX))
    throw std::length_error("random_bytes: too many bytes requested");
  std::string out(n, '\0');
  if (n > 0
      && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                    static_cast<int>(n))
        != 1)
    throw std::runtime_error("the OS random number generator failed");
  return out;
}

} // namespace gatehouse
