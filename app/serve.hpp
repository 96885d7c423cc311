#pragma once

#include "common/config.hpp"

namespace gatehouse {

/// `gatehouse serve`: wires the actor system, the edges and storage, and
/// serves until SIGINT or SIGTERM. Returns the process exit code.
int serve(const config& cfg);

} // namespace gatehouse
