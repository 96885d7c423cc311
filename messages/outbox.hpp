#pragma once

// The outbox as its relay sees it. post_receive commits push events into
// the outbox (storage/push_store.hpp); a relay on every replica hands them
// to JetStream (edges/nats/outbox_relay.hpp). This port is all the relay
// knows of the outbox: storage implements it (storage/outbox_store.hpp) with
// one PostgreSQL session, its LISTEN and its per-project locks, so that the
// relay holds no SQL and the storage layer owns both halves of the outbox.

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace gatehouse {

/// One unpublished outbox row: what the relay publishes.
struct outbox_row {
  /// Position in the outbox; per project, commit order.
  std::int64_t seq = 0;
  /// The event's UUID, sent as Nats-Msg-Id (JetStream's dedupe key).
  std::string event_id;
  std::int64_t project_id = 0;
  std::string subject;
  /// "push" or "tag_push" (the Gatehouse-Event header).
  std::string kind;
  bool bulk = false;
  bool commits_unavailable = false;
  /// The event's JSON, carried verbatim.
  std::string body;
};

/// The unpublished part of the outbox at one moment.
struct outbox_backlog {
  /// Unpublished rows of every project.
  std::int64_t pending = 0;
  /// Age of the oldest unpublished row; 0 when none.
  double oldest_seconds = 0;
};

/// The relay's port to the outbox. Every call blocks and is made from the
/// relay's own thread, except interrupt(). Failures come back as
/// caf::error values of gatehouse::errc; after one the relay closes the
/// session, which releases every project lock, and a later call reopens it.
///
/// The protocol of one pass: lock_projects, then (only when the publisher
/// can publish) unpublished, a publish per row, mark_published for the
/// acknowledged rows and record_failure for the row that failed, and
/// finally release. Holding a project's lock from unpublished to release is
/// what keeps one relay per project and each project's rows in seq order.
class outbox_port {
public:
  virtual ~outbox_port() = default;

  // -- the session -----------------------------------------------------------

  /// Opens the session and subscribes to commit notifications, unless open.
  virtual caf::error open() = 0;

  /// Whether the session is open.
  virtual bool connected() const = 0;

  /// Closes the session, which releases every project lock it held.
  virtual void close() = 0;

  /// Returns when post_receive has committed events since the last call,
  /// after interrupt(), or after `limit`, whichever comes first.
  virtual caf::error wait_for_work(std::chrono::milliseconds limit) = 0;

  /// Makes the current or next wait_for_work return at once. Thread-safe.
  virtual void interrupt() = 0;

  // -- one pass --------------------------------------------------------------

  /// Locks up to `max_projects` projects that have unpublished rows, those
  /// with the oldest rows first, leaving out the projects in `skip` and any
  /// whose lock another session (another replica) holds. Returns the
  /// projects now locked by this session.
  virtual caf::expected<std::vector<std::int64_t>> lock_projects(
    int max_projects, const std::vector<std::int64_t>& skip)
    = 0;

  /// The first `per_project` unpublished rows of each of `projects` (locked
  /// by this session), by project and then seq. Read after the locks, so
  /// every mark of a previous holder is seen.
  virtual caf::expected<std::vector<outbox_row>> unpublished(
    const std::vector<std::int64_t>& projects, int per_project)
    = 0;

  /// Marks the rows `seqs` published, leaving any row marked already as it
  /// is. Call only for rows JetStream acknowledged.
  virtual caf::error mark_published(const std::vector<std::int64_t>& seqs) = 0;

  /// Records a failed publish of row `seq`: one more attempt, and `error`
  /// as its last error.
  virtual caf::error record_failure(std::int64_t seq, const std::string& error)
    = 0;

  /// Records a failed attempt, with `error`, on the oldest unpublished row
  /// of each of `projects` (when nothing could be published at all).
  virtual caf::error record_head_failures(
    const std::vector<std::int64_t>& projects, const std::string& error)
    = 0;

  /// Releases the locks of `projects`; after the marks, so that the next
  /// holder sees them.
  virtual caf::error release(const std::vector<std::int64_t>& projects) = 0;

  // -- upkeep ----------------------------------------------------------------

  /// Counts the unpublished rows.
  virtual caf::expected<outbox_backlog> backlog() = 0;

  /// Deletes a bounded batch of published rows older than the retention.
  virtual caf::error purge_published() = 0;
};

} // namespace gatehouse
