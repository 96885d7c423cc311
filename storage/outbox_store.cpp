#include "storage/outbox_store.hpp"

#include "messages/errors.hpp"
#include "storage/pg_session.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <utility>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace gatehouse::storage {

namespace {

/// A PostgreSQL bigint[] literal.
std::string pg_array(const std::vector<std::int64_t>& xs) {
  std::string out = "{";
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      out += ',';
    out += std::to_string(xs[i]);
  }
  out += '}';
  return out;
}

// Folds the project id p into the second key of a two-int advisory lock.
constexpr const char* lock_key_sql = "(p % 2147483647)::int";

/// The error of a call whose value nobody needs.
caf::error status_of(caf::expected<bool>&& result) {
  return result ? caf::error{} : std::move(result.error());
}

} // namespace

struct outbox_store::impl {
  explicit impl(outbox_store_settings s)
    : settings(std::move(s)),
      session(
        {settings.database_url, settings.statement_timeout, outbox_channel},
        [this](const std::string&) { notified = true; }) {
    wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }

  ~impl() {
    session.close();
    if (wake_fd >= 0)
      ::close(wake_fd);
  }

  outbox_store_settings settings;
  pg_session session;
  /// A NOTIFY arrived since the last wait_for_work.
  bool notified = false;
  /// Readable after interrupt().
  int wake_fd = -1;

  void drain_wake() {
    std::uint64_t value = 0;
    [[maybe_unused]] auto n = ::read(wake_fd, &value, sizeof value);
  }
};

outbox_store::outbox_store(outbox_store_settings settings)
  : impl_(std::make_unique<impl>(std::move(settings))) {
  // nop
}

outbox_store::~outbox_store() = default;

// -- the session --------------------------------------------------------------

caf::error outbox_store::open() {
  return impl_->session.open();
}

bool outbox_store::connected() const {
  return impl_->session.connected();
}

void outbox_store::close() {
  impl_->session.close();
}

caf::error outbox_store::wait_for_work(std::chrono::milliseconds limit) {
  auto& st = *impl_;
  if (!st.notified) {
    if (auto err = st.session.wait_for_notification(limit, st.wake_fd))
      return err;
    pollfd fd{st.wake_fd, POLLIN, 0};
    if (::poll(&fd, 1, 0) > 0)
      st.drain_wake();
  }
  st.notified = false;
  return {};
}

void outbox_store::interrupt() {
  if (impl_->wake_fd >= 0) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(impl_->wake_fd, &one, sizeof one);
  }
}

// -- one pass -----------------------------------------------------------------

caf::expected<std::vector<std::int64_t>> outbox_store::lock_projects(
  int max_projects, const std::vector<std::int64_t>& skip) {
  return impl_->session.run("lock_projects", [&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    // Candidates: projects with unpublished rows, oldest first, except those
    // in `skip`; keep the ones whose lock no other session holds. The lock
    // is taken on the subquery's rows only (LIMIT is a barrier).
    //
    // Each project's oldest unpublished row comes from one probe of the
    // (project_id, seq) partial index per project (a loose index scan),
    // not from aggregating every unpublished row: each published row
    // leaves a dead entry in that index until VACUUM, and an aggregate
    // (bitmap scan) revisits all of them on every pass, while a probe
    // marks them dead for later scans to skip.
    auto rows = tx.exec_params(
      std::string{
        "WITH RECURSIVE heads AS ("
        "(SELECT project_id, seq FROM gatehouse_state.outbox "
        "WHERE published_at IS NULL ORDER BY project_id, seq LIMIT 1) "
        "UNION ALL "
        "SELECT o.project_id, o.seq FROM heads h CROSS JOIN LATERAL "
        "(SELECT project_id, seq FROM gatehouse_state.outbox "
        "WHERE published_at IS NULL AND project_id > h.project_id "
        "ORDER BY project_id, seq LIMIT 1) o) "
        "SELECT p FROM (SELECT project_id AS p FROM heads "
        "WHERE project_id <> ALL($3::bigint[]) ORDER BY seq LIMIT $2) c "
        "WHERE pg_try_advisory_lock($1, "}
        + lock_key_sql + ")",
      outbox_relay_lock_class, max_projects, pg_array(skip));
    std::vector<std::int64_t> locked;
    for (const auto& row : rows)
      locked.push_back(row[0].as<std::int64_t>());
    return locked;
  });
}

caf::expected<std::vector<outbox_row>> outbox_store::unpublished(
  const std::vector<std::int64_t>& projects, int per_project) {
  return impl_->session.run("unpublished", [&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    auto result = tx.exec_params(
      "SELECT o.seq, o.event_id::text, o.project_id, o.subject, o.kind, "
      "coalesce(o.bulk, false), coalesce(o.commits_unavailable, false), "
      "o.body FROM unnest($1::bigint[]) AS p(id) CROSS JOIN LATERAL "
      "(SELECT * FROM gatehouse_state.outbox WHERE project_id = p.id AND "
      "published_at IS NULL ORDER BY seq LIMIT $2) o "
      "ORDER BY o.project_id, o.seq",
      pg_array(projects), per_project);
    std::vector<outbox_row> rows;
    rows.reserve(result.size());
    for (const auto& r : result) {
      outbox_row row;
      row.seq = r[0].as<std::int64_t>();
      row.event_id = r[1].as<std::string>();
      row.project_id = r[2].as<std::int64_t>();
      row.subject = r[3].as<std::string>();
      row.kind = r[4].as<std::string>();
      row.bulk = r[5].as<bool>();
      row.commits_unavailable = r[6].as<bool>();
      row.body = r[7].as<std::string>();
      rows.push_back(std::move(row));
    }
    return rows;
  });
}

caf::error outbox_store::mark_published(const std::vector<std::int64_t>& seqs) {
  return status_of(
    impl_->session.run("mark_published", [&](pqxx::connection& c) {
      pqxx::nontransaction tx{c};
      // Never a row someone else already marked. Committed without waiting
      // for the WAL flush: a mark lost in a crash only sends its event
      // again, which JetStream drops as a duplicate of its Nats-Msg-Id
      // (marks are at most wal_writer_delay x 3 old when lost, well inside
      // the stream's duplicate window). The flush wait cost each relay
      // pass an fsync, contending with the pushes' own commits. The
      // pushes keep synchronous_commit. One round trip: the array literal
      // holds digits and commas only.
      tx.exec("SET synchronous_commit TO off; "
              "UPDATE gatehouse_state.outbox SET published_at = now() "
              "WHERE seq = ANY('"
              + pg_array(seqs) + "'::bigint[]) AND published_at IS NULL");
      return true;
    }));
}

caf::error outbox_store::record_failure(std::int64_t seq,
                                        const std::string& error) {
  return status_of(
    impl_->session.run("record_failure", [&](pqxx::connection& c) {
      pqxx::nontransaction tx{c};
      tx.exec_params("UPDATE gatehouse_state.outbox SET attempts = attempts + "
                     "1, last_error = $2 WHERE seq = $1",
                     seq, error);
      return true;
    }));
}

caf::error outbox_store::record_head_failures(
  const std::vector<std::int64_t>& projects, const std::string& error) {
  return status_of(
    impl_->session.run("record_head_failures", [&](pqxx::connection& c) {
      pqxx::nontransaction tx{c};
      tx.exec_params(
        "UPDATE gatehouse_state.outbox SET attempts = attempts + 1, "
        "last_error = $2 WHERE seq IN (SELECT min(seq) FROM "
        "gatehouse_state.outbox WHERE published_at IS NULL AND project_id = "
        "ANY($1::bigint[]) GROUP BY project_id)",
        pg_array(projects), error);
      return true;
    }));
}

caf::error outbox_store::release(const std::vector<std::int64_t>& projects) {
  return status_of(impl_->session.run("release", [&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    tx.exec_params(std::string{"SELECT pg_advisory_unlock($1, "} + lock_key_sql
                     + ") FROM unnest($2::bigint[]) AS t(p)",
                   outbox_relay_lock_class, pg_array(projects));
    return true;
  }));
}

// -- upkeep -------------------------------------------------------------------

caf::expected<outbox_backlog> outbox_store::backlog() {
  return impl_->session.run("backlog", [](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    auto r = tx.exec("SELECT count(*), coalesce(extract(epoch FROM now() - "
                     "min(created_at)), 0)::float8 FROM gatehouse_state.outbox "
                     "WHERE published_at IS NULL");
    outbox_backlog out;
    out.pending = r[0][0].as<std::int64_t>();
    out.oldest_seconds = std::max(0.0, r[0][1].as<double>());
    return out;
  });
}

caf::error outbox_store::purge_published() {
  auto hours = static_cast<int>(impl_->settings.retention.count());
  if (hours <= 0)
    return {};
  return status_of(impl_->session.run("purge", [&](pqxx::connection& c) {
    pqxx::nontransaction tx{c};
    // Oldest first along the primary key; bounded per call.
    tx.exec_params(
      "DELETE FROM gatehouse_state.outbox WHERE seq IN (SELECT seq FROM "
      "gatehouse_state.outbox WHERE published_at < now() - "
      "make_interval(hours => $1) ORDER BY seq LIMIT 10000)",
      hours);
    return true;
  }));
}

} // namespace gatehouse::storage
