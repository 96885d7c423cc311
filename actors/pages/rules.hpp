#pragma once

// The rules of GitLab Pages' host lookup (contract other-callers §3, GitLab's
// VirtualHostFinder, Pages::VirtualDomain and Pages::LookupPath), as pure
// functions over the rows the pages store read: which rows a host needs,
// and the VirtualDomain those rows make. No I/O, so tests drive them with
// hand-made rows.

#include "messages/pages.hpp"

#include <cstddef>
#include <optional>
#include <string>

namespace gatehouse::pages {

/// Hosts longer than DNS allows find nothing (204), as in GitLab, where such
/// a host matches no row; checked before any row is read.
inline constexpr std::size_t max_host_length = 255;

/// The rows `host` (lower-cased) needs: below `.<pages_host>` a unique
/// domain and a top-level namespace of that name, otherwise a custom
/// domain. nullopt when nothing can match (a blank or over-long host).
std::optional<rows_query> keys_for(const std::string& host,
                                   const settings_row& settings);

/// The VirtualDomain of `host` (lower-cased) from the rows read for
/// keys_for(host, settings); found = false when there is none.
///
/// Order of lookup_paths (GitLab leaves it to the database; Pages sorts by
/// prefix length itself): longest prefix first, then prefix descending
/// bytewise, then project id and deployment id ascending.
virtual_domain resolve(const std::string& host, const settings_row& settings,
                       const rows& found);

} // namespace gatehouse::pages
