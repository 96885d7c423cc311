#pragma once

// SSH public-key facts that must agree across processes: the seed loader
// stores the fingerprint of every key it writes, and /authorized_keys looks
// keys up by the fingerprint of the blob OpenSSH sends. If the two ever
// computed it differently, seeded keys would stop authenticating.

#include <string>
#include <string_view>

namespace gatehouse {

/// OpenSSH's SHA-256 fingerprint of a decoded public-key blob (RFC 4253
/// wire format): "SHA256:" followed by base64 of the digest without
/// padding, as `ssh-keygen -l` prints it.
std::string ssh_fingerprint_sha256(std::string_view blob);

} // namespace gatehouse
