#include "webhooks/address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace gatehouse::webhooks {

namespace {

bool in_v4(std::uint32_t a, std::uint32_t net, int bits) {
  std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t{0} << (32 - bits);
  return (a & mask) == (net & mask);
}

constexpr std::uint32_t v4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}

std::uint32_t embedded_v4(const std::array<std::uint8_t, 16>& a,
                          std::size_t at) {
  return (std::uint32_t{a[at]} << 24) | (std::uint32_t{a[at + 1]} << 16)
    | (std::uint32_t{a[at + 2]} << 8) | std::uint32_t{a[at + 3]};
}

std::optional<std::string> embedded(const std::array<std::uint8_t, 16>& a,
                                    std::size_t at, const char* how) {
  auto category = ipv4_category(embedded_v4(a, at));
  if (category)
    *category += std::string{" ("} + how + ")";
  return category;
}

} // namespace

std::optional<std::string> ipv4_category(std::uint32_t a) {
  if (in_v4(a, v4(0, 0, 0, 0), 8))
    return "unspecified"; // "this network"; 0.0.0.0 reaches the local host
  if (in_v4(a, v4(127, 0, 0, 0), 8))
    return "loopback";
  if (in_v4(a, v4(10, 0, 0, 0), 8) || in_v4(a, v4(172, 16, 0, 0), 12)
      || in_v4(a, v4(192, 168, 0, 0), 16))
    return "private";
  if (in_v4(a, v4(169, 254, 0, 0), 16))
    return "link-local";
  if (in_v4(a, v4(100, 64, 0, 0), 10))
    return "shared (CGNAT)";
  if (in_v4(a, v4(224, 0, 0, 0), 4))
    return "multicast";
  if (a == v4(255, 255, 255, 255))
    return "broadcast";
  if (in_v4(a, v4(240, 0, 0, 0), 4))
    return "reserved";
  return std::nullopt;
}

std::optional<std::string> ipv6_category(
  const std::array<std::uint8_t, 16>& a) {
  auto zero_until = [&](std::size_t n) {
    return std::all_of(a.begin(), a.begin() + static_cast<long>(n),
                       [](std::uint8_t b) { return b == 0; });
  };
  if (zero_until(16))
    return "unspecified";
  if (zero_until(15) && a[15] == 1)
    return "loopback";
  if (zero_until(10) && a[10] == 0xff && a[11] == 0xff)
    return embedded(a, 12, "IPv4-mapped");
  if (zero_until(12))
    return embedded(a, 12, "IPv4-compatible");
  // NAT64 well-known prefix 64:ff9b::/96.
  if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b
      && std::all_of(a.begin() + 4, a.begin() + 12,
                     [](std::uint8_t b) { return b == 0; }))
    return embedded(a, 12, "NAT64");
  if (a[0] == 0x20 && a[1] == 0x02)
    return embedded(a, 2, "6to4");
  if ((a[0] & 0xfe) == 0xfc)
    return "private"; // unique local fc00::/7
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
    return "link-local"; // fe80::/10
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
    return "private"; // deprecated site-local fec0::/10
  if (a[0] == 0xff)
    return "multicast";
  return std::nullopt;
}

bool always_refused(const std::string& category) {
  return category.rfind("multicast", 0) == 0
    || category.rfind("broadcast", 0) == 0
    || category.rfind("reserved", 0) == 0;
}

std::optional<std::string> address_category(const std::string& literal) {
  in_addr a4{};
  if (::inet_pton(AF_INET, literal.c_str(), &a4) == 1)
    return ipv4_category(ntohl(a4.s_addr));
  in6_addr a6{};
  if (::inet_pton(AF_INET6, literal.c_str(), &a6) == 1) {
    std::array<std::uint8_t, 16> bytes{};
    std::memcpy(bytes.data(), &a6, 16);
    return ipv6_category(bytes);
  }
  throw std::invalid_argument("not an IP address: " + literal);
}

std::optional<std::string> refusal(const std::optional<std::string>& category,
                                   bool allow_local) {
  if (!category)
    return std::nullopt;
  if (allow_local && !always_refused(*category))
    return std::nullopt;
  return *category;
}

resolution resolve_and_check(const std::string& host, bool allow_local) {
  resolution out;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc != 0) {
    out.error = "cannot resolve " + host + ": " + ::gai_strerror(rc);
    return out;
  }
  std::vector<std::string> addresses;
  std::optional<std::string> refused;
  std::string refused_address;
  for (auto* ai = list; ai; ai = ai->ai_next) {
    std::optional<std::string> category;
    if (ai->ai_family == AF_INET) {
      auto* sin = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
      category = ipv4_category(ntohl(sin->sin_addr.s_addr));
    } else if (ai->ai_family == AF_INET6) {
      auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      std::array<std::uint8_t, 16> bytes{};
      std::memcpy(bytes.data(), &sin6->sin6_addr, 16);
      category = ipv6_category(bytes);
    } else {
      continue;
    }
    // Numeric form, with the zone ("fe80::1%eth0") where there is one.
    char text[NI_MAXHOST] = {};
    if (::getnameinfo(ai->ai_addr, ai->ai_addrlen, text, sizeof text, nullptr,
                      0, NI_NUMERICHOST)
        != 0)
      continue;
    if (auto why = refusal(category, allow_local); why && !refused) {
      refused = why;
      refused_address = text;
    }
    if (std::find(addresses.begin(), addresses.end(), text) == addresses.end())
      addresses.emplace_back(text);
  }
  ::freeaddrinfo(list);
  if (refused) {
    out.blocked = true;
    out.error = "blocked: "
      + (refused_address == host ? refused_address
                                 : host + " resolves to " + refused_address)
      + ", a " + *refused + " address";
    return out;
  }
  if (addresses.empty()) {
    out.error = "cannot resolve " + host + ": no IPv4 or IPv6 address";
    return out;
  }
  out.addresses = std::move(addresses);
  return out;
}

} // namespace gatehouse::webhooks
