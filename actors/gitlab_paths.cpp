#include "actors/gitlab_paths.hpp"

#include "common/ids.hpp"

#include <algorithm>
#include <cctype>

namespace gatehouse::gitlab {

namespace {

constexpr std::string_view heads_prefix = "refs/heads/";
constexpr std::string_view tags_prefix = "refs/tags/";

// Gitlab::Git.branch_ref? / tag_ref?: the prefix and a non-empty name.
std::optional<std::string> name_after(const std::string& ref,
                                      std::string_view prefix) {
  if (ref.size() <= prefix.size() || ref.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  return ref.substr(prefix.size());
}

bool same_letter(char a, char b, letter_case mode) {
  if (mode == letter_case::sensitive)
    return a == b;
  return std::tolower(static_cast<unsigned char>(a))
    == std::tolower(static_cast<unsigned char>(b));
}

} // namespace

std::string strip_trailing_slashes(std::string s) {
  while (!s.empty() && s.back() == '/')
    s.pop_back();
  return s;
}

std::string url_host(const std::string& url) {
  std::string rest = url;
  if (auto scheme = rest.find("://"); scheme != std::string::npos)
    rest = rest.substr(scheme + 3);
  if (auto slash = rest.find('/'); slash != std::string::npos)
    rest.resize(slash);
  if (auto at = rest.rfind('@'); at != std::string::npos)
    rest = rest.substr(at + 1);
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    return close == std::string::npos ? rest.substr(1)
                                      : rest.substr(1, close - 1);
  }
  if (auto colon = rest.find(':'); colon != std::string::npos)
    rest.resize(colon);
  return rest;
}

std::string ssh_url_root(const settings_record& s) {
  if (!s.ssh_clone_url_root.empty())
    return s.ssh_clone_url_root;
  auto host = url_host(s.external_url);
  if (host.find(':') != std::string::npos)
    return "[git@" + host + "]:";
  return "git@" + host + ":";
}

bool too_many_changes(std::string_view changes) {
  // A last line without its newline counts too.
  const auto newlines = static_cast<std::size_t>(
    std::count(changes.begin(), changes.end(), '\n'));
  const bool unterminated = !changes.empty() && changes.back() != '\n';
  return newlines + (unterminated ? 1 : 0) > max_change_lines;
}

std::optional<std::string> branch_name(const std::string& ref) {
  return name_after(ref, heads_prefix);
}

std::optional<std::string> tag_name(const std::string& ref) {
  return name_after(ref, tags_prefix);
}

bool star_pattern_matches(std::string_view pattern, std::string_view text,
                          letter_case mode) {
  // Iterative backtracking: on a mismatch, let the last '*' swallow one
  // more character and retry from there.
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = std::string_view::npos;
  std::size_t resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.size() && same_letter(pattern[p], text[t], mode)) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*')
    ++p;
  return p == pattern.size();
}

std::optional<gl_repository_ref> parse_gl_repository(std::string_view text) {
  auto positive = [](std::string_view digits) -> std::optional<std::int64_t> {
    auto id = parse_id(digits);
    if (!id || *id <= 0)
      return std::nullopt;
    return id;
  };
  constexpr std::string_view group = "group-", group_wiki = "-wiki";
  if (text.size() > group.size() + group_wiki.size()
      && text.substr(0, group.size()) == group
      && text.substr(text.size() - group_wiki.size()) == group_wiki) {
    auto id = positive(text.substr(
      group.size(), text.size() - group.size() - group_wiki.size()));
    if (!id)
      return std::nullopt;
    return gl_repository_ref{repository_kind::group_wiki, *id};
  }
  auto dash = text.find('-');
  if (dash == std::string_view::npos)
    return std::nullopt;
  auto id = positive(text.substr(dash + 1));
  if (!id)
    return std::nullopt;
  auto kind = text.substr(0, dash);
  if (kind == "project")
    return gl_repository_ref{repository_kind::project, *id};
  if (kind == "wiki")
    return gl_repository_ref{repository_kind::wiki, *id};
  if (kind == "snippet")
    return gl_repository_ref{repository_kind::snippet, *id};
  if (kind == "design")
    return gl_repository_ref{repository_kind::design, *id};
  return std::nullopt;
}

} // namespace gatehouse::gitlab
