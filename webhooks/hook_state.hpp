#pragma once

// GitLab's webhook auto-disabling (gitlabhq
// app/models/concerns/web_hooks/auto_disabling.rb, MR !166329; anchors.md
// H16), as a pure state machine over gatehouse_state.webhook_states.
//
// - Every failed delivery of an executable hook increments recent_failures
//   (GitLab's backoff!, which now handles every failure category).
// - recent_failures above TEMPORARILY_DISABLED_FAILURE_THRESHOLD (3), i.e.
//   from the 4th consecutive failure on: disabled_until = now + base x
//   2^backoff_count, clamped to [base, 24 h], and backoff_count grows by one.
//   GitLab derives the exponent as recent_failures - 3 before the increment;
//   backoff_count is that number, kept in its own column.
// - recent_failures above PERMANENTLY_DISABLED_FAILURE_THRESHOLD (39), i.e.
//   at the 40th consecutive failure: permanently disabled; never counted
//   higher (GitLab clamps to 40).
// - A hook is temporarily disabled while disabled_until >= now (GitLab's
//   comparison); once that passes it is executable again and its next
//   failure doubles the backoff.
// - A successful delivery resets recent_failures, backoff_count and
//   disabled_until (GitLab's enable!).
// - A failure reported for a hook that is not executable changes nothing.

#include <chrono>
#include <cstdint>
#include <optional>

namespace gatehouse::webhooks {

constexpr int temporarily_disabled_failure_threshold = 3;
constexpr int permanently_disabled_failure_threshold = 39;
constexpr std::chrono::milliseconds max_backoff = std::chrono::hours(24);

struct hook_state {
  int recent_failures = 0;
  int backoff_count = 0;
  /// Milliseconds since the Unix epoch (PostgreSQL's clock).
  std::optional<std::int64_t> disabled_until_ms;
  bool permanently_disabled = false;

  bool operator==(const hook_state& o) const {
    return recent_failures == o.recent_failures
      && backoff_count == o.backoff_count
      && disabled_until_ms == o.disabled_until_ms
      && permanently_disabled == o.permanently_disabled;
  }
};

enum class hook_status {
  executable,
  temporarily_disabled,
  permanently_disabled
};

const char* to_string(hook_status s);

/// The hook's status at `now_ms`.
hook_status status_at(const hook_state& s, std::int64_t now_ms);

/// base x 2^backoff_count, clamped to [base, 24 h] (never overflows).
std::chrono::milliseconds backoff_for(int backoff_count,
                                      std::chrono::milliseconds base);

/// The state after a successful delivery.
hook_state after_success(const hook_state& s);

/// The state after a failed delivery at `now_ms`.
hook_state after_failure(const hook_state& s, std::int64_t now_ms,
                         std::chrono::milliseconds base);

} // namespace gatehouse::webhooks
