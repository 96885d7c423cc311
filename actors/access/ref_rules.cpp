// Ref-level helpers of the access decision: parsing `changes`, blank
// revisions, protected-ref patterns and ref-name validation.

#include "actors/access/git_access.hpp"

#include "actors/gitlab_paths.hpp"

#include <cstddef>

namespace gatehouse::access {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
         c == '\f' || c == '\0';
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// git check-ref-format rules for a full ref name (libgit2/Rugged without
/// normalisation): no empty or '.'-leading components, no component ending
/// in ".lock", no "..", no "@{", not "@", no control characters, space,
/// '~', '^', ':', '?', '*', '[', '\\', no leading, trailing or doubled '/',
/// no trailing '.'.
bool check_ref_format(const std::string& ref) {
  if (ref.empty() || ref == "@") {
    return false;
  }
  if (ref.front() == '/' || ref.back() == '/' || ref.back() == '.') {
    return false;
  }
  if (ref.find("..") != std::string::npos ||
      ref.find("@{") != std::string::npos ||
      ref.find("//") != std::string::npos) {
    return false;
  }
  for (unsigned char c : ref) {
    if (c < 0x20 || c == 0x7f) {
      return false;
    }
    switch (c) {
    case ' ':
    case '~':
    case '^':
    case ':':
    case '?':
    case '*':
    case '[':
    case '\\':
      return false;
    default:
      break;
    }
  }
  std::size_t start = 0;
  while (start <= ref.size()) {
    std::size_t slash = ref.find('/', start);
    if (slash == std::string::npos) {
      slash = ref.size();
    }
    const std::string component = ref.substr(start, slash - start);
    if (component.empty() || component.front() == '.' ||
        ends_with(component, ".lock")) {
      return false;
    }
    start = slash + 1;
  }
  return true;
}

} // namespace

std::vector<ref_change> parse_changes(const std::string& changes) {
  std::vector<ref_change> out;
  if (changes == "_any") {
    return out;
  }
  std::size_t pos = 0;
  while (pos < changes.size()) {
    std::size_t end = changes.find('\n', pos);
    if (end == std::string::npos) {
      end = changes.size();
    }
    const std::string line = changes.substr(pos, end - pos);
    pos = end + 1;

    std::vector<std::string> fields;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && is_space(line[i])) {
        ++i;
      }
      std::size_t j = i;
      while (j < line.size() && !is_space(line[j])) {
        ++j;
      }
      if (j > i) {
        fields.push_back(line.substr(i, j - i));
      }
      i = j;
    }
    if (fields.empty()) {
      continue; // blank line
    }
    if (fields.size() < 3) {
      continue; // malformed: no ref to check
    }
    out.push_back(ref_change{fields[0], fields[1], fields[2]});
  }
  return out;
}

bool is_blank_rev(const std::string& rev) {
  if (rev.size() != 40 && rev.size() != 64) {
    return false;
  }
  for (char c : rev) {
    if (c != '0') {
      return false;
    }
  }
  return true;
}

bool ref_pattern_matches(const std::string& pattern, const std::string& name) {
  if (name.empty()) {
    return false;
  }
  if (pattern.find('*') == std::string::npos) {
    return pattern == name;
  }
  return gitlab::star_pattern_matches(pattern, name,
                                      gitlab::letter_case::sensitive);
}

bool valid_ref_name(const std::string& name) {
  if (starts_with(name, "refs/heads/") || starts_with(name, "refs/remotes/") ||
      starts_with(name, "-") || name == "HEAD") {
    return false;
  }
  if (name.empty()) {
    return false;
  }
  return check_ref_format("refs/heads/" + name);
}

bool starts_with_full_sha(const std::string& name) {
  if (name.size() < 40) {
    return false;
  }
  for (std::size_t i = 0; i < 40; ++i) {
    if (!is_hex(name[i])) {
      return false;
    }
  }
  return true;
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) {
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

} // namespace gatehouse::access
