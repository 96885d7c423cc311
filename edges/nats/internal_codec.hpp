#pragma once

// The NATS edge's codecs: Protobuf requests (messages/proto/gatehouse/
// internal/v1) into the very structs the HTTP edge builds for the same call,
// and the domain actors' answers into Protobuf responses, with the status
// the HTTP edge gives for the same input. Pure functions; no actors, no I/O.
//
// Decoding mirrors edges/http/access_routes.cpp and push_routes.cpp rule by
// rule: an empty string counts as absent (as Grape's blank parameters do),
// required fields are checked in the HTTP edge's order with its messages,
// and the same validations run before the actor is asked.

#include "actors/access/access_control.hpp"
#include "actors/push/push_processing.hpp"
#include "messages/errors.hpp"
#include "messages/types.hpp"

#include <caf/error.hpp>

#include <cstdint>
#include <string>
#include <variant>

namespace gatehouse::nats {

/// A reply on the wire: the Gatehouse-Status header and the body (the
/// call's response message when 2xx, an Error message otherwise).
struct wire_reply {
  int status = 200;
  std::string body;
};

/// A decoded request, or the reply to send at once when it is malformed or
/// fails the HTTP edge's validation.
template <class T>
using decoded = std::variant<T, wire_reply>;

/// A request without fields of its own (check, the OTP checks).
struct no_fields {};

// -- errors -------------------------------------------------------------------

/// An Error body with `status`.
wire_reply error_reply(int status, const std::string& message);

/// What the shared status table (edges/error_status.hpp) answers for
/// `code`.
wire_reply error_reply(errc code, const std::string& detail = {});

/// A failed actor request: CAF's timeout and dead receivers map as on the
/// HTTP edge (503), our errc through the status table.
wire_reply failure_reply(const caf::error& err);

/// The Error of an unparsable payload: 400 "400 Bad request - malformed
/// <message> payload".
wire_reply malformed(const char* message_name);

// -- access calls -------------------------------------------------------------

decoded<access::allowed_params> decode_allowed(const std::string& payload);
wire_reply encode_allowed(const access::allowed_outcome& outcome);

/// The key blob.
decoded<std::string> decode_authorized_keys(const std::string& payload);
wire_reply encode_authorized_keys(const access::key_answer& answer);

decoded<access::discover_query> decode_discover(const std::string& payload);
wire_reply encode_discover(const access::discover_answer& answer);

decoded<access::lfs_query> decode_lfs_authenticate(const std::string& payload);
wire_reply encode_lfs_authenticate(const access::lfs_answer& answer);

decoded<access::shell_actor>
decode_recovery_codes(const std::string& payload);
wire_reply encode_recovery_codes(const access::shell_answer& answer);

decoded<access::pat_query>
decode_personal_access_token(const std::string& payload);
wire_reply encode_personal_access_token(const access::shell_answer& answer);

decoded<no_fields> decode_manual_otp_check(const std::string& payload);
decoded<no_fields> decode_push_otp_check(const std::string& payload);
/// Both OTP checks: the community edition's 200 "Feature is not available".
wire_reply otp_not_available();

/// The access check of a git audit event (action, protocol, gl_repository
/// and changes required; action git-upload-pack or git-receive-pack).
decoded<access::allowed_params>
decode_git_audit_event(const std::string& payload);
wire_reply encode_git_audit_event(const access::allowed_outcome& outcome);

// -- check ----------------------------------------------------------------------

decoded<no_fields> decode_check(const std::string& payload);
wire_reply encode_check(const check_view& view);

// -- push calls -------------------------------------------------------------------

/// The gl_repository.
decoded<std::string> decode_pre_receive(const std::string& payload);
wire_reply encode_pre_receive(bool counted);

decoded<push::post_receive_params>
decode_post_receive(const std::string& payload);
wire_reply encode_post_receive(const push::post_receive_answer& answer);

} // namespace gatehouse::nats
