#pragma once

// Grape's parameter coercion and validation texts, as the HTTP codecs need
// them (Grape::Validations::Types over dry-types' Params coercions): a
// declared parameter that does not coerce is "<name> is invalid", a missing
// required one "<name> is missing", grouped per parameter in the order each
// first failed. Internal to the HTTP edge.

#include "edges/http/routing.hpp"

#include "messages/errors.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gatehouse::http::grape {

// Grape's validation errors of one request: grouped by parameter in the
// order each parameter first failed, duplicates dropped, joined with ", "
// (Grape::Exceptions::ValidationErrors#full_messages).
class grape_errors {
public:
  void add(const std::string& name, const char* what) {
    auto text = name + ' ' + what;
    for (auto& [param, texts] : by_param_) {
      if (param == name) {
        for (auto& t : texts)
          if (t == text)
            return;
        texts.push_back(std::move(text));
        return;
      }
    }
    by_param_.push_back({name, {std::move(text)}});
  }

  bool empty() const {
    return by_param_.empty();
  }

  caf::error error() const {
    std::string out;
    for (auto& [param, texts] : by_param_)
      for (auto& t : texts) {
        if (!out.empty())
          out += ", ";
        out += t;
      }
    return caf::make_error(errc::invalid_params, out);
  }

  template <class T>
  caf::expected<T> result(T value) const {
    if (!empty())
      return error();
    return value;
  }

private:
  std::vector<std::pair<std::string, std::vector<std::string>>> by_param_;
};

// A coerced value: nullopt when the parameter is nil after coercion; `ok`
// false when Grape answers "<name> is invalid".
template <class T>
struct coerced {
  std::optional<T> value;
  bool ok = true;
};

/// Ruby's Integer(text, 10) (blanks around, a sign, digits with single
/// underscores between them); nullopt when Ruby would raise or beyond int64.
std::optional<std::int64_t> ruby_integer(std::string_view text);

/// Ruby's String#to_i: leading blanks, a sign, then as many digits (single
/// underscores between them) as there are; 0 when none. Saturates beyond
/// int64 where Ruby would grow a big integer.
std::int64_t ruby_to_i(std::string_view text);

/// Grape's Integer: JSON integers, floats truncated, strings as Ruby parses
/// them ("" nil), null nil, anything else invalid.
coerced<std::int64_t> integer_of(const json& v);

/// Grape's String: strings as they are, numbers and booleans as their text,
/// arrays and hashes invalid, null nil.
coerced<std::string> string_of(const json& v);

/// Grape's Boolean (dry-types' Params::Bool over the value's text): true,
/// false, 1, 0 and "1", "on", "t", "true", "y", "yes" and their "0", "off",
/// "f", "false", "n", "no" twins (lower, Capitalized or UPPER case); ""
/// and null nil; anything else invalid.
coerced<bool> boolean_of(const json& v);

/// Grape's JSON type: a hash or an array of hashes as it is, a string
/// parsed into one of those, null and a blank string nil ("null").
/// Returns the JSON text.
coerced<std::string> json_of(const json& v);

/// A member of a JSON object; nullptr when absent or when `params` is not
/// an object.
const json* member(const json& params, const char* name);

/// An Integer parameter: `required` adds "is missing" when absent.
std::optional<std::int64_t> integer_param(const json& params, const char* name,
                                          const std::string& full_name,
                                          bool required, grape_errors& errors);

/// A String parameter: `required` adds "is missing" when absent.
std::optional<std::string> text_param(const json& params, const char* name,
                                      const std::string& full_name,
                                      bool required, grape_errors& errors);

/// A Hash parameter: null is {}, anything but an object invalid. The object
/// to read nested parameters from, nullptr when there is none.
const json* hash_param(const json& params, const char* name,
                       const std::string& full_name, grape_errors& errors);

/// An Array parameter with a block (elements are hashes): null is [],
/// anything but an array of objects invalid.
const json* array_of_hashes(const json& params, const char* name,
                            const std::string& full_name, grape_errors& errors);

/// Grape's name of a nested parameter: outer[inner].
std::string nested(const std::string& outer, const std::string& inner);

} // namespace gatehouse::http::grape
