#include "common/jwt.hpp"

#include "common/base64.hpp"

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <optional>
#include <stdexcept>

namespace gatehouse::jwt {

namespace {

using json = nlohmann::json;

// -- per-caller rules ---------------------------------------------------------

struct rules {
  const char* iss;
  std::int64_t leeway; // seconds, applied to exp and nbf
  bool check_aud;      // KAS: aud must name "gitlab"
  bool check_iat_age;  // Workhorse: a present iat must be recent
  std::int64_t ttl;    // what sign() puts into exp
};

constexpr std::int64_t workhorse_iat_validity = 90;

rules rules_for(caller c) {
  switch (c) {
    case caller::shell:
      return {issuer(c), 60, false, false, 60};
    case caller::workhorse:
      return {issuer(c), 0, false, true, 60};
    case caller::kas:
      return {issuer(c), 0, true, false, 30};
    case caller::pages:
      return {issuer(c), 0, false, false, 30};
  }
  throw std::invalid_argument("unknown jwt::caller");
}

// -- helpers ------------------------------------------------------------------

// HMAC-SHA256 of `data`; nullopt only if OpenSSL fails.
std::optional<std::string> hmac_sha256(std::string_view key,
                                       std::string_view data) {
  if (key.size() > static_cast<std::size_t>(INT_MAX))
    return std::nullopt;
  // OpenSSL wants a non-null key pointer even for an empty key.
  static const unsigned char empty_key = 0;
  auto* key_ptr = key.empty()
    ? &empty_key
    : reinterpret_cast<const unsigned char*>(key.data());
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(),
           out, &len)
        == nullptr
      || len != 32)
    return std::nullopt;
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::optional<json> parse_object(const std::string& text) {
  try {
    auto doc = json::parse(text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
      return std::nullopt;
    return doc;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

enum class claim_state { absent, present, invalid };

// Reads a NumericDate claim. Fractions are truncated like Ruby's to_i, which
// is what ruby-jwt applies before comparing.
claim_state numeric_claim(const json& payload, const char* name, double& out) {
  auto it = payload.find(name);
  if (it == payload.end())
    return claim_state::absent;
  if (!it->is_number())
    return claim_state::invalid;
  out = std::trunc(it->get<double>());
  return claim_state::present;
}

bool names_gitlab(const json& aud) {
  if (aud.is_string())
    return aud.get_ref<const std::string&>() == "gitlab";
  if (aud.is_array())
    for (const auto& item : aud)
      if (item.is_string() && item.get_ref<const std::string&>() == "gitlab")
        return true;
  return false;
}

} // namespace

// -- names --------------------------------------------------------------------

const char* to_string(caller c) {
  switch (c) {
    case caller::shell:
      return "shell";
    case caller::workhorse:
      return "workhorse";
    case caller::kas:
      return "kas";
    case caller::pages:
      return "pages";
  }
  return "unknown";
}

const char* header_name(caller c) {
  switch (c) {
    case caller::shell:
      return "Gitlab-Shell-Api-Request";
    case caller::workhorse:
      return "Gitlab-Workhorse-Api-Request";
    case caller::kas:
      return "Gitlab-Kas-Api-Request";
    case caller::pages:
      return "Gitlab-Pages-Api-Request";
  }
  return "";
}

const char* issuer(caller c) {
  switch (c) {
    case caller::shell:
      return "gitlab-shell";
    case caller::workhorse:
      return "gitlab-workhorse";
    case caller::kas:
      return "gitlab-kas";
    case caller::pages:
      return "gitlab-pages";
  }
  return "";
}

const char* to_string(verdict v) {
  switch (v) {
    case verdict::ok:
      return "ok";
    case verdict::malformed:
      return "malformed";
    case verdict::bad_algorithm:
      return "bad_algorithm";
    case verdict::bad_signature:
      return "bad_signature";
    case verdict::wrong_issuer:
      return "wrong_issuer";
    case verdict::wrong_audience:
      return "wrong_audience";
    case verdict::expired:
      return "expired";
    case verdict::not_yet_valid:
      return "not_yet_valid";
    case verdict::too_old:
      return "too_old";
    case verdict::future_iat:
      return "future_iat";
  }
  return "unknown";
}

// -- verify -------------------------------------------------------------------

inspected_token inspect(caller who, std::string_view token,
                        std::string_view key) {
  inspected_token out;
  // Structure: exactly three segments of base64url, the first two JSON
  // objects.
  auto dot1 = token.find('.');
  if (dot1 == std::string_view::npos)
    return out;
  auto dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos
      || token.find('.', dot2 + 1) != std::string_view::npos)
    return out;
  auto header_b64 = token.substr(0, dot1);
  auto payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  auto signature_b64 = token.substr(dot2 + 1);
  auto header_text = base64url_decode(header_b64);
  auto payload_text = base64url_decode(payload_b64);
  auto signature = base64url_decode(signature_b64);
  if (!header_text || !payload_text || !signature)
    return out;
  auto header = parse_object(*header_text);
  auto payload = parse_object(*payload_text);
  if (!header || !payload)
    return out;

  // Algorithm pinned to HS256; this is what stops alg=none.
  auto alg = header->find("alg");
  if (alg == header->end() || !alg->is_string()
      || alg->get_ref<const std::string&>() != "HS256") {
    out.structure = verdict::bad_algorithm;
    return out;
  }

  // Signature over the segments exactly as received.
  out.structure = verdict::bad_signature;
  if (signature->size() != 32)
    return out;
  auto expected = hmac_sha256(key, token.substr(0, dot2));
  if (!expected || CRYPTO_memcmp(expected->data(), signature->data(), 32) != 0)
    return out;

  // Claims, only now that they are known to come from the secret's holder.
  auto r = rules_for(who);
  auto iss = payload->find("iss");
  if (iss == payload->end() || !iss->is_string()
      || iss->get_ref<const std::string&>() != r.iss) {
    out.structure = verdict::wrong_issuer;
    return out;
  }
  if (r.check_aud) {
    auto aud = payload->find("aud");
    if (aud == payload->end() || !names_gitlab(*aud)) {
      out.structure = verdict::wrong_audience;
      return out;
    }
  }
  auto& t = out.times;
  auto exp_state = numeric_claim(*payload, "exp", t.exp);
  auto nbf_state = numeric_claim(*payload, "nbf", t.nbf);
  auto iat_state = numeric_claim(*payload, "iat", t.iat);
  if (exp_state == claim_state::invalid || nbf_state == claim_state::invalid
      || iat_state == claim_state::invalid) {
    out.structure = verdict::malformed;
    return out;
  }
  t.has_exp = exp_state == claim_state::present;
  t.has_nbf = nbf_state == claim_state::present;
  t.has_iat = iat_state == claim_state::present;
  out.structure = verdict::ok;
  return out;
}

std::optional<std::string> signed_payload(std::string_view token,
                                          std::string_view key) {
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos
      || token.find('.', dot2 + 1) != std::string_view::npos)
    return std::nullopt;
  auto header_text = base64url_decode(token.substr(0, dot1));
  auto payload_text = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  auto signature = base64url_decode(token.substr(dot2 + 1));
  if (!header_text || !payload_text || !signature || signature->size() != 32)
    return std::nullopt;
  auto header = parse_object(*header_text);
  if (!header || !parse_object(*payload_text))
    return std::nullopt;
  auto alg = header->find("alg");
  if (alg == header->end() || !alg->is_string()
      || alg->get_ref<const std::string&>() != "HS256")
    return std::nullopt;
  auto expected = hmac_sha256(key, token.substr(0, dot2));
  if (!expected || CRYPTO_memcmp(expected->data(), signature->data(), 32) != 0)
    return std::nullopt;
  return std::move(*payload_text);
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

verdict check_times(caller who, const time_claims& times, std::int64_t now) {
  auto r = rules_for(who);
  // Doubles keep huge claim values from overflowing; unix times are exact.
  auto t = static_cast<double>(now);
  auto leeway = static_cast<double>(r.leeway);
  if (times.has_exp && !(t < times.exp + leeway))
    return verdict::expired;
  if (times.has_nbf && !(t >= times.nbf - leeway))
    return verdict::not_yet_valid;
  if (r.check_iat_age && times.has_iat
      && t - times.iat > static_cast<double>(workhorse_iat_validity))
    return verdict::too_old;
  if (r.check_iat_age && times.has_iat && times.iat > t)
    return verdict::future_iat;
  return verdict::ok;
}

verdict verify(caller who, std::string_view token, std::string_view key,
               std::int64_t now) {
  auto inspected = inspect(who, token, key);
  if (inspected.structure != verdict::ok)
    return inspected.structure;
  return check_times(who, inspected.times, now);
}

// -- verified_tokens ------------------------------------------------------------

verdict verified_tokens::verify(caller who, std::string_view token,
                                std::string_view key, std::uint64_t key_id,
                                std::int64_t now) {
  if (key_id != key_id_) {
    entries_ = {};
    key_id_ = key_id;
  }
  // Every entry is compared, in constant time, whatever matched before.
  const entry* kept = nullptr;
  for (const auto& e : entries_) {
    bool same = e.used && e.who == who && e.token.size() == token.size()
      && CRYPTO_memcmp(e.token.data(), token.data(), token.size()) == 0;
    if (same)
      kept = &e;
  }
  if (kept != nullptr)
    return check_times(who, kept->times, now);
  auto inspected = inspect(who, token, key);
  if (inspected.structure != verdict::ok)
    return inspected.structure;
  auto& slot = entries_[next_];
  next_ = (next_ + 1) % entries_.size();
  slot.used = true;
  slot.who = who;
  slot.token.assign(token.data(), token.size());
  slot.times = inspected.times;
  return check_times(who, inspected.times, now);
}

// -- signing ------------------------------------------------------------------

std::string sign_raw(std::string_view header_json,
                     std::string_view payload_json, std::string_view key) {
  auto input = base64url_encode(header_json);
  input += '.';
  input += base64url_encode(payload_json);
  auto mac = hmac_sha256(key, input);
  if (!mac)
    throw std::runtime_error("HMAC-SHA256 failed");
  input += '.';
  input += base64url_encode(*mac);
  return input;
}

std::string sign(caller who, std::string_view key, std::int64_t now) {
  auto r = rules_for(who);
  auto claims = json::object();
  claims["iss"] = r.iss;
  claims["iat"] = now;
  claims["exp"] = now + r.ttl;
  if (who == caller::kas) {
    // golang-jwt writes a one-element audience as an array.
    claims["aud"] = json::array({"gitlab"});
    claims["nbf"] = now - 5;
  }
  return sign_raw(R"({"alg":"HS256","typ":"JWT"})", claims.dump(), key);
}

} // namespace gatehouse::jwt
