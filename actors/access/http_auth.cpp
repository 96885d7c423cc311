#include "actors/access/http_auth.hpp"

#include "common/base64.hpp"
#include "common/ids.hpp"
#include "common/jwt.hpp"

#include <nlohmann/json.hpp>

namespace gatehouse::access {

namespace {

// Users who may sign in with a token. A deactivated user passes, as in
// GitLab, and is then refused by the access decision with its own text.
bool may_sign_in(const user_record& u) {
  return u.state == "active" || u.state == "deactivated";
}

std::string without_trailing_slash(std::string url) {
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  return url;
}

} // namespace

git_abilities abilities_for_scopes(const std::vector<std::string>& scopes) {
  git_abilities out;
  for (const auto& scope : scopes) {
    if (scope == "api" || scope == "write_repository"
        || scope == "ai_workflows") {
      out.download_code = true;
      out.push_code = true;
    } else if (scope == "read_api" || scope == "read_repository") {
      out.download_code = true;
    }
  }
  return out;
}

git_client authenticate_by_token(const snapshot& snap,
                                 const std::string& token, unix_time now) {
  git_client out;
  if (token.empty())
    return out;
  auto it = snap.tokens_by_digest.find(token_digest(token));
  if (it == snap.tokens_by_digest.end())
    return out;
  const auto& t = it->second;
  if ((t.expires_at && now >= *t.expires_at) || t.scopes.empty())
    return out;
  auto user = snap.users.find(t.user_id);
  if (user == snap.users.end() || !may_sign_in(user->second))
    return out;
  out.authenticated = true;
  out.user_id = t.user_id;
  out.abilities = abilities_for_scopes(t.scopes);
  return out;
}

git_client authenticate_by_lfs_token(const snapshot& snap,
                                     const std::string& login,
                                     const std::string& token,
                                     const std::string& lfs_key,
                                     unix_time now) {
  git_client out;
  if (login.empty() || lfs_key.empty())
    return out;
  auto payload = jwt::signed_payload(token, lfs_key);
  if (!payload)
    return out;
  auto claims = nlohmann::json::parse(*payload, nullptr, false);
  auto sub = claims.find("sub");
  auto exp = claims.find("exp");
  if (sub == claims.end() || !sub->is_string() || *sub != login
      || exp == claims.end() || !exp->is_number_integer()
      || exp->get<std::int64_t>() <= now)
    return out;
  auto key_id = claims.find("key_id");
  auto user_id = claims.find("user_id");
  if (login.rfind("lfs+deploy-key-", 0) == 0) {
    if (key_id == claims.end() || !key_id->is_number_integer())
      return out;
    auto k = snap.keys.find(key_id->get<std::int64_t>());
    if (k == snap.keys.end() || !k->second.deploy)
      return out;
    out.deploy_key_id = k->first;
    // Whether it may push is the decision's (the key's can_push).
    out.abilities = {true, true};
  } else {
    if (user_id == claims.end() || !user_id->is_number_integer())
      return out;
    auto u = snap.users.find(user_id->get<std::int64_t>());
    if (u == snap.users.end() || !may_sign_in(u->second))
      return out;
    out.user_id = u->first;
    out.abilities = {true, true};
  }
  out.authenticated = true;
  return out;
}

std::string http_basic_denied(const snapshot& snap) {
  return "HTTP Basic: Access denied. If a password was provided for Git "
         "authentication, the password was incorrect or you're required to "
         "use a token instead of a password. If a token was provided, it was "
         "either incorrect, expired, or improperly scoped. See "
    + without_trailing_slash(snap.settings.external_url)
    + "/help/topics/git/troubleshooting_git.md"
      "#error-on-git-fetch-http-basic-access-denied";
}

std::string lfs_documentation_url(const snapshot& snap) {
  return without_trailing_slash(snap.settings.external_url) + "/help";
}

} // namespace gatehouse::access
