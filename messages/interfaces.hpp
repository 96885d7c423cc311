#pragma once

#include "messages/atoms.hpp"
#include "messages/types.hpp"

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <string>

namespace gatehouse {

/// Owns one PostgreSQL connection and answers queries on it. Spawned
/// detached: libpqxx blocks.
using store_actor = caf::typed_actor<
  // Run a cheap query that proves the database answers, and read the
  // settings that /check reports.
  caf::replies_to<atom::probe>::with<store_probe>>;

/// Knows whether Gatehouse's dependencies answer: probes PostgreSQL
/// periodically and hears NATS connection events. Answers /check and
/// readiness from that state, so neither waits on a dependency.
using system_status_actor = caf::typed_actor<
  // Report what GET /internal/check returns.
  caf::replies_to<atom::check>::with<check_view>,
  // Report each dependency's state.
  caf::replies_to<atom::readiness>::with<readiness_view>,
  // The NATS edge reports a connection state change.
  caf::reacts_to<atom::nats_state, std::string>,
  // Probe PostgreSQL again (self-scheduled).
  caf::reacts_to<atom::tick>>;

} // namespace gatehouse
