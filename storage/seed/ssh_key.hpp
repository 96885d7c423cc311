#pragma once

// SSH public-key lines as the seed format accepts them: the key types
// OpenSSH and GitLab accept, with a well-formed blob (RFC 4253).

#include <optional>
#include <string>
#include <string_view>

namespace gatehouse::storage::seeding {

struct ssh_key {
  std::string text;        // the key line, trimmed
  std::string type;        // "ssh-ed25519"
  std::string blob;        // base64 as written
  std::string fingerprint; // "SHA256:..."
};

/// Parses "<type> <base64 blob> [comment]". On failure returns nullopt and
/// sets `error` to a message for the operator.
std::optional<ssh_key> parse_ssh_key(std::string_view line, std::string& error);

} // namespace gatehouse::storage::seeding
