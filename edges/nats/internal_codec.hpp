#pragma once

// The NATS codec of every call in the call table (messages/calls.hpp):
// Protobuf requests (messages/proto/gatehouse/internal/v1) into the call's
// request type, and its answer into the Protobuf response with the status
// the HTTP edge gives for the same answer. Field mapping only: validation
// and GitLab's texts belong to the domain actors. An empty string counts as
// absent, as Grape's blank parameters do. Pure functions; no actors, no I/O.

#include "messages/calls.hpp"
#include "messages/errors.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <string>

namespace gatehouse::nats {

/// A reply on the wire: the Gatehouse-Status header and the body (the
/// call's response message when 2xx, an Error message otherwise).
struct wire_reply {
  int status = 200;
  std::string body;
};

// -- errors -------------------------------------------------------------------

/// An Error body with `status`.
wire_reply error_reply(int status, const std::string& message);

/// What the shared status table (edges/error_status.hpp) answers for
/// `code`.
wire_reply error_reply(errc code, const std::string& detail = {});

/// A failed request: CAF's timeout and dead receivers map as on the HTTP
/// edge (503), our errc through the status table with its text.
wire_reply failure_reply(const caf::error& err);

// -- calls --------------------------------------------------------------------

/// decode: the call's request, or errc::bad_request "malformed <Message>
/// payload" for bytes that are not its Protobuf request.
/// encode: the reply to the call's answer.
#define GATEHOUSE_NATS_CODEC(id, name, method, path, auth, owner, req, ans,    \
                             changes)                                          \
  caf::expected<req> decode(call_tag<call_id::id>,                             \
                            const std::string& payload);                       \
  wire_reply encode(call_tag<call_id::id>, const ans& answer);
GATEHOUSE_SHARED_CALLS(GATEHOUSE_NATS_CODEC)
#undef GATEHOUSE_NATS_CODEC

} // namespace gatehouse::nats
