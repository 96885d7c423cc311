#include "webhooks/hook_state.hpp"

#include <algorithm>

namespace gatehouse::webhooks {

const char* to_string(hook_status s) {
  switch (s) {
    case hook_status::executable:
      return "executable";
    case hook_status::temporarily_disabled:
      return "temporarily_disabled";
    case hook_status::permanently_disabled:
      return "permanently_disabled";
  }
  return "executable";
}

hook_status status_at(const hook_state& s, std::int64_t now_ms) {
  if (s.permanently_disabled
      || s.recent_failures > permanently_disabled_failure_threshold)
    return hook_status::permanently_disabled;
  if (s.recent_failures > temporarily_disabled_failure_threshold
      && s.disabled_until_ms && *s.disabled_until_ms >= now_ms)
    return hook_status::temporarily_disabled;
  return hook_status::executable;
}

std::chrono::milliseconds backoff_for(int backoff_count,
                                      std::chrono::milliseconds base) {
  auto cap = max_backoff.count();
  auto value
    = std::min<std::int64_t>(std::max<std::int64_t>(base.count(), 1), cap);
  for (int i = 0; i < backoff_count && value < cap; ++i)
    value = std::min<std::int64_t>(value * 2, cap);
  return std::chrono::milliseconds{value};
}

hook_state after_success(const hook_state&) {
  return hook_state{};
}

hook_state after_failure(const hook_state& s, std::int64_t now_ms,
                         std::chrono::milliseconds base) {
  if (status_at(s, now_ms) != hook_status::executable)
    return s;
  hook_state next = s;
  next.recent_failures = std::clamp(s.recent_failures + 1, 1,
                                    permanently_disabled_failure_threshold + 1);
  if (next.recent_failures > temporarily_disabled_failure_threshold) {
    next.disabled_until_ms
      = now_ms + backoff_for(s.backoff_count, base).count();
    next.backoff_count = s.backoff_count + 1;
  }
  if (next.recent_failures > permanently_disabled_failure_threshold)
    next.permanently_disabled = true;
  return next;
}

} // namespace gatehouse::webhooks
