// The messages /post_receive prints: the broadcast banner, the push-options
// warning and the "create a merge request" links (contract shell-gitaly
// §2.11).

#include "actors/push/push_events.hpp"

#include "actors/gitlab_paths.hpp"
#include "actors/push/push_internals.hpp"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <vector>

namespace gatehouse::push {

using detail::is_blank;
using detail::starts_with;

namespace {

// Ruby's CGI.escape, which Rails uses for query values: unreserved bytes
// stay, a space becomes '+', everything else %XX (upper-case hex).
std::string cgi_escape(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '_' || c == '.' || c == '-' || c == '~') {
      out += c;
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 0x0F];
    }
  }
  return out;
}

// -- broadcast messages
// ------------------------------------------------------------

bool has_target_path(const broadcast_message_record& m) {
  return m.target_path && !is_blank(*m.target_path);
}

// BroadcastMessage#matches_current_path for a project path.
bool matches_path(const broadcast_message_record& m,
                  const std::string& full_path) {
  if (!has_target_path(m))
    return true;
  if (full_path.empty())
    return false;
  auto current = starts_with(full_path, "/") ? full_path : "/" + full_path;
  // GitLab escapes the pattern, then turns '\*' into '.*', matching
  // case-insensitively.
  return gitlab::star_pattern_matches(*m.target_path, current,
                                      gitlab::letter_case::insensitive);
}

// Shown now: GitLab keeps messages with ends_at in the future, then those
// whose starts_at..ends_at covers now.
bool current(const broadcast_message_record& m, unix_time now) {
  return (!m.starts_at || *m.starts_at <= now)
    && (!m.ends_at || now < *m.ends_at);
}

// PostReceiveService#broadcast_message: the newest current banner targeted
// at the project's path, else the newest current banner without a target.
// (The read model holds CLI-visible banners without access-level targets.)
const broadcast_message_record* current_banner(const snapshot& snap,
                                               const project_record* project,
                                               unix_time now) {
  std::vector<const broadcast_message_record*> shown;
  for (const auto& m : snap.settings.broadcast_messages)
    if (current(m, now))
      shown.push_back(&m);
  std::stable_sort(shown.begin(), shown.end(),
                   [](auto* a, auto* b) { return a->id < b->id; });
  if (project != nullptr) {
    for (auto it = shown.rbegin(); it != shown.rend(); ++it)
      if (has_target_path(**it) && matches_path(**it, project->full_path))
        return *it;
  }
  for (auto it = shown.rbegin(); it != shown.rend(); ++it)
    if (!has_target_path(**it))
      return *it;
  return nullptr;
}

} // namespace

// -- messages
// --------------------------------------------------------------------

std::vector<post_message> post_receive_messages(
  const snapshot& snap, const push_context& ctx, const post_receive_params& p,
  const std::string& moved_message, unix_time now, bool repository_empty) {
  // Gitlab::InternalPostReceive::Response: alerts go to the front, basics to
  // the back, blank texts nowhere.
  std::vector<post_message> out;
  auto alert = [&](const std::string& text) {
    if (!is_blank(text))
      out.insert(out.begin(), post_message{text, "alert"});
  };
  auto basic = [&](const std::string& text) {
    if (!is_blank(text))
      out.push_back(post_message{text, "basic"});
  };

  // Merge-request push options: only project repositories take them.
  // (Gatehouse does not create merge requests: a project answers nothing.)
  auto options = detail::parse_push_options(p.push_options);
  if (options.contains("merge_request") && ctx.project != nullptr && ctx.wiki) {
    std::string listed;
    for (const auto& raw : p.push_options)
      listed += (listed.empty() ? "'" : " '") + raw + "'";
    alert("WARNINGS:\nError encountered with push options " + listed
          + ": Push options are only supported for projects");
  }

  if (const auto* banner = current_banner(snap, ctx.project, now))
    alert(banner->message);

  // MergeRequests::GetUrlsService (no merge requests are known here, so
  // every branch gets the "create" link).
  if (ctx.project != nullptr && !ctx.wiki && !repository_empty
      && ctx.project->merge_requests_enabled) {
    const auto& project = *ctx.project;
    for (const auto& ch : access::parse_changes(p.changes)) {
      auto branch = gitlab::branch_name(ch.ref);
      if (!branch || access::is_blank_rev(ch.newrev)
          || *branch == project.default_branch)
        continue;
      basic("To create a merge request for " + *branch + ", visit:\n  "
            + detail::web_url(snap, project)
            + "/-/merge_requests/new?merge_request%5Bsource_branch%5D="
            + cgi_escape(*branch));
    }
  }

  if (ctx.user != nullptr && ctx.project != nullptr)
    basic(moved_message);
  return out;
}

} // namespace gatehouse::push
