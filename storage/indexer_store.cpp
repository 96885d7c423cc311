#include "storage/indexer_store.hpp"

#include "common/log.hpp"
#include "messages/errors.hpp"
#include "storage/outbox_store.hpp"

#include <caf/all.hpp>

#include <pqxx/pqxx>

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::storage {

namespace {

using namespace gatehouse::indexer;

/// What the actor is told of a failure: bad_request for a value
/// PostgreSQL refused, else unavailable; the write rolled back either way.
caf::error store_failure(const char* what, const caf::error& err) {
  log::warn("indexer store: database error",
            {{"operation", what}, {"error", render(err)}});
  auto code = classify(err) == errc::bad_request ? errc::bad_request
                                                 : errc::unavailable;
  return caf::make_error(code, pg_error_text(err));
}

/// Runs `fn` on the actor's session; a failure as store_failure.
template <class T, class F>
caf::result<T> with_session(indexer_store_state& st, const char* what, F fn) {
  caf::expected<T> out = st.session.run(what, fn);
  if (!out)
    return store_failure(what, out.error());
  return std::move(*out);
}

/// An optional as a text parameter: "" stands for NULL (libpqxx 6 has no
/// null parameter), read back with NULLIF($n, '')::<type>.
std::string nullable(const std::optional<std::int64_t>& v) {
  return v ? std::to_string(*v) : std::string{};
}

std::string nullable(const std::optional<std::string>& v) {
  return v ? *v : std::string{};
}

/// `{"a","b\"c"}`: a text[] parameter.
std::string text_array(const std::vector<std::string>& values) {
  std::string out = "{";
  for (const auto& v : values) {
    if (out.size() > 1)
      out += ',';
    out += '"';
    for (char c : v) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

/// `{1,2,3}`: a bigint[] parameter.
template <class Ids>
std::string int_array(const Ids& ids) {
  std::string out = "{";
  for (auto id : ids) {
    if (out.size() > 1)
      out += ',';
    out += std::to_string(id);
  }
  return out + "}";
}

// -- outbox (as agent_store.cpp writes it) -------------------------------------

/// Serialises this transaction's outbox inserts with every other writer's
/// for the project until commit (seq order is commit order within a
/// project, which the relay relies on).
void lock_outbox(pqxx::work& tx, std::int64_t project) {
  tx.exec_params("SELECT pg_advisory_xact_lock($1, $2)",
                 outbox_insert_lock_class,
                 static_cast<int>(project % 2147483647));
}

/// Inserts `e` unless its id is in the outbox; true when inserted. The
/// caller holds the project's outbox lock.
bool insert_event(pqxx::work& tx, const indexer::outbox_event& e) {
  return !tx
            .exec_params(
              "INSERT INTO gatehouse_state.outbox (event_id, project_id, "
              "subject, kind, body) VALUES ($1::uuid, $2, $3, $4, $5) ON "
              "CONFLICT (event_id) DO NOTHING RETURNING 1",
              e.event_id, e.project_id, e.subject, e.kind, e.body)
            .empty();
}

/// Tells the relays of other replicas that rows are waiting (on commit).
void notify_relays(pqxx::work& tx, std::int64_t project) {
  tx.exec_params("SELECT pg_notify($1, $2)", std::string{outbox_channel},
                 std::to_string(project));
}

// -- nodes --------------------------------------------------------------------

/// A node's row with its last heartbeat; a node no heartbeat reached (a
/// seeded one) reads as never seen.
const std::string node_query
  = "SELECT n.id, n.uuid, n.name, coalesce(s.total_bytes, 0), "
    "coalesce(s.used_bytes, 0), coalesce(s.indexed_bytes, 0), "
    "coalesce(s.schema_version, 0), s.concurrency, s.task_count, "
    "coalesce(extract(epoch FROM s.last_seen_at)::bigint, 0) FROM "
    "zoekt_nodes n LEFT JOIN gatehouse_state.zoekt_node_states s ON "
    "s.node_id = n.id";

std::optional<std::int64_t> optional_int(const pqxx::field& f) {
  if (f.is_null())
    return std::nullopt;
  return f.as<std::int64_t>();
}

node_row read_node(const pqxx::row& row) {
  node_row n;
  n.id = row[0].as<std::int64_t>();
  n.uuid = row[1].as<std::string>();
  n.name = row[2].as<std::string>();
  n.total_bytes = row[3].as<std::int64_t>();
  n.used_bytes = row[4].as<std::int64_t>();
  n.indexed_bytes = row[5].as<std::int64_t>();
  n.schema_version = row[6].as<std::int64_t>();
  n.concurrency = optional_int(row[7]);
  n.task_count = optional_int(row[8]);
  n.last_seen_at = row[9].as<std::int64_t>();
  return n;
}

node_written write_node(pqxx::connection& c, const node_write& w) {
  const auto& r = w.report;
  pqxx::work tx{c, "indexer_node"};
  node_written out;
  // The node's row lock serialises heartbeats of one node across replicas.
  auto lookup = [&] {
    return tx.exec_params(
      "SELECT n.id, s.updated_at > now() - make_interval(secs => $2) FROM "
      "zoekt_nodes n LEFT JOIN gatehouse_state.zoekt_node_states s ON "
      "s.node_id = n.id WHERE n.uuid = $1 FOR UPDATE OF n",
      r.uuid, static_cast<double>(std::max<std::int64_t>(w.debounce_seconds, 0)));
  };
  auto found = lookup();
  std::int64_t inserted_id = 0;
  if (found.empty()) {
    auto inserted = tx.exec_params(
      "INSERT INTO zoekt_nodes (uuid, name, url, search_url) VALUES ($1, $2, "
      "$3, NULLIF($4, '')) ON CONFLICT (uuid) DO NOTHING RETURNING id",
      r.uuid, r.name, r.url, nullable(r.search_url));
    out.created = !inserted.empty();
    if (out.created)
      inserted_id = inserted[0][0].as<std::int64_t>();
    if (!out.created)
      found = lookup(); // another replica inserted it first
  }
  std::int64_t id = 0;
  if (out.created) {
    id = inserted_id;
  } else {
    id = found[0][0].as<std::int64_t>();
    bool recent = !found[0][1].is_null() && found[0][1].as<bool>();
    if (recent) {
      // GitLab's save_debounce: the whole save is skipped.
      out.node = read_node(
        tx.exec_params(node_query + " WHERE n.id = $1", id)[0]);
      tx.commit();
      return out;
    }
    tx.exec_params("UPDATE zoekt_nodes SET name = $2, url = $3, search_url = "
                   "NULLIF($4, ''), updated_at = now() WHERE id = $1 AND "
                   "(name, url, search_url) IS DISTINCT FROM ($2, $3, "
                   "NULLIF($4, ''))",
                   id, r.name, r.url, nullable(r.search_url));
  }
  // An absent optional figure keeps the stored one, except the two GitLab
  // reads as "unknown" when absent (task_count, concurrency).
  tx.exec_params(
    "INSERT INTO gatehouse_state.zoekt_node_states AS s (node_id, "
    "total_bytes, used_bytes, indexed_bytes, schema_version, concurrency, "
    "task_count, version, services, last_seen_at, updated_at) VALUES ($1, $2, "
    "$3, coalesce(NULLIF($4, '')::bigint, 0), coalesce(NULLIF($5, "
    "'')::bigint, 0), NULLIF($6, '')::bigint, NULLIF($7, '')::bigint, "
    "NULLIF($8, ''), CASE WHEN $9 THEN $10::text[] ELSE '{}' END, now(), "
    "now()) ON CONFLICT (node_id) DO UPDATE SET total_bytes = "
    "EXCLUDED.total_bytes, used_bytes = EXCLUDED.used_bytes, indexed_bytes = "
    "coalesce(NULLIF($4, '')::bigint, s.indexed_bytes), schema_version = "
    "coalesce(NULLIF($5, '')::bigint, s.schema_version), concurrency = "
    "EXCLUDED.concurrency, task_count = EXCLUDED.task_count, version = "
    "EXCLUDED.version, services = CASE WHEN $9 THEN EXCLUDED.services ELSE "
    "s.services END, last_seen_at = now(), updated_at = now()",
    id, r.disk_all, r.disk_used, nullable(r.disk_indexed),
    nullable(r.schema_version), nullable(r.concurrency),
    nullable(r.task_count), nullable(r.version), r.services.has_value(),
    text_array(r.services.value_or(std::vector<std::string>{})));
  out.node = read_node(tx.exec_params(node_query + " WHERE n.id = $1", id)[0]);
  tx.commit();
  return out;
}

// -- task_take ------------------------------------------------------------------

tasks_taken take_tasks(pqxx::connection& c, const task_take& q) {
  tasks_taken out;
  auto limit = std::clamp(q.limit, 0, indexer_take_max_limit);
  pqxx::work tx{c, "indexer_take"};
  std::vector<std::int64_t> taken, orphaned, skipped;
  std::set<std::int64_t> projects;
  // Keyset over (perform_at, id): perform_at travels as text, which
  // PostgreSQL prints and reads back to the microsecond.
  std::string after_at = "-infinity";
  std::int64_t after_id = 0;
  auto batch_rows = std::min(indexer_take_batch_rows,
                             std::max(limit * 4, 50));
  for (int batch = 0; batch < indexer_take_batches
                      && static_cast<int>(taken.size()) < limit;
       ++batch) {
    // Rows another replica holds are skipped: it is taking them.
    auto rows = tx.exec_params(
      "SELECT t.id, t.task_type, t.project_id, t.perform_at::text, p.id IS "
      "NOT NULL, r.state = 'failed' FROM zoekt_tasks t LEFT JOIN projects p ON "
      "p.id = t.project_id LEFT JOIN zoekt_repositories r ON r.project_id = "
      "t.project_id WHERE t.node_id = $1 AND t.state IN ('pending', "
      "'processing') AND t.perform_at <= now() AND (t.perform_at, t.id) > "
      "($2::timestamptz, $3) ORDER BY t.perform_at, t.id LIMIT $4 FOR UPDATE "
      "OF t SKIP LOCKED",
      q.node_id, after_at, after_id, batch_rows);
    for (const auto& row : rows) {
      if (static_cast<int>(taken.size()) >= limit)
        break;
      task_row t;
      t.id = row[0].as<std::int64_t>();
      t.type = row[1].as<std::string>();
      t.project_id = row[2].as<std::int64_t>();
      after_at = row[3].as<std::string>();
      after_id = t.id;
      bool project_exists = row[4].as<bool>();
      bool repository_failed = !row[5].is_null() && row[5].as<bool>();
      bool delete_task = t.type == "delete_repo";
      if (!delete_task && !project_exists)
        orphaned.push_back(t.id);
      else if (!delete_task && repository_failed)
        skipped.push_back(t.id);
      else if (projects.insert(t.project_id).second) {
        taken.push_back(t.id);
        out.tasks.push_back(std::move(t));
      }
    }
    if (static_cast<int>(rows.size()) < batch_rows)
      break;
  }
  auto set_state = [&](const std::vector<std::int64_t>& ids,
                       const char* state) {
    if (!ids.empty())
      tx.exec_params("UPDATE zoekt_tasks SET state = $2, updated_at = now() "
                     "WHERE id = ANY($1::bigint[])",
                     int_array(ids), std::string{state});
  };
  set_state(taken, "processing");
  set_state(orphaned, "orphaned");
  set_state(skipped, "skipped");
  out.backlog
    = tx.exec_params("SELECT count(*) FROM (SELECT 1 FROM zoekt_tasks WHERE "
                     "node_id = $1 AND state IN ('pending', 'processing') AND "
                     "perform_at <= now() LIMIT $2) AS due",
                     q.node_id, limit)[0][0]
        .as<std::int64_t>();
  tx.commit();
  return out;
}

// -- callback_write -------------------------------------------------------------

callback_written write_callback(pqxx::connection& c, const callback_write& w) {
  callback_written out;
  pqxx::work tx{c, "indexer_callback"};
  auto node = tx.exec_params("SELECT id FROM zoekt_nodes WHERE uuid = $1",
                             w.node_uuid);
  if (node.empty())
    return out;
  out.node_found = true;
  if (!w.task_id)
    return out;
  auto node_id = node[0][0].as<std::int64_t>();
  auto task = tx.exec_params("SELECT task_type, project_id, state, "
                             "retries_left FROM zoekt_tasks WHERE id = $1 AND "
                             "node_id = $2 FOR UPDATE",
                             *w.task_id, node_id);
  if (task.empty())
    return out;
  out.task_found = true;
  auto type = task[0][0].as<std::string>();
  auto project = task[0][1].as<std::int64_t>();
  auto state = task[0][2].as<std::string>();
  auto retries = task[0][3].as<int>();
  if (w.success) {
    if (state == "done")
      return out;
    if (type == "delete_repo")
      // Only a dropped repository goes: one moved to another node is that
      // node's now.
      tx.exec_params("DELETE FROM zoekt_repositories WHERE project_id = $1 "
                     "AND state = 'pending_deletion'",
                     project);
    else
      tx.exec_params(
        "UPDATE zoekt_repositories SET indexed_at = now(), state = CASE WHEN "
        "state IN ('pending', 'initializing') THEN 'ready' ELSE state END, "
        "size_bytes = coalesce(NULLIF($3, '')::bigint, size_bytes), "
        "index_file_count = coalesce(NULLIF($4, '')::bigint, "
        "index_file_count), retries_left = 3, updated_at = now() WHERE "
        "project_id = $1 AND node_id = $2",
        project, node_id, nullable(w.size_in_bytes),
        nullable(w.index_file_count));
    tx.exec_params("UPDATE zoekt_tasks SET state = 'done', updated_at = now() "
                   "WHERE id = $1",
                   *w.task_id);
  } else {
    if (state == "failed")
      return out;
    if (retries > 1)
      tx.exec_params("UPDATE zoekt_tasks SET retries_left = retries_left - 1, "
                     "updated_at = now() WHERE id = $1",
                     *w.task_id);
    else
      tx.exec_params("UPDATE zoekt_tasks SET state = 'failed', retries_left = "
                     "0, updated_at = now() WHERE id = $1",
                     *w.task_id);
  }
  tx.commit();
  return out;
}

// -- push_index_write -----------------------------------------------------------

push_index_written write_push_index(indexer_store_state& st,
                                    pqxx::connection& c,
                                    const push_index_write& w) {
  push_index_written out;
  pqxx::work tx{c, "indexer_push"};
  // A bounded purge keeps the table near the retention.
  tx.exec_params("DELETE FROM gatehouse_state.indexed_push_events WHERE "
                 "event_id IN (SELECT event_id FROM "
                 "gatehouse_state.indexed_push_events WHERE handled_at < "
                 "now() - $1::interval LIMIT $2)",
                 std::to_string(indexed_push_event_retention.count())
                   + " hours",
                 indexed_push_event_purge_batch);
  // A replica handling the same event waits here for the first one's
  // outcome, then finds the row.
  if (tx.exec_params("INSERT INTO gatehouse_state.indexed_push_events "
                     "(event_id) VALUES ($1) ON CONFLICT DO NOTHING "
                     "RETURNING 1",
                     w.event_id)
        .empty()) {
    out.first_time = false;
    return out; // rolled back: the purge can wait for the next push
  }
  if (w.zoekt) {
    tx.exec_params(
      "INSERT INTO zoekt_repositories AS r (project_id, node_id, state) "
      "VALUES ($1, NULLIF($2, '')::bigint, 'pending') ON CONFLICT "
      "(project_id) DO UPDATE SET node_id = EXCLUDED.node_id, updated_at = "
      "now() WHERE r.node_id IS NULL AND EXCLUDED.node_id IS NOT NULL",
      w.project_id, nullable(w.node_id));
    auto node = tx.exec_params(
      "SELECT node_id FROM zoekt_repositories WHERE project_id = $1",
      w.project_id);
    if (!node.empty() && !node[0][0].is_null())
      out.task_created
        = !tx.exec_params(
               "INSERT INTO zoekt_tasks (node_id, project_id, task_type, "
               "source_event_id) VALUES ($1, $2, 'index_repo', $3) ON "
               "CONFLICT (source_event_id) WHERE source_event_id IS NOT NULL "
               "DO NOTHING RETURNING 1",
               node[0][0].as<std::int64_t>(), w.project_id, w.event_id)
              .empty();
  }
  if (w.elastic) {
    lock_outbox(tx, w.elastic->project_id);
    out.elastic_written = insert_event(tx, *w.elastic);
    if (out.elastic_written)
      notify_relays(tx, w.elastic->project_id);
  }
  tx.commit();
  if (out.elastic_written && st.settings.on_events_committed)
    st.settings.on_events_committed();
  return out;
}

// -- index_state ----------------------------------------------------------------

index_state read_index_state(pqxx::connection& c) {
  index_state out;
  // One snapshot: nodes, repositories and the clock agree.
  pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{
    c, "indexer_state"};
  out.now = tx.exec("SELECT extract(epoch FROM now())::bigint")[0][0]
              .as<std::int64_t>();
  for (const auto& row : tx.exec(node_query + " ORDER BY n.id"))
    out.nodes.push_back(read_node(row));
  for (const auto& row :
       tx.exec("SELECT project_id, node_id, state, size_bytes FROM "
               "zoekt_repositories ORDER BY project_id")) {
    repository_row r;
    r.project_id = row[0].as<std::int64_t>();
    r.node_id = optional_int(row[1]);
    r.state = row[2].as<std::string>();
    r.size_bytes = row[3].as<std::int64_t>();
    out.repositories.push_back(std::move(r));
  }
  tx.commit();
  return out;
}

// -- assignment_write -----------------------------------------------------------

assignment_written write_assignment(pqxx::connection& c,
                                    const assignment_write& w) {
  assignment_written out;
  pqxx::work tx{c, "indexer_assignment"};
  auto add_task = [&](std::int64_t node, std::int64_t project,
                      const char* type) {
    tx.exec_params("INSERT INTO zoekt_tasks (node_id, project_id, task_type) "
                   "VALUES ($1, $2, $3)",
                   node, project, std::string{type});
  };
  // Ascending project order: two replicas' rounds lock rows in the same
  // order and cannot deadlock on them.
  auto assign = w.assign;
  std::sort(assign.begin(), assign.end());
  for (const auto& [project, node] : assign) {
    auto row = tx.exec_params("SELECT node_id, state FROM zoekt_repositories "
                              "WHERE project_id = $1 FOR UPDATE",
                              project);
    if (row.empty()) {
      tx.exec_params("INSERT INTO zoekt_repositories (project_id, node_id, "
                     "state) VALUES ($1, $2, 'pending')",
                     project, node);
    } else {
      auto old = optional_int(row[0][0]);
      if (old && *old != node) {
        add_task(*old, project, "delete_repo");
        ++out.delete_tasks;
      }
      tx.exec_params("UPDATE zoekt_repositories SET node_id = $2, state = "
                     "CASE WHEN node_id IS DISTINCT FROM $2 OR state = "
                     "'pending_deletion' THEN 'pending' ELSE state END, "
                     "updated_at = now() WHERE project_id = $1",
                     project, node);
    }
    add_task(node, project, "index_repo");
    ++out.index_tasks;
  }
  auto wait = w.wait;
  std::sort(wait.begin(), wait.end());
  if (!wait.empty())
    tx.exec_params("INSERT INTO zoekt_repositories (project_id, state) SELECT "
                   "p, 'pending' FROM unnest($1::bigint[]) AS p ON CONFLICT "
                   "(project_id) DO NOTHING",
                   int_array(wait));
  auto drop = w.drop;
  std::sort(drop.begin(), drop.end());
  for (auto project : drop) {
    auto row = tx.exec_params("SELECT node_id, state FROM zoekt_repositories "
                              "WHERE project_id = $1 FOR UPDATE",
                              project);
    if (row.empty())
      continue;
    auto node = optional_int(row[0][0]);
    if (!node) {
      tx.exec_params("DELETE FROM zoekt_repositories WHERE project_id = $1",
                     project);
      continue;
    }
    if (row[0][1].as<std::string>() == "pending_deletion")
      continue; // its delete task is on its way
    add_task(*node, project, "delete_repo");
    ++out.delete_tasks;
    tx.exec_params("UPDATE zoekt_repositories SET state = 'pending_deletion', "
                   "updated_at = now() WHERE project_id = $1",
                   project);
  }
  // Rounds are periodic: the place where finished tasks stop piling up.
  tx.exec_params("DELETE FROM zoekt_tasks WHERE id IN (SELECT id FROM "
                 "zoekt_tasks WHERE state IN ('done', 'failed', 'orphaned', "
                 "'skipped') AND updated_at < now() - $1::interval LIMIT $2)",
                 std::to_string(finished_task_retention.count()) + " hours",
                 finished_task_purge_batch);
  tx.commit();
  return out;
}

} // namespace

indexer_store_actor::behavior_type indexer_store(
  indexer_store_actor::stateful_pointer<indexer_store_state> self,
  indexer_store_settings settings) {
  self->state.settings = std::move(settings);
  self->state.session = pg_session{self->state.settings.database_url,
                                   self->state.settings.statement_timeout};
  return {
    [=](node_write& w) -> caf::result<node_written> {
      return with_session<node_written>(
        self->state, "indexer_node",
        [&](pqxx::connection& c) { return write_node(c, w); });
    },
    [=](task_take& q) -> caf::result<tasks_taken> {
      return with_session<tasks_taken>(
        self->state, "indexer_take",
        [&](pqxx::connection& c) { return take_tasks(c, q); });
    },
    [=](callback_write& w) -> caf::result<callback_written> {
      return with_session<callback_written>(
        self->state, "indexer_callback",
        [&](pqxx::connection& c) { return write_callback(c, w); });
    },
    [=](push_index_write& w) -> caf::result<push_index_written> {
      auto& st = self->state;
      return with_session<push_index_written>(
        st, "indexer_push",
        [&](pqxx::connection& c) { return write_push_index(st, c, w); });
    },
    [=](atom::index_state) -> caf::result<index_state> {
      return with_session<index_state>(self->state, "indexer_state",
                                       read_index_state);
    },
    [=](assignment_write& w) -> caf::result<assignment_written> {
      return with_session<assignment_written>(
        self->state, "indexer_assignment",
        [&](pqxx::connection& c) { return write_assignment(c, w); });
    },
  };
}

} // namespace gatehouse::storage
