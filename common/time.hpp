#pragma once

// Calendar dates and ISO-8601 timestamps, UTC only. One home for the date
// rules of the seed loader (which validates what it writes), the read-model
// loader (which reads it back) and the access calls (token expiry dates,
// key timestamps in answers), so the three cannot drift apart.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gatehouse {

/// Days since 1970-01-01 of a proleptic Gregorian date. No range checks:
/// month 1..12 and day 1..31 are the caller's to ensure.
std::int64_t days_from_civil(std::int64_t year, int month, int day);

/// Whether `day` exists in `month` (1..12) of `year` (proleptic Gregorian,
/// so year 0 is a leap year).
bool is_calendar_date(std::int64_t year, int month, int day);

/// Days since the epoch of "YYYY-MM-DD" naming a day that exists (years
/// 0000 to 9999); nullopt for anything else.
std::optional<std::int64_t> parse_date(std::string_view text);

/// "YYYY-MM-DD" of a day count since 1970-01-01.
std::string format_date(std::int64_t days);

/// ISO-8601 UTC with milliseconds ("2026-01-01T00:00:00.000Z") of unix
/// seconds, the form GitLab's API gives times in.
std::string format_time(std::int64_t unix_seconds);

/// The fields of "YYYY-MM-DD?HH:MM:SS[.digits]<zone>", checked for shape
/// only (digits and punctuation in their places): ranges, the separator and
/// the zone are for the caller to judge.
struct timestamp_fields {
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  /// The character between date and time (ISO-8601 says 'T').
  char separator = 'T';
  /// The fraction with its '.', e.g. ".5"; "" when there is none. A '.'
  /// without digits gives ".".
  std::string_view fraction;
  /// Everything after the seconds and the fraction, e.g. "Z" or "+02:00".
  std::string_view zone;
};

std::optional<timestamp_fields> split_timestamp(std::string_view text);

/// Unix seconds of an ISO-8601 time "YYYY-MM-DD(T| )HH:MM:SS[.fraction]"
/// with zone "Z" or "+HH:MM"/"-HH:MM" (the fraction is dropped, a leap
/// second allowed); nullopt for anything else, e.g. "tomorrow".
std::optional<std::int64_t> parse_timestamp(std::string_view text);

} // namespace gatehouse
