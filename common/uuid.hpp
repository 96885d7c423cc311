#pragma once

// Event ids. Consumers deduplicate on them (JetStream's Nats-Msg-Id, the
// outbox's unique event_id), so an id is either random or a pure function
// of what it names.

#include <string>
#include <string_view>

namespace gatehouse {

/// A random UUID (version 4), lower-case.
std::string random_uuid();

/// A UUID derived from `name` (version 8, RFC 9562: the first 16 bytes of
/// SHA-256(name) with the version and variant bits set). The same name
/// always gives the same id, so a redelivered input makes no second event.
std::string derived_uuid(std::string_view name);

} // namespace gatehouse
