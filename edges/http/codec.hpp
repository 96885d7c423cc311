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

namespace gatehouse::http {

/// A status and a JSON body.
struct reply {
  int status = 200;
  json body;
};

/// A status and a JSON body as it goes on the wire.
struct text_reply {
  int status = 200;
  std::string body;
};

#define GATEHOUSE_HTTP_CODEC(id, name, method, path, auth, owner, req, ans,    \
                             changes)                                          \
  caf::expected<req> decode(call_tag<call_id::id>, const json& params);        \
  reply encode(call_tag<call_id::id>, const ans& answer);
GATEHOUSE_CALLS(GATEHOUSE_HTTP_CODEC)
#undef GATEHOUSE_HTTP_CODEC

/// The answer's body as text: dump(encode(tag, answer).body).
template <call_id Id, class Answer>
text_reply encode_text(call_tag<Id> tag, const Answer& answer) {
  auto out = encode(tag, answer);
  return {out.status, dump(out.body)};
}

/// The busiest answers, written straight to text without building a JSON
/// document first (a third of what a call cost the HTTP thread); byte for
/// byte what the generic encode_text writes, which the tests check.
text_reply encode_text(call_tag<call_id::allowed>,
                       const access::allowed_outcome& outcome);
text_reply encode_text(call_tag<call_id::authorized_keys>,
                       const access::authorized_key& key);

} // namespace gatehouse::http
