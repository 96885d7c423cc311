#include "common/uuid.hpp"

#include "common/base64.hpp"

#include <array>
#include <random>

namespace gatehouse {

namespace {

std::string format(std::array<unsigned char, 16> bytes, unsigned version) {
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0F) | (version << 4));
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3F) | 0x80);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out += '-';
    out += hex[bytes[i] >> 4];
    out += hex[bytes[i] & 0x0F];
  }
  return out;
}

} // namespace

std::string random_uuid() {
  thread_local std::random_device device;
  std::array<unsigned char, 16> bytes{};
  for (std::size_t i = 0; i < bytes.size(); i += 4) {
    auto word = device();
    for (std::size_t j = 0; j < 4; ++j)
      bytes[i + j] = static_cast<unsigned char>(word >> (8 * j));
  }
  return format(bytes, 4);
}

std::string derived_uuid(std::string_view name) {
  auto digest = sha256(name);
  std::array<unsigned char, 16> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<unsigned char>(digest[i]);
  return format(bytes, 8);
}

} // namespace gatehouse
