// Push processing: resolving the parties of a /post_receive and what to ask
// git for its events. The messages, push options and payloads live in
// post_receive_messages.cpp, push_options.cpp and push_payload.cpp.

#include "actors/push/push_events.hpp"

#include "actors/gitlab_paths.hpp"
#include "actors/push/push_internals.hpp"
#include "common/ascii.hpp"
#include "common/ids.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>
#include <utility>

namespace gatehouse::push {

namespace detail {

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f'
    || c == '\r';
}

} // namespace

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), is_space);
}

std::string strip(std::string_view s) {
  auto strippable = [](char c) {
    return is_space(c) || c == '\0';
  };
  while (!s.empty() && strippable(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && strippable(s.back()))
    s.remove_suffix(1);
  return std::string{s};
}

std::string web_url(const snapshot& snap, const project_record& project) {
  return gitlab::strip_trailing_slashes(snap.settings.external_url) + "/"
    + project.full_path;
}

} // namespace detail

using detail::starts_with;

namespace {

// A positive base-10 integer, digits only.
std::optional<std::int64_t> positive_id(std::string_view s) {
  auto id = parse_id(s);
  if (!id || *id <= 0)
    return std::nullopt;
  return id;
}

} // namespace

// -- resolution
// ------------------------------------------------------------------

push_context resolve(const snapshot& snap, const post_receive_params& p) {
  push_context ctx;
  // Gitlab::GlRepository: "<type>-<id>"; only projects and their wikis are
  // in the read model.
  if (auto glr = gitlab::parse_gl_repository(p.gl_repository); glr
      && (glr->kind == gitlab::repository_kind::project
          || glr->kind == gitlab::repository_kind::wiki)) {
    if (auto it = snap.projects.find(glr->id); it != snap.projects.end()) {
      ctx.project = &it->second;
      ctx.wiki = glr->kind == gitlab::repository_kind::wiki;
    }
  }
  // Gitlab::Identifier, plus Gitaly's "username-<u>".
  auto find_user = [&](std::int64_t id) -> const user_record* {
    auto it = snap.users.find(id);
    return it == snap.users.end() ? nullptr : &it->second;
  };
  const auto& who = p.identifier;
  if (starts_with(who, "user-")) {
    if (auto id = positive_id(std::string_view{who}.substr(5)))
      ctx.user = find_user(*id);
  } else if (starts_with(who, "key-")) {
    if (auto id = positive_id(std::string_view{who}.substr(4))) {
      if (auto it = snap.keys.find(*id); it != snap.keys.end()) {
        ctx.key_id = *id;
        // A deploy key stands for its creator; an orphaned one for nobody.
        if (it->second.user_id)
          ctx.user = find_user(*it->second.user_id);
      }
    }
  } else if (starts_with(who, "username-") && who.size() > 9) {
    auto it = snap.user_by_username.find(ascii_lower(who.substr(9)));
    if (it != snap.user_by_username.end())
      ctx.user = find_user(it->second);
  }
  return ctx;
}

commit_questions questions_for(const snapshot& snap, const push_context& ctx,
                               const post_receive_params& p) {
  commit_questions q;
  if (ctx.project == nullptr)
    return q;
  const auto& project = *ctx.project;
  q.default_branch = project.default_branch;
  q.limit = detail::payload_commit_limit;
  auto storage = snap.storages.find(project.storage);
  const auto& disk = project.disk_path;
  bool safe_disk = !disk.empty() && disk.front() != '/'
    && disk.find('\0') == std::string::npos && disk != ".."
    && !starts_with(disk, "../") && disk.find("/../") == std::string::npos
    && !(disk.size() >= 3 && disk.compare(disk.size() - 3, 3, "/..") == 0);
  if (storage != snap.storages.end() && !storage->second.path.empty()
      && storage->second.path.front() == '/' && safe_disk) {
    access::repo_location loc;
    loc.repo_dir = gitlab::strip_trailing_slashes(storage->second.path) + "/"
      + disk + (ctx.wiki ? ".wiki.git" : ".git");
    q.location = std::move(loc);
  }
  // Wikis get no push events; deletions need nothing from git.
  if (ctx.wiki)
    return q;
  for (auto& ch : access::parse_changes(p.changes)) {
    if (!gitlab::branch_name(ch.ref) && !gitlab::tag_name(ch.ref))
      continue;
    if (access::is_blank_rev(ch.newrev))
      continue;
    q.changes.push_back(std::move(ch));
  }
  return q;
}

} // namespace gatehouse::push
