#pragma once

// The HTTP codec of every call in the call table (messages/calls.hpp):
// GitLab's parameters (JSON, form and query, merged) into the call's request
// type, and its answer into GitLab's JSON body and status. Field mapping
// only: validation and GitLab's texts belong to the domain actors. The one
// rule here is the wire's: ids must be integers or strings of digits
// (Grape's type coercion, errc::invalid_params "<name> is invalid").

#include "edges/http/routing.hpp"
#include "messages/calls.hpp"

#include <caf/expected.hpp>

#include <optional>
#include <utility>
#include <vector>

namespace gatehouse::http {

/// What a codec reads of a request: its merged parameters and, for the
/// calls that forward an end user's HTTP request (Workhorse's), its method,
/// headers and the captures of the route's path pattern.
struct request_view {
  const json& params;
  const httplib::Request& http;
  /// Why Workhorse's token was refused, on the routes where GitLab checks
  /// it after the end user's credentials (caller_rule::workhorse_git).
  std::optional<std::string> workhorse_refusal = std::nullopt;

  /// A header's value, "" when absent.
  std::string header(const char* name) const {
    return http.get_header_value(name);
  }

  /// The `i`th capture of the route's path pattern, "" when absent.
  std::string capture(std::size_t i) const {
    return i + 1 < http.matches.size() ? http.matches[i + 1].str()
                                       : std::string{};
  }
};

/// Extra answer headers (WWW-Authenticate).
using header_list = std::vector<std::pair<std::string, std::string>>;

/// A status and a body: JSON unless `text` is set, which goes out as it
/// is (plain-text answers to a git client; "" with an empty content type
/// for 204).
struct reply {
  int status = 200;
  json body;
  std::string content_type = "application/json";
  std::optional<std::string> text = std::nullopt;
  header_list headers = {};
};

/// The vendor type that tells Workhorse a pre-authorization succeeded
/// (contract other-callers §4.1).
inline constexpr const char* workhorse_content_type
  = "application/vnd.gitlab-workhorse+json";

/// A status and a body as it goes on the wire.
struct text_reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  header_list headers = {};
};

#define GATEHOUSE_HTTP_CODEC(id, name, method, path, auth, owner, req, ans,    \
                             changes)                                          \
  caf::expected<req> decode(call_tag<call_id::id>, const request_view& in);    \
  reply encode(call_tag<call_id::id>, const ans& answer);
GATEHOUSE_CALLS(GATEHOUSE_HTTP_CODEC)
#undef GATEHOUSE_HTTP_CODEC

/// The answer's body as text: dump(encode(tag, answer).body).
template <call_id Id, class Answer>
text_reply encode_text(call_tag<Id> tag, const Answer& answer) {
  auto out = encode(tag, answer);
  return {out.status, out.text ? std::move(*out.text) : dump(out.body),
          std::move(out.content_type), std::move(out.headers)};
}

/// The busiest answers, written straight to text without building a JSON
/// document first (a third of what a call cost the HTTP thread); byte for
/// byte what the generic encode_text writes, which the tests check.
text_reply encode_text(call_tag<call_id::allowed>,
                       const access::allowed_outcome& outcome);
text_reply encode_text(call_tag<call_id::authorized_keys>,
                       const access::authorized_key& key);

} // namespace gatehouse::http
