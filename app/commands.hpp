#pragma once

#include "common/config.hpp"

#include <string>
#include <vector>

namespace gatehouse {

/// `gatehouse events tail [--subject S] [--from-start]`: prints push events
/// as JSON lines with their headers. Returns the exit code.
int events_command(const config& cfg, const std::vector<std::string>& args);

/// `gatehouse webhooks`: the webhook consumer process. Returns the exit code.
int webhooks_command(const config& cfg, const std::vector<std::string>& args);

} // namespace gatehouse
