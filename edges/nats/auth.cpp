#include "edges/nats/auth.hpp"

#include "edges/nats/status_text.hpp"

#include <nats/nats.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <memory>
#include <unistd.h>

namespace gatehouse::nats {

namespace nkey {

namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

// Raw lengths: one prefix byte (two for a seed) + 32 key bytes + 2 CRC bytes.
constexpr std::size_t public_raw_len = 1 + 32 + 2;
constexpr std::size_t seed_raw_len = 2 + 32 + 2;

bool known_public_type(std::uint8_t b) {
  return b == static_cast<std::uint8_t>(key_type::operator_key)
    || b == static_cast<std::uint8_t>(key_type::account)
    || b == static_cast<std::uint8_t>(key_type::user);
}

void append_crc(std::string& raw) {
  auto crc = crc16(raw);
  raw.push_back(static_cast<char>(crc & 0xff));
  raw.push_back(static_cast<char>(crc >> 8));
}

struct pkey_deleter {
  void operator()(EVP_PKEY* p) const {
    EVP_PKEY_free(p);
  }
};

} // namespace

std::string base32_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 8 + 4) / 5);
  unsigned buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 5) {
      out.push_back(alphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
    buffer &= (1u << bits) - 1;
  }
  if (bits > 0)
    out.push_back(alphabet[(buffer << (5 - bits)) & 31]);
  return out;
}

bool base32_decode(std::string_view text, std::string& out) {
  out.clear();
  out.reserve(text.size() * 5 / 8);
  unsigned buffer = 0;
  int bits = 0;
  for (char c : text) {
    unsigned v;
    if (c >= 'A' && c <= 'Z')
      v = static_cast<unsigned>(c - 'A');
    else if (c >= '2' && c <= '7')
      v = static_cast<unsigned>(c - '2') + 26;
    else
      return false;
    buffer = (buffer << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<char>((buffer >> (bits - 8)) & 0xff));
      bits -= 8;
      buffer &= (1u << bits) - 1;
    }
  }
  return true;
}

std::uint16_t crc16(std::string_view bytes) {
  std::uint16_t crc = 0;
  for (unsigned char c : bytes) {
    crc ^= static_cast<std::uint16_t>(c << 8);
    for (int i = 0; i < 8; ++i)
      crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021
                                                      : crc << 1);
  }
  return crc;
}

std::string encode_public(key_type type, const raw_key& public_key) {
  std::string raw;
  raw.push_back(static_cast<char>(type));
  raw.append(reinterpret_cast<const char*>(public_key.data()),
             public_key.size());
  append_crc(raw);
  return base32_encode(raw);
}

std::string encode_seed(key_type type, const raw_key& seed) {
  auto t = static_cast<std::uint8_t>(type);
  std::string raw;
  raw.reserve(seed_raw_len);
  raw.push_back(
    static_cast<char>(static_cast<std::uint8_t>(key_type::seed) | (t >> 5)));
  raw.push_back(static_cast<char>((t & 31) << 3));
  raw.append(reinterpret_cast<const char*>(seed.data()), seed.size());
  append_crc(raw);
  auto text = base32_encode(raw);
  wipe(raw.data(), raw.size());
  return text;
}

bool decode_seed(std::string_view text, decoded_seed& out, std::string& error) {
  std::string raw;
  bool ok = false;
  if (!base32_decode(text, raw)) {
    error = "not an nkey seed (a character outside base32)";
  } else if (raw.size() != seed_raw_len) {
    error = "not an nkey seed (wrong length)";
  } else {
    auto* b = reinterpret_cast<const unsigned char*>(raw.data());
    std::uint16_t stored = static_cast<std::uint16_t>(b[34] | (b[35] << 8));
    auto type = static_cast<std::uint8_t>(((b[0] & 7) << 5) | (b[1] >> 3));
    if (crc16(std::string_view{raw.data(), seed_raw_len - 2}) != stored) {
      error = "corrupt nkey seed (checksum mismatch)";
    } else if ((b[0] & 0xf8) != static_cast<std::uint8_t>(key_type::seed)
               || (b[1] & 7) != 0) {
      error = "not an nkey seed (bad seed prefix)";
    } else if (!known_public_type(type)) {
      error = "not an nkey seed (unknown key type)";
    } else {
      out.type = static_cast<key_type>(type);
      std::memcpy(out.seed.data(), b + 2, out.seed.size());
      ok = true;
    }
  }
  wipe(raw.data(), raw.size());
  return ok;
}

bool public_key_of(const raw_key& seed, raw_key& public_key,
                   std::string& error) {
  std::unique_ptr<EVP_PKEY, pkey_deleter> key{EVP_PKEY_new_raw_private_key(
    EVP_PKEY_ED25519, nullptr, seed.data(), seed.size())};
  std::size_t len = public_key.size();
  if (!key
      || EVP_PKEY_get_raw_public_key(key.get(), public_key.data(), &len) != 1
      || len != public_key.size()) {
    error = "cannot derive the ed25519 public key";
    return false;
  }
  return true;
}

bool user_public_key(std::string_view seed_text, std::string& public_key,
                     std::string& error) {
  decoded_seed seed;
  if (!decode_seed(seed_text, seed, error))
    return false;
  bool ok = false;
  raw_key pub{};
  if (seed.type != key_type::user)
    error = "not a user nkey seed";
  else if (public_key_of(seed.seed, pub, error)) {
    public_key = encode_public(key_type::user, pub);
    ok = true;
  }
  wipe(seed.seed.data(), seed.seed.size());
  return ok;
}

std::string_view find_user_seed(std::string_view text) {
  auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f'
      || c == '\v';
  };
  bool line_start = true;
  bool comment = false;
  std::size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '\n') {
      line_start = true;
      comment = false;
      ++i;
      continue;
    }
    if (is_space(c)) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < text.size() && !is_space(text[end]))
      ++end;
    auto token = text.substr(i, end - i);
    if (line_start && (token[0] == '#' || token.substr(0, 2) == "//"))
      comment = true;
    line_start = false;
    if (!comment && token.size() >= 2 && token.substr(0, 2) == "SU")
      return token;
    i = end;
  }
  return {};
}

void wipe(void* p, std::size_t n) {
  OPENSSL_cleanse(p, n);
}

} // namespace nkey

namespace {

/// The whole file (at most 1 MiB) or false with a one-line error.
bool read_small_file(const std::string& path, std::string& out,
                     std::string& error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  out.clear();
  constexpr std::size_t limit = 1 << 20;
  // Room for the whole file up front: no reallocation leaves copies behind.
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0)
    out.reserve(
      std::min<std::size_t>(static_cast<std::size_t>(st.st_size), limit)
      + 4096);
  std::string why;
  char buf[4096];
  for (;;) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      why = "cannot read " + path + ": " + std::strerror(errno);
      break;
    }
    if (n == 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > limit) {
      why = "cannot use " + path + ": larger than 1 MiB";
      break;
    }
  }
  nkey::wipe(buf, sizeof buf);
  ::close(fd);
  if (!why.empty()) {
    nkey::wipe(out.data(), out.size());
    out.clear();
    error = why;
    return false;
  }
  return true;
}

/// The public key of the user seed inside `text` (a seed file or a creds
/// file); `error` names `path`.
bool public_key_in(const std::string& path, const std::string& text,
                   std::string& public_key, std::string& error) {
  auto seed = nkey::find_user_seed(text);
  if (seed.empty()) {
    error = path + ": no user nkey seed (a token starting with SU) found";
    return false;
  }
  std::string why;
  if (!nkey::user_public_key(seed, public_key, why)) {
    error = path + ": " + why;
    return false;
  }
  return true;
}

/// Checks a creds file the way nats.c will use it: a user JWT between its
/// markers and a valid user seed.
bool check_creds(const std::string& path, std::string& error) {
  std::string text;
  if (!read_small_file(path, text, error))
    return false;
  bool ok = false;
  const std::string begin = "BEGIN NATS USER JWT";
  auto at = text.find(begin);
  std::string public_key;
  if (at == std::string::npos) {
    error
      = path + ": no user JWT (a -----BEGIN NATS USER JWT----- block) found";
  } else {
    // The JWT is the first non-empty line after the marker line.
    auto line = text.find('\n', at);
    std::size_t jwt_len = 0;
    while (line != std::string::npos && jwt_len == 0) {
      auto start = line + 1;
      line = text.find('\n', start);
      auto end = line == std::string::npos ? text.size() : line;
      auto l = std::string_view{text}.substr(start, end - start);
      while (!l.empty()
             && (l.back() == '\r' || l.back() == ' ' || l.back() == '\t'))
        l.remove_suffix(1);
      while (!l.empty() && (l.front() == ' ' || l.front() == '\t'))
        l.remove_prefix(1);
      if (l.substr(0, 3) == "---")
        break; // the end marker: an empty block
      jwt_len = l.size();
    }
    if (jwt_len == 0)
      error = path + ": the user JWT block is empty";
    else
      ok = public_key_in(path, text, public_key, error);
  }
  nkey::wipe(text.data(), text.size());
  return ok;
}

} // namespace

bool user_public_key_from_file(const std::string& seed_file,
                               std::string& public_key, std::string& error) {
  std::string text;
  if (!read_small_file(seed_file, text, error))
    return false;
  bool ok = public_key_in(seed_file, text, public_key, error);
  nkey::wipe(text.data(), text.size());
  return ok;
}

bool apply_auth(natsOptions* opts, const std::string& creds_file,
                const std::string& nkey_seed_file, std::string& error) {
  if (!creds_file.empty() && !nkey_seed_file.empty()) {
    error = "GATEHOUSE_NATS_CREDS_FILE and GATEHOUSE_NATS_NKEY_SEED_FILE are "
            "mutually exclusive: set one";
    return false;
  }
  if (!creds_file.empty()) {
    std::string why;
    if (!check_creds(creds_file, why)) {
      error = "GATEHOUSE_NATS_CREDS_FILE: " + why;
      return false;
    }
    natsStatus s = natsOptions_SetUserCredentialsFromFiles(
      opts, creds_file.c_str(), nullptr);
    if (s != NATS_OK) {
      error
        = "GATEHOUSE_NATS_CREDS_FILE: " + creds_file + ": " + status_text(s);
      return false;
    }
  }
  if (!nkey_seed_file.empty()) {
    std::string public_key;
    std::string why;
    if (!user_public_key_from_file(nkey_seed_file, public_key, why)) {
      error = "GATEHOUSE_NATS_NKEY_SEED_FILE: " + why;
      return false;
    }
    // nats.c reads the seed file again at each connect, signs the server's
    // nonce and wipes the seed from memory.
    natsStatus s = natsOptions_SetNKeyFromSeed(opts, public_key.c_str(),
                                               nkey_seed_file.c_str());
    if (s != NATS_OK) {
      error = "GATEHOUSE_NATS_NKEY_SEED_FILE: " + nkey_seed_file + ": "
        + status_text(s);
      return false;
    }
  }
  return true;
}

std::string credentials_source(const std::string& creds_file,
                               const std::string& nkey_seed_file) {
  if (!creds_file.empty())
    return "GATEHOUSE_NATS_CREDS_FILE (" + creds_file + ")";
  if (!nkey_seed_file.empty())
    return "GATEHOUSE_NATS_NKEY_SEED_FILE (" + nkey_seed_file + ")";
  return "GATEHOUSE_NATS_URL";
}

std::string redact_url(const std::string& url) {
  std::string out;
  std::size_t start = 0;
  for (;;) {
    auto comma = url.find(',', start);
    auto entry = url.substr(
      start, comma == std::string::npos ? std::string::npos : comma - start);
    auto scheme = entry.find("://");
    auto host = scheme == std::string::npos ? 0 : scheme + 3;
    // The last '@': a password may contain '/' or '@' itself.
    auto at = entry.rfind('@');
    if (at != std::string::npos && at >= host)
      entry = entry.substr(0, host) + "***" + entry.substr(at);
    out += entry;
    if (comma == std::string::npos)
      return out;
    out += ',';
    start = comma + 1;
  }
}

bool credentials_refused(natsConnection* nc, const std::string& creds_file,
                         const std::string& nkey_seed_file, std::string& error,
                         int wait_ms) {
  if (!nc)
    return false;
  // nats.c closes the connection on its own threads, right after the
  // refusal, and may overwrite the refusal with "no server available" on
  // the way: watch for both, a short while (longer once refused).
  constexpr int settle_ms = 500;
  bool refused = false;
  const char* last = nullptr;
  for (int waited = 0;; waited += 10) {
    if (natsConnection_GetLastError(nc, &last) == NATS_CONNECTION_AUTH_FAILED)
      refused = true;
    if (natsConnection_Status(nc) == NATS_CONN_STATUS_CLOSED)
      break;
    if (waited >= (refused ? wait_ms : settle_ms))
      return false;
    nats_Sleep(10);
  }
  auto source = credentials_source(creds_file, nkey_seed_file);
  if (refused) {
    error = "nats-server refused the credentials of " + source
      + " (Authorization Violation); nats.c does not retry after that";
  } else {
    // With unlimited reconnects, nats.c only gives up on a refusal.
    natsConnection_GetLastError(nc, &last);
    error = "nats.c gave up connecting (" + std::string{last ? last : ""}
      + "), as it does when nats-server refuses the credentials of " + source;
  }
  return true;
}

} // namespace gatehouse::nats
