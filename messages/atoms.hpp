#pragma once

#include <caf/atom.hpp>

/// Every atom of the system in one place, so collisions and meanings are
/// reviewed together. CAF 0.17 limits atom text to 10 characters.
namespace gatehouse::atom {

// -- queries ------------------------------------------------------------------

/// Answer GET /internal/check.
using check = caf::atom_constant<caf::atom("check")>;
/// Report readiness with each dependency's state.
using readiness = caf::atom_constant<caf::atom("ready")>;
/// Ask the state store whether it answers, and for the settings /check needs.
using probe = caf::atom_constant<caf::atom("probe")>;
/// Forward a request to another actor under a deadline.
using relay = caf::atom_constant<caf::atom("relay")>;

// -- events -------------------------------------------------------------------

/// The NATS connection changed state.
using nats_state = caf::atom_constant<caf::atom("natsstate")>;
/// Time for a periodic job.
using tick = caf::atom_constant<caf::atom("tick")>;

} // namespace gatehouse::atom
