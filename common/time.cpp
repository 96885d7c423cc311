#include "common/time.hpp"

#include <ctime>

namespace gatehouse {

namespace {

/// The `n` decimal digits at `pos` as a number; false when any is missing
/// or not a digit.
bool read_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size())
    return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

/// Seconds east of UTC of "Z", "z", "+HH:MM" or "-HH:MM".
std::optional<std::int64_t> zone_offset(std::string_view zone) {
  if (zone == "Z" || zone == "z")
    return 0;
  int hours = 0;
  int minutes = 0;
  if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || zone[3] != ':'
      || !read_digits(zone, 1, 2, hours) || !read_digits(zone, 4, 2, minutes))
    return std::nullopt;
  return (hours * 60 + minutes) * 60 * (zone[0] == '-' ? -1 : 1);
}

/// `format` (strftime's, at most 31 characters of output) of a UTC time.
std::string format_utc(std::int64_t unix_seconds, const char* format) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm fields{};
  gmtime_r(&t, &fields);
  char text[32];
  return std::string(text, std::strftime(text, sizeof text, format, &fields));
}

} // namespace

std::int64_t days_from_civil(std::int64_t year, int month, int day) {
  // Howard Hinnant's algorithm: count in 400-year eras starting in March,
  // so the leap day is the last day of the counting year.
  year -= month <= 2 ? 1 : 0;
  const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
  const std::int64_t year_of_era = year - era * 400;
  const std::int64_t day_of_year
    = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const std::int64_t day_of_era
    = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

bool is_calendar_date(std::int64_t year, int month, int day) {
  static constexpr int month_days[]
    = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1)
    return false;
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return day <= month_days[month - 1] + (month == 2 && leap ? 1 : 0);
}

std::optional<std::int64_t> parse_date(std::string_view text) {
  int year = 0;
  int month = 0;
  int day = 0;
  if (text.size() != 10 || !read_digits(text, 0, 4, year) || text[4] != '-'
      || !read_digits(text, 5, 2, month) || text[7] != '-'
      || !read_digits(text, 8, 2, day) || !is_calendar_date(year, month, day))
    return std::nullopt;
  return days_from_civil(year, month, day);
}

std::string format_date(std::int64_t days) {
  return format_utc(days * 86400, "%Y-%m-%d");
}

std::string format_time(std::int64_t unix_seconds) {
  return format_utc(unix_seconds, "%Y-%m-%dT%H:%M:%S.000Z");
}

std::optional<timestamp_fields> split_timestamp(std::string_view text) {
  timestamp_fields f;
  if (text.size() < 19 || !read_digits(text, 0, 4, f.year) || text[4] != '-'
      || !read_digits(text, 5, 2, f.month) || text[7] != '-'
      || !read_digits(text, 8, 2, f.day) || !read_digits(text, 11, 2, f.hour)
      || text[13] != ':' || !read_digits(text, 14, 2, f.minute)
      || text[16] != ':' || !read_digits(text, 17, 2, f.second))
    return std::nullopt;
  f.separator = text[10];
  std::size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9')
      ++pos;
  }
  f.fraction = text.substr(19, pos - 19);
  f.zone = text.substr(pos);
  return f;
}

std::optional<std::int64_t> parse_timestamp(std::string_view text) {
  auto f = split_timestamp(text);
  if (!f || (f->separator != 'T' && f->separator != ' ') || f->month < 1
      || f->month > 12 || f->day < 1 || f->day > 31 || f->hour > 23
      || f->minute > 59 || f->second > 60)
    return std::nullopt;
  auto offset = zone_offset(f->zone);
  if (!offset)
    return std::nullopt;
  return days_from_civil(f->year, f->month, f->day) * 86400 + f->hour * 3600
    + f->minute * 60 + f->second - *offset;
}

} // namespace gatehouse
