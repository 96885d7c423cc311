#include "common/base64.hpp"
#include "common/jwt.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <string>
#include <vector>

using namespace gatehouse;
using jwt::caller;
using jwt::verdict;
using json = nlohmann::json;

namespace {

constexpr std::int64_t now = 1700000000;

constexpr auto hs256_header = R"({"alg":"HS256","typ":"JWT"})";

// One distinct key per caller; Shell's is text, the others 32 raw bytes.
std::string key_of(caller c) {
  switch (c) {
    case caller::shell:
      return "0123456789abcdef0123456789abcdef";
    case caller::workhorse:
      return std::string(32, '\x01');
    case caller::kas:
      return std::string(32, '\x02');
    case caller::pages:
      return std::string(32, '\x03');
  }
  return {};
}

// Claims the caller's verifier accepts at `now`.
json good_claims(caller c) {
  json claims = {{"iss", jwt::issuer(c)}, {"iat", now}, {"exp", now + 30}};
  if (c == caller::kas)
    claims["aud"] = json::array({"gitlab"});
  return claims;
}

std::string token_with(caller c, const json& claims) {
  return jwt::sign_raw(hs256_header, claims.dump(), key_of(c));
}

// Every verdict also through a verified_tokens, presented twice: the kept
// answer must be the verified one.
verdict check(caller c, const std::string& token) {
  auto direct = jwt::verify(c, token, key_of(c), now);
  static jwt::verified_tokens memo;
  CHECK(memo.verify(c, token, key_of(c), 1, now) == direct);
  CHECK(memo.verify(c, token, key_of(c), 1, now) == direct);
  return direct;
}

verdict check_claims(caller c, const json& claims) {
  return check(c, token_with(c, claims));
}

std::string seg(const std::string& text) {
  return base64url_encode(text);
}

} // namespace

// Runs the rest of the test case once per caller.
#define ANY_CALLER()                                                           \
  GENERATE(caller::shell, caller::workhorse, caller::kas, caller::pages)

// -- base64 and friends -------------------------------------------------------

TEST_CASE("base64 encodes the RFC 4648 vectors", "[unit][base64]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64url_encode("f") == "Zg");
  CHECK(base64url_encode("\xfb\xff") == "-_8");
  CHECK(base64_encode("\xfb\xff") == "+/8=");
}

TEST_CASE("base64 round-trips every length, padded and unpadded",
          "[unit][base64]") {
  for (std::size_t n = 0; n <= 40; ++n) {
    auto bytes = random_bytes(n);
    auto std_text = base64_encode(bytes);
    auto url_text = base64url_encode(bytes);
    INFO("length " << n);
    CHECK(std_text.size() % 4 == 0);
    CHECK(url_text.find('=') == std::string::npos);
    CHECK(base64_decode(std_text) == bytes);
    CHECK(base64url_decode(url_text) == bytes);
    // Padding is optional for both decoders.
    auto unpadded = std_text.substr(0, std_text.find('='));
    CHECK(base64_decode(unpadded) == bytes);
    auto url_padded = url_text;
    while (url_padded.size() % 4 != 0)
      url_padded += '=';
    CHECK(base64url_decode(url_padded) == bytes);
  }
}

TEST_CASE("base64 decoding is strict", "[unit][base64]") {
  CHECK(base64_decode("").value() == "");
  CHECK_FALSE(base64_decode("Zm9v YmFy"));
  CHECK_FALSE(base64_decode("Zm9vYmFy\n"));
  CHECK_FALSE(base64_decode(" Zm9vYmFy"));
  CHECK_FALSE(base64_decode("Zm9v*mFy"));
  CHECK_FALSE(base64_decode("Zm9v-_Fy"));
  CHECK_FALSE(base64_decode("Z"));
  CHECK_FALSE(base64_decode("Zg="));
  CHECK_FALSE(base64_decode("Zg==="));
  CHECK_FALSE(base64_decode("Zm8=="));
  CHECK_FALSE(base64_decode("Zg==Zg=="));
  CHECK_FALSE(base64_decode("===="));
  CHECK_FALSE(base64_decode("Zh==")); // non-zero unused bits
  CHECK_FALSE(base64_decode(std::string("Zm9v\0", 5)));
  CHECK_FALSE(base64url_decode("+/8"));
  CHECK_FALSE(base64url_decode("-_8."));
  CHECK_FALSE(base64url_decode("Zg="));
  CHECK(base64url_decode("-_8").value() == "\xfb\xff");
}

TEST_CASE("hex, sha256 and random bytes", "[unit][base64]") {
  CHECK(hex_encode(std::string("\x00\x0f\xa0\xff", 4)) == "000fa0ff");
  CHECK(hex_encode(sha256("abc"))
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256("").size() == 32);
  CHECK(random_bytes(0).empty());
  CHECK(random_bytes(32).size() == 32);
  CHECK(random_bytes(32) != random_bytes(32));
}

// -- names --------------------------------------------------------------------

TEST_CASE("callers have their header names and issuers", "[unit][jwt]") {
  CHECK(std::string(jwt::header_name(caller::shell))
        == "Gitlab-Shell-Api-Request");
  CHECK(std::string(jwt::header_name(caller::workhorse))
        == "Gitlab-Workhorse-Api-Request");
  CHECK(std::string(jwt::header_name(caller::kas)) == "Gitlab-Kas-Api-Request");
  CHECK(std::string(jwt::header_name(caller::pages))
        == "Gitlab-Pages-Api-Request");
  CHECK(std::string(jwt::issuer(caller::shell)) == "gitlab-shell");
  CHECK(std::string(jwt::issuer(caller::workhorse)) == "gitlab-workhorse");
  CHECK(std::string(jwt::issuer(caller::kas)) == "gitlab-kas");
  CHECK(std::string(jwt::issuer(caller::pages)) == "gitlab-pages");
  CHECK(std::string(jwt::to_string(caller::kas)) == "kas");
  CHECK(std::string(jwt::to_string(verdict::too_old)) == "too_old");
  CHECK(std::string(jwt::to_string(verdict::future_iat)) == "future_iat");
  CHECK(std::string(jwt::to_string(verdict::ok)) == "ok");
}

// -- signing ------------------------------------------------------------------

TEST_CASE("sign_raw reproduces the jwt.io reference token", "[unit][jwt]") {
  const std::string token
    = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
      "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIy"
      "fQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
  auto dot1 = token.find('.');
  auto dot2 = token.find('.', dot1 + 1);
  auto header = base64url_decode(token.substr(0, dot1));
  auto payload = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  REQUIRE(header);
  REQUIRE(payload);
  CHECK(jwt::sign_raw(*header, *payload, "your-256-bit-secret") == token);
  // Valid signature, but no iss: refused only at the claims step.
  CHECK(jwt::verify(caller::shell, token, "your-256-bit-secret", 1516239022)
        == verdict::wrong_issuer);
  CHECK(jwt::verify(caller::shell, token, "my-256-bit-secret", 1516239022)
        == verdict::bad_signature);
}

TEST_CASE("sign mints what each caller sends and verify accepts it",
          "[unit][jwt]") {
  auto who = ANY_CALLER();
  INFO(jwt::to_string(who));
  auto token = jwt::sign(who, key_of(who), now);
  CHECK(check(who, token) == verdict::ok);

  auto dot1 = token.find('.');
  auto dot2 = token.find('.', dot1 + 1);
  CHECK(base64url_decode(token.substr(0, dot1)).value() == hs256_header);
  auto claims = json::parse(
    base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1)).value());
  CHECK(claims["iss"] == jwt::issuer(who));
  CHECK(claims["iat"] == now);
  auto ttl = who == caller::kas || who == caller::pages ? 30 : 60;
  CHECK(claims["exp"] == now + ttl);
  if (who == caller::kas) {
    CHECK(claims["nbf"] == now - 5);
    CHECK(claims["aud"] == json::array({"gitlab"}));
  } else {
    CHECK_FALSE(claims.contains("nbf"));
    CHECK_FALSE(claims.contains("aud"));
  }
}

// -- rejections every caller shares
// ---------------------------------------------

TEST_CASE("verify rejects tokens that are not three JSON segments",
          "[unit][jwt]") {
  auto who = ANY_CALLER();
  INFO(jwt::to_string(who));
  auto good = token_with(who, good_claims(who));
  auto dot1 = good.find('.');
  auto dot2 = good.find('.', dot1 + 1);
  auto header = good.substr(0, dot1);
  auto payload = good.substr(dot1 + 1, dot2 - dot1 - 1);
  auto signature = good.substr(dot2 + 1);
  CHECK(check(who, good) == verdict::ok);

  CHECK(check(who, "") == verdict::malformed);
  CHECK(check(who, "..") == verdict::malformed);
  CHECK(check(who, "not-a-token") == verdict::malformed);
  CHECK(check(who, header + "." + payload) == verdict::malformed);
  CHECK(check(who, good + ".") == verdict::malformed);
  CHECK(check(who, good + "." + signature) == verdict::malformed);
  // Characters outside the base64url alphabet, in each segment.
  CHECK(check(who, header + "*." + payload + "." + signature)
        == verdict::malformed);
  CHECK(check(who, header + "." + payload + "+." + signature)
        == verdict::malformed);
  CHECK(check(who, header + "." + payload + "." + signature + "!")
        == verdict::malformed);
  CHECK(check(who, header + " ." + payload + "." + signature)
        == verdict::malformed);
  // Valid base64url, but not JSON objects.
  auto resigned = [&](const std::string& h, const std::string& p) {
    return jwt::sign_raw(h, p, key_of(who));
  };
  auto claims = good_claims(who).dump();
  CHECK(check(who, resigned("not json", claims)) == verdict::malformed);
  CHECK(check(who, resigned("", claims)) == verdict::malformed);
  CHECK(check(who, resigned(R"(["HS256"])", claims)) == verdict::malformed);
  CHECK(check(who, resigned(R"("HS256")", claims)) == verdict::malformed);
  CHECK(check(who, resigned(R"({"alg":"HS256")", claims))
        == verdict::malformed);
  CHECK(check(who, resigned(hs256_header, "{")) == verdict::malformed);
  CHECK(check(who, resigned(hs256_header, "42")) == verdict::malformed);
  CHECK(check(who, resigned(hs256_header, "null")) == verdict::malformed);
  CHECK(check(who, resigned(hs256_header, "\xff\xfe")) == verdict::malformed);
}

TEST_CASE("verify accepts HS256 only", "[unit][jwt]") {
  auto who = ANY_CALLER();
  INFO(jwt::to_string(who));
  auto claims = good_claims(who).dump();
  // The classic unsigned token: alg none and an empty signature.
  CHECK(
    check(who, seg(R"({"alg":"none","typ":"JWT"})") + "." + seg(claims) + ".")
    == verdict::bad_algorithm);
  CHECK(check(who, seg(R"({"alg":"none"})") + "." + seg(claims) + ".")
        == verdict::bad_algorithm);
  // Properly MACed with our key, but naming another algorithm.
  for (auto header :
       {R"({"typ":"JWT"})", R"({"alg":"none","typ":"JWT"})",
        R"({"alg":"HS512","typ":"JWT"})", R"({"alg":"RS256","typ":"JWT"})",
        R"({"alg":"hs256","typ":"JWT"})", R"({"alg":"HS256 ","typ":"JWT"})",
        R"({"alg":null})", R"({"alg":["HS256"]})", R"({})"}) {
    INFO(header);
    CHECK(check(who, jwt::sign_raw(header, claims, key_of(who)))
          == verdict::bad_algorithm);
  }
}

TEST_CASE("verify rejects bad signatures", "[unit][jwt]") {
  auto who = ANY_CALLER();
  INFO(jwt::to_string(who));
  auto claims = good_claims(who);
  auto good = token_with(who, claims);
  auto dot2 = good.rfind('.');
  auto unsigned_part = good.substr(0, dot2);

  CHECK(jwt::verify(who, good, "another key", now) == verdict::bad_signature);
  CHECK(jwt::verify(who, good, "", now) == verdict::bad_signature);
  CHECK(check(who, unsigned_part + ".") == verdict::bad_signature);
  CHECK(check(who, unsigned_part + "." + seg("short"))
        == verdict::bad_signature);
  CHECK(check(who, unsigned_part + "." + seg(std::string(32, '\0')))
        == verdict::bad_signature);
  CHECK(check(who, unsigned_part + "." + seg(std::string(33, 'x')))
        == verdict::bad_signature);
  // The right MAC with a byte appended is still the wrong signature.
  auto mac = base64url_decode(good.substr(dot2 + 1)).value();
  CHECK(check(who, unsigned_part + "." + seg(mac + "x"))
        == verdict::bad_signature);
  CHECK(check(who, unsigned_part + "." + seg(mac.substr(0, 31)))
        == verdict::bad_signature);

  SECTION("a token signed with another caller's secret") {
    for (auto other :
         {caller::shell, caller::workhorse, caller::kas, caller::pages}) {
      if (other == who)
        continue;
      INFO("signed with " << jwt::to_string(other) << "'s secret");
      CHECK(
        check(who, jwt::sign_raw(hs256_header, claims.dump(), key_of(other)))
        == verdict::bad_signature);
    }
  }

  SECTION("a tampered payload") {
    auto tampered = claims;
    tampered["exp"] = now + 3600;
    CHECK(check(who,
                seg(hs256_header) + "." + seg(tampered.dump()) + "."
                  + good.substr(dot2 + 1))
          == verdict::bad_signature);
    // Flipping one signature character.
    auto flipped = good;
    flipped[dot2 + 1] = flipped[dot2 + 1] == 'A' ? 'B' : 'A';
    CHECK(check(who, flipped) == verdict::bad_signature);
  }
}

TEST_CASE("verify rejects another caller's issuer", "[unit][jwt]") {
  auto who = ANY_CALLER();
  INFO(jwt::to_string(who));
  for (auto other :
       {caller::shell, caller::workhorse, caller::kas, caller::pages}) {
    if (other == who)
      continue;
    // E.g. a Shell token presented as Pages, signed with Pages' secret.
    INFO("token minted as " << jwt::to_string(other));
    CHECK(check(who, jwt::sign(other, key_of(who), now))
          == verdict::wrong_issuer);
  }
  auto claims = good_claims(who);
  claims.erase("iss");
  CHECK(check_claims(who, claims) == verdict::wrong_issuer);
  claims["iss"] = json::array({jwt::issuer(who)});
  CHECK(check_claims(who, claims) == verdict::wrong_issuer);
  claims["iss"] = std::string(jwt::issuer(who)) + " ";
  CHECK(check_claims(who, claims) == verdict::wrong_issuer);
  claims["iss"] = "gitlab";
  CHECK(check_claims(who, claims) == verdict::wrong_issuer);
}

TEST_CASE("verify checks steps in order", "[unit][jwt]") {
  auto who = ANY_CALLER();
  INFO(jwt::to_string(who));
  auto claims = good_claims(who);
  claims["iss"] = "someone";
  claims["exp"] = now - 3600;
  // Algorithm before signature.
  CHECK(jwt::verify(who,
                    jwt::sign_raw(R"({"alg":"HS512"})", claims.dump(), "x"),
                    key_of(who), now)
        == verdict::bad_algorithm);
  // Signature before claims.
  CHECK(jwt::verify(who, token_with(who, claims), "x", now)
        == verdict::bad_signature);
  // Issuer before expiry.
  CHECK(check_claims(who, claims) == verdict::wrong_issuer);
}

TEST_CASE("verify checks exp and nbf", "[unit][jwt]") {
  auto who = ANY_CALLER();
  INFO(jwt::to_string(who));
  auto claims = good_claims(who);
  auto with = [&](const char* name, json value) {
    auto c = claims;
    c[name] = std::move(value);
    return check_claims(who, c);
  };
  CHECK(with("exp", now - 3600) == verdict::expired);
  CHECK(with("exp", now + 1) == verdict::ok);
  CHECK(with("exp", static_cast<double>(now) + 1.5) == verdict::ok);
  CHECK(with("exp", 1e300) == verdict::ok);
  CHECK(with("nbf", now + 3600) == verdict::not_yet_valid);
  CHECK(with("nbf", now - 1) == verdict::ok);
  CHECK(with("nbf", now) == verdict::ok);
  CHECK(with("exp", "soon") == verdict::malformed);
  CHECK(with("exp", nullptr) == verdict::malformed);
  CHECK(with("nbf", true) == verdict::malformed);
  CHECK(with("iat", "now") == verdict::malformed);
  // No exp at all: Rails checks exp only when present.
  auto no_exp = claims;
  no_exp.erase("exp");
  CHECK(check_claims(who, no_exp) == verdict::ok);

  if (who == caller::shell) {
    // 60 s leeway: valid while now < exp + 60.
    CHECK(with("exp", now - 59) == verdict::ok);
    CHECK(with("exp", now - 60) == verdict::expired);
    CHECK(with("nbf", now + 60) == verdict::ok);
    CHECK(with("nbf", now + 61) == verdict::not_yet_valid);
    // iat is not checked; a clock 10 s ahead passes.
    CHECK(with("iat", now + 10) == verdict::ok);
    CHECK(with("iat", now - 3600) == verdict::ok);
  } else {
    CHECK(with("exp", now) == verdict::expired);
    CHECK(with("exp", now - 1) == verdict::expired);
    // Fractions are truncated before comparing, as Ruby's to_i does.
    CHECK(with("exp", static_cast<double>(now) + 0.5) == verdict::expired);
    CHECK(with("nbf", now + 1) == verdict::not_yet_valid);
  }
}

// -- caller-specific rules ----------------------------------------------------

TEST_CASE("KAS tokens must name gitlab as audience", "[unit][jwt]") {
  auto claims = good_claims(caller::kas);
  auto with_aud = [&](json aud) {
    auto c = claims;
    c["aud"] = std::move(aud);
    return check_claims(caller::kas, c);
  };
  CHECK(with_aud("gitlab") == verdict::ok);
  CHECK(with_aud(json::array({"gitlab"})) == verdict::ok);
  CHECK(with_aud(json::array({"other", "gitlab"})) == verdict::ok);
  CHECK(with_aud("gitlab-kas") == verdict::wrong_audience);
  CHECK(with_aud("GitLab") == verdict::wrong_audience);
  CHECK(with_aud(json::array({"other"})) == verdict::wrong_audience);
  CHECK(with_aud(json::array()) == verdict::wrong_audience);
  CHECK(with_aud(json::array({json::array({"gitlab"})}))
        == verdict::wrong_audience);
  CHECK(with_aud(json::object({{"gitlab", true}})) == verdict::wrong_audience);
  CHECK(with_aud(42) == verdict::wrong_audience);
  claims.erase("aud");
  CHECK(check_claims(caller::kas, claims) == verdict::wrong_audience);
}

TEST_CASE("only KAS checks the audience", "[unit][jwt]") {
  for (auto who : {caller::shell, caller::workhorse, caller::pages}) {
    INFO(jwt::to_string(who));
    auto claims = good_claims(who);
    claims["aud"] = "somewhere-else";
    CHECK(check_claims(who, claims) == verdict::ok);
  }
}

TEST_CASE("Workhorse tokens must not be older than 90 s", "[unit][jwt]") {
  auto claims = good_claims(caller::workhorse);
  claims.erase("exp"); // newest Workhorse sends iat only
  auto with_iat = [&](json iat) {
    auto c = claims;
    c["iat"] = std::move(iat);
    return check_claims(caller::workhorse, c);
  };
  CHECK(with_iat(now) == verdict::ok);
  CHECK(with_iat(now - 90) == verdict::ok);
  CHECK(with_iat(now - 91) == verdict::too_old);
  CHECK(with_iat(static_cast<double>(now) - 89.5) == verdict::ok);
  CHECK(with_iat(static_cast<double>(now) - 90.5) == verdict::too_old);
  // ruby-jwt's verify_iat, which GitLab's decode_jwt turns on.
  CHECK(with_iat(now + 30) == verdict::future_iat);
  CHECK(with_iat(now + 1) == verdict::future_iat);
  // Older Workhorse sends only iss.
  claims.erase("iat");
  CHECK(check_claims(caller::workhorse, claims) == verdict::ok);
  // The other callers ignore iat's age.
  for (auto who : {caller::kas, caller::pages}) {
    auto c = good_claims(who);
    c["iat"] = now - 3600;
    CHECK(check_claims(who, c) == verdict::ok);
  }
}

// -- verified_tokens ------------------------------------------------------------

TEST_CASE("a kept token still expires on time", "[unit][jwt]") {
  auto who = ANY_CALLER();
  INFO(jwt::to_string(who));
  jwt::verified_tokens memo;
  auto claims = good_claims(who);
  claims["exp"] = now + 10;
  claims["nbf"] = now - 5;
  auto token = token_with(who, claims);
  auto at = [&](std::int64_t t) {
    auto kept = memo.verify(who, token, key_of(who), 1, t);
    CHECK(kept == jwt::verify(who, token, key_of(who), t));
    return kept;
  };
  CHECK(at(now) == verdict::ok);
  auto leeway = who == caller::shell ? 60 : 0;
  CHECK(at(now + 9 + leeway) == verdict::ok);
  CHECK(at(now + 10 + leeway) == verdict::expired);
  CHECK(at(now - 6 - leeway) == verdict::not_yet_valid);
  if (who == caller::workhorse) {
    // Without exp, Workhorse's iat age still ends it.
    claims.erase("exp");
    token = token_with(who, claims);
    CHECK(at(now + 90) == verdict::ok);
    CHECK(at(now + 91) == verdict::too_old);
  }
}

TEST_CASE("a kept token is the caller's and the key's only", "[unit][jwt]") {
  jwt::verified_tokens memo;
  auto token = token_with(caller::shell, good_claims(caller::shell));
  CHECK(memo.verify(caller::shell, token, key_of(caller::shell), 1, now)
        == verdict::ok);
  // Presented as another caller it is checked against that caller's key.
  CHECK(memo.verify(caller::pages, token, key_of(caller::pages), 1, now)
        == verdict::bad_signature);
  // Another key: what was kept is forgotten.
  CHECK(memo.verify(caller::shell, token, "another key", 2, now)
        == verdict::bad_signature);
  CHECK(memo.verify(caller::shell, token, key_of(caller::shell), 3, now)
        == verdict::ok);
}

TEST_CASE("an altered kept token is verified again", "[unit][jwt]") {
  jwt::verified_tokens memo;
  auto token = token_with(caller::kas, good_claims(caller::kas));
  CHECK(memo.verify(caller::kas, token, key_of(caller::kas), 1, now)
        == verdict::ok);
  for (std::size_t i : {std::size_t{0}, token.size() / 2, token.size() - 1}) {
    auto altered = token;
    altered[i] = altered[i] == 'A' ? 'B' : 'A';
    INFO("byte " << i);
    CHECK(memo.verify(caller::kas, altered, key_of(caller::kas), 1, now)
          != verdict::ok);
  }
  CHECK(memo.verify(caller::kas, token + "A", key_of(caller::kas), 1, now)
        != verdict::ok);
  CHECK(memo.verify(caller::kas, token.substr(0, token.size() - 1),
                    key_of(caller::kas), 1, now)
        != verdict::ok);
}

TEST_CASE("verified_tokens keeps the latest tokens", "[unit][jwt]") {
  jwt::verified_tokens memo;
  std::vector<std::string> tokens;
  for (std::size_t i = 0; i < 3 * jwt::verified_tokens::capacity; ++i) {
    auto claims = good_claims(caller::workhorse);
    claims["jti"] = i;
    tokens.push_back(token_with(caller::workhorse, claims));
    CHECK(memo.verify(caller::workhorse, tokens.back(),
                      key_of(caller::workhorse), 1, now)
          == verdict::ok);
  }
  // Evicted or kept, every one still verifies.
  for (auto& t : tokens)
    CHECK(memo.verify(caller::workhorse, t, key_of(caller::workhorse), 1, now)
          == verdict::ok);
}

TEST_CASE("unix_now never lags a precise clock read before it",
          "[jwt][clock]") {
  // A caller stamps iat from a precise clock; verifying right after must not
  // see that second as the future. Spinning across a second boundary gives
  // a lagging (coarse) clock its chance to show.
  using namespace std::chrono;
  auto start = steady_clock::now();
  std::int64_t lagged = 0;
  while (steady_clock::now() - start < milliseconds(1100)) {
    timespec precise{};
    clock_gettime(CLOCK_REALTIME, &precise);
    if (jwt::unix_now() < static_cast<std::int64_t>(precise.tv_sec))
      ++lagged;
  }
  CHECK(lagged == 0);
}
