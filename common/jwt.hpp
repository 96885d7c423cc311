#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gatehouse::jwt {

/// The internal callers, each with its own shared secret, issuer and rules
/// (contract shell-gitaly §1.4, other-callers §1.1).
enum class caller { shell, workhorse, kas, pages };

/// "shell", "workhorse", "kas", "pages".
const char* to_string(caller c);

/// The request header that carries the caller's token,
/// e.g. "Gitlab-Shell-Api-Request".
const char* header_name(caller c);

/// The `iss` the caller's tokens must carry, e.g. "gitlab-shell".
const char* issuer(caller c);

/// Why a token was refused; for metrics and debug logs, never the token.
enum class verdict {
  ok,
  malformed,     // not three base64url segments of JSON objects
  bad_algorithm, // alg missing, "none" or anything but HS256
  bad_signature,
  wrong_issuer,
  wrong_audience, // KAS only
  expired,
  not_yet_valid, // nbf in the future
  too_old,       // Workhorse iat older than 90 s
};

const char* to_string(verdict v);

/// Verifies `token` as a token from `who`, signed with `key` (the raw HMAC
/// key bytes), at unix time `now`. Signatures compare in constant time.
/// Rules per caller:
/// - shell: iss gitlab-shell; exp with 60 s leeway; nbf if present; iat not
///   checked.
/// - kas: iss gitlab-kas; aud "gitlab" as a string or inside an array;
///   exp/nbf without leeway.
/// - pages: iss gitlab-pages; exp/nbf without leeway.
/// - workhorse: iss gitlab-workhorse; exp/nbf without leeway; a present iat
///   older than 90 s fails, a missing iat passes (older Workhorse).
verdict verify(caller who, std::string_view token, std::string_view key,
               std::int64_t now);

/// Mints a token as the real caller would: HS256, its iss (and aud "gitlab"
/// for KAS), iat = now, exp = now + 60 s (KAS and Pages: 30 s; KAS also
/// nbf = now - 5 s).
std::string sign(caller who, std::string_view key, std::int64_t now);

/// Signs an arbitrary header and payload (JSON text) with HS256; for tests
/// that need tokens the callers would never send.
std::string sign_raw(std::string_view header_json,
                     std::string_view payload_json, std::string_view key);

} // namespace gatehouse::jwt
