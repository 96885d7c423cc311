#include "edges/http/grape_params.hpp"

#include <cmath>
#include <limits>

namespace gatehouse::http::grape {

// Ruby's Integer(text, 10), which dry-types' Params::Integer calls for a
// string: optional blanks around, a sign, digits with single underscores
// between them. Ruby has big integers; beyond int64 we answer invalid.
std::optional<std::int64_t> ruby_integer(std::string_view text) {
  auto blank = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f'
      || c == '\r';
  };
  while (!text.empty() && blank(text.front()))
    text.remove_prefix(1);
  while (!text.empty() && blank(text.back()))
    text.remove_suffix(1);
  bool negative = false;
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty() || text.front() == '_' || text.back() == '_')
    return std::nullopt;
  // Accumulate as a negative number: its range holds int64's minimum.
  std::int64_t value = 0;
  constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
  char previous = 0;
  for (char c : text) {
    if (c == '_') {
      if (previous == '_')
        return std::nullopt;
    } else if (c < '0' || c > '9') {
      return std::nullopt;
    } else {
      int digit = c - '0';
      if (value < (lowest + digit) / 10)
        return std::nullopt;
      value = value * 10 - digit;
    }
    previous = c;
  }
  if (negative)
    return value;
  if (value == lowest)
    return std::nullopt;
  return -value;
}

std::int64_t ruby_to_i(std::string_view text) {
  auto blank = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f'
      || c == '\r';
  };
  while (!text.empty() && blank(text.front()))
    text.remove_prefix(1);
  bool negative = false;
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  // Accumulate as a negative number: its range holds int64's minimum.
  constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
  constexpr auto highest = std::numeric_limits<std::int64_t>::max();
  std::int64_t value = 0;
  bool saturated = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    // An underscore counts only between two digits.
    if (c == '_' && i > 0 && i + 1 < text.size() && text[i - 1] >= '0'
        && text[i - 1] <= '9' && text[i + 1] >= '0' && text[i + 1] <= '9')
      continue;
    if (c < '0' || c > '9')
      break;
    int digit = c - '0';
    if (saturated || value < (lowest + digit) / 10) {
      saturated = true;
      continue;
    }
    value = value * 10 - digit;
  }
  if (saturated)
    return negative ? lowest : highest;
  if (negative)
    return value;
  return value == lowest ? highest : -value;
}

// Grape's Integer: JSON integers; floats truncated (Ruby's Integer(5.5) is
// 5); strings as Ruby parses them, "" being nil; null nil; anything else
// invalid.
coerced<std::int64_t> integer_of(const json& v) {
  if (v.is_null())
    return {};
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (u
        > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return {std::nullopt, false};
    return {static_cast<std::int64_t>(u)};
  }
  if (v.is_number_integer())
    return {v.get<std::int64_t>()};
  if (v.is_number_float()) {
    auto d = std::trunc(v.get<double>());
    // 2^63 is exactly representable; it and beyond do not fit.
    if (!std::isfinite(d) || d >= 9223372036854775808.0
        || d < -9223372036854775808.0)
      return {std::nullopt, false};
    return {static_cast<std::int64_t>(d)};
  }
  if (v.is_string()) {
    const auto& text = v.get_ref<const std::string&>();
    if (text.empty())
      return {};
    if (auto n = ruby_integer(text))
      return {n};
  }
  return {std::nullopt, false};
}

// Grape's String: a string as is; numbers and booleans as their text;
// arrays and hashes invalid; null nil.
coerced<std::string> string_of(const json& v) {
  if (v.is_null())
    return {};
  if (v.is_string())
    return {v.get<std::string>()};
  if (v.is_array() || v.is_object())
    return {std::nullopt, false};
  return {dump(v)};
}

// A member of a JSON object, nullptr when absent (or when `params` is not
// an object: Grape skips the optional members of a value it could not
// coerce to a hash).
const json* member(const json& params, const char* name) {
  if (!params.is_object())
    return nullptr;
  auto it = params.find(name);
  return it == params.end() ? nullptr : &*it;
}

// An Integer parameter: `required` adds "is missing" when absent.
std::optional<std::int64_t> integer_param(const json& params, const char* name,
                                          const std::string& full_name,
                                          bool required, grape_errors& errors) {
  auto* v = member(params, name);
  if (!v) {
    if (required)
      errors.add(full_name, "is missing");
    return std::nullopt;
  }
  auto out = integer_of(*v);
  if (!out.ok)
    errors.add(full_name, "is invalid");
  return out.value;
}

std::optional<std::string> text_param(const json& params, const char* name,
                                      const std::string& full_name,
                                      bool required, grape_errors& errors) {
  auto* v = member(params, name);
  if (!v) {
    if (required)
      errors.add(full_name, "is missing");
    return std::nullopt;
  }
  auto out = string_of(*v);
  if (!out.ok)
    errors.add(full_name, "is invalid");
  return out.value;
}

// A Hash parameter: null is {}, anything but an object invalid. Returns the
// object to read nested parameters from, nullptr when there is none.
const json* hash_param(const json& params, const char* name,
                       const std::string& full_name, grape_errors& errors) {
  auto* v = member(params, name);
  if (!v || v->is_null())
    return nullptr;
  if (!v->is_object()) {
    errors.add(full_name, "is invalid");
    return nullptr;
  }
  return v;
}

// An Array parameter with a block (elements are hashes): null is [],
// anything but an array of objects invalid.
const json* array_of_hashes(const json& params, const char* name,
                            const std::string& full_name,
                            grape_errors& errors) {
  auto* v = member(params, name);
  if (!v || v->is_null())
    return nullptr;
  if (!v->is_array()) {
    errors.add(full_name, "is invalid");
    return nullptr;
  }
  for (auto& item : *v)
    if (!item.is_object()) {
      errors.add(full_name, "is invalid");
      return nullptr;
    }
  return v;
}

std::string nested(const std::string& outer, const std::string& inner) {
  return outer + '[' + inner + ']';
}

// Grape's JSON type (Grape::Validations::Types::Json): a hash or an array of
// hashes as is; a string is parsed and must give one of those; nil and a
// blank string are nil. Returns the JSON text, "null" for nil.
coerced<std::string> json_of(const json& v) {
  auto acceptable = [](const json& j) {
    if (j.is_object())
      return true;
    if (!j.is_array())
      return false;
    for (auto& item : j)
      if (!item.is_object())
        return false;
    return true;
  };
  if (v.is_null())
    return {std::string{"null"}};
  if (v.is_string()) {
    const auto& text = v.get_ref<const std::string&>();
    if (text.find_first_not_of(" \t\r\n\v\f") == std::string::npos)
      return {std::string{"null"}};
    auto parsed = json::parse(text, nullptr, false);
    if (parsed.is_discarded() || !acceptable(parsed))
      return {std::nullopt, false};
    return {dump(parsed)};
  }
  if (!acceptable(v))
    return {std::nullopt, false};
  return {dump(v)};
}

coerced<bool> boolean_of(const json& v) {
  if (v.is_null())
    return {};
  if (v.is_boolean())
    return {v.get<bool>()};
  // dry-types looks the value's to_s up: 1 and 0 are "1" and "0"; 1.0 is
  // "1.0", which is neither.
  std::string text;
  if (v.is_number_integer())
    text = dump(v);
  else if (v.is_string())
    text = v.get<std::string>();
  else
    return {std::nullopt, false};
  if (text.empty())
    return {};
  for (const char* yes :
       {"1", "on", "On", "ON", "t", "true", "True", "TRUE", "T", "y", "yes",
        "Yes", "YES", "Y"})
    if (text == yes)
      return {true};
  for (const char* no : {"0", "off", "Off", "OFF", "f", "false", "False",
                         "FALSE", "F", "n", "no", "No", "NO", "N"})
    if (text == no)
      return {false};
  return {std::nullopt, false};
}

} // namespace gatehouse::http::grape
