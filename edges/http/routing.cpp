#include "edges/http/routing.hpp"

#include "common/ids.hpp"

#include <limits>

namespace gatehouse::http {

std::optional<std::string> string_param(const json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end() || it->is_null())
    return std::nullopt;
  std::string out = it->is_string() ? it->get<std::string>() : dump(*it);
  if (out.empty())
    return std::nullopt;
  return out;
}

std::optional<std::int64_t> id_param(const json& params, const char* name,
                                     std::string& invalid) {
  auto it = params.find(name);
  if (it == params.end() || it->is_null())
    return std::nullopt;
  // nlohmann counts an unsigned number as an integer too: ask about the
  // unsigned ones first, or 2^64-1 reads as -1.
  if (it->is_number_unsigned()) {
    auto v = it->get<std::uint64_t>();
    if (v
        <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return static_cast<std::int64_t>(v);
  } else if (it->is_number_integer()) {
    return it->get<std::int64_t>();
  } else if (it->is_string()) {
    const auto& text = it->get_ref<const std::string&>();
    if (text.empty())
      return std::nullopt;
    if (auto id = parse_id(text))
      return id;
  }
  if (!invalid.empty())
    invalid += ", ";
  invalid += std::string{name} + " is invalid";
  return std::nullopt;
}

std::optional<std::vector<std::string>> strings_param(const json& params,
                                                      const char* name) {
  auto it = params.find(name);
  if (it == params.end() || it->is_null())
    return std::nullopt;
  std::vector<std::string> out;
  if (it->is_array()) {
    for (auto& item : *it)
      out.push_back(item.is_string() ? item.get<std::string>() : dump(item));
  } else if (it->is_string()) {
    // GitLab Shell's scopes may come as "a,b" from curl users; keep as one.
    out.push_back(it->get<std::string>());
  } else {
    out.push_back(dump(*it));
  }
  return out;
}

} // namespace gatehouse::http
