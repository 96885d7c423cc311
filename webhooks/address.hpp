#pragma once

// Which network addresses a webhook may be sent to (GitLab's
// allow_local_requests_from_web_hooks_and_services), and the one name
// resolution a delivery makes.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

struct sockaddr;

namespace gatehouse::webhooks {

/// Why an IPv4 address (host byte order) may not be a webhook target:
/// "loopback", "private", "link-local", "unspecified", "shared (CGNAT)",
/// "multicast", "broadcast" or "reserved"; nullopt for a public address.
std::optional<std::string> ipv4_category(std::uint32_t address);

/// The same for an IPv6 address. Addresses that carry an IPv4 address
/// (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64
/// 64:ff9b::/96, 6to4 2002::/16) take the category of the embedded address.
std::optional<std::string> ipv6_category(
  const std::array<std::uint8_t, 16>& address);

/// Categories refused even when local requests are allowed: they never name
/// one TCP peer.
bool always_refused(const std::string& category);

/// The category of a numeric address ("127.0.0.1", "::ffff:10.0.0.1");
/// nullopt for a public address. Throws std::invalid_argument for text that
/// is not an IP address.
std::optional<std::string> address_category(const std::string& literal);

/// Why `category` stops a delivery under the given setting; nullopt when it
/// does not.
std::optional<std::string> refusal(const std::optional<std::string>& category,
                                   bool allow_local);

/// The outcome of resolving a webhook host once.
struct resolution {
  /// Numeric addresses, in getaddrinfo's order, without duplicates; every
  /// one of them passed the check. Empty when `error` is set.
  std::vector<std::string> addresses;
  /// "blocked: ..." when an address is refused, else a resolution error.
  std::string error;
  bool blocked = false;
};

/// Resolves `host` (a name or an IP literal, without brackets) with one
/// getaddrinfo call and checks every address it returns. The caller must
/// connect to one of `addresses`, never to the name again, so that a DNS
/// answer that changes between check and connect cannot bypass the check.
resolution resolve_and_check(const std::string& host, bool allow_local);

} // namespace gatehouse::webhooks
