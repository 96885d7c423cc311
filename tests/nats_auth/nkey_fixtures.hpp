#pragma once

// Test fixtures: fresh ed25519 key pairs (OpenSSL), their nkey texts, and
// NATS decentralized-auth JWTs (operator, account, user) signed with them,
// so that nats-server can be run in operator mode with a minted .creds file.

#include "common/base64.hpp"
#include "edges/nats/auth.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <ctime>
#include <memory>
#include <string>

namespace gatehouse::test {

namespace nkey = gatehouse::nats::nkey;

struct key_pair {
  nkey::raw_key seed{};
  nkey::raw_key pub{};
  nkey::key_type type = nkey::key_type::user;

  std::string seed_text() const {
    return nkey::encode_seed(type, seed);
  }
  std::string public_text() const {
    return nkey::encode_public(type, pub);
  }
};

/// A fresh key pair from OpenSSL's generator (independent of auth.cpp's
/// derivation).
inline key_pair generate_key(nkey::key_type type) {
  key_pair kp;
  kp.type = type;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx{
    EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), &EVP_PKEY_CTX_free};
  REQUIRE(ctx);
  REQUIRE(EVP_PKEY_keygen_init(ctx.get()) == 1);
  EVP_PKEY* raw = nullptr;
  REQUIRE(EVP_PKEY_keygen(ctx.get(), &raw) == 1);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{raw, &EVP_PKEY_free};
  std::size_t len = 32;
  REQUIRE(EVP_PKEY_get_raw_private_key(key.get(), kp.seed.data(), &len) == 1);
  REQUIRE(len == 32);
  len = 32;
  REQUIRE(EVP_PKEY_get_raw_public_key(key.get(), kp.pub.data(), &len) == 1);
  REQUIRE(len == 32);
  return kp;
}

/// The raw ed25519 signature of `data` with `kp`.
inline std::string sign(const key_pair& kp, const std::string& data) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{
    EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, kp.seed.data(),
                                 kp.seed.size()),
    &EVP_PKEY_free};
  REQUIRE(key);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md{EVP_MD_CTX_new(),
                                                             &EVP_MD_CTX_free};
  REQUIRE(EVP_DigestSignInit(md.get(), nullptr, nullptr, nullptr, key.get())
          == 1);
  std::string sig(64, '\0');
  std::size_t len = sig.size();
  REQUIRE(EVP_DigestSign(
            md.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
            reinterpret_cast<const unsigned char*>(data.data()), data.size())
          == 1);
  sig.resize(len);
  return sig;
}

/// A NATS JWT (alg ed25519-nkey) for `subject` with `nats` claims, issued
/// and signed by `issuer`. The jti is the base32 SHA-256 of the claims
/// without it, as NATS tooling computes it.
inline std::string mint_jwt(const key_pair& issuer, const std::string& subject,
                            const std::string& name, nlohmann::json nats) {
  nlohmann::json claims = {{"jti", ""},
                           {"iat", static_cast<long long>(std::time(nullptr))},
                           {"iss", issuer.public_text()},
                           {"name", name},
                           {"sub", subject},
                           {"nats", std::move(nats)}};
  claims["jti"] = nkey::base32_encode(sha256(claims.dump()));
  nlohmann::json header = {{"typ", "JWT"}, {"alg", "ed25519-nkey"}};
  auto signing_input
    = base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
  return signing_input + "." + base64url_encode(sign(issuer, signing_input));
}

/// An operator, one account with JetStream, one user: the JWTs nats-server
/// needs (operator + preloaded account) and the user's .creds text.
struct decentralized_auth {
  key_pair op = generate_key(nkey::key_type::operator_key);
  key_pair account = generate_key(nkey::key_type::account);
  /// nats-server's own account (JetStream needs one in operator mode).
  key_pair system = generate_key(nkey::key_type::account);
  key_pair user = generate_key(nkey::key_type::user);
  std::string operator_jwt;
  std::string account_jwt;
  std::string system_jwt;
  std::string user_jwt;

  decentralized_auth() {
    operator_jwt = mint_jwt(op, op.public_text(), "gatehouse-test",
                            {{"type", "operator"}, {"version", 2}});
    nlohmann::json limits
      = {{"subs", -1},         {"data", -1},    {"payload", -1},
         {"imports", -1},      {"exports", -1}, {"wildcards", true},
         {"conn", -1},         {"leaf", -1},    {"mem_storage", -1},
         {"disk_storage", -1}, {"streams", -1}, {"consumer", -1}};
    account_jwt = mint_jwt(
      op, account.public_text(), "GATEHOUSE",
      {{"limits", limits},
       {"default_permissions",
        {{"pub", nlohmann::json::object()}, {"sub", nlohmann::json::object()}}},
       {"type", "account"},
       {"version", 2}});
    system_jwt = mint_jwt(op, system.public_text(), "SYS",
                          {{"limits",
                            {{"subs", -1},
                             {"data", -1},
                             {"payload", -1},
                             {"imports", -1},
                             {"exports", -1},
                             {"wildcards", true},
                             {"conn", -1},
                             {"leaf", -1}}},
                           {"type", "account"},
                           {"version", 2}});
    user_jwt = user_jwt_for(user);
  }

  /// A user JWT issued by this account for `u`.
  std::string user_jwt_for(const key_pair& u) const {
    return mint_jwt(account, u.public_text(), "gatehouse",
                    {{"pub", nlohmann::json::object()},
                     {"sub", nlohmann::json::object()},
                     {"subs", -1},
                     {"data", -1},
                     {"payload", -1},
                     {"type", "user"},
                     {"version", 2}});
  }

  /// nats-server configuration lines for operator mode.
  std::string server_config() const {
    return "operator: " + operator_jwt
      + "\nsystem_account: " + system.public_text() + "\nresolver: MEMORY\n"
      + "resolver_preload: {\n  " + account.public_text() + ": " + account_jwt
      + "\n  " + system.public_text() + ": " + system_jwt + "\n}\n";
  }

  /// A .creds file's text, in the layout NATS tooling writes.
  static std::string creds(const std::string& jwt, const std::string& seed) {
    return "-----BEGIN NATS USER JWT-----\n" + jwt
      + "\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
      + seed + "\n------END USER NKEY SEED------\n\n"
      + "*************************************************************\n";
  }
};

} // namespace gatehouse::test
