#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
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
  future_iat,    // Workhorse iat after now (ruby-jwt's verify_iat)
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
///   older than 90 s or in the future fails, a missing iat passes (older
///   Workhorse).
verdict verify(caller who, std::string_view token, std::string_view key,
               std::int64_t now);

/// The current unix time in whole seconds from the precise realtime clock,
/// for verify()'s `now`. Not std::time(): glibc reads the coarse clock,
/// which lags by up to a scheduler tick, so at a second boundary a token a
/// caller just stamped with its precise clock (Workhorse's iat) looked one
/// second in the future and was refused "Invalid iat".
std::int64_t unix_now();

/// A token's time claims (NumericDate, truncated to whole seconds); absent
/// ones are unset.
struct time_claims {
  bool has_exp = false, has_nbf = false, has_iat = false;
  double exp = 0, nbf = 0, iat = 0;
};

/// What verify() decides before it looks at the clock: `verdict::ok` when
/// the token is well formed, signed with the key and meets the caller's
/// rules other than time; then `times` holds its time claims.
struct inspected_token {
  verdict structure = verdict::malformed;
  time_claims times;
};

/// The clock-free half of verify().
inspected_token inspect(caller who, std::string_view token,
                        std::string_view key);

/// The clock half of verify(): the caller's exp, nbf and iat rules at `now`.
verdict check_times(caller who, const time_claims& times, std::int64_t now);

/// Tokens whose signature verified, kept so that the same token presented
/// again skips the base64, JSON and HMAC work: a caller signs a token per
/// request with whole-second claims, so under load many requests carry the
/// same one. Not thread-safe: one per thread.
///
/// - Only tokens that passed inspect() with the key are kept, so only the
///   key's holders can put one here, and a forged or altered token always
///   takes the full verification.
/// - A presented token is compared with every kept one in constant time
///   over its length (CRYPTO_memcmp), never with an early exit, so timing
///   cannot reveal a kept token byte by byte. What it can reveal, whether a
///   token is kept, needs the token itself.
/// - The clock is checked on every use, kept or not: a kept token expires
///   exactly when verify() would refuse it.
/// - Entries are per caller and per key: `key_id` names the key; a
///   different id forgets everything.
class verified_tokens {
public:
  /// verify(who, token, key, now), from memory when `token` was verified
  /// with the key `key_id` names.
  verdict verify(caller who, std::string_view token, std::string_view key,
                 std::uint64_t key_id, std::int64_t now);

  static constexpr std::size_t capacity = 8;

private:
  struct entry {
    bool used = false;
    caller who = caller::shell;
    std::string token;
    time_claims times;
  };
  std::array<entry, capacity> entries_;
  std::size_t next_ = 0;
  std::uint64_t key_id_ = 0;
};

/// The payload (JSON text) of an HS256 token signed with `key`; nullopt
/// when it is malformed, of another algorithm or not signed with `key`.
/// Checks no claim: for tokens whose claims the caller interprets itself
/// (Gatehouse's LFS tokens, Workhorse's signed upload fields).
std::optional<std::string> signed_payload(std::string_view token,
                                          std::string_view key);

/// Mints a token as the real caller would: HS256, its iss (and aud "gitlab"
/// for KAS), iat = now, exp = now + 60 s (KAS and Pages: 30 s; KAS also
/// nbf = now - 5 s).
std::string sign(caller who, std::string_view key, std::int64_t now);

/// Signs an arbitrary header and payload (JSON text) with HS256; for tests
/// that need tokens the callers would never send.
std::string sign_raw(std::string_view header_json,
                     std::string_view payload_json, std::string_view key);

} // namespace gatehouse::jwt
