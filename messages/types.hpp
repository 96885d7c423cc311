#pragma once

#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace gatehouse {

// Message structs travel between actors only; edges convert wire formats to
// and from them. Every struct has a CAF 0.17 inspect() so CAF accepts it.

/// GET /internal/check: no fields.
struct check_query {};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, check_query&) {
  return f(caf::meta::type_name("gatehouse.check_query"));
}

/// What GET /internal/check reports.
struct check_view {
  /// The GitLab version this deployment claims (settings.gitlab_version).
  std::string gitlab_version;
  /// Gatehouse's own build revision.
  std::string gitlab_rev;
  /// Whether the state store (PostgreSQL) answered its last probe; GitLab
  /// calls this field `redis`.
  bool state_store_reachable = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, check_view& x) {
  return f(caf::meta::type_name("gatehouse.check_view"), x.gitlab_version,
           x.gitlab_rev, x.state_store_reachable);
}

/// GET /api/v4/geo/proxy (Workhorse's Geo poll): no fields.
struct geo_query {};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, geo_query&) {
  return f(caf::meta::type_name("gatehouse.geo_query"));
}

/// What Workhorse's Geo poll learns: this is no Geo site, so Workhorse
/// stops polling (contract other-callers §4.5).
struct geo_view {
  bool geo_enabled = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, geo_view& x) {
  return f(caf::meta::type_name("gatehouse.geo_view"), x.geo_enabled);
}

/// What one probe of the state store found.
struct store_probe {
  std::string gitlab_version;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, store_probe& x) {
  return f(caf::meta::type_name("gatehouse.store_probe"), x.gitlab_version);
}

/// The state of each dependency, for /-/readiness and /metrics.
struct readiness_view {
  /// PostgreSQL answered the last probe.
  bool postgres_up = false;
  /// Why the last probe failed; empty when it succeeded.
  std::string postgres_error;
  /// "connected", "reconnecting", "disconnected" or "closed".
  std::string nats_state;
  /// Milliseconds since the epoch of the last successful PostgreSQL probe;
  /// 0 when none succeeded yet.
  std::int64_t postgres_last_ok_ms = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, readiness_view& x) {
  return f(caf::meta::type_name("gatehouse.readiness_view"), x.postgres_up,
           x.postgres_error, x.nats_state, x.postgres_last_ok_ms);
}

/// A personal access token to create (POST /internal/personal_access_token,
/// already validated by the caller).
struct pat_request {
  std::int64_t user_id = 0;
  std::string name;
  std::vector<std::string> scopes;
  /// "YYYY-MM-DD"; empty for no expiry.
  std::string expires_at;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pat_request& x) {
  return f(caf::meta::type_name("gatehouse.pat_request"), x.user_id, x.name,
           x.scopes, x.expires_at);
}

/// A created personal access token.
struct pat_result {
  /// The clear token ("glpat-..."); only its SHA-256 digest is stored.
  std::string token;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pat_result& x) {
  return f(caf::meta::type_name("gatehouse.pat_result"), x.token);
}

// -- push processing
// ------------------------------------------------------------

/// One push domain event on its way through the transactional outbox to
/// JetStream (actors/push/push_events.hpp builds them).
struct outbox_event {
  /// UUID v4; the Nats-Msg-Id header.
  std::string event_id;
  /// "gitlab.events.push.<project_id>" or "gitlab.events.tag_push.<id>".
  std::string subject;
  /// "push" or "tag_push": the Gatehouse-Event header.
  std::string kind;
  std::int64_t project_id = 0;
  /// Gatehouse-Bulk: true.
  bool bulk = false;
  /// Gatehouse-Commits: unavailable.
  bool commits_unavailable = false;
  /// The JSON body (GitLab's Push Hook / Tag Push Hook payload).
  std::string body;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, outbox_event& x) {
  return f(caf::meta::type_name("gatehouse.outbox_event"), x.event_id,
           x.subject, x.kind, x.project_id, x.bulk, x.commits_unavailable,
           x.body);
}

/// What /post_receive writes in one transaction: the reference-counter
/// decrement, the moved message taken, the events into the outbox.
struct post_receive_write {
  std::string gl_repository;
  /// 0 when the pusher is unknown (then no moved message is taken).
  std::int64_t user_id = 0;
  /// 0 when the repository is unknown.
  std::int64_t project_id = 0;
  std::vector<outbox_event> events;
  /// The caller's Gatehouse-Request-Id (NATS edge); empty for none. When
  /// set, the write is recorded under it in the same transaction, and a
  /// write whose id is already recorded changes nothing and answers what
  /// the first one committed.
  std::string request_id;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, post_receive_write& x) {
  return f(caf::meta::type_name("gatehouse.post_receive_write"),
           x.gl_repository, x.user_id, x.project_id, x.events, x.request_id);
}

/// The outcome of a post_receive_write, committed.
struct post_receive_written {
  bool counter_decreased = false;
  /// The project-moved message /allowed kept for this user and project;
  /// empty when none.
  std::string moved_message;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, post_receive_written& x) {
  return f(caf::meta::type_name("gatehouse.post_receive_written"),
           x.counter_decreased, x.moved_message);
}

/// A reply of the NATS edge recorded for retries (request store).
struct stored_reply {
  /// Whether a reply is recorded; the other fields are empty when not.
  bool found = false;
  /// The HTTP-equivalent status (Gatehouse-Status).
  std::int32_t status = 0;
  /// The reply body exactly as sent (Protobuf bytes).
  std::string body;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_reply& x) {
  return f(caf::meta::type_name("gatehouse.stored_reply"), x.found, x.status,
           x.body);
}

} // namespace gatehouse
