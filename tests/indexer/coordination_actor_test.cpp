// The indexer coordination actor with a typed mock of the full indexer
// store and of the read-model loader, on CAF's test coordinator: what it
// asks the store for each call, what it answers without it, store failures
// and deadlines, pushes, and the schedule of assignment rounds (contract
// other-callers §6, §7).

#include "actors/indexer/indexer_coordination.hpp"
#include "messages/errors.hpp"
#include "tests/indexer/indexer_world.hpp"
#include "tests/support/deterministic.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using namespace gatehouse;
using namespace gatehouse::indexer::test;
using namespace std::chrono_literals;

namespace {

constexpr unix_time now = 1'800'000'000;
constexpr std::int64_t gib = 1LL << 30;

/// What the mock store answers and what it was asked. Single-threaded: the
/// test coordinator runs every actor on the test's thread.
struct store_script {
  bool fail = false;
  /// Never answer node_write (a stuck connection).
  bool hang = false;
  bool node_found = true;
  indexer::node_row node = indexer::test::node(7, 100 * gib, 10 * gib, now);
  bool created = false;
  std::vector<indexer::task_row> tasks;
  std::int64_t backlog = 0;
  indexer::index_state state;

  std::vector<indexer::node_write> node_writes;
  std::vector<indexer::task_take> takes;
  std::vector<indexer::callback_write> callbacks;
  std::vector<indexer::push_index_write> pushes;
  int state_reads = 0;
  std::vector<indexer::assignment_write> assignments;

  std::size_t node_calls() const {
    return node_writes.size() + takes.size() + callbacks.size();
  }
};

caf::error down() {
  return caf::make_error(errc::internal, "connection refused");
}

indexer_store_actor::behavior_type mock_store(indexer_store_actor::pointer,
                                              store_script* s) {
  return {
    [=](indexer::node_write& w) -> caf::result<indexer::node_written> {
      s->node_writes.push_back(w);
      if (s->hang)
        return caf::delegated<indexer::node_written>{};
      if (s->fail)
        return down();
      return indexer::node_written{s->node, s->created};
    },
    [=](indexer::task_take& t) -> caf::result<indexer::tasks_taken> {
      s->takes.push_back(t);
      if (s->fail)
        return down();
      auto tasks = s->tasks;
      if (static_cast<int>(tasks.size()) > t.limit)
        tasks.resize(static_cast<std::size_t>(t.limit));
      return indexer::tasks_taken{tasks, s->backlog};
    },
    [=](indexer::callback_write& c) -> caf::result<indexer::callback_written> {
      s->callbacks.push_back(c);
      if (s->fail)
        return down();
      return indexer::callback_written{s->node_found, s->node_found};
    },
    [=](indexer::push_index_write& w)
      -> caf::result<indexer::push_index_written> {
      s->pushes.push_back(w);
      if (s->fail)
        return down();
      return indexer::push_index_written{true, w.zoekt, w.elastic.has_value()};
    },
    [=](atom::index_state) -> caf::result<indexer::index_state> {
      ++s->state_reads;
      if (s->fail)
        return down();
      return s->state;
    },
    [=](indexer::assignment_write& w)
      -> caf::result<indexer::assignment_written> {
      s->assignments.push_back(w);
      if (s->fail)
        return down();
      return indexer::assignment_written{static_cast<int>(w.assign.size()),
                                         static_cast<int>(w.drop.size())};
    },
  };
}

/// Hands its snapshot to every subscriber; the test sends later ones.
read_model_loader_actor::behavior_type mock_loader(
  read_model_loader_actor::pointer, snapshot_ptr snap) {
  return {
    [=](atom::subscribe, caf::actor& who) {
      if (snap)
        caf::anon_send(who, atom::snapshot::value, snap);
    },
    [=](atom::get) -> caf::result<snapshot_ptr> { return snap; },
    [](atom::tick, std::uint64_t) {},
  };
}

snapshot_ptr shared(snapshot s) {
  return std::make_shared<const snapshot>(std::move(s));
}

struct fixture : test::deterministic {
  store_script script;
  indexer_coordination_settings settings;
  indexer_store_actor store;
  indexer_actor coordination;

  explicit fixture(std::optional<snapshot> world = indexer_world()) {
    settings.store_timeout = 5s;
    settings.round_timeout = 30s;
    settings.assign_interval = 60s;
    settings.assign_after_change = 1s;
    script.state.now = now;
    script.state.nodes = {script.node};
    store = spawn(mock_store, &script);
    auto loader
      = spawn(mock_loader, world ? shared(std::move(*world)) : snapshot_ptr{});
    coordination = spawn(indexer_coordination, settings, loader, store);
    run();
  }

  indexer::node_report report() {
    indexer::node_report r;
    r.uuid = "3869fe21-36d1-4612-9676-0b783ef2dcd7";
    r.url = "http://zoekt-1:6065";
    r.name = "zoekt-1";
    r.disk_all = 100 * gib;
    r.disk_used = 10 * gib;
    r.concurrency = 2;
    return r;
  }

  caf::expected<indexer::heartbeat_answer> heartbeat() {
    return ask<indexer::heartbeat_answer>(coordination,
                                          indexer::heartbeat_query{report()});
  }

  void give(snapshot s) {
    tell(coordination, atom::snapshot::value, shared(std::move(s)));
  }

  indexer::pushed_ref push(std::int64_t project,
                           std::string ref = "refs/heads/main") {
    indexer::pushed_ref p;
    p.event_id
      = "0b7f3c52-0000-4000-8000-00000000000" + std::to_string(project);
    p.project_id = project;
    p.ref = std::move(ref);
    p.before = std::string(40, '1');
    p.after = std::string(40, '2');
    return p;
  }
};

errc code_of(const caf::error& err) {
  return classify(err);
}

} // namespace

// -- heartbeat and tasks ------------------------------------------------------

TEST_CASE_METHOD(fixture, "an invalid node is answered without the store") {
  auto r = report();
  r.url = " ";
  auto a
    = ask<indexer::heartbeat_answer>(coordination, indexer::heartbeat_query{r});
  REQUIRE(a);
  CHECK(a->invalid_node);
  CHECK(a->tasks.empty());
  CHECK(script.node_calls() == 0);
}

TEST_CASE_METHOD(
  fixture, "a heartbeat writes the node, takes its batch and renders it") {
  script.node.concurrency = 2;
  script.created = true;
  script.tasks = {{11, "index_repo", 1},
                  {12, "delete_repo", 99},
                  {13, "force_index_repo", 2}};
  auto a = heartbeat();
  REQUIRE(a);
  REQUIRE(script.node_writes.size() == 1);
  CHECK(script.node_writes[0].report.name == "zoekt-1");
  CHECK(script.node_writes[0].debounce_seconds == 5);
  REQUIRE(script.takes.size() == 1);
  CHECK(script.takes[0].node_id == 7);
  // concurrency 2 × ratio 1.0.
  CHECK(script.takes[0].limit == 2);
  CHECK_FALSE(a->invalid_node);
  CHECK(a->node_id == 7);
  CHECK(a->truncate);
  REQUIRE(a->tasks.size() == 2);
  CHECK(a->tasks[0].name == "index");
  CHECK(a->tasks[0].task_id == 11);
  CHECK(a->tasks[0].schema_version == 2531);
  CHECK(a->tasks[1].name == "delete");
  CHECK(a->pull_frequency == "10s");
  CHECK_FALSE(a->stop_indexing);
}

TEST_CASE_METHOD(fixture, "a full backlog speeds up the node's polling") {
  script.backlog = 20;
  auto a = heartbeat();
  REQUIRE(a);
  CHECK(script.takes.at(0).limit == 20);
  CHECK(a->pull_frequency == "500ms");
}

TEST_CASE_METHOD(fixture, "a node past the critical watermark stops indexing") {
  script.node.used_bytes = 90 * gib;
  auto a = heartbeat();
  REQUIRE(a);
  CHECK(a->stop_indexing);
}

TEST_CASE_METHOD(fixture, "paused indexing takes no task and stops the node") {
  auto s = indexer_world();
  s.settings.search.zoekt_indexing_paused = true;
  give(s);
  script.tasks = {{11, "index_repo", 1}};
  auto a = heartbeat();
  REQUIRE(a);
  REQUIRE(script.takes.size() == 1);
  CHECK(script.takes[0].limit == 0);
  CHECK(a->tasks.empty());
  CHECK(a->stop_indexing);
}

TEST_CASE_METHOD(fixture, "the older tasks call is answered like a heartbeat") {
  script.tasks = {{11, "index_repo", 1}};
  auto a = ask<indexer::heartbeat_answer>(coordination,
                                          indexer::tasks_query{report()});
  REQUIRE(a);
  CHECK(script.node_writes.size() == 1);
  CHECK(a->tasks.size() == 1);
}

TEST_CASE_METHOD(fixture, "a store failure is unavailable") {
  script.fail = true;
  auto a = heartbeat();
  REQUIRE_FALSE(a);
  CHECK(code_of(a.error()) == errc::unavailable);
  auto c
    = ask<indexer::callback_answer>(coordination, indexer::callback_query{});
  REQUIRE_FALSE(c);
  CHECK(code_of(c.error()) == errc::unavailable);
}

TEST_CASE_METHOD(fixture,
                 "a store that does not answer is unavailable at the "
                 "deadline") {
  script.hang = true;
  auto pending = self->request(coordination, caf::infinite,
                               indexer::heartbeat_query{report()});
  run();
  CHECK(self->mailbox().empty());
  advance(settings.store_timeout);
  REQUIRE_FALSE(self->mailbox().empty());
  bool unavailable = false;
  pending.receive(
    [](indexer::heartbeat_answer&) {},
    [&](caf::error& err) { unavailable = code_of(err) == errc::unavailable; });
  CHECK(unavailable);
}

TEST_CASE("before the first snapshot, calls are unavailable") {
  fixture f{std::nullopt};
  auto a = f.heartbeat();
  REQUIRE_FALSE(a);
  CHECK(code_of(a.error()) == errc::unavailable);
  auto p = f.ask<indexer::pushed_ref_done>(f.coordination, f.push(1));
  REQUIRE_FALSE(p);
  CHECK(code_of(p.error()) == errc::unavailable);
  CHECK(f.script.node_calls() == 0);
}

// -- callback -----------------------------------------------------------------

TEST_CASE_METHOD(fixture, "a callback is written for its node") {
  indexer::callback_query q;
  q.uuid = "node-7";
  q.name = "index";
  q.success = true;
  q.task_id = 11;
  q.size_in_bytes = 4096;
  q.index_file_count = 3;
  auto a = ask<indexer::callback_answer>(coordination, q);
  REQUIRE(a);
  CHECK(a->node_found);
  REQUIRE(script.callbacks.size() == 1);
  const auto& w = script.callbacks[0];
  CHECK(w.node_uuid == "node-7");
  CHECK(w.task_id == std::optional<std::int64_t>{11});
  CHECK(w.success);
  CHECK(w.size_in_bytes == std::optional<std::int64_t>{4096});
  CHECK(w.index_file_count == std::optional<std::int64_t>{3});
}

TEST_CASE_METHOD(fixture, "a callback from an unknown node says so") {
  script.node_found = false;
  auto a
    = ask<indexer::callback_answer>(coordination, indexer::callback_query{});
  REQUIRE(a);
  CHECK_FALSE(a->node_found);
}

// -- pushes -------------------------------------------------------------------

TEST_CASE_METHOD(fixture,
                 "a push to an enabled project's default branch "
                 "becomes a Zoekt index write on a chosen node") {
  script.state.nodes = {indexer::test::node(7, 100 * gib, 10 * gib, now),
                        indexer::test::node(8, 100 * gib, 0, now)};
  auto done = ask<indexer::pushed_ref_done>(coordination, push(2));
  REQUIRE(done);
  CHECK(done->zoekt_tasks == 1);
  CHECK(done->elastic_requests == 0);
  // No round has run: the state is read once for the choice.
  CHECK(script.state_reads == 1);
  REQUIRE(script.pushes.size() == 1);
  const auto& w = script.pushes[0];
  CHECK(w.event_id == push(2).event_id);
  CHECK(w.project_id == 2);
  CHECK(w.zoekt);
  CHECK(w.node_id == std::optional<std::int64_t>{8});
  CHECK_FALSE(w.elastic);
  // The next push uses the state it holds.
  REQUIRE(ask<indexer::pushed_ref_done>(coordination, push(1)));
  CHECK(script.state_reads == 1);
  CHECK(script.pushes.size() == 2);
}

TEST_CASE_METHOD(fixture, "a push with no online node leaves the choice open") {
  script.state.nodes = {indexer::test::node(7, 100 * gib, 0, now - 600)};
  REQUIRE(ask<indexer::pushed_ref_done>(coordination, push(1)));
  REQUIRE(script.pushes.size() == 1);
  CHECK(script.pushes[0].zoekt);
  CHECK_FALSE(script.pushes[0].node_id);
}

TEST_CASE_METHOD(fixture,
                 "a push with Elasticsearch indexing writes its "
                 "index request") {
  auto s = indexer_world();
  s.settings.search.elasticsearch_indexing = true;
  give(s);
  auto done = ask<indexer::pushed_ref_done>(coordination, push(3));
  REQUIRE(done);
  CHECK(done->zoekt_tasks == 0);
  CHECK(done->elastic_requests == 1);
  REQUIRE(script.pushes.size() == 1);
  const auto& w = script.pushes[0];
  CHECK_FALSE(w.zoekt);
  REQUIRE(w.elastic);
  CHECK(w.elastic->subject == "gitlab.events.index.elastic.3");
  CHECK(w.elastic->kind == "index_elastic");
  // Not Zoekt-indexed: no node to choose, no state read.
  CHECK(script.state_reads == 0);
}

TEST_CASE_METHOD(fixture, "a push indexed by both is one write") {
  auto s = indexer_world();
  s.settings.search.elasticsearch_indexing = true;
  give(s);
  auto done = ask<indexer::pushed_ref_done>(coordination, push(1));
  REQUIRE(done);
  CHECK(done->zoekt_tasks == 1);
  CHECK(done->elastic_requests == 1);
  REQUIRE(script.pushes.size() == 1);
  CHECK(script.pushes[0].zoekt);
  REQUIRE(script.pushes[0].elastic);
  auto body = nlohmann::json::parse(script.pushes[0].elastic->body);
  CHECK(body["to_sha"] == std::string(40, '2'));
}

TEST_CASE_METHOD(fixture, "pushes that index nothing never reach the store") {
  auto other_branch = ask<indexer::pushed_ref_done>(
    coordination, push(1, "refs/heads/feature"));
  REQUIRE(other_branch);
  CHECK(other_branch->zoekt_tasks == 0);
  // Project 3 is not in an enabled namespace, Elasticsearch is off.
  REQUIRE(ask<indexer::pushed_ref_done>(coordination, push(3)));
  // An unknown project.
  REQUIRE(ask<indexer::pushed_ref_done>(coordination, push(99)));
  CHECK(script.pushes.empty());
  CHECK(script.state_reads == 0);
}

TEST_CASE_METHOD(fixture,
                 "a failed push write is unavailable, for the feed "
                 "to redeliver") {
  script.fail = true;
  auto done = ask<indexer::pushed_ref_done>(coordination, push(1));
  REQUIRE_FALSE(done);
  CHECK(code_of(done.error()) == errc::unavailable);
}

// -- assignment rounds --------------------------------------------------------

TEST_CASE_METHOD(fixture, "a changed enabled set brings a round soon") {
  // The first snapshot enabled namespace 9970: a round is due in 1 s.
  CHECK(script.state_reads == 0);
  advance(1s);
  CHECK(script.state_reads == 1);
  REQUIRE(script.assignments.size() == 1);
  const auto& w = script.assignments[0];
  CHECK(w.assign
        == std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 7}, {2, 7}});
  CHECK(w.drop.empty());
}

TEST_CASE_METHOD(fixture, "rounds repeat at the interval, once each") {
  advance(1s);
  CHECK(script.state_reads == 1);
  // A burst of changes is one round, not one per snapshot.
  auto s = indexer_world();
  s.zoekt_enabled_namespaces = {50, 9970};
  give(s);
  s.zoekt_enabled_namespaces = {9970};
  give(s);
  s.zoekt_enabled_namespaces = {50};
  give(s);
  advance(1s);
  CHECK(script.state_reads == 2);
  // The periodic round armed at spawn is due at 60 s, and then every 60 s:
  // the extra rounds did not multiply the schedule.
  advance(57s);
  CHECK(script.state_reads == 2);
  advance(1s);
  CHECK(script.state_reads == 3);
  advance(60s);
  CHECK(script.state_reads == 4);
  advance(60s);
  CHECK(script.state_reads == 5);
}

TEST_CASE_METHOD(fixture, "a round with nothing to change writes nothing") {
  script.state.repositories = {repository(1, 7), repository(2, 7)};
  advance(1s);
  CHECK(script.state_reads == 1);
  CHECK(script.assignments.empty());
}

TEST_CASE_METHOD(fixture,
                 "a round moves repositories off a lost node and "
                 "drops those no longer enabled") {
  script.state.nodes = {indexer::test::node(7, 100 * gib, 0, now - 13 * 3600),
                        indexer::test::node(8, 100 * gib, 0, now)};
  script.state.repositories
    = {repository(1, 7), repository(2, 8), repository(3, 8)};
  advance(1s);
  REQUIRE(script.assignments.size() == 1);
  CHECK(script.assignments[0].assign
        == std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 8}});
  CHECK(script.assignments[0].drop == std::vector<std::int64_t>{3});
}

TEST_CASE_METHOD(fixture, "a failed round is retried at the next interval") {
  script.fail = true;
  advance(1s);
  CHECK(script.state_reads == 1);
  script.fail = false;
  advance(60s);
  CHECK(script.state_reads == 2);
  CHECK(script.assignments.size() == 1);
}

TEST_CASE_METHOD(fixture, "a round's state is used for the next push") {
  script.state.nodes = {indexer::test::node(9, 100 * gib, 0, now)};
  advance(1s);
  CHECK(script.state_reads == 1);
  REQUIRE(ask<indexer::pushed_ref_done>(coordination, push(1)));
  CHECK(script.state_reads == 1);
  REQUIRE(script.pushes.size() == 1);
  CHECK(script.pushes[0].node_id == std::optional<std::int64_t>{9});
}
