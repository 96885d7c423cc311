#include "common/ascii.hpp"
#include "common/percent_encoding.hpp"
#include "common/time.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

using namespace gatehouse;

TEST_CASE("ascii_lower folds A-Z only", "[common][ascii]") {
  CHECK(ascii_lower("Acme/Widgets-1_X") == "acme/widgets-1_x");
  CHECK(ascii_lower("\xC3\x84") == "\xC3\x84"); // UTF-8 'Ä' stays
}

TEST_CASE("percent_decode decodes %XX and, for forms, '+'",
          "[common][percent]") {
  CHECK(percent_decode("a%2Fb%2fc", false) == "a/b/c");
  CHECK(percent_decode("a+b", false) == "a+b");
  CHECK(percent_decode("a+b%2B", true) == "a b+");
  // A '%' without two hex digits after it stays.
  CHECK(percent_decode("100%", true) == "100%");
  CHECK(percent_decode("%4", true) == "%4");
  CHECK(percent_decode("%zz%41", true) == "%zzA");
}

TEST_CASE("dates: days since the epoch and back", "[common][time]") {
  CHECK(parse_date("1970-01-01") == std::int64_t{0});
  CHECK(parse_date("1969-12-31") == std::int64_t{-1});
  CHECK(parse_date("2026-01-01") == std::int64_t{20454});
  CHECK(parse_date("2024-02-29") == std::int64_t{19782});
  CHECK(parse_date("2000-02-29"));
  CHECK_FALSE(parse_date("1900-02-29")); // not a leap year
  CHECK_FALSE(parse_date("2026-02-30"));
  CHECK_FALSE(parse_date("2026-13-01"));
  CHECK_FALSE(parse_date("2026-1-01"));
  CHECK_FALSE(parse_date("2026-01-01T"));
  CHECK_FALSE(parse_date("+026-01-01"));
  CHECK(format_date(20454) == "2026-01-01");
  CHECK(format_date(-1) == "1969-12-31");
  CHECK(format_time(1767225600) == "2026-01-01T00:00:00.000Z");
}

TEST_CASE("timestamps: ISO-8601 with a zone as unix seconds",
          "[common][time]") {
  CHECK(parse_timestamp("2026-01-01T00:00:00Z") == std::int64_t{1767225600});
  CHECK(parse_timestamp("2026-01-01 00:00:00z") == std::int64_t{1767225600});
  CHECK(parse_timestamp("2027-03-04T07:06:07.5+02:00")
        == std::int64_t{1804136767});
  CHECK(parse_timestamp("2026-01-01T01:00:00-01:00")
        == std::int64_t{1767225600 + 2 * 3600});
  CHECK_FALSE(parse_timestamp("2026-01-01T00:00:00"));
  CHECK_FALSE(parse_timestamp("2026-01-01T24:00:00Z"));
  CHECK_FALSE(parse_timestamp("2026-01-01T00:00:00+0200"));
  CHECK_FALSE(parse_timestamp("tomorrow"));

  auto f = split_timestamp("2026-01-01T10:20:30.123+00:00");
  REQUIRE(f);
  CHECK(f->hour == 10);
  CHECK(f->minute == 20);
  CHECK(f->second == 30);
  CHECK(f->fraction == ".123");
  CHECK(f->zone == "+00:00");
}
