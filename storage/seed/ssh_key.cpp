#include "storage/seed/ssh_key.hpp"

#include "common/base64.hpp"
#include "common/ssh_key.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <set>

namespace gatehouse::storage::seeding {

namespace {

using json = nlohmann::json;

/// Reads the length-prefixed strings of an SSH public key blob (RFC 4253).
class blob_reader {
public:
  explicit blob_reader(std::string_view data) : data_(data) {}

  bool next(std::string_view& out) {
    if (data_.size() - pos_ < 4)
      return false;
    std::uint32_t size = 0;
    for (int i = 0; i < 4; ++i)
      size = (size << 8) | static_cast<unsigned char>(data_[pos_ + i]);
    if (data_.size() - pos_ - 4 < size)
      return false;
    out = data_.substr(pos_ + 4, size);
    pos_ += 4 + size;
    return true;
  }

  /// Reads `n` fields; all must be present.
  bool skip(int n) {
    std::string_view ignored;
    for (int i = 0; i < n; ++i)
      if (!next(ignored))
        return false;
    return true;
  }

  bool at_end() const {
    return pos_ == data_.size();
  }

private:
  std::string_view data_;
  std::size_t pos_ = 0;
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string trim(std::string_view s) {
  std::size_t b = 0;
  std::size_t e = s.size();
  while (b < e && is_space(s[b]))
    ++b;
  while (e > b && is_space(s[e - 1]))
    --e;
  return std::string(s.substr(b, e - b));
}

/// `text` for an operator's terminal: bytes outside printable ASCII become
/// '?', so that neither invalid UTF-8 nor control sequences from a blob
/// reach an error text.
std::string printable(std::string_view text) {
  std::string out(text);
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20
        || static_cast<unsigned char>(c) > 0x7e)
      c = '?';
  return out;
}

/// Checks the fields after the type string for the key types OpenSSH and
/// GitLab accept. Returns false when the blob is not well-formed.
bool check_key_body(const std::string& type, blob_reader& in) {
  std::string_view field;
  if (type == "ssh-ed25519")
    return in.next(field) && field.size() == 32 && in.at_end();
  if (type == "sk-ssh-ed25519@openssh.com")
    return in.next(field) && field.size() == 32 && in.skip(1) && in.at_end();
  if (type == "ssh-rsa")
    return in.skip(1) && in.next(field) && !field.empty() && in.at_end();
  if (type == "ssh-dss")
    return in.skip(4) && in.at_end();
  auto ecdsa = [&](std::string_view curve, int trailing) {
    return in.next(field) && field == curve && in.next(field) && !field.empty()
      && field[0] == 0x04 && in.skip(trailing) && in.at_end();
  };
  if (type == "ecdsa-sha2-nistp256")
    return ecdsa("nistp256", 0);
  if (type == "ecdsa-sha2-nistp384")
    return ecdsa("nistp384", 0);
  if (type == "ecdsa-sha2-nistp521")
    return ecdsa("nistp521", 0);
  if (type == "sk-ecdsa-sha2-nistp256@openssh.com")
    return ecdsa("nistp256", 1);
  return false;
}

const std::set<std::string>& key_types() {
  static const std::set<std::string> types{
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com"};
  return types;
}

} // namespace

std::optional<ssh_key> parse_ssh_key(std::string_view line,
                                     std::string& error) {
  ssh_key key;
  key.text = trim(line);
  if (key.text.empty()) {
    error = "must not be empty";
    return std::nullopt;
  }
  auto type_end = key.text.find_first_of(" \t");
  key.type = key.text.substr(0, type_end);
  if (!key_types().count(key.type)) {
    // JSON-quoted: control characters escaped, invalid UTF-8 replaced
    // (dump would throw on it).
    error = "unsupported key type "
      + json(key.type).dump(-1, ' ', false, json::error_handler_t::replace)
      + " (expected a line like \"ssh-ed25519 AAAA... comment\")";
    return std::nullopt;
  }
  if (type_end == std::string::npos) {
    error = "has no key data after " + json(key.type).dump();
    return std::nullopt;
  }
  auto blob_begin = key.text.find_first_not_of(" \t", type_end);
  auto blob_end = key.text.find_first_of(" \t", blob_begin);
  key.blob = key.text.substr(blob_begin, blob_end - blob_begin);
  auto blob = base64_decode(key.blob);
  if (!blob) {
    error = "key data is not valid base64";
    return std::nullopt;
  }
  blob_reader in{*blob};
  std::string_view embedded;
  if (!in.next(embedded)) {
    error = "key data is not a well-formed " + key.type + " key";
    return std::nullopt;
  }
  if (embedded != key.type) {
    error = "key data is a " + printable(embedded) + " key, not " + key.type;
    return std::nullopt;
  }
  if (!check_key_body(key.type, in)) {
    error = "key data is not a well-formed " + key.type + " key";
    return std::nullopt;
  }
  key.fingerprint = ssh_fingerprint_sha256(*blob);
  return key;
}

} // namespace gatehouse::storage::seeding
