#include "actors/push/push_events.hpp"

#include "actors/gitlab_paths.hpp"
#include "common/ascii.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <random>
#include <string_view>
#include <utility>

namespace gatehouse::push {

using gitlab::branch_name;
using gitlab::ssh_url_root;
using gitlab::strip_trailing_slashes;
using gitlab::tag_name;

namespace {

// Key order matters to people reading payloads side by side with GitLab's:
// ordered_json keeps insertion order.
using ordered = nlohmann::ordered_json;

/// GitLab's application setting push_event_hooks_limit (default 3).
constexpr std::size_t push_event_hooks_limit = 3;

/// Commits a payload lists at most (Gitlab::DataBuilder::Push).
constexpr std::size_t payload_commit_limit = 20;

// -- strings --------------------------------------------------------------------

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f'
         || c == '\r';
}

// Rails' blank?: empty or whitespace only.
bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), is_space);
}

// Ruby's String#strip: whitespace both ends, NUL too.
std::string strip(std::string_view s) {
  auto strippable = [](char c) { return is_space(c) || c == '\0'; };
  while (!s.empty() && strippable(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && strippable(s.back()))
    s.remove_suffix(1);
  return std::string{s};
}

// A positive base-10 integer, digits only.
std::optional<std::int64_t> positive_id(std::string_view s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) {
        return c >= '0' && c <= '9';
      }))
    return std::nullopt;
  std::int64_t id = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  if (ec != std::errc{} || end != s.data() + s.size() || id <= 0)
    return std::nullopt;
  return id;
}

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

// -- urls -------------------------------------------------------------------------

std::string base_url(const settings_record& s) {
  return strip_trailing_slashes(s.external_url);
}

std::string web_url(const snapshot& snap, const project_record& project) {
  return base_url(snap.settings) + "/" + project.full_path;
}

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

// -- protected refs ----------------------------------------------------------------

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

// -- push options -------------------------------------------------------------------

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

// -- broadcast messages ------------------------------------------------------------

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
  return (!m.starts_at || *m.starts_at <= now) && (!m.ends_at || now < *m.ends_at);
}

// PostReceiveService#broadcast_message: the newest current banner targeted
// at the project's path, else the newest current banner without a target.
// (The read model holds CLI-visible banners without access-level targets.)
const broadcast_message_record*
current_banner(const snapshot& snap, const project_record* project,
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

// -- payload pieces ----------------------------------------------------------------

ordered project_attrs(const snapshot& snap, const project_record& project) {
  const auto web = web_url(snap, project);
  const auto ssh = ssh_url_root(snap.settings) + project.full_path + ".git";
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

// -- resolution ------------------------------------------------------------------

push_context resolve(const snapshot& snap, const post_receive_params& p) {
  push_context ctx;
  // Gitlab::GlRepository: "<type>-<id>"; only projects and their wikis are
  // in the read model.
  const auto& glr = p.gl_repository;
  if (auto dash = glr.find('-'); dash != std::string::npos) {
    auto type = glr.substr(0, dash);
    auto id = positive_id(std::string_view{glr}.substr(dash + 1));
    if (id && (type == "project" || type == "wiki")) {
      if (auto it = snap.projects.find(*id); it != snap.projects.end()) {
        ctx.project = &it->second;
        ctx.wiki = type == "wiki";
      }
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
  q.limit = payload_commit_limit;
  auto storage = snap.storages.find(project.storage);
  const auto& disk = project.disk_path;
  bool safe_disk = !disk.empty() && disk.front() != '/'
                   && disk.find('\0') == std::string::npos
                   && disk != ".." && !starts_with(disk, "../")
                   && disk.find("/../") == std::string::npos
                   && !(disk.size() >= 3
                        && disk.compare(disk.size() - 3, 3, "/..") == 0);
  if (storage != snap.storages.end() && !storage->second.path.empty()
      && storage->second.path.front() == '/' && safe_disk) {
    access::repo_location loc;
    loc.repo_dir = strip_trailing_slashes(storage->second.path) + "/" + disk
                   + (ctx.wiki ? ".wiki.git" : ".git");
    q.location = std::move(loc);
  }
  // Wikis get no push events; deletions need nothing from git.
  if (ctx.wiki)
    return q;
  for (auto& ch : access::parse_changes(p.changes)) {
    if (!branch_name(ch.ref) && !tag_name(ch.ref))
      continue;
    if (access::is_blank_rev(ch.newrev))
      continue;
    q.changes.push_back(std::move(ch));
  }
  return q;
}

// -- messages --------------------------------------------------------------------

std::vector<post_message>
post_receive_messages(const snapshot& snap, const push_context& ctx,
                      const post_receive_params& p,
                      const std::string& moved_message, unix_time now,
                      bool repository_empty) {
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
  auto options = parse_push_options(p.push_options);
  if (options.contains("merge_request") && ctx.project != nullptr
      && ctx.wiki) {
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
      auto branch = branch_name(ch.ref);
      if (!branch || access::is_blank_rev(ch.newrev)
          || *branch == project.default_branch)
        continue;
      basic("To create a merge request for " + *branch + ", visit:\n  "
            + web_url(snap, project)
            + "/-/merge_requests/new?merge_request%5Bsource_branch%5D="
            + cgi_escape(*branch));
    }
  }

  if (ctx.user != nullptr && ctx.project != nullptr)
    basic(moved_message);
  return out;
}

// -- events ------------------------------------------------------------------------

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
  const auto options_json = parse_push_options(p.push_options);
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
                     ? list.end() - static_cast<std::ptrdiff_t>(
                         payload_commit_limit)
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
  thread_local std::random_device device;
  std::array<unsigned char, 16> bytes{};
  for (std::size_t i = 0; i < bytes.size(); i += 4) {
    auto word = device();
    for (std::size_t j = 0; j < 4; ++j)
      bytes[i + j] = static_cast<unsigned char>(word >> (8 * j));
  }
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0F) | 0x40);
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3F) | 0x80);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out += '-';
    out += hex[bytes[i] >> 4];
    out += hex[bytes[i] & 0x0F];
  }
  return out;
}

} // namespace gatehouse::push
