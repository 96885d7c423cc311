#include "edges/http/params.hpp"

#include "common/percent_encoding.hpp"

#include <httplib.h>

namespace gatehouse::http {

namespace {

// "a=1&b[]=2&b[]=3": repeated `name[]` keys collect into arrays, as Rack
// does for changes lists and push options.
void parse_urlencoded(const std::string& text, nlohmann::json& into) {
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto amp = text.find('&', pos);
    if (amp == std::string::npos)
      amp = text.size();
    auto pair = text.substr(pos, amp - pos);
    pos = amp + 1;
    if (pair.empty())
      continue;
    auto eq = pair.find('=');
    // application/x-www-form-urlencoded: '+' is a space.
    auto key = percent_decode(pair.substr(0, eq), true);
    auto value = eq == std::string::npos
      ? std::string{}
      : percent_decode(pair.substr(eq + 1), true);
    if (key.size() > 2 && key.compare(key.size() - 2, 2, "[]") == 0) {
      key.resize(key.size() - 2);
      auto& slot = into[key];
      if (!slot.is_array())
        slot = nlohmann::json::array();
      slot.push_back(value);
    } else {
      into[key] = value;
    }
  }
}

// Whether `text` nests arrays and objects deeper than `limit`, counted
// without recursion: nlohmann parses iteratively, but copying and dumping a
// parsed value recurse, and about 100k levels overflow the stack.
bool nests_deeper_than(const std::string& text, std::size_t limit) {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit)
        return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

bool starts_with_ci(const std::string& text, const char* prefix) {
  std::size_t i = 0;
  for (; prefix[i] != '\0'; ++i)
    if (i >= text.size()
        || std::tolower(static_cast<unsigned char>(text[i])) != prefix[i])
      return false;
  return true;
}

// Whether a parameter value GitLab's HandleMalformedStrings would refuse: a
// string with a NUL byte, at the top level or one level down (it looks two
// levels deep into the parameter hash).
bool holds_nul(const nlohmann::json& value, int levels) {
  if (value.is_string())
    return value.get_ref<const std::string&>().find('\0') != std::string::npos;
  if (levels > 0 && (value.is_array() || value.is_object()))
    for (auto& item : value)
      if (holds_nul(item, levels - 1))
        return true;
  return false;
}

} // namespace

std::optional<nlohmann::json> merge_params(const std::string& query,
                                           const std::string& content_type,
                                           const std::string& body,
                                           error_status& refusal) {
  auto out = nlohmann::json::object();
  parse_urlencoded(query, out);
  if (starts_with_ci(content_type, "application/x-www-form-urlencoded")) {
    parse_urlencoded(body, out);
  } else if (!body.empty()
             && (starts_with_ci(content_type, "application/json")
                 || content_type.empty())) {
    // GitLab Shell sends Content-Type: application/json even on GETs; an
    // empty body is fine, a malformed one is not.
    if (nests_deeper_than(body, max_json_depth)) {
      refusal = status_of(errc::invalid_params, "Parameters nested too deeply");
      return std::nullopt;
    }
    auto parsed = nlohmann::json::parse(body, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) {
      if (content_type.empty())
        return out; // an unlabelled body that is not JSON is not ours to judge
      refusal = status_of(errc::bad_request, "malformed JSON body");
      return std::nullopt;
    }
    // The body's keys win over the query's; with no query (Shell, Gitaly)
    // the parsed body is the whole of it.
    if (out.empty())
      out = std::move(parsed);
    else
      for (auto it = parsed.begin(); it != parsed.end(); ++it)
        out[it.key()] = std::move(it.value());
  }
  for (auto& [key, value] : out.items())
    if (key.find('\0') != std::string::npos || holds_nul(value, 1)) {
      refusal = {400, "Bad Request", error_shape::plain_text};
      return std::nullopt;
    }
  return out;
}

std::optional<nlohmann::json> merge_params(const std::string& query,
                                           const std::string& content_type,
                                           const std::string& body,
                                           std::string& error) {
  error_status refusal{400, {}};
  auto out = merge_params(query, content_type, body, refusal);
  if (!out)
    error = refusal.message;
  return out;
}

std::optional<nlohmann::json> request_params(const httplib::Request& req,
                                             error_status& refusal) {
  std::string query;
  auto qpos = req.target.find('?');
  if (qpos != std::string::npos)
    query = req.target.substr(qpos + 1);
  return merge_params(query, req.get_header_value("Content-Type"), req.body,
                      refusal);
}

std::optional<nlohmann::json> request_params(const httplib::Request& req,
                                             std::string& error) {
  error_status refusal{400, {}};
  auto out = request_params(req, refusal);
  if (!out)
    error = refusal.message;
  return out;
}

} // namespace gatehouse::http
