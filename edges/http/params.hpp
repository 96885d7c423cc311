#pragma once

#include "edges/error_status.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>

namespace httplib {
struct Request;
}

namespace gatehouse::http {

/// Deepest nesting of arrays and objects a JSON body may have: GitLab's
/// JsonValidation middleware allows 32 levels on /api/v4/internal/
/// (GITLAB_JSON_MAX_DEPTH) and answers a deeper body 400
/// {"error":"Parameters nested too deeply"}.
constexpr std::size_t max_json_depth = 32;

/// Rails (Grape) merges query, form and JSON body parameters into one hash;
/// the real callers send JSON, curl users and GitLab's specs send forms.
/// Returns one JSON object: query parameters, then form fields, then a JSON
/// object body on top. nullopt with `error` set when the body claims JSON but
/// is not a JSON object, or nests deeper than max_json_depth (checked before
/// parsing, without recursion).
std::optional<nlohmann::json> request_params(const httplib::Request& req,
                                             std::string& error);

/// The same merge from raw parts, for tests and for other edges.
std::optional<nlohmann::json> merge_params(const std::string& query,
                                           const std::string& content_type,
                                           const std::string& body,
                                           std::string& error);

/// The same, with the whole refusal: GitLab's status, text and body shape.
/// Besides a malformed or too deep JSON body, a string parameter (at the
/// top level or one level down) holding a NUL byte is refused as GitLab's
/// HandleMalformedStrings middleware does: 400 text/plain "Bad Request".
std::optional<nlohmann::json> merge_params(const std::string& query,
                                           const std::string& content_type,
                                           const std::string& body,
                                           error_status& refusal);
std::optional<nlohmann::json> request_params(const httplib::Request& req,
                                             error_status& refusal);

} // namespace gatehouse::http
