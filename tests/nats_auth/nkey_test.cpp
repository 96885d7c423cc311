// The nkey text format and the seed/creds file checks of edges/nats/auth.

#include "edges/nats/auth.hpp"
#include "tests/nats_auth/nkey_fixtures.hpp"
#include "tests/support/process.hpp"

#include <catch2/catch.hpp>
#include <nats/nats.h>

#include <cstring>
#include <string>

using namespace gatehouse;
using namespace gatehouse::nats;
using gatehouse::test::decentralized_auth;
using gatehouse::test::generate_key;

namespace {

nkey::raw_key from_hex(const std::string& hex) {
  nkey::raw_key out{};
  REQUIRE(hex.size() == 64);
  for (std::size_t i = 0; i < 32; ++i)
    out[i] = static_cast<unsigned char>(
      std::stoi(hex.substr(i * 2, 2), nullptr, 16));
  return out;
}

// RFC 8032 §7.1, TEST 1.
const char* rfc8032_secret
  = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const char* rfc8032_public
  = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
// The same keys as nkey texts, computed independently with Python's
// base64.b32encode and binascii.crc_hqx(data, 0) (CRC-16/XMODEM).
const char* rfc8032_user_seed
  = "SUAJ2YNRTXX72WTAXKCEV5ES5QWMIRCJYVUXWMTJDFYDXLADDSXH6YALCA";
const char* rfc8032_user_public
  = "UDLVVGABQKYQVN6VJP7NHSLEA45A5YLS6PNKMIZFV4BBU2HXA5IRUVAL";
const char* rfc8032_account_seed
  = "SAAJ2YNRTXX72WTAXKCEV5ES5QWMIRCJYVUXWMTJDFYDXLADDSXH6YHY3Q";
const char* rfc8032_account_public
  = "ADLVVGABQKYQVN6VJP7NHSLEA45A5YLS6PNKMIZFV4BBU2HXA5IRVRTU";

std::string temp_file(const std::string& name, const std::string& text,
                      mode_t mode = 0600) {
  auto path = test::make_temp_dir("nkey") + "/" + name;
  test::write_file(path, text, mode);
  return path;
}

/// Flips one base32 character of `text` at `pos` to another valid one.
std::string flip(std::string text, std::size_t pos) {
  text[pos] = text[pos] == 'A' ? 'B' : 'A';
  return text;
}

} // namespace

TEST_CASE("base32 matches the RFC 4648 test vectors without padding",
          "[nats_auth]") {
  const std::pair<const char*, const char*> vectors[]
    = {{"", ""},
       {"f", "MY"},
       {"fo", "MZXQ"},
       {"foo", "MZXW6"},
       {"foob", "MZXW6YQ"},
       {"fooba", "MZXW6YTB"},
       {"foobar", "MZXW6YTBOI"}};
  for (auto& [plain, encoded] : vectors) {
    CHECK(nkey::base32_encode(plain) == encoded);
    std::string back;
    REQUIRE(nkey::base32_decode(encoded, back));
    CHECK(back == plain);
  }
  std::string out;
  CHECK_FALSE(nkey::base32_decode("MZXW6===", out)); // padding is not nkey
  CHECK_FALSE(nkey::base32_decode("mzxw6", out));    // lower case
  CHECK_FALSE(nkey::base32_decode("MZXW1", out));    // outside the alphabet
}

TEST_CASE("crc16 is CRC-16/XMODEM", "[nats_auth]") {
  CHECK(nkey::crc16("123456789") == 0x31C3);
  CHECK(nkey::crc16("") == 0);
}

TEST_CASE("the RFC 8032 key pair encodes and derives as computed "
          "independently",
          "[nats_auth]") {
  auto secret = from_hex(rfc8032_secret);
  auto pub = from_hex(rfc8032_public);
  CHECK(nkey::encode_seed(nkey::key_type::user, secret) == rfc8032_user_seed);
  CHECK(nkey::encode_public(nkey::key_type::user, pub) == rfc8032_user_public);
  CHECK(nkey::encode_seed(nkey::key_type::account, secret)
        == rfc8032_account_seed);
  CHECK(nkey::encode_public(nkey::key_type::account, pub)
        == rfc8032_account_public);

  nkey::raw_key derived{};
  std::string error;
  REQUIRE(nkey::public_key_of(secret, derived, error));
  CHECK(derived == pub);

  std::string public_text;
  REQUIRE(nkey::user_public_key(rfc8032_user_seed, public_text, error));
  CHECK(public_text == rfc8032_user_public);

  nkey::decoded_seed seed;
  REQUIRE(nkey::decode_seed(rfc8032_account_seed, seed, error));
  CHECK(seed.type == nkey::key_type::account);
  CHECK(seed.seed == secret);
  // An account seed is a valid seed but not a user's.
  CHECK_FALSE(nkey::user_public_key(rfc8032_account_seed, public_text, error));
  CHECK(error == "not a user nkey seed");
}

TEST_CASE("a fresh OpenSSL key pair round-trips through the seed text",
          "[nats_auth]") {
  for (int i = 0; i < 20; ++i) {
    auto kp = generate_key(nkey::key_type::user);
    auto seed_text = kp.seed_text();
    CHECK(seed_text.size() == 58);
    CHECK(seed_text.substr(0, 2) == "SU");
    nkey::decoded_seed decoded;
    std::string error;
    REQUIRE(nkey::decode_seed(seed_text, decoded, error));
    CHECK(decoded.type == nkey::key_type::user);
    CHECK(decoded.seed == kp.seed);
    std::string public_text;
    REQUIRE(nkey::user_public_key(seed_text, public_text, error));
    CHECK(public_text == kp.public_text());
    CHECK(public_text.size() == 56);
    CHECK(public_text[0] == 'U');
  }
}

TEST_CASE("the seed's checksum, length and prefixes are checked",
          "[nats_auth]") {
  auto seed_text = generate_key(nkey::key_type::user).seed_text();
  nkey::decoded_seed decoded;
  std::string error;
  for (std::size_t pos : {2u, 20u, 40u, 55u}) {
    CHECK_FALSE(nkey::decode_seed(flip(seed_text, pos), decoded, error));
    CHECK(error == "corrupt nkey seed (checksum mismatch)");
  }
  CHECK_FALSE(nkey::decode_seed(seed_text.substr(0, 50), decoded, error));
  CHECK(error == "not an nkey seed (wrong length)");
  CHECK_FALSE(nkey::decode_seed(seed_text + "AAAA", decoded, error));
  CHECK(error == "not an nkey seed (wrong length)");
  CHECK_FALSE(nkey::decode_seed("SU!" + seed_text.substr(3), decoded, error));
  CHECK(error == "not an nkey seed (a character outside base32)");

  // A public key is not a seed (wrong length), nor is a seed with a good
  // CRC but a public-key prefix byte first.
  auto kp = generate_key(nkey::key_type::user);
  CHECK_FALSE(nkey::decode_seed(kp.public_text(), decoded, error));
  std::string raw;
  raw.push_back(static_cast<char>(nkey::key_type::user));
  raw.push_back(0);
  raw.append(reinterpret_cast<const char*>(kp.seed.data()), 32);
  auto crc = nkey::crc16(raw);
  raw.push_back(static_cast<char>(crc & 0xff));
  raw.push_back(static_cast<char>(crc >> 8));
  CHECK_FALSE(nkey::decode_seed(nkey::base32_encode(raw), decoded, error));
  CHECK(error == "not an nkey seed (bad seed prefix)");
  // A seed of an unknown key type (server keys are not users).
  raw[0] = static_cast<char>(static_cast<std::uint8_t>(nkey::key_type::seed)
                             | ((13 << 3) >> 5));
  raw[1] = static_cast<char>(((13 << 3) & 31) << 3);
  raw.resize(34);
  crc = nkey::crc16(raw);
  raw.push_back(static_cast<char>(crc & 0xff));
  raw.push_back(static_cast<char>(crc >> 8));
  CHECK_FALSE(nkey::decode_seed(nkey::base32_encode(raw), decoded, error));
  CHECK(error == "not an nkey seed (unknown key type)");
}

TEST_CASE("the seed is the first SU token outside comment lines",
          "[nats_auth]") {
  CHECK(nkey::find_user_seed("SUABC\n") == "SUABC");
  CHECK(nkey::find_user_seed("  SUABC  ") == "SUABC");
  CHECK(nkey::find_user_seed("# SUPER secret\n// SUMMARY\nUXYZ SUDEF\nSUGHI")
        == "SUDEF");
  CHECK(nkey::find_user_seed("-----BEGIN USER NKEY SEED-----\r\nSUXYZ\r\n"
                             "------END USER NKEY SEED------\r\n")
        == "SUXYZ");
  CHECK(nkey::find_user_seed("# only SUch comments\n").empty());
  CHECK(nkey::find_user_seed("").empty());
  CHECK(nkey::find_user_seed("SAABC sUABC").empty());
}

TEST_CASE("a seed file yields its public key; bad files give one line naming "
          "the file, never its content",
          "[nats_auth]") {
  auto kp = generate_key(nkey::key_type::user);
  auto seed_text = kp.seed_text();
  std::string public_key;
  std::string error;

  // The layout of `nk -gen user -pubout` and of nsc's key files, with a
  // comment.
  auto good = temp_file("user.nk",
                        "# gatehouse on nats-1\n" + seed_text + "\n"
                          + kp.public_text() + "\n");
  REQUIRE(user_public_key_from_file(good, public_key, error));
  CHECK(public_key == kp.public_text());

  auto check_bad = [&](const std::string& path, const std::string& expected) {
    CHECK_FALSE(user_public_key_from_file(path, public_key, error));
    CHECK(error.find(path) != std::string::npos);
    CHECK(error.find(expected) != std::string::npos);
    CHECK(error.find('\n') == std::string::npos);
    CHECK(error.find(seed_text.substr(2, 20)) == std::string::npos);
  };
  auto corrupt = temp_file("corrupt.nk", flip(seed_text, 30) + "\n");
  check_bad(corrupt, "checksum mismatch");
  check_bad(temp_file("empty.nk", ""), "no user nkey seed");
  check_bad(temp_file("short.nk", seed_text.substr(0, 40)), "wrong length");
  check_bad(good + ".missing", "cannot read");
  check_bad(
    temp_file("account.nk", generate_key(nkey::key_type::account).seed_text()),
    "no user nkey seed");
}

TEST_CASE("apply_auth checks the files before nats.c sees them",
          "[nats_auth]") {
  natsOptions* opts = nullptr;
  REQUIRE(natsOptions_Create(&opts) == NATS_OK);
  std::string error;
  auto kp = generate_key(nkey::key_type::user);
  auto seed_file = temp_file("user.nk", kp.seed_text() + "\n");

  SECTION("nothing to apply") {
    CHECK(apply_auth(opts, "", "", error));
  }
  SECTION("an nkey seed file") {
    CHECK(apply_auth(opts, "", seed_file, error));
  }
  SECTION("both are refused") {
    CHECK_FALSE(apply_auth(opts, seed_file, seed_file, error));
    CHECK(error.find("mutually exclusive") != std::string::npos);
  }
  SECTION("a corrupt nkey seed file") {
    auto bad = temp_file("bad.nk", flip(kp.seed_text(), 9));
    CHECK_FALSE(apply_auth(opts, "", bad, error));
    CHECK(error
          == "GATEHOUSE_NATS_NKEY_SEED_FILE: " + bad
            + ": corrupt nkey seed (checksum mismatch)");
  }
  SECTION("creds files") {
    decentralized_auth da;
    auto creds
      = temp_file("user.creds",
                  decentralized_auth::creds(da.user_jwt, da.user.seed_text()));
    CHECK(apply_auth(opts, creds, "", error));

    auto unreadable = creds + ".missing";
    CHECK_FALSE(apply_auth(opts, unreadable, "", error));
    CHECK(error.rfind("GATEHOUSE_NATS_CREDS_FILE: cannot read " + unreadable, 0)
          == 0);

    auto no_jwt = temp_file("nojwt.creds", da.user.seed_text() + "\n");
    CHECK_FALSE(apply_auth(opts, no_jwt, "", error));
    CHECK(error.find("no user JWT") != std::string::npos);

    auto empty_jwt = temp_file(
      "empty.creds", decentralized_auth::creds("", da.user.seed_text()));
    CHECK_FALSE(apply_auth(opts, empty_jwt, "", error));
    CHECK(error.find("user JWT block is empty") != std::string::npos);

    auto bad_seed = temp_file(
      "badseed.creds",
      decentralized_auth::creds(da.user_jwt, flip(da.user.seed_text(), 33)));
    CHECK_FALSE(apply_auth(opts, bad_seed, "", error));
    CHECK(error
          == "GATEHOUSE_NATS_CREDS_FILE: " + bad_seed
            + ": corrupt nkey seed (checksum mismatch)");
    CHECK(error.find(da.user_jwt.substr(0, 20)) == std::string::npos);
  }
  natsOptions_Destroy(opts);
}

TEST_CASE("messages never show NATS credentials", "[nats_auth]") {
  CHECK(redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222");
  CHECK(redact_url("nats://u:p@h:4222") == "nats://***@h:4222");
  CHECK(redact_url("nats://t0ken@h:4222,tls://u:p/w@d@h2:4443")
        == "nats://***@h:4222,tls://***@h2:4443");
  CHECK(redact_url("u:p@h:4222") == "***@h:4222");
  CHECK(credentials_source("", "") == "GATEHOUSE_NATS_URL");
  CHECK(credentials_source("/etc/g.creds", "")
        == "GATEHOUSE_NATS_CREDS_FILE (/etc/g.creds)");
  CHECK(credentials_source("", "/etc/g.nk")
        == "GATEHOUSE_NATS_NKEY_SEED_FILE (/etc/g.nk)");
}
