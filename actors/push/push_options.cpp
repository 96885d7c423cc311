// Gitlab::PushOptions: the `git push -o` options GitLab understands, as
// push payloads and the /post_receive warning read them.

#include "actors/push/push_internals.hpp"

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>

namespace gatehouse::push::detail {

namespace {

using ordered = nlohmann::ordered_json;

struct option_spec {
  const char* ns;
  std::vector<std::string_view> keys;
};

const std::vector<option_spec>& valid_options() {
  static const std::vector<option_spec> specs{
    {"merge_request",
     {"assign", "create", "description", "draft", "label",
      "merge_when_pipeline_succeeds", "milestone", "remove_source_branch",
      "target", "target_project", "title", "unassign", "unlabel"}},
    {"ci", {"skip", "variable"}},
    {"integrations", {"skip_ci"}},
    {"secret_detection", {"skip_all"}},
  };
  return specs;
}

bool valid_option(const std::string& ns, const std::string& key) {
  for (const auto& spec : valid_options())
    if (ns == spec.ns)
      return std::find(spec.keys.begin(), spec.keys.end(), key)
        != spec.keys.end();
  return false;
}

bool multi_valued(const std::string& ns, const std::string& key) {
  if (ns == "ci")
    return key == "variable";
  if (ns == "merge_request")
    return key == "label" || key == "unlabel" || key == "assign"
      || key == "unassign";
  return false;
}

struct parsed_option {
  std::string ns;
  std::string key;
  /// nullopt: no value, i.e. true.
  std::optional<std::string> value;
};

// Gitlab::PushOptions: the leftmost match of
// `(?<namespace>[^.]+)\.(?<key>[^=]+)=?(?<value>.*)`, each part stripped,
// `mr` read as `merge_request`, a blank value meaning true; unknown
// namespaces and keys are dropped.
std::optional<parsed_option> parse_option(const std::string& raw) {
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '.')
      continue;
    auto dot = raw.find('.', i);
    if (dot == std::string::npos)
      return std::nullopt;
    auto key_begin = dot + 1;
    auto eq = raw.find('=', key_begin);
    auto key_end = eq == std::string::npos ? raw.size() : eq;
    if (key_end == key_begin) {
      i = dot; // no key after this dot: the next match starts beyond it
      continue;
    }
    parsed_option o;
    o.ns = strip(std::string_view{raw}.substr(i, dot - i));
    o.key = strip(std::string_view{raw}.substr(key_begin, key_end - key_begin));
    std::string value;
    if (eq != std::string::npos) {
      auto value_end = raw.find('\n', eq + 1);
      if (value_end == std::string::npos)
        value_end = raw.size();
      value = strip(std::string_view{raw}.substr(eq + 1, value_end - eq - 1));
    }
    if (o.ns == "mr")
      o.ns = "merge_request";
    if (!valid_option(o.ns, o.key))
      return std::nullopt;
    if (!is_blank(value))
      o.value = std::move(value);
    return o;
  }
  return std::nullopt;
}

} // namespace

ordered parse_push_options(const std::vector<std::string>& raw) {
  auto out = ordered::object();
  for (const auto& option : raw) {
    auto o = parse_option(option);
    if (!o)
      continue;
    auto& ns = out[o->ns];
    if (!ns.is_object())
      ns = ordered::object();
    if (multi_valued(o->ns, o->key)) {
      auto& counts = ns[o->key];
      if (!counts.is_object())
        counts = ordered::object();
      auto& count = counts[o->value.value_or("true")];
      count = (count.is_number() ? count.get<std::int64_t>() : 0) + 1;
    } else if (o->value) {
      ns[o->key] = *o->value;
    } else {
      ns[o->key] = true;
    }
  }
  return out;
}

} // namespace gatehouse::push::detail
