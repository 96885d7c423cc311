#pragma once

// Authentication of Gatehouse's NATS connections. What nats.c 3.4 supports:
// user and password or a token inside GATEHOUSE_NATS_URL (handled by
// natsOptions_SetURL), a .creds file (user JWT + nkey seed,
// GATEHOUSE_NATS_CREDS_FILE) and a bare nkey seed file
// (GATEHOUSE_NATS_NKEY_SEED_FILE). Every process that connects (serve, the
// webhook consumer, `events tail`) applies the same options through
// apply_auth, so they accept and refuse the same settings.
//
// The nkey helpers below implement the NATS key text format: base32
// (RFC 4648 alphabet, no padding) of prefix byte(s) + 32 key bytes + a
// CRC-16/XMODEM of what precedes it, little-endian.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

struct __natsConnection;
struct __natsOptions;

namespace gatehouse::nats {

namespace nkey {

/// The prefix byte of each key type (the first base32 character).
enum class key_type : std::uint8_t {
  seed = 18 << 3,         // 'S'
  operator_key = 14 << 3, // 'O'
  account = 0,            // 'A'
  user = 20 << 3,         // 'U'
};

/// RFC 4648 base32, upper case, without padding.
std::string base32_encode(std::string_view bytes);

/// Inverse of base32_encode; false on any character outside the alphabet
/// (padding included).
bool base32_decode(std::string_view text, std::string& out);

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0).
std::uint16_t crc16(std::string_view bytes);

using raw_key = std::array<unsigned char, 32>;

/// The public key text of a 32-byte ed25519 public key ("U…", "A…", "O…").
std::string encode_public(key_type type, const raw_key& public_key);

/// The seed text of a 32-byte ed25519 seed ("SU…", "SA…", "SO…").
std::string encode_seed(key_type type, const raw_key& seed);

/// A decoded seed. The caller should wipe `seed` after use (wipe()).
struct decoded_seed {
  key_type type = key_type::user;
  raw_key seed{};
};

/// Decodes a seed text: base32, length, CRC and prefixes are checked.
/// `error` never contains any part of the text.
bool decode_seed(std::string_view text, decoded_seed& out, std::string& error);

/// The ed25519 public key of a raw seed (OpenSSL).
bool public_key_of(const raw_key& seed, raw_key& public_key,
                   std::string& error);

/// The public key text ("U…") of a user seed text ("SU…").
bool user_public_key(std::string_view seed_text, std::string& public_key,
                     std::string& error);

/// The first token starting with "SU" in a file's text, skipping lines that
/// start with '#' or "//"; empty when there is none.
std::string_view find_user_seed(std::string_view text);

/// Overwrites `n` bytes at `p` in a way the compiler keeps.
void wipe(void* p, std::size_t n);

} // namespace nkey

/// Reads `seed_file`, finds its user seed, validates it and returns the
/// user's public key. `error` is one line naming the file, never its content.
bool user_public_key_from_file(const std::string& seed_file,
                               std::string& public_key, std::string& error);

/// Applies the credentials beyond the URL to `opts`: a creds file or an nkey
/// seed file (mutually exclusive). Both files are read and checked here, so
/// an unusable one stops start-up at once instead of failing every connect
/// attempt later. `error` is one line naming the variable and the file.
bool apply_auth(__natsOptions* opts, const std::string& creds_file,
                const std::string& nkey_seed_file, std::string& error);

/// Where the credentials come from, for messages: a variable and its file,
/// or GATEHOUSE_NATS_URL (whose user, password or token is never shown).
std::string credentials_source(const std::string& creds_file,
                               const std::string& nkey_seed_file);

/// `url` (a comma-separated list) with every user:password or token
/// replaced by "***", for messages.
std::string redact_url(const std::string& url);

/// For a connection that natsConnection_Connect returned with
/// NATS_NOT_YET_CONNECTED (retry on failed connect, unlimited reconnects):
/// true when nats.c gave up for good -- nats.c 3.4 closes the connection
/// when the server refuses the credentials, and never retries -- with
/// `error` one line naming where the credentials came from. Watches the
/// connection for half a second (up to `wait_ms` once refused).
bool credentials_refused(__natsConnection* nc, const std::string& creds_file,
                         const std::string& nkey_seed_file, std::string& error,
                         int wait_ms = 2000);

} // namespace gatehouse::nats
