// Search indexing in the read model (settings.search, enabled namespaces,
// project_record::forked: full load and the change log, 012_zoekt.sql)
// and the indexer store's reads and writes (storage/indexer_store.hpp),
// against a real PostgreSQL. Hidden tag [.pg].

#include "storage/indexer_store.hpp"
#include "storage/read_model_loader.hpp"
#include "tests/readmodel/fixtures.hpp"

#include <algorithm>
#include <atomic>
#include <set>
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;

namespace {

/// Waits for a model for which `pred` holds.
template <class Pred>
snapshot_ptr wait_for(actor_env& env, Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto s = env.next_snapshot(1s);
    if (s && pred(*s))
      return s;
  }
  return nullptr;
}

/// Stops a detached actor when the test ends, a failed REQUIRE included.
template <class Handle>
struct stop_on_exit {
  actor_env& env;
  Handle hdl;
  ~stop_on_exit() {
    env.self->send_exit(hdl, caf::exit_reason::user_shutdown);
  }
};

std::string uuid(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", n);
  return buf;
}

indexer_store_actor spawn_store(actor_env& env, const std::string& url,
                                 std::atomic<int>* commits = nullptr) {
  storage::indexer_store_settings s;
  s.database_url = url;
  s.statement_timeout = 5s;
  if (commits)
    s.on_events_committed = [commits] { ++*commits; };
  return env.sys.spawn<caf::detached>(storage::indexer_store, s);
}

/// The demo database (namespace 5 top-level and enabled, 6 below it;
/// projects 10 in 5, 11 in 6) with an indexer store.
struct store_env {
  seeded_database m;
  actor_env env;
  std::atomic<int> commits{0};
  indexer_store_actor store = spawn_store(env, m.db.url(), &commits);

  ~store_env() {
    env.self->send_exit(store, caf::exit_reason::user_shutdown);
  }

  indexer::node_written node(const std::string& node_uuid,
                             std::int64_t debounce = 5,
                             const std::string& name = "zoekt-a") {
    indexer::node_write w;
    w.report.uuid = node_uuid;
    w.report.url = "http://zoekt-a:6080";
    w.report.name = name;
    w.report.disk_all = 1000;
    w.report.disk_used = 100;
    w.report.disk_indexed = 50;
    w.report.schema_version = 2531;
    w.report.concurrency = 4;
    w.report.task_count = 1;
    w.report.services = std::vector<std::string>{"zoekt"};
    w.debounce_seconds = debounce;
    auto out = env.request<indexer::node_written>(store, w);
    REQUIRE(out);
    return *out;
  }

  indexer::tasks_taken take(std::int64_t node_id, int limit = 20) {
    auto out = env.request<indexer::tasks_taken>(
      store, indexer::task_take{node_id, limit});
    REQUIRE(out);
    return *out;
  }

  /// A task row; returns its id.
  std::int64_t task(std::int64_t node_id, std::int64_t project,
                    const std::string& type = "index_repo",
                    const std::string& perform_at = "now() - interval '1 "
                                                    "minute'") {
    return std::stoll(
      m.query("INSERT INTO zoekt_tasks (node_id, project_id, task_type, "
              "perform_at) VALUES ("
              + std::to_string(node_id) + ", " + std::to_string(project)
              + ", '" + type + "', " + perform_at + ") RETURNING id"));
  }

  std::string task_state(std::int64_t id) {
    return m.query("SELECT state || '/' || retries_left FROM zoekt_tasks "
                   "WHERE id = " + std::to_string(id));
  }

  std::string repository(std::int64_t project) {
    return m.query("SELECT coalesce(node_id::text, '-') || '/' || state || "
                   "'/' || size_bytes || '/' || index_file_count || '/' || "
                   "(indexed_at IS NOT NULL) || '/' || retries_left FROM "
                   "zoekt_repositories WHERE project_id = "
                   + std::to_string(project));
  }

  std::string tasks() {
    return m.query("SELECT coalesce(string_agg(node_id || ':' || project_id "
                   "|| ':' || task_type || ':' || state, ', ' ORDER BY id), "
                   "'') FROM zoekt_tasks");
  }
};

std::vector<std::int64_t> ids(const indexer::tasks_taken& t) {
  std::vector<std::int64_t> out;
  for (const auto& r : t.tasks)
    out.push_back(r.id);
  return out;
}

indexer::outbox_event elastic_event(int n) {
  indexer::outbox_event e;
  e.event_id = uuid(n);
  e.project_id = 10;
  e.subject = "gitlab.events.search_index.10";
  e.kind = "search_index";
  e.body = R"({"project_id":10})";
  return e;
}

} // namespace

// -- the read model -------------------------------------------------------------

TEST_CASE("a full load reads search settings, enabled namespaces and forks",
          "[.pg]") {
  seeded_database m;
  auto s = storage::load_snapshot(*m.conn);
  // GitLab's defaults, from 012.
  CHECK_FALSE(s.settings.search.zoekt_indexing_paused);
  CHECK(s.settings.search.zoekt_indexing_parallelism == 1);
  CHECK(s.settings.search.zoekt_maximum_files == 500000);
  CHECK(s.settings.search.zoekt_indexing_timeout_seconds == 1800);
  CHECK(s.settings.search.zoekt_cpu_to_tasks_ratio == 1.0);
  CHECK_FALSE(s.settings.search.elasticsearch_indexing);
  CHECK(s.settings.search.elasticsearch_indexed_file_size_limit_kb == 1024);
  CHECK(s.zoekt_enabled_namespaces == std::vector<std::int64_t>{5});
  CHECK_FALSE(s.projects.at(10).forked);

  auto doc = demo_seed();
  auto& set = doc["settings"];
  set["zoekt_indexing_paused"] = true;
  set["zoekt_indexing_parallelism"] = 3;
  set["zoekt_maximum_files"] = 10;
  set["zoekt_indexing_timeout_seconds"] = 60;
  set["zoekt_cpu_to_tasks_ratio"] = 0.25;
  set["elasticsearch_indexing"] = true;
  set["elasticsearch_indexed_file_size_limit_kb"] = 4;
  doc["projects"][1]["forked_from_project_id"] = 10;
  seed_ok(*m.conn, doc);
  s = storage::load_snapshot(*m.conn);
  CHECK(s.settings.search.zoekt_indexing_paused);
  CHECK(s.settings.search.zoekt_indexing_parallelism == 3);
  CHECK(s.settings.search.zoekt_maximum_files == 10);
  CHECK(s.settings.search.zoekt_indexing_timeout_seconds == 60);
  CHECK(s.settings.search.zoekt_cpu_to_tasks_ratio == 0.25);
  CHECK(s.settings.search.elasticsearch_indexing);
  CHECK(s.settings.search.elasticsearch_indexed_file_size_limit_kb == 4);
  CHECK(s.projects.at(11).forked);
  CHECK_FALSE(s.projects.at(10).forked);
  CHECK(storage::kind_concerns_read_model("zoekt_enabled_namespaces"));
}

TEST_CASE("search changes reach the model through the change log", "[.pg]") {
  seeded_database m;
  actor_env env;
  auto loader = env.sys.spawn<caf::detached>(storage::read_model_loader,
                                             loader_settings(m.db.url()));
  stop_on_exit<read_model_loader_actor> stop{env, loader};
  env.self->send(loader, atom::subscribe::value, env.subscriber());
  auto first = env.next_snapshot(10s);
  REQUIRE(first);
  REQUIRE(first->zoekt_enabled_namespaces == std::vector<std::int64_t>{5});

  exec(*m.conn, "INSERT INTO namespaces (id, path, name, full_path) VALUES "
                "(3, 'early', 'Early', 'early')");
  exec(*m.conn, "INSERT INTO zoekt_enabled_namespaces (namespace_id) VALUES (3)");
  auto s = wait_for(env, [](const snapshot& s) {
    return s.zoekt_enabled_namespaces.size() == 2;
  });
  REQUIRE(s);
  CHECK(s->zoekt_enabled_namespaces == std::vector<std::int64_t>{3, 5});
  // Not a full load: the users' shards are the first model's.
  CHECK(s->users.shares_shard_with(first->users, first->users.shard_of(1)));

  exec(*m.conn, "DELETE FROM zoekt_enabled_namespaces WHERE namespace_id = 5");
  exec(*m.conn, "UPDATE settings SET value = 'true' WHERE key = "
                "'zoekt_indexing_paused'");
  exec(*m.conn, "UPDATE projects SET forked_from_project_id = 10 WHERE id = 11");
  s = wait_for(env, [](const snapshot& s) {
    return s.zoekt_enabled_namespaces == std::vector<std::int64_t>{3}
      && s.settings.search.zoekt_indexing_paused && s.projects.at(11).forked;
  });
  REQUIRE(s);
  CHECK(s->users.shares_shard_with(first->users, first->users.shard_of(1)));

  exec(*m.conn, "UPDATE projects SET forked_from_project_id = NULL");
  exec(*m.conn, "TRUNCATE zoekt_enabled_namespaces");
  s = wait_for(env, [](const snapshot& s) {
    return s.zoekt_enabled_namespaces.empty() && !s.projects.at(11).forked;
  });
  REQUIRE(s);
}

// -- the indexer store: nodes ---------------------------------------------------

TEST_CASE("node_write inserts once, debounces, and answers the row", "[.pg]") {
  store_env t;
  auto first = t.node(uuid(1));
  CHECK(first.created);
  CHECK(first.node.id > 1); // past the demo's seeded node 1
  CHECK(first.node.uuid == uuid(1));
  CHECK(first.node.name == "zoekt-a");
  CHECK(first.node.total_bytes == 1000);
  CHECK(first.node.used_bytes == 100);
  CHECK(first.node.indexed_bytes == 50);
  CHECK(first.node.schema_version == 2531);
  CHECK(first.node.concurrency == std::optional<std::int64_t>{4});
  CHECK(first.node.task_count == std::optional<std::int64_t>{1});
  auto now = std::stoll(t.m.query("SELECT extract(epoch FROM now())::bigint"));
  CHECK(std::abs(first.node.last_seen_at - now) <= 5);

  // Within the debounce: nothing written, the stored row answered.
  auto again = t.node(uuid(1), 5, "renamed");
  CHECK_FALSE(again.created);
  CHECK(again.node.id == first.node.id);
  CHECK(again.node.name == "zoekt-a");
  CHECK(t.m.query("SELECT name FROM zoekt_nodes WHERE uuid = '" + uuid(1) + "'")
        == "zoekt-a");

  // Past the debounce (PostgreSQL's clock moved back by hand): written.
  exec(*t.m.conn, "UPDATE gatehouse_state.zoekt_node_states SET updated_at = "
                  "now() - interval '6 seconds', last_seen_at = now() - "
                  "interval '1 hour'");
  auto later = t.node(uuid(1), 5, "renamed");
  CHECK_FALSE(later.created);
  CHECK(later.node.id == first.node.id);
  CHECK(later.node.name == "renamed");
  CHECK(std::abs(later.node.last_seen_at - now) <= 5);

  SECTION("absent optional figures keep indexed bytes and schema version") {
    indexer::node_write w;
    w.report.uuid = uuid(1);
    w.report.url = "http://zoekt-a:6080";
    w.report.name = "renamed";
    w.report.disk_all = 2000;
    w.report.disk_used = 300;
    w.debounce_seconds = 0;
    auto out = t.env.request<indexer::node_written>(t.store, w);
    REQUIRE(out);
    CHECK(out->node.total_bytes == 2000);
    CHECK(out->node.indexed_bytes == 50);
    CHECK(out->node.schema_version == 2531);
    CHECK_FALSE(out->node.concurrency);
    CHECK_FALSE(out->node.task_count);
    CHECK(t.m.query("SELECT services::text FROM "
                    "gatehouse_state.zoekt_node_states")
          == "{zoekt}");
  }
  SECTION("a seeded node is written on its first heartbeat, not created") {
    auto seeded = t.node("3869fe21-36d1-4612-9676-0b783ef2dcd7");
    CHECK_FALSE(seeded.created);
    CHECK(seeded.node.id == 1);
    CHECK(seeded.node.total_bytes == 1000);
  }
}

// -- the indexer store: taking tasks --------------------------------------------

TEST_CASE("task_take: due tasks, oldest first, one per project", "[.pg]") {
  store_env t;
  auto node = t.node(uuid(1)).node.id;
  auto other = t.node(uuid(2)).node.id;
  exec(*t.m.conn, "INSERT INTO zoekt_repositories (project_id, node_id, state) "
                  "VALUES (10, " + std::to_string(node) + ", 'ready')");
  auto older = t.task(node, 10, "index_repo", "now() - interval '2 minutes'");
  auto newer = t.task(node, 10);
  auto future = t.task(node, 11, "index_repo", "now() + interval '1 hour'");
  auto foreign = t.task(other, 11);
  auto done = t.task(node, 11);
  exec(*t.m.conn, "UPDATE zoekt_tasks SET state = 'done' WHERE id = "
                    + std::to_string(done));

  auto taken = t.take(node);
  CHECK(ids(taken) == std::vector<std::int64_t>{older});
  REQUIRE(taken.tasks.size() == 1);
  CHECK(taken.tasks[0].type == "index_repo");
  CHECK(taken.tasks[0].project_id == 10);
  CHECK(t.task_state(older) == "processing/3");
  CHECK(t.task_state(newer) == "pending/3");
  CHECK(t.task_state(future) == "pending/3");
  CHECK(t.task_state(foreign) == "pending/3");
  // Both of project 10's tasks are due.
  CHECK(taken.backlog == 2);

  SECTION("a processing task is handed out again until its callback") {
    CHECK(ids(t.take(node)) == std::vector<std::int64_t>{older});
  }
  SECTION("the limit bounds the tasks and the backlog count") {
    for (std::int64_t p = 2000; p < 2005; ++p)
      t.task(node, p, "delete_repo");
    auto some = t.take(node, 3);
    CHECK(some.tasks.size() == 3);
    CHECK(some.backlog == 3);
    CHECK(t.take(node, 0).tasks.empty());
  }
}

TEST_CASE("task_take: orphaned and skipped tasks are not handed out",
          "[.pg]") {
  store_env t;
  auto node = t.node(uuid(1)).node.id;
  exec(*t.m.conn, "INSERT INTO zoekt_repositories (project_id, node_id, state) "
                  "VALUES (11, " + std::to_string(node) + ", 'failed')");
  auto gone = t.task(node, 777);                // no project 777
  auto gone_delete = t.task(node, 778, "delete_repo");
  auto failed = t.task(node, 11);
  auto failed_delete = t.task(node, 11, "delete_repo");
  auto fine = t.task(node, 10, "force_index_repo");

  auto taken = t.take(node);
  std::set<std::int64_t> got;
  for (auto id : ids(taken))
    got.insert(id);
  CHECK(got == std::set<std::int64_t>{gone_delete, failed_delete, fine});
  CHECK(t.task_state(gone) == "orphaned/3");
  CHECK(t.task_state(failed) == "skipped/3");
  CHECK(t.task_state(gone_delete) == "processing/3");
  CHECK(t.task_state(fine) == "processing/3");
  CHECK(taken.backlog == 3);
}

TEST_CASE("task_take passes over tasks another replica holds", "[.pg]") {
  store_env t;
  auto node = t.node(uuid(1)).node.id;
  std::vector<std::int64_t> all;
  for (std::int64_t p = 3000; p < 3010; ++p)
    all.push_back(t.task(node, p, "delete_repo"));
  // Another replica is in the middle of taking the first four.
  auto other = storage::connect(t.m.db.url(), 30s);
  pqxx::work held{*other};
  held.exec("SELECT id FROM zoekt_tasks WHERE id <= "
            + std::to_string(all[3]) + " FOR UPDATE");
  auto taken = t.take(node);
  CHECK(ids(taken)
        == std::vector<std::int64_t>(all.begin() + 4, all.end()));
  held.abort();
  // Released: handed out too (they are still due).
  CHECK(t.take(node).tasks.size() == 10);
}

TEST_CASE("two stores taking for one node at once both answer", "[.pg]") {
  store_env t;
  auto node = t.node(uuid(1)).node.id;
  for (std::int64_t p = 4000; p < 4100; ++p)
    t.task(node, p, "delete_repo");
  auto second = spawn_store(t.env, t.m.db.url());
  stop_on_exit<indexer_store_actor> stop{t.env, second};
  std::vector<indexer::tasks_taken> answers;
  std::vector<caf::error> errors;
  // Both requests are out before either answer is read.
  auto one = t.env.self->request(t.store, 10s, indexer::task_take{node, 60});
  auto two = t.env.self->request(second, 10s, indexer::task_take{node, 60});
  for (auto* handle : {&one, &two})
    handle->receive(
      [&](indexer::tasks_taken& x) { answers.push_back(std::move(x)); },
      [&](caf::error& e) { errors.push_back(std::move(e)); });
  REQUIRE(errors.empty());
  REQUIRE(answers.size() == 2);
  // SKIP LOCKED: a take that meets the other's locked rows passes over them,
  // so one of two simultaneous takes may answer fewer (even none); the node
  // gets the rest on its next poll. Neither waits, fails or repeats a
  // project, and at least one answers a full batch.
  std::size_t fullest = 0;
  for (const auto& a : answers) {
    CHECK(a.tasks.size() <= 60);
    fullest = std::max(fullest, a.tasks.size());
    std::set<std::int64_t> projects;
    for (const auto& r : a.tasks)
      projects.insert(r.project_id);
    CHECK(projects.size() == a.tasks.size());
  }
  CHECK(fullest == 60);
  CHECK(t.m.query("SELECT count(*) FROM zoekt_tasks WHERE state = "
                  "'processing'")
        != "0");
}

// -- the indexer store: callbacks -----------------------------------------------

TEST_CASE("callback_write records a node's result for its own task", "[.pg]") {
  store_env t;
  auto node = t.node(uuid(1)).node.id;
  auto other = t.node(uuid(2)).node.id;
  exec(*t.m.conn, "INSERT INTO zoekt_repositories (project_id, node_id, state, "
                  "retries_left) VALUES (10, " + std::to_string(node)
                    + ", 'pending', 1)");
  auto index = t.task(node, 10);
  auto foreign = t.task(other, 10);
  auto callback = [&](const std::string& node_uuid,
                      std::optional<std::int64_t> task, bool success,
                      std::optional<std::int64_t> size = std::nullopt,
                      std::optional<std::int64_t> files = std::nullopt) {
    indexer::callback_write w;
    w.node_uuid = node_uuid;
    w.task_id = task;
    w.success = success;
    w.size_in_bytes = size;
    w.index_file_count = files;
    auto out = t.env.request<indexer::callback_written>(t.store, w);
    REQUIRE(out);
    return *out;
  };

  SECTION("an unknown node: nothing found, nothing written") {
    auto out = callback(uuid(9), index, true);
    CHECK_FALSE(out.node_found);
    CHECK_FALSE(out.task_found);
    CHECK(t.task_state(index) == "pending/3");
  }
  SECTION("no task id, or another node's task: the node only") {
    auto out = callback(uuid(1), std::nullopt, true);
    CHECK(out.node_found);
    CHECK_FALSE(out.task_found);
    out = callback(uuid(1), foreign, true);
    CHECK(out.node_found);
    CHECK_FALSE(out.task_found);
    CHECK(t.task_state(foreign) == "pending/3");
  }
  SECTION("success: the repository ready with its stats, the task done") {
    auto out = callback(uuid(1), index, true, 4096, 12);
    CHECK(out.task_found);
    CHECK(t.task_state(index) == "done/3");
    CHECK(t.repository(10) == std::to_string(node) + "/ready/4096/12/true/3");
    // Done is done: a repeat changes nothing.
    exec(*t.m.conn, "UPDATE zoekt_repositories SET size_bytes = 1");
    callback(uuid(1), index, true, 8192, 24);
    CHECK(t.repository(10) == std::to_string(node) + "/ready/1/12/true/3");
    // Without stats they are kept; a ready repository stays ready, a
    // failed one stays failed.
    exec(*t.m.conn, "UPDATE zoekt_repositories SET state = 'failed'");
    auto again = t.task(node, 10);
    callback(uuid(1), again, true);
    CHECK(t.repository(10) == std::to_string(node) + "/failed/1/12/true/3");
  }
  SECTION("success on a repository moved to another node leaves it alone") {
    exec(*t.m.conn, "UPDATE zoekt_repositories SET node_id = "
                      + std::to_string(other));
    callback(uuid(1), index, true, 4096, 12);
    CHECK(t.task_state(index) == "done/3");
    CHECK(t.repository(10) == std::to_string(other) + "/pending/0/0/false/1");
  }
  SECTION("a delete removes a dropped repository, not a moved one") {
    auto del = t.task(node, 10, "delete_repo");
    callback(uuid(1), del, true);
    CHECK(t.task_state(del) == "done/3");
    CHECK(t.repository(10) != "");
    exec(*t.m.conn, "UPDATE zoekt_repositories SET state = 'pending_deletion'");
    auto del2 = t.task(node, 10, "delete_repo");
    callback(uuid(1), del2, true);
    CHECK(t.repository(10) == "");
  }
  SECTION("failure: retries count down, then the task fails") {
    callback(uuid(1), index, false);
    CHECK(t.task_state(index) == "pending/2");
    callback(uuid(1), index, false);
    CHECK(t.task_state(index) == "pending/1");
    callback(uuid(1), index, false);
    CHECK(t.task_state(index) == "failed/0");
    // Failed is failed.
    callback(uuid(1), index, false);
    CHECK(t.task_state(index) == "failed/0");
    CHECK(t.repository(10) == std::to_string(node) + "/pending/0/0/false/1");
  }
}

// -- the indexer store: pushes ----------------------------------------------------

TEST_CASE("push_index_write is idempotent on the push event", "[.pg]") {
  store_env t;
  auto node = t.node(uuid(1)).node.id;
  auto push = [&](const std::string& event, bool zoekt,
                  std::optional<std::int64_t> node_id,
                  std::optional<indexer::outbox_event> elastic) {
    indexer::push_index_write w;
    w.event_id = event;
    w.project_id = 10;
    w.zoekt = zoekt;
    w.node_id = node_id;
    w.elastic = std::move(elastic);
    auto out = t.env.request<indexer::push_index_written>(t.store, w);
    REQUIRE(out);
    return *out;
  };
  auto outbox = [&] {
    return t.m.query("SELECT count(*) FROM gatehouse_state.outbox");
  };

  auto first = push(uuid(100), true, node, elastic_event(100));
  CHECK(first.first_time);
  CHECK(first.task_created);
  CHECK(first.elastic_written);
  CHECK(t.commits == 1);
  CHECK(t.repository(10) == std::to_string(node) + "/pending/0/0/false/3");
  CHECK(t.tasks() == std::to_string(node) + ":10:index_repo:pending");
  CHECK(outbox() == "1");
  CHECK(t.m.query("SELECT source_event_id FROM zoekt_tasks") == uuid(100));

  // The same event again (a redelivery): nothing at all.
  auto repeat = push(uuid(100), true, node, elastic_event(100));
  CHECK_FALSE(repeat.first_time);
  CHECK_FALSE(repeat.task_created);
  CHECK_FALSE(repeat.elastic_written);
  CHECK(t.commits == 1);
  CHECK(t.tasks() == std::to_string(node) + ":10:index_repo:pending");
  CHECK(outbox() == "1");

  SECTION("a repository keeps its node; without one it waits") {
    auto other = t.node(uuid(2)).node.id;
    push(uuid(101), true, other, std::nullopt);
    CHECK(t.repository(10) == std::to_string(node) + "/pending/0/0/false/3");
    exec(*t.m.conn, "DELETE FROM zoekt_repositories");
    exec(*t.m.conn, "DELETE FROM zoekt_tasks");
    auto waiting = push(uuid(102), true, std::nullopt, std::nullopt);
    CHECK(waiting.first_time);
    CHECK_FALSE(waiting.task_created);
    CHECK(t.repository(10) == "-/pending/0/0/false/3");
    // A repeat of that event stays a repeat, though it created no task.
    CHECK_FALSE(push(uuid(102), true, node, std::nullopt).first_time);
    CHECK(t.repository(10) == "-/pending/0/0/false/3");
    // The next push gives it the node the rules chose.
    CHECK(push(uuid(103), true, other, std::nullopt).task_created);
    CHECK(t.repository(10) == std::to_string(other) + "/pending/0/0/false/3");
  }
  SECTION("handled events are forgotten after a week, a batch at a time") {
    exec(*t.m.conn, "INSERT INTO gatehouse_state.indexed_push_events "
                    "(event_id, handled_at) SELECT 'old-' || n, now() - "
                    "interval '8 days' FROM generate_series(1, 150) AS n");
    push(uuid(105), false, std::nullopt, std::nullopt);
    CHECK(t.m.query("SELECT count(*) FROM gatehouse_state.indexed_push_events "
                    "WHERE event_id LIKE 'old-%'")
          == "50");
    CHECK(t.m.query("SELECT count(*) FROM gatehouse_state.indexed_push_events "
                    "WHERE event_id NOT LIKE 'old-%'")
          == "2");
  }
  SECTION("not indexed by Zoekt: Elasticsearch only") {
    exec(*t.m.conn, "DELETE FROM zoekt_repositories");
    auto out = push(uuid(104), false, node, elastic_event(104));
    CHECK(out.first_time);
    CHECK_FALSE(out.task_created);
    CHECK(out.elastic_written);
    CHECK(t.repository(10) == "");
    CHECK(outbox() == "2");
    CHECK(t.commits == 2);
  }
}

// -- the indexer store: assignment rounds -------------------------------------------

TEST_CASE("index_state reads every node and repository on one clock",
          "[.pg]") {
  store_env t;
  auto node = t.node(uuid(1)).node.id;
  exec(*t.m.conn, "INSERT INTO zoekt_repositories (project_id, node_id, state, "
                  "size_bytes) VALUES (11, NULL, 'pending', 0), (10, "
                    + std::to_string(node) + ", 'ready', 77)");
  auto out = t.env.request<indexer::index_state>(t.store,
                                                 atom::index_state::value);
  REQUIRE(out);
  auto now = std::stoll(t.m.query("SELECT extract(epoch FROM now())::bigint"));
  CHECK(std::abs(out->now - now) <= 5);
  REQUIRE(out->nodes.size() == 2); // the seeded one and the registered one
  CHECK(out->nodes[0].id == 1);
  CHECK(out->nodes[0].last_seen_at == 0); // never seen
  CHECK(out->nodes[1].id == node);
  CHECK(std::abs(out->nodes[1].last_seen_at - now) <= 5);
  REQUIRE(out->repositories.size() == 2);
  CHECK(out->repositories[0].project_id == 10);
  CHECK(out->repositories[0].node_id == std::optional<std::int64_t>{node});
  CHECK(out->repositories[0].state == "ready");
  CHECK(out->repositories[0].size_bytes == 77);
  CHECK(out->repositories[1].project_id == 11);
  CHECK_FALSE(out->repositories[1].node_id);
}

TEST_CASE("assignment_write creates, moves, waits and drops", "[.pg]") {
  store_env t;
  auto a = t.node(uuid(1)).node.id;
  auto b = t.node(uuid(2)).node.id;
  auto as = std::to_string(a);
  auto bs = std::to_string(b);
  auto write = [&](indexer::assignment_write w) {
    auto out = t.env.request<indexer::assignment_written>(t.store, w);
    REQUIRE(out);
    return *out;
  };

  indexer::assignment_write first;
  first.assign = {{10, a}};
  first.wait = {11};
  auto out = write(first);
  CHECK(out.index_tasks == 1);
  CHECK(out.delete_tasks == 0);
  CHECK(t.repository(10) == as + "/pending/0/0/false/3");
  CHECK(t.repository(11) == "-/pending/0/0/false/3");
  CHECK(t.tasks() == as + ":10:index_repo:pending");

  SECTION("a move: index on the new node, delete on the old") {
    exec(*t.m.conn, "UPDATE zoekt_repositories SET state = 'ready' WHERE "
                    "project_id = 10");
    indexer::assignment_write move;
    move.assign = {{10, b}, {11, a}};
    out = write(move);
    CHECK(out.index_tasks == 2);
    CHECK(out.delete_tasks == 1);
    CHECK(t.repository(10) == bs + "/pending/0/0/false/3");
    CHECK(t.repository(11) == as + "/pending/0/0/false/3");
    CHECK(t.tasks()
          == as + ":10:index_repo:pending, " + as + ":10:delete_repo:pending, "
               + bs + ":10:index_repo:pending, " + as
               + ":11:index_repo:pending");
  }
  SECTION("a drop: a delete task and pending_deletion, once; without a node "
          "the row goes") {
    indexer::assignment_write drop;
    drop.drop = {10, 11, 999};
    out = write(drop);
    CHECK(out.index_tasks == 0);
    CHECK(out.delete_tasks == 1);
    CHECK(t.repository(10) == as + "/pending_deletion/0/0/false/3");
    CHECK(t.repository(11) == "");
    out = write(drop);
    CHECK(out.delete_tasks == 0);
    CHECK(t.tasks()
          == as + ":10:index_repo:pending, " + as + ":10:delete_repo:pending");
    // Enabled again before the node confirmed: indexed again.
    indexer::assignment_write back;
    back.assign = {{10, a}};
    write(back);
    CHECK(t.repository(10) == as + "/pending/0/0/false/3");
  }
  SECTION("a round purges tasks finished a day ago, not newer ones") {
    auto old_done = t.task(a, 10);
    auto new_done = t.task(a, 10);
    auto old_pending = t.task(a, 10);
    exec(*t.m.conn, "UPDATE zoekt_tasks SET state = 'done' WHERE id IN ("
                      + std::to_string(old_done) + ", "
                      + std::to_string(new_done) + ")");
    exec(*t.m.conn, "UPDATE zoekt_tasks SET updated_at = now() - interval "
                    "'25 hours' WHERE id IN (" + std::to_string(old_done)
                      + ", " + std::to_string(old_pending) + ")");
    write(indexer::assignment_write{});
    CHECK(t.task_state(old_done) == "");
    CHECK(t.task_state(new_done) == "done/3");
    CHECK(t.task_state(old_pending) == "pending/3");
  }
  SECTION("waiting repositories that exist are left alone") {
    indexer::assignment_write wait;
    wait.wait = {10, 11};
    write(wait);
    CHECK(t.repository(10) == as + "/pending/0/0/false/3");
  }
}
