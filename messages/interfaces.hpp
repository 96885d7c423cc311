#pragma once

#include "messages/access.hpp"
#include "messages/agents.hpp"
#include "messages/indexer.hpp"
#include "messages/atoms.hpp"
#include "messages/git.hpp"
#include "messages/pages.hpp"
#include "messages/push.hpp"
#include "messages/read_model.hpp"
#include "messages/types.hpp"

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>
#include <vector>

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
  caf::replies_to<check_query>::with<check_view>,
  // Answer Workhorse's Geo poll: Gatehouse is never a Geo site.
  caf::replies_to<geo_query>::with<geo_view>,
  // Report each dependency's state.
  caf::replies_to<atom::readiness>::with<readiness_view>,
  // The NATS edge reports a connection state change.
  caf::reacts_to<atom::nats_state, std::string>,
  // Probe PostgreSQL again (self-scheduled).
  caf::reacts_to<atom::tick>>;

/// Answers questions about a repository on local disk with the git binary
/// (force-push detection, branches containing a commit, empty repository).
/// Runs git synchronously: the wiring must spawn it detached.
using git_actor = caf::typed_actor<
  // Answer what an access decision needs to know from git; failures leave
  // answers missing and say why in git_facts::unavailable_reason.
  caf::replies_to<atom::inspect,
                  access::git_questions>::with<access::git_facts>,
  // List the commits each pushed ref brought, for push events.
  caf::replies_to<atom::commits,
                  push::commit_questions>::with<push::commit_facts>>;

/// Keeps the access-control read model fresh: loads a snapshot from
/// PostgreSQL, LISTENs on `gatehouse_changes` and reloads after change
/// notifications that may concern it (and every minute as a safety net), and
/// hands each new snapshot to its subscribers. Spawned detached: libpqxx
/// blocks.
using read_model_loader_actor = caf::typed_actor<
  // Send every new snapshot to this actor as (atom::snapshot, snapshot_ptr),
  // starting with the current one if there is one.
  caf::reacts_to<atom::subscribe, caf::actor>,
  // Return the newest snapshot (kept while PostgreSQL is away). Before the
  // first load, waits for it; fails with errc::unavailable if it fails.
  caf::replies_to<atom::get>::with<snapshot_ptr>,
  // Poll for notifications, reload or reconnect (self-scheduled; a tick of
  // another generation than the current one is ignored).
  caf::reacts_to<atom::tick, std::uint64_t>>;

/// Writes of the access-control endpoints. Owns one PostgreSQL connection;
/// spawned detached. Failures are errc::unavailable (errc::not_found for an
/// unknown user or signing key, errc::bad_request for a value PostgreSQL
/// rejects).
using access_store_actor = caf::typed_actor<
  // Set a key's last_used_at, at most once a day; no reply, no NOTIFY.
  caf::reacts_to<atom::touch_key, std::int64_t>,
  // Keep a "project moved" message for (user id, project id), 5 minutes.
  caf::replies_to<atom::put_moved, std::int64_t, std::int64_t,
                  std::string>::with<bool>,
  // Take and delete that message; "" when none or expired.
  caf::replies_to<atom::take_moved, std::int64_t,
                  std::int64_t>::with<std::string>,
  // The raw secret bytes of the named signing key ("lfs").
  caf::replies_to<atom::signing_key, std::string>::with<std::string>,
  // Replace a user's 2FA recovery codes; returns the 10 new clear codes.
  caf::replies_to<atom::new_codes,
                  std::int64_t>::with<std::vector<std::string>>,
  // Create a personal access token; returns the clear token. Stores only
  // its SHA-256 digest.
  caf::replies_to<atom::create_pat, pat_request>::with<pat_result>,
  // Resolve, measure and hash an uploaded file (path, allowed directory).
  caf::replies_to<atom::upload_facts, std::string,
                  std::string>::with<uploaded_file_facts>,
  // Keep a verified LFS object for a project.
  caf::replies_to<atom::keep_lfs, lfs_object_request>::with<bool>>;

/// Owns the push-processing writes on one PostgreSQL connection. Spawned
/// detached: libpqxx blocks.
using push_store_actor = caf::typed_actor<
  // Count a push in flight for a gl_repository (shared by every replica,
  // expiring 600 s after its last change); true when counted.
  caf::replies_to<atom::pre_receive, std::string>::with<bool>,
  // The same for (gl_repository, request id): the count and the id are
  // committed together; an id already recorded counts nothing and answers
  // the recorded result (retries of the NATS edge).
  caf::replies_to<atom::pre_receive, std::string, std::string>::with<bool>,
  // In one transaction: decrement the counter, take the moved message, and
  // insert the events into the outbox.
  caf::replies_to<atom::post_receive,
                  post_receive_write>::with<post_receive_written>,
  // Internal: commit the post_receives queued so far, together.
  caf::reacts_to<atom::flush_pushes>>;

/// The replies the NATS edge gave to requests carrying a
/// Gatehouse-Request-Id, shared by every replica through PostgreSQL, so that
/// a retry reaching another replica gets the same answer. Spawned detached.
using request_store_actor = caf::typed_actor<
  // The reply recorded for (request id, call); found = false when none, or
  // when PostgreSQL cannot be reached (the caller then proceeds, and the
  // push store's transaction still applies a push once).
  caf::replies_to<atom::reply_get, std::string,
                  std::string>::with<stored_reply>,
  // Record (request id, call, status, body) unless a reply is recorded
  // already; best effort, no answer.
  caf::reacts_to<atom::reply_put, std::string, std::string, std::int32_t,
                 std::string>,
  // Purge rows older than the retention (self-scheduled).
  caf::reacts_to<atom::tick>>;

/// Every decision of GitLab Shell's and Gitaly's access calls (contract
/// shell-gitaly §2.1–§2.10, §2.13), from an in-memory read-model snapshot.
/// Validation failures are errc::invalid_params or errc::bad_request with
/// GitLab's text; the rate limit is errc::rate_limited.
using access_control_actor = caf::typed_actor<
  // Decide /allowed: a success body, or a denial's status and message.
  caf::replies_to<access::allowed_params>::with<access::allowed_outcome>,
  // Check the access of a git audit event.
  caf::replies_to<access::audit_query>::with<access::audit_answer>,
  // Find an authentication-capable key by its base64 blob.
  caf::replies_to<access::key_query>::with<access::authorized_key>,
  // Say whose key, user id or username this is.
  caf::replies_to<access::discover_query>::with<access::discover_answer>,
  // Mint an LFS token for a project.
  caf::replies_to<access::lfs_query>::with<access::lfs_answer>,
  // Pre-authorize a git client's smart-HTTP request through Workhorse.
  caf::replies_to<access::git_http_query>::with<access::git_http_answer>,
  // Pre-authorize or finalize an LFS object upload through Workhorse.
  caf::replies_to<access::lfs_upload_query>::with<access::lfs_upload_answer>,
  // Pre-authorize an end user's multipart upload through Workhorse.
  caf::replies_to<access::upload_query>::with<access::upload_answer>,
  // Regenerate a user's 2FA recovery codes.
  caf::replies_to<access::recovery_query>::with<access::shell_answer>,
  // Create a personal access token.
  caf::replies_to<access::pat_query>::with<access::shell_answer>,
  // Verify a one-time password (community edition: not available).
  caf::replies_to<access::otp_query>::with<access::shell_answer>,
  // The read-model loader delivers a new snapshot.
  caf::reacts_to<atom::snapshot, snapshot_ptr>>;

/// Counts pushes in flight (pre_receive) and turns each accepted push into
/// durable push events (post_receive); answers only after the commit.
using push_processing_actor = caf::typed_actor<
  // Count a push in flight; a retry with the same request id counts nothing.
  caf::replies_to<push::pre_receive_params>::with<push::pre_receive_answer>,
  // Commit the push's events and answer the messages to print.
  caf::replies_to<push::post_receive_params>::with<push::post_receive_answer>,
  // The read-model loader delivers a new snapshot.
  caf::reacts_to<atom::snapshot, snapshot_ptr>>;

// -- GitLab Pages --------------------------------------------------------------

/// Reads the rows of GitLab Pages' lookups, by key, in one read-only
/// transaction; decides nothing. Owns one PostgreSQL connection; spawned
/// detached: libpqxx blocks. Failures are errc::unavailable.
using pages_store_actor = caf::typed_actor<
  // The instance settings the rules need (pages host, access control).
  caf::replies_to<pages::settings_query>::with<pages::settings_row>,
  // The projects, namespaces, deployments and domain rows of the keys.
  caf::replies_to<pages::rows_query>::with<pages::rows>>;

/// Answers GitLab Pages (contract other-callers §3): resolves a host to the
/// VirtualDomain Pages serves, from rows the pages store reads per request.
/// A missing host is errc::invalid_params "host is missing".
using pages_actor = caf::typed_actor<
  // Resolve a host: a VirtualDomain, or none (found = false, a 204).
  caf::replies_to<pages::domain_query>::with<pages::virtual_domain>,
  // GET /internal/pages/status: always 204.
  caf::replies_to<pages::status_query>::with<pages::status_answer>>;

// -- the GitLab agent server (KAS) -------------------------------------------

/// The agent registry's writes, each in one transaction on its own
/// PostgreSQL connection; spawned detached: libpqxx blocks. Events go to
/// the outbox in the transaction of what they report. Failures are
/// errc::unavailable (errc::bad_request for a value PostgreSQL rejects).
using agent_store_actor = caf::typed_actor<
  // Set an agent token's last_used_at to now; no reply, no NOTIFY.
  caf::reacts_to<atom::touch_agent_token, std::int64_t>,
  // Store a configuration and its authorizations (agent_configuration).
  caf::replies_to<agents::configuration_write>::with<
    agents::configuration_written>,
  // Add usage counters and record connections (usage_metrics,
  // agent_events).
  caf::replies_to<agents::usage_write>::with<agents::usage_written>,
  // Write a configuration-push notice; false when its event id is in the
  // outbox already (a redelivered push event).
  caf::replies_to<atom::config_push, agents::outbox_event>::with<bool>,
  // The counters /metrics exports.
  caf::replies_to<atom::usage_totals>::with<agents::usage_totals>>;

/// Answers KAS (contract other-callers §2): agents, their tokens and
/// user_access authorizations from the read-model snapshot; reports and
/// configurations through the agent store. Turns push events of agent
/// configuration projects into notices for KAS-side consumers.
using agent_registry_actor = caf::typed_actor<
  caf::replies_to<agents::agent_info_query>::with<agents::agent_info_answer>,
  caf::replies_to<agents::project_query>::with<agents::project_answer>,
  caf::replies_to<agents::configuration_query>::with<agents::no_content>,
  caf::replies_to<agents::proxy_user_query>::with<agents::proxy_user_answer>,
  caf::replies_to<agents::usage_query>::with<agents::no_content>,
  caf::replies_to<agents::events_query>::with<agents::no_content>,
  caf::replies_to<agents::runner_query>::with<agents::runner_answer>,
  // A push event from the feed; answered once its notices are durable.
  caf::replies_to<agents::pushed_paths>::with<agents::pushed_paths_done>,
  // The read-model loader delivers a new snapshot.
  caf::reacts_to<atom::snapshot, snapshot_ptr>,
  // Refresh the usage totals /metrics exports (self-scheduled).
  caf::reacts_to<atom::tick>>;

// -- search indexing (Zoekt, Elasticsearch) ------------------------------------

/// The indexer coordination's reads and writes, each in one transaction on
/// its own PostgreSQL connection; spawned detached: libpqxx blocks. Decides
/// nothing: which node, which project and which task come from the actor.
/// Events go to the outbox in the transaction of what they report.
/// Failures are errc::unavailable.
using indexer_store_actor = caf::typed_actor<
  // Insert or update a node from its report (debounced).
  caf::replies_to<indexer::node_write>::with<indexer::node_written>,
  // Take a node's due tasks (they become processing).
  caf::replies_to<indexer::task_take>::with<indexer::tasks_taken>,
  // Record a node's callback for a task.
  caf::replies_to<indexer::callback_write>::with<indexer::callback_written>,
  // Index a pushed project once per push event.
  caf::replies_to<indexer::push_index_write>::with<
    indexer::push_index_written>,
  // The nodes and repositories an assignment round decides over.
  caf::replies_to<atom::index_state>::with<indexer::index_state>,
  // Write an assignment round's decisions.
  caf::replies_to<indexer::assignment_write>::with<
    indexer::assignment_written>>;

/// Coordinates search indexing (contract other-callers §6, §7): answers
/// Zoekt nodes' heartbeats, task polls and callbacks; turns push events into
/// Zoekt index tasks and Elasticsearch index requests; assigns repositories
/// of enabled namespaces to nodes and moves them off lost nodes.
using indexer_actor = caf::typed_actor<
  caf::replies_to<indexer::heartbeat_query>::with<indexer::heartbeat_answer>,
  caf::replies_to<indexer::tasks_query>::with<indexer::heartbeat_answer>,
  caf::replies_to<indexer::callback_query>::with<indexer::callback_answer>,
  // A push event from the feed; answered once its work is durable.
  caf::replies_to<indexer::pushed_ref>::with<indexer::pushed_ref_done>,
  // The read-model loader delivers a new snapshot.
  caf::reacts_to<atom::snapshot, snapshot_ptr>,
  // Run an assignment round (self-scheduled).
  caf::reacts_to<atom::assign>>;

} // namespace gatehouse

// Snapshots are shared immutable between actors of one process and never
// serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::snapshot_ptr)
