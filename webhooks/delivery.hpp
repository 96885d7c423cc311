#pragma once

// One webhook delivery: GitLab's request headers, stable UUIDs, the URL,
// and the POST itself (retried, pinned to the checked address).

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gatehouse::webhooks {

enum class event_kind { push, tag_push };

/// "push" or "tag_push"; nullopt for anything else.
std::optional<event_kind> parse_event_kind(std::string_view text);

/// X-Gitlab-Event: "Push Hook" or "Tag Push Hook".
const char* gitlab_event_name(event_kind kind);

/// A name-based (version 5, SHA-1, RFC 4122 §4.3) UUID of `name` in
/// namespace `ns`, lower-case 8-4-4-4-12.
std::string uuid_v5(const std::array<unsigned char, 16>& ns,
                    std::string_view name);

/// uuid_v5 in Gatehouse's own namespace.
std::string name_based_uuid(std::string_view name);

/// X-Gitlab-Webhook-UUID: the same for a hook id in every process and run.
std::string webhook_uuid(std::int64_t hook_id);

/// Idempotency-Key: the same for one (event, hook) pair across retries,
/// redeliveries and processes.
std::string idempotency_key(std::string_view event_id, std::int64_t hook_id);

/// Whether `text` is a UUID in 8-4-4-4-12 hex form.
bool is_uuid(std::string_view text);

/// Instance-wide settings that a delivery uses (seed `settings`).
struct instance_settings {
  bool allow_local_requests = false;
  std::string external_url;
  std::string gitlab_version;
};

/// A webhook as the consumer needs it. `token` is secret: never log it.
struct hook_target {
  std::int64_t id = 0;
  std::string url;
  std::string token;
};

using header_list = std::vector<std::pair<std::string, std::string>>;

/// GitLab's delivery headers (WebHookService#build_headers): Content-Type,
/// User-Agent, Idempotency-Key, X-Gitlab-Event, X-Gitlab-Webhook-UUID,
/// X-Gitlab-Instance, X-Gitlab-Event-UUID, and X-Gitlab-Token only when the
/// hook has a token. Line breaks are removed from every value (GitLab does
/// so for the token), so no value can inject a header.
header_list delivery_headers(const hook_target& hook, event_kind kind,
                             const std::string& event_id,
                             const instance_settings& settings);

/// The parts of an http(s) URL a delivery needs.
struct target_url {
  bool https = false;
  /// Without brackets for an IPv6 literal.
  std::string host;
  int port = 80;
  /// Path and query, at least "/", with bytes outside printable ASCII
  /// percent-encoded.
  std::string path;
  /// Percent-decoded user and password from user:password@ (basic auth,
  /// as GitLab does).
  std::optional<std::pair<std::string, std::string>> basic_auth;
  /// The Host header: host (bracketed for IPv6) plus a non-default port.
  std::string host_header() const;
};

/// Parses `url`; nullopt with `error` set (never echoing the URL, which may
/// carry a password) when it is not an http(s) URL with a host.
std::optional<target_url> parse_target_url(const std::string& url,
                                           std::string& error);

/// One HTTP attempt.
struct attempt_result {
  /// 0 when no response arrived.
  int status = 0;
  /// Empty on a 2xx answer; else "HTTP <status>" or a transport error.
  std::string error;
  /// No connection could be made (another address may work).
  bool connect_failed = false;
  bool ok() const {
    return status >= 200 && status < 300;
  }
};

/// POSTs `body` to `url`, connecting to `address` (a numeric address that
/// was checked) while the Host header, TLS SNI and certificate verification
/// use the URL's host. Never follows redirects. The whole attempt, headers
/// and body included, ends within `timeout`.
attempt_result post_once(const target_url& url, const std::string& address,
                         const header_list& headers, const std::string& body,
                         std::chrono::milliseconds timeout);

struct delivery_policy {
  std::chrono::milliseconds timeout{10000};
  /// Attempts beyond the first.
  int retries = 3;
  /// Pause before retry n (0-based): retry_base x 2^n, at most 5 s.
  std::chrono::milliseconds retry_base{200};
};

struct delivery_result {
  bool delivered = false;
  /// The last HTTP status; 0 when none arrived.
  int status = 0;
  int attempts = 0;
  std::string error;
  /// The process is stopping and gave up before a final outcome.
  bool abandoned = false;
};

/// Delivers with up to 1 + retries attempts, all with the same headers (so
/// the same Idempotency-Key). Each attempt resolves the host with one
/// getaddrinfo call, refuses the delivery when any address is refused
/// ("blocked: ...", final, no request sent), and connects only to the
/// checked addresses.
/// `pause(d)` waits d and returns false when the process is stopping, which
/// abandons the delivery; `before_attempt` runs before every attempt.
delivery_result deliver(
  const hook_target& hook, const header_list& headers, const std::string& body,
  bool allow_local, const delivery_policy& policy,
  const std::function<bool(std::chrono::milliseconds)>& pause,
  const std::function<void()>& before_attempt = {});

} // namespace gatehouse::webhooks
