#pragma once

// GitLab's rules for URLs, ref names and '*' patterns, shared by the access
// decision (actors/access) and push processing (actors/push). Pure
// functions; one home so that /allowed, /post_receive and the push events
// never disagree about a host, a clone URL or whether a pattern matches.

#include "messages/read_model.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gatehouse::gitlab {

/// `s` without the '/' characters at its end (external_url may be
/// configured with one; GitLab joins paths to it with its own '/').
std::string strip_trailing_slashes(std::string s);

/// The host of a URL such as "https://user@gitlab.example.com:8443/sub":
/// without scheme, user info, port and path; an IPv6 literal without its
/// brackets ("http://[::1]:8080" gives "::1").
std::string url_host(const std::string& url);

/// GitLab's ssh_path_prefix: the configured ssh_clone_url_root, else
/// "git@<host>:" of external_url ("[git@<host>]:" when the host holds a
/// ':'). Clone URLs are this plus "<full path>.git".
std::string ssh_url_root(const settings_record& s);

/// The branch name of "refs/heads/<name>" (Gitlab::Git.branch_ref?: the
/// prefix and a non-empty name), else nullopt.
std::optional<std::string> branch_name(const std::string& ref);

/// The most lines of `changes` one call may carry (/allowed, the git audit
/// event, post_receive). GitLab has no such limit but its 50 s check budget,
/// which a push of this many refs would spend on its per-ref checks alone;
/// here every ref is checked on the one access-control actor, so a bound
/// keeps one call from holding it (100,000 lines take about 0.15 s).
inline constexpr std::size_t max_change_lines = 100'000;

/// Whether `changes` has more than max_change_lines lines.
bool too_many_changes(std::string_view changes);

/// The tag name of "refs/tags/<name>", else nullopt.
std::optional<std::string> tag_name(const std::string& ref);

/// Whether a GitLab '*' pattern matches all of `text`: '*' stands for any
/// run of characters ('/' included), everything else is literal (GitLab
/// escapes the pattern and turns '\*' into '.*', anchored at both ends).
/// Protected refs compare case-sensitively, broadcast-message target paths
/// ASCII-case-insensitively.
enum class letter_case { sensitive, insensitive };
bool star_pattern_matches(std::string_view pattern, std::string_view text,
                          letter_case mode);

/// The kinds of repository a gl_repository names.
enum class repository_kind { project, wiki, snippet, design, group_wiki };

/// A parsed gl_repository.
struct gl_repository_ref {
  repository_kind kind;
  std::int64_t id;
};

/// Gitlab::GlRepository's identifiers: "<project|wiki|snippet|design>-<id>"
/// and "group-<id>-wiki", the id a positive number; nullopt for anything
/// else, which GitLab refuses (ArgumentError "Invalid GL Repository").
std::optional<gl_repository_ref> parse_gl_repository(std::string_view text);

} // namespace gatehouse::gitlab
