#include "actors/access/shell_calls.hpp"

#include "actors/gitlab_paths.hpp"
#include "common/ascii.hpp"
#include "common/base64.hpp"
#include "common/ssh_key.hpp"
#include "common/time.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace gatehouse::access {

namespace {

const user_record* find_user(const snapshot& snap, std::int64_t id) {
  auto it = snap.users.find(id);
  return it == snap.users.end() ? nullptr : &it->second;
}

const key_record* find_key(const snapshot& snap, std::int64_t id) {
  auto it = snap.keys.find(id);
  return it == snap.keys.end() ? nullptr : &it->second;
}

// Ruby's Base64.decode64: skips characters outside the alphabet and decodes
// whatever complete bits remain, padding or not.
std::string lenient_base64_decode(const std::string& text) {
  static const std::string alphabet
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=')
      break;
    auto pos = alphabet.find(c);
    if (pos == std::string::npos)
      continue;
    acc = (acc << 6) | static_cast<std::uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// The actor-validation of GitLab's 2FA/PAT helpers, for a key_id caller.
std::optional<std::string> key_problem(const snapshot& snap,
                                       std::int64_t key_id,
                                       const char* deploy_message) {
  auto* key = find_key(snap, key_id);
  if (!key || !key->can_authenticate())
    return std::string{"Could not find the given key"};
  if (key->deploy)
    return std::string{deploy_message};
  if (!key->user_id || !find_user(snap, *key->user_id))
    return std::string{"Could not find a user for the given key"};
  return std::nullopt;
}

// Resolves the user of a 2FA/PAT call, or the message that refuses it, as
// the newest Rails does: the actor is the key when a key_id is given (its
// user_id is then ignored), else the user; a user_id whose user cannot be
// resolved is "the given user" not found; otherwise a caller without a
// usable key is refused by the key validation, even with a valid user_id.
shell_verdict resolve(const snapshot& snap, const shell_caller& a,
                      const char* deploy_message) {
  shell_verdict v;
  const key_record* key = nullptr;
  const user_record* user = nullptr;
  if (a.key_id) {
    key = find_key(snap, *a.key_id);
    if (key && !key->can_authenticate())
      key = nullptr;
    if (key && key->user_id)
      user = find_user(snap, *key->user_id);
  } else if (a.user_id) {
    user = find_user(snap, *a.user_id);
  }
  // A deploy key always has a user in Rails (the ghost user at worst).
  bool user_resolved = user || (key && key->deploy);
  if (a.user_id && !user_resolved) {
    v.message = "Could not find the given user";
    return v;
  }
  if (!key) {
    v.message = "Could not find the given key";
    return v;
  }
  if (auto problem = key_problem(snap, *a.key_id, deploy_message)) {
    v.message = *problem;
    return v;
  }
  v.user_id = user->id;
  v.success = true;
  return v;
}

// Ruby's Array#inspect of strings: ["a", "b"].
std::string ruby_inspect(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0)
      out += ", ";
    out += "\"" + items[i] + "\"";
  }
  return out + "]";
}

} // namespace

// -- /allowed input
// ------------------------------------------------------------

std::optional<std::string> gitaly_context_problem(const std::string& bin) {
  auto decoded = base64_decode(bin);
  auto parsed = decoded ? nlohmann::json::parse(*decoded, nullptr, false)
                        : nlohmann::json{};
  if (!decoded || parsed.is_discarded())
    return std::string{"malformed gitaly_client_context_bin"};
  if (!parsed.is_object())
    return std::string{"Decoded gitaly_client_context_bin is not a valid JSON "
                       "object"};
  return std::nullopt;
}

// -- /authorized_keys ---------------------------------------------------------

std::optional<authorized_key> find_authorized_key(const snapshot& snap,
                                                  const std::string& blob_b64) {
  auto blob = lenient_base64_decode(blob_b64);
  if (blob.empty())
    return std::nullopt;
  auto fp = ssh_fingerprint_sha256(blob);
  auto it = snap.key_by_fingerprint.find(fp);
  if (it == snap.key_by_fingerprint.end())
    return std::nullopt;
  auto* key = find_key(snap, it->second);
  if (!key || !key->can_authenticate())
    return std::nullopt;
  authorized_key out;
  out.id = key->id;
  out.title = key->title;
  out.created_at = format_time(key->created_at);
  if (key->expires_at)
    out.expires_at = format_time(*key->expires_at);
  std::string user_name;
  if (key->user_id)
    if (auto* user = find_user(snap, *key->user_id))
      user_name = user->name;
  out.key = key->key_type + " " + key->blob + " " + user_name + " ("
    + gitlab::url_host(snap.settings.external_url) + ")";
  out.usage_type = key->usage_type;
  return out;
}

// -- /discover ----------------------------------------------------------------

std::optional<discovered_user> discover(
  const snapshot& snap, std::optional<std::int64_t> key_id,
  std::optional<std::int64_t> user_id,
  const std::optional<std::string>& username) {
  const user_record* user = nullptr;
  if (username) {
    auto it = snap.user_by_username.find(ascii_lower(*username));
    if (it != snap.user_by_username.end())
      user = find_user(snap, it->second);
  } else if (key_id) {
    if (auto* key = find_key(snap, *key_id);
        key && key->can_authenticate() && key->user_id)
      user = find_user(snap, *key->user_id);
  } else if (user_id) {
    user = find_user(snap, *user_id);
  }
  if (!user)
    return std::nullopt;
  return discovered_user{user->id, user->username, user->name};
}

// -- 2FA recovery codes, personal access tokens
// ------------------------------------

shell_verdict check_recovery_codes(const snapshot& snap,
                                   const shell_caller& a) {
  auto v
    = resolve(snap, a, "Deploy keys cannot be used to retrieve recovery codes");
  if (!v.success)
    return v;
  if (!find_user(snap, v.user_id)->two_factor_enabled) {
    v.success = false;
    v.message = "Two-factor authentication is not enabled for this user";
  }
  return v;
}

const std::vector<std::string>& valid_token_scopes() {
  static const std::vector<std::string> scopes
    = {"api",         "create_runner",  "k8s_proxy",       "manage_runner",
       "read_api",    "read_registry",  "read_repository", "read_user",
       "self_rotate", "write_registry", "write_repository"};
  return scopes;
}

pat_plan check_personal_access_token(
  const snapshot& snap, const shell_caller& a,
  const std::optional<std::string>& name,
  const std::optional<std::vector<std::string>>& scopes,
  const std::optional<std::string>& expires_at, std::int64_t today) {
  pat_plan plan;
  // Deploy keys are refused before anything else (§2.8).
  if (a.key_id)
    if (auto* key = find_key(snap, *a.key_id);
        key && key->deploy && key->can_authenticate()) {
      plan.verdict.message
        = "Deploy keys cannot be used to create personal access tokens";
      return plan;
    }
  plan.verdict = resolve(snap, a,
                         "Deploy keys cannot be used to create personal "
                         "access tokens");
  if (!plan.verdict.success)
    return plan;
  auto refuse = [&](std::string message) {
    plan.verdict.success = false;
    plan.verdict.message = std::move(message);
    return plan;
  };
  if (!name || name->empty())
    return refuse("No token name specified");
  if (!scopes || scopes->empty())
    return refuse("No token scopes specified");
  auto& valid = valid_token_scopes();
  for (auto& scope : *scopes)
    if (std::find(valid.begin(), valid.end(), scope) == valid.end())
      return refuse("Invalid scope: '" + scope
                    + "'. Valid scopes are: " + ruby_inspect(valid));
  auto max_day = today + 365;
  std::int64_t day = max_day;
  if (expires_at && !expires_at->empty()) {
    auto parsed = parse_date(*expires_at);
    if (!parsed)
      return refuse("Invalid token expiry date: '" + *expires_at + "'");
    if (*parsed > max_day)
      return refuse("Failed to create token: Expires at must be before "
                    + format_date(max_day));
    day = *parsed;
  }
  plan.name = *name;
  // GitLab stores scopes as given, without duplicates.
  std::set<std::string> seen;
  for (auto& scope : *scopes)
    if (seen.insert(scope).second)
      plan.scopes.push_back(scope);
  plan.expires_at = format_date(day);
  return plan;
}

// -- /lfs_authenticate
// ---------------------------------------------------------

lfs_plan check_lfs_authenticate(const snapshot& snap, const shell_caller& a,
                                const std::string& project) {
  lfs_plan plan;
  auto path = project;
  if (!path.empty() && path.front() == '/')
    path.erase(path.begin());
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".git") == 0)
    path.resize(path.size() - 4);
  const project_record* proj = nullptr;
  auto key = ascii_lower(path);
  std::optional<std::int64_t> project_id;
  if (auto it = snap.project_by_path.find(key);
      it != snap.project_by_path.end())
    project_id = it->second;
  else if (auto r = snap.redirects.find(key); r != snap.redirects.end())
    project_id = r->second;
  if (project_id)
    if (auto p = snap.projects.find(*project_id); p != snap.projects.end())
      proj = &p->second;
  if (!proj || !proj->lfs_enabled) {
    plan.status = 404;
    plan.message = "404 Not Found";
    return plan;
  }
  if (a.key_id) {
    auto* k = find_key(snap, *a.key_id);
    if (!k || !k->can_authenticate()) {
      plan.status = 404;
      plan.message = "404 Not found";
      return plan;
    }
    plan.key_id = k->id;
    if (k->deploy) {
      plan.username = "lfs+deploy-key-" + std::to_string(k->id);
    } else if (auto* u = k->user_id ? find_user(snap, *k->user_id) : nullptr) {
      plan.username = u->username;
      plan.user_id = u->id;
    } else {
      plan.status = 404;
      plan.message = "404 Not found";
      return plan;
    }
  } else if (a.user_id && find_user(snap, *a.user_id)) {
    plan.user_id = *a.user_id;
    plan.username = find_user(snap, *a.user_id)->username;
  } else {
    plan.status = 404;
    plan.message = "404 Not found";
    return plan;
  }
  plan.repository_http_path
    = gitlab::strip_trailing_slashes(snap.settings.external_url) + "/"
    + proj->full_path + ".git";
  plan.gl_repository = "project-" + std::to_string(proj->id);
  return plan;
}

} // namespace gatehouse::access
