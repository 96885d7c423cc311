// The push domain events: GitLab's Push Hook / Tag Push Hook payloads
// (contract shell-gitaly §7), one per pushed ref, for the outbox.

#include "actors/push/push_events.hpp"

#include "actors/gitlab_paths.hpp"
#include "actors/push/push_internals.hpp"
#include "common/uuid.hpp"

#include <algorithm>
#include <map>
#include <utility>

namespace gatehouse::push {

using detail::payload_commit_limit;
using detail::web_url;
using gitlab::branch_name;
using gitlab::tag_name;

namespace {

// Key order matters to people reading payloads side by side with GitLab's:
// ordered_json keeps insertion order.
using ordered = nlohmann::ordered_json;

/// GitLab's application setting push_event_hooks_limit (default 3).
constexpr std::size_t push_event_hooks_limit = 3;

int visibility_level(const project_record& project) {
  if (project.visibility == "public")
    return 20;
  if (project.visibility == "internal")
    return 10;
  return 0;
}

// The namespace's display name (GitLab's project.namespace in hook payloads).
std::string namespace_name(const snapshot& snap,
                           const project_record& project) {
  if (auto it = snap.namespaces.find(project.namespace_id);
      it != snap.namespaces.end())
    return it->second.name.empty() ? it->second.path : it->second.name;
  auto slash = project.full_path.rfind('/');
  auto parent = slash == std::string::npos ? std::string{}
                                           : project.full_path.substr(0, slash);
  auto inner = parent.rfind('/');
  return inner == std::string::npos ? parent : parent.substr(inner + 1);
}

// -- protected refs
// ----------------------------------------------------------------

// Project#protected_for?: a branch or tag matching a protected pattern.
bool ref_protected(const snapshot& snap, const project_record& project,
                   const std::string& ref) {
  if (auto branch = branch_name(ref)) {
    auto it = snap.protected_branches.find(project.id);
    if (it == snap.protected_branches.end())
      return false;
    return std::any_of(it->second.begin(), it->second.end(),
                       [&](const protected_branch_record& r) {
                         return access::ref_pattern_matches(r.name, *branch);
                       });
  }
  if (auto tag = tag_name(ref)) {
    auto it = snap.protected_tags.find(project.id);
    if (it == snap.protected_tags.end())
      return false;
    return std::any_of(it->second.begin(), it->second.end(),
                       [&](const protected_tag_record& r) {
                         return access::ref_pattern_matches(r.name, *tag);
                       });
  }
  return false;
}

// -- payload pieces
// ----------------------------------------------------------------

ordered project_attrs(const snapshot& snap, const project_record& project) {
  const auto web = web_url(snap, project);
  const auto ssh
    = gitlab::ssh_url_root(snap.settings) + project.full_path + ".git";
  const auto http = web + ".git";
  ordered o = ordered::object();
  o["id"] = project.id;
  o["name"] = project.name;
  o["description"] = project.description;
  o["web_url"] = web;
  o["avatar_url"] = nullptr;
  o["git_ssh_url"] = ssh;
  o["git_http_url"] = http;
  o["namespace"] = namespace_name(snap, project);
  o["visibility_level"] = visibility_level(project);
  o["path_with_namespace"] = project.full_path;
  if (project.default_branch.empty())
    o["default_branch"] = nullptr;
  else
    o["default_branch"] = project.default_branch;
  o["ci_config_path"] = nullptr;
  o["homepage"] = web;
  o["url"] = ssh;
  o["ssh_url"] = ssh;
  o["http_url"] = http;
  return o;
}

ordered repository_attrs(const ordered& project) {
  ordered o = ordered::object();
  for (const char* key : {"name", "url", "description", "homepage",
                          "git_http_url", "git_ssh_url", "visibility_level"})
    o[key] = project.at(key);
  return o;
}

ordered commit_attrs(const std::string& web, const commit& c) {
  ordered o = ordered::object();
  o["id"] = c.id;
  o["message"] = c.message;
  o["title"] = c.title;
  o["timestamp"] = c.timestamp;
  o["url"] = web + "/-/commit/" + c.id;
  o["author"] = ordered{{"name", c.author_name}, {"email", c.author_email}};
  o["added"] = c.added;
  o["modified"] = c.modified;
  o["removed"] = c.removed;
  return o;
}

enum class ref_kind { branch, tag };

// Git::ProcessRefChangesService groups each kind by action.
enum class ref_action { created, removed, pushed };

ref_action action_of(const access::ref_change& ch) {
  if (access::is_blank_rev(ch.oldrev))
    return ref_action::created;
  if (access::is_blank_rev(ch.newrev))
    return ref_action::removed;
  return ref_action::pushed;
}

struct ref_item {
  const access::ref_change* change;
  ref_kind kind;
  ref_action action;
};

} // namespace

// -- events
// ------------------------------------------------------------------------

std::vector<push_event> build_events(const snapshot& snap,
                                     const push_context& ctx,
                                     const post_receive_params& p,
                                     const commit_facts& facts,
                                     std::string (*new_uuid)()) {
  std::vector<push_event> events;
  // Unknown repository or user: GitLab logs and stops. Wikis fire wiki
  // page events, not push hooks.
  if (ctx.project == nullptr || ctx.user == nullptr || ctx.wiki)
    return events;
  if (new_uuid == nullptr)
    new_uuid = &random_uuid;
  const auto& project = *ctx.project;
  const auto& user = *ctx.user;

  const auto changes = access::parse_changes(p.changes);
  // Branches first, then tags; within a kind, action groups in order of
  // first appearance (Git::ProcessRefChangesService).
  std::vector<ref_item> ordered_items;
  std::map<std::pair<ref_kind, ref_action>, std::size_t> group_size;
  for (ref_kind kind : {ref_kind::branch, ref_kind::tag}) {
    std::vector<ref_action> seen;
    std::vector<ref_item> of_kind;
    for (const auto& ch : changes) {
      bool is_kind = kind == ref_kind::branch ? branch_name(ch.ref).has_value()
                                              : tag_name(ch.ref).has_value();
      if (!is_kind)
        continue;
      auto action = action_of(ch);
      if (std::find(seen.begin(), seen.end(), action) == seen.end())
        seen.push_back(action);
      of_kind.push_back(ref_item{&ch, kind, action});
      ++group_size[{kind, action}];
    }
    for (auto action : seen)
      for (const auto& item : of_kind)
        if (item.action == action)
          ordered_items.push_back(item);
  }
  if (ordered_items.empty())
    return events;

  const auto project_json = project_attrs(snap, project);
  const auto repository_json = repository_attrs(project_json);
  const auto options_json = detail::parse_push_options(p.push_options);
  const auto web = web_url(snap, project);

  for (const auto& item : ordered_items) {
    const auto& ch = *item.change;
    const bool tag = item.kind == ref_kind::tag;
    const bool deletion = access::is_blank_rev(ch.newrev);
    const std::string kind = tag ? "tag_push" : "push";
    const ref_commits* known = nullptr;
    if (auto it = facts.by_ref.find(ch.ref); it != facts.by_ref.end())
      known = &it->second;
    const bool unavailable = !deletion && known == nullptr;

    ordered body = ordered::object();
    body["object_kind"] = kind;
    body["event_name"] = kind;
    body["before"] = ch.oldrev;
    body["after"] = ch.newrev;
    body["ref"] = ch.ref;
    body["ref_protected"] = ref_protected(snap, project, ch.ref);
    if (deletion)
      body["checkout_sha"] = nullptr;
    else if (!tag)
      body["checkout_sha"] = ch.newrev;
    else if (known != nullptr && known->tag_target)
      body["checkout_sha"] = *known->tag_target;
    else
      body["checkout_sha"] = nullptr;
    if (tag && !deletion && known != nullptr && known->tag_message)
      body["message"] = *known->tag_message;
    else
      body["message"] = nullptr;
    body["user_id"] = user.id;
    body["user_name"] = user.name;
    body["user_username"] = user.username;
    // The public email; GitLab sends "" for a user without one.
    body["user_email"] = user.public_email;
    // No uploaded avatars and no Gravatar: GitLab's avatar_url is nil then.
    body["user_avatar"] = nullptr;
    body["project_id"] = project.id;
    body["project"] = project_json;
    auto commits = ordered::array();
    std::size_t total = 0;
    if (!deletion && known != nullptr) {
      const auto& list = known->commits;
      auto first = list.size() > payload_commit_limit
        ? list.end() - static_cast<std::ptrdiff_t>(payload_commit_limit)
        : list.begin();
      for (auto it = first; it != list.end(); ++it)
        commits.push_back(commit_attrs(web, *it));
      total = known->total;
    }
    body["commits"] = std::move(commits);
    body["total_commits_count"] = total;
    body["push_options"] = options_json;
    body["repository"] = repository_json;

    push_event e;
    e.event_id = new_uuid();
    e.kind = kind;
    e.project_id = project.id;
    e.subject = "gitlab.events." + kind + "." + std::to_string(project.id);
    e.bulk = group_size[{item.kind, item.action}] > push_event_hooks_limit;
    e.commits_unavailable = unavailable;
    // Commit messages and paths need not be UTF-8: never throw over them.
    e.body = body.dump(-1, ' ', false, ordered::error_handler_t::replace);
    events.push_back(std::move(e));
  }
  return events;
}

std::string random_uuid() {
  return gatehouse::random_uuid();
}

} // namespace gatehouse::push
