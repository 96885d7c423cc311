#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>

namespace httplib {
struct Request;
}

namespace gatehouse::http {

/// Deepest nesting of arrays and objects a JSON body may have: the default
/// max_nesting of Ruby's JSON parser, which GitLab's Grape API parses with
/// (deeper bodies fail there with a 400 too).
constexpr std::size_t max_json_depth = 100;

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

} // namespace gatehouse::http
