#include "common/ssh_key.hpp"

#include "common/base64.hpp"

namespace gatehouse {

std::string ssh_fingerprint_sha256(std::string_view blob) {
  // OpenSSH drops the base64 padding of fingerprints.
  auto encoded = base64_encode(sha256(blob));
  while (!encoded.empty() && encoded.back() == '=')
    encoded.pop_back();
  return "SHA256:" + encoded;
}

} // namespace gatehouse
