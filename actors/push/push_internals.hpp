#pragma once

// Pieces shared by the files of push processing (push_events.cpp,
// push_options.cpp, post_receive_messages.cpp, push_payload.cpp). Not for
// use outside actors/push.

#include "messages/push.hpp"
#include "messages/read_model.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::push::detail {

/// Commits a payload lists at most (Gitlab::DataBuilder::Push).
inline constexpr std::size_t payload_commit_limit = 20;

bool starts_with(std::string_view s, std::string_view prefix);

/// Rails' blank?: empty or whitespace only.
bool is_blank(std::string_view s);

/// Ruby's String#strip: whitespace both ends, NUL too.
std::string strip(std::string_view s);

/// The project's web URL: external_url without trailing '/', then the path.
std::string web_url(const snapshot& snap, const project_record& project);

/// Gitlab::PushOptions#as_json of the raw `-o` options: known namespaces
/// and keys only, `mr` read as `merge_request`, multi-valued keys counted.
/// Ordered as given, like GitLab's hash.
nlohmann::ordered_json parse_push_options(const std::vector<std::string>& raw);

} // namespace gatehouse::push::detail
