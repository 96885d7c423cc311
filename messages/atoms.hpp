#pragma once

#include <caf/atom.hpp>

/// Every atom of the system in one place, so collisions and meanings are
/// reviewed together. CAF 0.17 limits atom text to 10 characters.
namespace gatehouse::atom {

// -- queries ------------------------------------------------------------------

/// Report readiness with each dependency's state.
using readiness = caf::atom_constant<caf::atom("ready")>;
/// Ask the state store whether it answers, and for the settings /check needs.
using probe = caf::atom_constant<caf::atom("probe")>;
/// Ask the git actor the questions of an access decision (git_questions).
using inspect = caf::atom_constant<caf::atom("inspect")>;

// -- read model ---------------------------------------------------------------

/// Register an actor that receives every new read-model snapshot.
using subscribe = caf::atom_constant<caf::atom("subscribe")>;
/// Ask for the current read-model snapshot.
using get = caf::atom_constant<caf::atom("get")>;
/// A new read-model snapshot (loader -> subscribers).
using snapshot = caf::atom_constant<caf::atom("snapshot")>;

// -- access store -------------------------------------------------------------

/// Record that a key was used (GitLab's once-a-day last_used_at).
using touch_key = caf::atom_constant<caf::atom("touchkey")>;
/// Keep a "project moved" message for a user's next post_receive.
using put_moved = caf::atom_constant<caf::atom("putmoved")>;
/// Take (and delete) a pending "project moved" message.
using take_moved = caf::atom_constant<caf::atom("takemoved")>;
/// Read a named signing secret.
using signing_key = caf::atom_constant<caf::atom("signingkey")>;
/// Replace a user's 2FA recovery codes with new ones.
using new_codes = caf::atom_constant<caf::atom("newcodes")>;
/// Create a personal access token.
using create_pat = caf::atom_constant<caf::atom("createpat")>;
/// Report what is on disk at an uploaded file's path.
using upload_facts = caf::atom_constant<caf::atom("uploadfact")>;
/// Move a finalized LFS object into place and record it for a project.
using keep_lfs = caf::atom_constant<caf::atom("keeplfs")>;

// -- push processing
// ------------------------------------------------------------

/// Count a push in flight (POST /internal/pre_receive).
using pre_receive = caf::atom_constant<caf::atom("prerecv")>;
/// Commit a push's counter change, moved message and events
/// (POST /internal/post_receive).
using post_receive = caf::atom_constant<caf::atom("postrecv")>;
/// A push store writes the post_receives queued so far in one transaction
/// (sent to itself behind them).
using flush_pushes = caf::atom_constant<caf::atom("flushpush")>;
/// List the commits of pushed refs for push events.
using commits = caf::atom_constant<caf::atom("commits")>;

// -- request store (NATS edge retries)
// -----------------------------------------

/// Read the reply recorded for (request id, call).
using reply_get = caf::atom_constant<caf::atom("replyget")>;
/// Record the reply given to (request id, call).
using reply_put = caf::atom_constant<caf::atom("replyput")>;

// -- agent registry
// ------------------------------------------------------------

/// Record that an agent token was used (its last_used_at).
using touch_agent_token = caf::atom_constant<caf::atom("touchagent")>;
/// Write a notice for KAS-side consumers that an agent's configuration
/// file was pushed, unless written already.
using config_push = caf::atom_constant<caf::atom("cfgpush")>;
/// Read the usage counters /metrics exports.
using usage_totals = caf::atom_constant<caf::atom("usagetot")>;

// -- indexer coordination
// -----------------------------------------------------

/// Read the nodes and repositories an assignment round decides over.
using index_state = caf::atom_constant<caf::atom("idxstate")>;
/// Run an assignment round now (self-scheduled, and after a snapshot).
using assign = caf::atom_constant<caf::atom("assign")>;

// -- events -------------------------------------------------------------------

/// The NATS connection changed state.
using nats_state = caf::atom_constant<caf::atom("natsstate")>;
/// Time for a periodic job.
using tick = caf::atom_constant<caf::atom("tick")>;

} // namespace gatehouse::atom
