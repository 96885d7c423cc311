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

} // namespace

std::optional<nlohmann::json> merge_params(const std::string& query,
                                           const std::string& content_type,
                                           const std::string& body,
                                           std::string& error) {
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
      error = "JSON nested deeper than " + std::to_string(max_json_depth)
        + " levels";
      return std::nullopt;
    }
    auto parsed = nlohmann::json::parse(body, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) {
      if (content_type.empty())
        return out; // an unlabelled body that is not JSON is not ours to judge
      error = "malformed JSON body";
      return std::nullopt;
    }
    for (auto it = parsed.begin(); it != parsed.end(); ++it)
      out[it.key()] = it.value();
  }
  return out;
}

std::optional<nlohmann::json> request_params(const httplib::Request& req,
                                             std::string& error) {
  std::string query;
  auto qpos = req.target.find('?');
  if (qpos != std::string::npos)
    query = req.target.substr(qpos + 1);
  return merge_params(query, req.get_header_value("Content-Type"), req.body,
                      error);
}

} // namespace gatehouse::http
