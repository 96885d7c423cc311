#pragma once

// The push-processing calls of Gitaly's hooks (contract shell-gitaly §2.11,
// §2.12): each call's request as the edges decode it and its answer as the
// push-processing actor gives it. Missing fields come back as
// errc::invalid_params with GitLab's text.

#include <caf/allowed_unsafe_message_type.hpp>

#include <string>
#include <vector>

namespace gatehouse::push {

/// A /pre_receive request.
struct pre_receive_params {
  /// "project-12", "wiki-12", ...; required.
  std::string gl_repository;
  /// The caller's Gatehouse-Request-Id (NATS edge), empty for none: a retry
  /// with the same id counts nothing.
  std::string request_id;
};

/// The /pre_receive answer.
struct pre_receive_answer {
  bool reference_counter_increased = false;
};

/// The /post_receive request; the first three fields are required.
struct post_receive_params {
  /// "project-12", "wiki-12", ...
  std::string gl_repository;
  /// The gl_id Gitaly received: "key-<n>", "user-<n>" or "username-<u>".
  std::string identifier;
  /// Post-receive stdin verbatim: lines "<old> <new> <ref>".
  std::string changes;
  /// Raw push options ("ci.skip", "merge_request.create", ...).
  std::vector<std::string> push_options;
  /// The caller's Gatehouse-Request-Id (NATS edge), empty for none: passed
  /// to the store so that a retry commits nothing twice.
  std::string request_id;
};

/// One line of the /post_receive answer.
struct post_message {
  std::string message;
  /// "basic" or "alert".
  std::string type;
};

/// The /post_receive answer.
struct post_receive_answer {
  std::vector<post_message> messages;
  bool reference_counter_decreased = false;
};

} // namespace gatehouse::push

// Local messages between the edges and the push-processing actor, never
// serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::pre_receive_params)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::pre_receive_answer)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::post_receive_params)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::post_receive_answer)
