#pragma once

// ASCII-only text rules. GitLab compares usernames, paths and domains
// case-insensitively in ASCII only (PostgreSQL's lower() on the C-collated
// columns the read model mirrors), so these must not depend on the locale.

#include <string>

namespace gatehouse {

/// `s` with 'A'..'Z' turned into 'a'..'z'; every other byte unchanged.
std::string ascii_lower(std::string s);

} // namespace gatehouse
