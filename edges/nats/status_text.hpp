#pragma once

// The one rendering of a nats.c failure, for logs and error texts of every
// process that talks to NATS (serve, the webhook consumer, events tail).

#include <nats/nats.h>

#include <string>

namespace gatehouse::nats {

/// nats.c's text for `s`, then JetStream's error code when there is one,
/// then the calling thread's last error detail when nats.c kept one:
/// "Timeout (jetstream error 10059): no response from stream".
std::string status_text(natsStatus s,
                        jsErrCode jerr = static_cast<jsErrCode>(0));

} // namespace gatehouse::nats
