// The indexer coordination's rules as pure functions (contract other-callers
// §6, §7): node validation, batch size and pull frequency, task rendering,
// enablement, node choice, lost nodes, assignment rounds and Elasticsearch
// index requests. Cases marked "GitLab:" come from GitLab's specs.

#include "actors/indexer/rules.hpp"
#include "tests/indexer/indexer_world.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>

using namespace gatehouse;
using namespace gatehouse::indexer;
using namespace gatehouse::indexer::test;
using namespace std::chrono_literals;

namespace {

constexpr unix_time now = 1'800'000'000;
constexpr std::int64_t gib = 1LL << 30;

node_report good_report() {
  node_report r;
  r.uuid = "3869fe21-36d1-4612-9676-0b783ef2dcd7";
  r.url = "http://localhost:6090";
  r.name = "zoekt-1";
  r.disk_all = 100 * gib;
  r.disk_used = 10 * gib;
  return r;
}

node_row with_concurrency(std::optional<std::int64_t> c) {
  auto n = node(1, 100, 0, now);
  n.concurrency = c;
  return n;
}

search_settings ratio(double r) {
  search_settings s;
  s.zoekt_cpu_to_tasks_ratio = r;
  return s;
}

std::string meta(const task_view& v, const std::string& key) {
  for (const auto& [k, value] : v.metadata)
    if (k == key)
      return value;
  return "<absent>";
}

bool assigned(const assignment_write& w, std::int64_t project,
              std::int64_t node_id) {
  return std::count(w.assign.begin(), w.assign.end(),
                    std::make_pair(project, node_id))
    == 1;
}

pushed_ref push_of(std::int64_t project, std::string ref = "refs/heads/main") {
  pushed_ref p;
  p.event_id = "0b7f3c52-0000-4000-8000-000000000001";
  p.project_id = project;
  p.ref = std::move(ref);
  p.before = "1111111111111111111111111111111111111111";
  p.after = "2222222222222222222222222222222222222222";
  p.correlation_id = "01HCORRELATION";
  return p;
}

} // namespace

// -- nodes --------------------------------------------------------------------

TEST_CASE("a node report with url, name and disk figures is valid") {
  CHECK(node_report_valid(good_report()));
  auto r = good_report();
  r.services = std::vector<std::string>{"zoekt", "knowledge_graph"};
  CHECK(node_report_valid(r));
  r.services = std::vector<std::string>{};
  CHECK(node_report_valid(r));
}

TEST_CASE("a node report with a blank url or name is invalid") {
  for (auto blank : {"", "   ", "\t\n"}) {
    auto r = good_report();
    r.url = blank;
    CHECK_FALSE(node_report_valid(r));
    r = good_report();
    r.name = blank;
    CHECK_FALSE(node_report_valid(r));
  }
}

TEST_CASE("a node report with a negative disk figure is invalid") {
  auto r = good_report();
  r.disk_all = -1;
  CHECK_FALSE(node_report_valid(r));
  r = good_report();
  r.disk_used = -1;
  CHECK_FALSE(node_report_valid(r));
  r = good_report();
  r.disk_indexed = -5;
  CHECK_FALSE(node_report_valid(r));
  r = good_report();
  r.disk_free = -5;
  CHECK_FALSE(node_report_valid(r));
  r = good_report();
  r.disk_all = 0;
  r.disk_used = 0;
  CHECK(node_report_valid(r));
}

TEST_CASE("a node report whose disk.all or disk.used was blank is invalid") {
  // Grape lets null and "" through `requires`; GitLab's presence validation
  // of total_bytes and used_bytes then refuses the node.
  auto r = good_report();
  r.disk_blank = true;
  CHECK_FALSE(node_report_valid(r));
}

TEST_CASE("a node report naming an unknown service is invalid") {
  // GitLab: "service 2 doesn't exist".
  auto r = good_report();
  r.services = std::vector<std::string>{"zoekt", "exact_code_search"};
  CHECK_FALSE(node_report_valid(r));
}

TEST_CASE("the concurrency limit is concurrency times the ratio, rounded") {
  // GitLab (node_spec #concurrency_limit).
  CHECK(concurrency_limit(with_concurrency(10), ratio(1.0)) == 10);
  CHECK(concurrency_limit(with_concurrency(10), ratio(2.0)) == 20);
  CHECK(concurrency_limit(with_concurrency(3), ratio(1.5)) == 5); // 4.5
  CHECK(concurrency_limit(with_concurrency(3), ratio(0.5)) == 2); // 1.5
  CHECK(concurrency_limit(with_concurrency(7), ratio(0.1)) == 1); // 0.7
}

TEST_CASE("the concurrency limit is 20 when it comes out as 0") {
  CHECK(concurrency_limit(with_concurrency(std::nullopt), ratio(1.0)) == 20);
  CHECK(concurrency_limit(with_concurrency(0), ratio(1.0)) == 20);
  CHECK(concurrency_limit(with_concurrency(4), ratio(0.1)) == 20); // 0.4
  CHECK(concurrency_limit(with_concurrency(-3), ratio(1.0)) == 20);
}

TEST_CASE("the concurrency limit is at most 200") {
  CHECK(concurrency_limit(with_concurrency(200), ratio(1.0)) == 200);
  CHECK(concurrency_limit(with_concurrency(201), ratio(1.0)) == 200);
  CHECK(concurrency_limit(with_concurrency(150), ratio(2.0)) == 200);
  CHECK(concurrency_limit(with_concurrency(1LL << 60), ratio(1e10)) == 200);
}

TEST_CASE("the pull frequency speeds up while the backlog fills a batch") {
  CHECK(pull_frequency(0, 20) == "10s");
  CHECK(pull_frequency(19, 20) == "10s");
  CHECK(pull_frequency(20, 20) == "500ms");
  CHECK(pull_frequency(0, 0) == "500ms");
}

TEST_CASE("indexing stops when paused or past the critical watermark") {
  search_settings running;
  search_settings paused;
  paused.zoekt_indexing_paused = true;
  CHECK_FALSE(stop_indexing(node(1, 100, 84, now), running));
  CHECK(stop_indexing(node(1, 100, 85, now), running));
  CHECK(stop_indexing(node(1, 100, 100, now), running));
  CHECK(stop_indexing(node(1, 100, 0, now), paused));
  // No disk reported: 0 % used.
  CHECK_FALSE(stop_indexing(node(1, 0, 10, now), running));
}

TEST_CASE("a node is online when seen within the last minute") {
  CHECK(node_online(node(1, 1, 0, now), now));
  CHECK(node_online(node(1, 1, 0, now - 60), now));
  CHECK_FALSE(node_online(node(1, 1, 0, now - 61), now));
}

TEST_CASE("a node is lost when not seen for the threshold") {
  auto threshold = std::chrono::seconds{12h};
  CHECK(node_lost(node(1, 1, 0, now - 12 * 3600), now, threshold));
  CHECK_FALSE(node_lost(node(1, 1, 0, now - 12 * 3600 + 1), now, threshold));
  // GitLab: a threshold of "0" disables marking nodes lost.
  CHECK_FALSE(node_lost(node(1, 1, 0, 0), now, 0s));
}

// -- projects -----------------------------------------------------------------

TEST_CASE("visibility and repository access levels are GitLab's numbers") {
  CHECK(visibility_level("private") == 0);
  CHECK(visibility_level("internal") == 10);
  CHECK(visibility_level("public") == 20);
  CHECK(repository_access_level("disabled") == 0);
  CHECK(repository_access_level("private") == 10);
  CHECK(repository_access_level("enabled") == 20);
}

TEST_CASE("the namespace ancestry lists ids root first, each with a dash") {
  auto s = indexer_world();
  CHECK(namespace_ancestry(s, s.projects[2]) == "9970-123-");
  CHECK(namespace_ancestry(s, s.projects[1]) == "9970-");
}

TEST_CASE("a parent cycle does not hang the namespace walk") {
  auto s = indexer_world();
  s.namespaces[9970].parent_id = 123;
  CHECK(namespace_ancestry(s, s.projects[2]).size() < 64 * 6);
  CHECK(top_level_namespace(s, 123) == nullptr);
}

TEST_CASE("Zoekt indexes projects whose top-level namespace is enabled") {
  auto s = indexer_world();
  CHECK(zoekt_indexed(s, s.projects[1]));
  CHECK(zoekt_indexed(s, s.projects[2])); // in a sub-group
  CHECK_FALSE(zoekt_indexed(s, s.projects[3]));
  s.zoekt_enabled_namespaces = {};
  CHECK_FALSE(zoekt_indexed(s, s.projects[1]));
  // A sub-group's own id does not enable it.
  s.zoekt_enabled_namespaces = {123};
  CHECK_FALSE(zoekt_indexed(s, s.projects[2]));
}

// -- tasks --------------------------------------------------------------------

TEST_CASE("an index task carries the repository, limits and metadata") {
  auto s = indexer_world();
  s.settings.search.elasticsearch_indexed_file_size_limit_kb = 2048;
  s.settings.search.zoekt_indexing_parallelism = 3;
  s.settings.search.zoekt_indexing_timeout_seconds = 5400;
  s.settings.search.zoekt_maximum_files = 1000;
  auto n = node(7, 100, 0, now);
  auto view = render_task(s, n, task_row{42, "index_repo", 2});
  REQUIRE(view);
  CHECK(view->name == "index");
  CHECK(view->task_id == 42);
  CHECK(view->repo_id == 2);
  REQUIRE(view->gitaly);
  CHECK(view->gitaly->address == "unix:/gitaly.socket");
  CHECK(view->gitaly->token == "secret");
  CHECK(view->gitaly->storage == "default");
  CHECK(view->gitaly->path == "@hashed/00/02/p2.git");
  CHECK(view->schema_version == 2531);
  CHECK(view->file_size_limit == 2048 * 1024);
  CHECK(view->parallelism == 3);
  CHECK(view->timeout == "5400s");
  CHECK(view->file_count_limit == 1000);
  CHECK_FALSE(view->missing_repo);
  CHECK_FALSE(view->force);
  using kv = std::pair<std::string, std::string>;
  CHECK(view->metadata
        == std::vector<kv>{{"project_id", "2"},
                           {"traversal_ids", "9970-123-"},
                           {"visibility_level", "20"},
                           {"repository_access_level", "20"},
                           {"forked", "t"},
                           {"archived", "f"}});
}

TEST_CASE("an index task of a missing repository has no connection info") {
  auto s = indexer_world();
  s.projects[1].repository_exists = false;
  s.projects[1].archived = true;
  s.projects[1].repository_access_level = "private";
  auto view = render_task(s, node(1, 1, 0, now), task_row{1, "index_repo", 1});
  REQUIRE(view);
  CHECK(view->missing_repo);
  CHECK_FALSE(view->gitaly);
  CHECK(meta(*view, "archived") == "t");
  CHECK(meta(*view, "forked") == "f");
  CHECK(meta(*view, "visibility_level") == "0");
  CHECK(meta(*view, "repository_access_level") == "10");
}

TEST_CASE("a force index task is an index task with Force") {
  auto s = indexer_world();
  auto view
    = render_task(s, node(1, 1, 0, now), task_row{5, "force_index_repo", 1});
  REQUIRE(view);
  CHECK(view->name == "index");
  CHECK(view->force);
}

TEST_CASE("a delete task names the repository only") {
  auto s = indexer_world();
  // Its project may be gone already.
  auto view
    = render_task(s, node(1, 1, 0, now), task_row{6, "delete_repo", 99});
  REQUIRE(view);
  CHECK(view->name == "delete");
  CHECK(view->task_id == 6);
  CHECK(view->repo_id == 99);
  CHECK_FALSE(view->gitaly);
  CHECK(view->metadata.empty());
}

TEST_CASE("unknown task types and unknown projects are not rendered") {
  auto s = indexer_world();
  CHECK_FALSE(
    render_task(s, node(1, 1, 0, now), task_row{1, "index_graph_repo", 1}));
  CHECK_FALSE(
    render_task(s, node(1, 1, 0, now), task_row{1, "index_repo", 99}));
}

// -- node choice --------------------------------------------------------------

TEST_CASE("a new repository goes to the online node with the most room") {
  index_state st;
  st.now = now;
  st.nodes = {node(1, 100 * gib, 50 * gib, now),
              node(2, 100 * gib, 10 * gib, now - 30),
              node(3, 500 * gib, 0, now - 61)}; // offline
  CHECK(choose_node(st) == std::optional<std::int64_t>{2});
}

TEST_CASE("a node past the critical watermark gets no new repository") {
  index_state st;
  st.now = now;
  st.nodes = {node(1, 1000 * gib, 850 * gib, now), // 150 GiB free, 85 %
              node(2, 100 * gib, 50 * gib, now)};
  CHECK(choose_node(st) == std::optional<std::int64_t>{2});
}

TEST_CASE("repositories not yet indexed count against their node's room") {
  index_state st;
  st.now = now;
  st.nodes
    = {node(1, 100 * gib, 10 * gib, now), node(2, 100 * gib, 20 * gib, now)};
  st.repositories = {repository(10, 1, "pending", 20 * gib),
                     // Ready ones are in used_bytes already.
                     repository(11, 2, "ready", 30 * gib)};
  CHECK(choose_node(st) == std::optional<std::int64_t>{2});
}

TEST_CASE("no online node: the repository waits") {
  index_state st;
  st.now = now;
  CHECK_FALSE(choose_node(st));
  st.nodes = {node(1, 100, 0, now - 3600)};
  CHECK_FALSE(choose_node(st));
}

TEST_CASE("placing a repository charges its node for the next choice") {
  index_state st;
  st.now = now;
  st.nodes = {node(1, 100 * gib, 0, now), node(2, 100 * gib, gib, now)};
  node_room room{st};
  CHECK(room.place(2 * gib) == std::optional<std::int64_t>{1});
  CHECK(room.best() == std::optional<std::int64_t>{2});
  // Unknown sizes count as unknown_repository_bytes.
  CHECK(room.place(0) == std::optional<std::int64_t>{2});
  CHECK(room.place(0) == std::optional<std::int64_t>{2});
}

TEST_CASE("equal room goes to the lower node id") {
  index_state st;
  st.now = now;
  st.nodes = {node(5, 100, 0, now), node(4, 100, 0, now)};
  CHECK(choose_node(st) == std::optional<std::int64_t>{4});
}

// -- assignment rounds --------------------------------------------------------

TEST_CASE("a round creates repositories for enabled projects that have none") {
  auto s = indexer_world();
  index_state st;
  st.now = now;
  st.nodes = {node(1, 100 * gib, 0, now)};
  auto w = plan_assignments(s, st, {});
  CHECK(assigned(w, 1, 1));
  CHECK(assigned(w, 2, 1));
  CHECK(w.assign.size() == 2); // project 3's namespace is not enabled
  CHECK(w.wait.empty());
  CHECK(w.drop.empty());
}

TEST_CASE("a round without an online node makes new repositories wait") {
  auto s = indexer_world();
  index_state st;
  st.now = now;
  st.nodes = {node(1, 100 * gib, 0, now - 120)};
  auto w = plan_assignments(s, st, {});
  CHECK(w.assign.empty());
  CHECK(w.wait == std::vector<std::int64_t>{1, 2});
}

TEST_CASE("a round spreads new repositories over the nodes") {
  auto s = indexer_world();
  index_state st;
  st.now = now;
  // Equal room: after the first repository node 1 has less.
  st.nodes = {node(1, 100 * gib, 0, now), node(2, 100 * gib, 0, now)};
  auto w = plan_assignments(s, st, {});
  CHECK(assigned(w, 1, 1));
  CHECK(assigned(w, 2, 2));
}

TEST_CASE("a round assigns waiting repositories once a node is online") {
  auto s = indexer_world();
  index_state st;
  st.now = now;
  st.nodes = {node(1, 100 * gib, 0, now)};
  st.repositories
    = {repository(1, std::nullopt, "pending"), repository(2, 1, "ready")};
  auto w = plan_assignments(s, st, {});
  CHECK(w.assign == std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}});
  CHECK(w.wait.empty());
}

TEST_CASE("a round moves repositories off a lost node") {
  auto s = indexer_world();
  index_state st;
  st.now = now;
  st.nodes
    = {node(1, 100 * gib, 0, now - 13 * 3600), node(2, 100 * gib, 0, now)};
  st.repositories
    = {repository(1, 1, "ready", gib), repository(2, 2, "ready", gib)};
  auto w = plan_assignments(s, st, {});
  CHECK(w.assign == std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 2}});
  SECTION("not before the threshold") {
    assignment_limits limits;
    limits.lost_after = 14h;
    CHECK(plan_assignments(s, st, limits).assign.empty());
  }
  SECTION("not while indexing is paused") {
    s.settings.search.zoekt_indexing_paused = true;
    CHECK(plan_assignments(s, st, {}).assign.empty());
  }
}

TEST_CASE("a lost node that still looks online takes no repository") {
  // A threshold below the 60 s online window: the roomier node is lost but
  // "online"; its repositories must go to the other node, not back to it.
  auto s = indexer_world();
  index_state st;
  st.now = now;
  st.nodes = {node(1, 100 * gib, 0, now - 10), node(2, 10 * gib, 0, now)};
  st.repositories = {repository(1, 1, "ready", gib)};
  assignment_limits limits;
  limits.lost_after = 3s;
  auto w = plan_assignments(s, st, limits);
  REQUIRE_FALSE(w.assign.empty());
  CHECK(w.assign.front() == std::pair<std::int64_t, std::int64_t>{1, 2});
  for (const auto& [project, node_id] : w.assign)
    CHECK(node_id == 2);
  CHECK(choose_node(st, 3s) == std::optional<std::int64_t>{2});
  CHECK(choose_node(st) == std::optional<std::int64_t>{1});
}

TEST_CASE("a round moves repositories of a node no longer registered") {
  auto s = indexer_world();
  index_state st;
  st.now = now;
  st.nodes = {node(2, 100 * gib, 0, now)};
  st.repositories = {repository(1, 9, "ready"), repository(2, 2, "ready")};
  auto w = plan_assignments(s, st, {});
  CHECK(w.assign == std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 2}});
}

TEST_CASE("a round drops repositories of gone or no longer enabled projects") {
  auto s = indexer_world();
  index_state st;
  st.now = now;
  st.nodes = {node(1, 100 * gib, 0, now)};
  st.repositories = {repository(1, 1), repository(2, 1), repository(3, 1),
                     repository(77, 1), repository(78, 1, "pending_deletion")};
  auto w = plan_assignments(s, st, {});
  CHECK(w.drop == std::vector<std::int64_t>{3, 77});
  CHECK(w.assign.empty());
  s.zoekt_enabled_namespaces = {};
  CHECK(plan_assignments(s, st, {}).drop
        == std::vector<std::int64_t>{1, 2, 3, 77});
}

TEST_CASE("a round makes at most max_changes changes, drops first") {
  auto s = indexer_world();
  for (std::int64_t id = 100; id < 150; ++id) {
    project_record p;
    p.id = id;
    p.namespace_id = 9970;
    s.projects[id] = p;
  }
  index_state st;
  st.now = now;
  st.nodes = {node(1, 100 * gib, 0, now)};
  st.repositories = {repository(3, 1), repository(77, 1)};
  assignment_limits limits;
  limits.max_changes = 10;
  auto w = plan_assignments(s, st, limits);
  CHECK(w.drop.size() == 2);
  CHECK(w.assign.size() == 8);
  // Lowest project ids first, so the next round continues where this one
  // stopped.
  CHECK(w.assign.front().first == 1);
  limits.max_changes = 1;
  w = plan_assignments(s, st, limits);
  CHECK(w.drop == std::vector<std::int64_t>{3});
  CHECK(w.assign.empty());
}

// -- Elasticsearch ------------------------------------------------------------

TEST_CASE("a default-branch push asks Elasticsearch to index the range") {
  auto s = indexer_world();
  s.settings.search.elasticsearch_indexing = true;
  s.settings.search.elasticsearch_indexed_file_size_limit_kb = 1024;
  auto push = push_of(2);
  auto e = elastic_index_request(s, s.projects[2], push);
  REQUIRE(e);
  CHECK(e->subject == "gitlab.events.index.elastic.2");
  CHECK(e->kind == "index_elastic");
  CHECK(e->project_id == 2);
  auto body = nlohmann::json::parse(e->body);
  CHECK(body["project_id"] == 2);
  CHECK(body["project_path"] == "gitlab-org/search/zoekt");
  CHECK(body["from_sha"] == push.before);
  CHECK(body["to_sha"] == push.after);
  CHECK(body["visibility_level"] == 20);
  CHECK(body["repository_access_level"] == 20);
  CHECK(body["correlation_id"] == "01HCORRELATION");
  auto gitaly = body["gitaly_connection_info"];
  CHECK(gitaly["address"] == "unix:/gitaly.socket");
  CHECK(gitaly["token"] == "secret");
  CHECK(gitaly["storage"] == "default");
  CHECK(gitaly["relative_path"] == "@hashed/00/02/p2.git");
  CHECK(gitaly["project_path"] == "gitlab-org/search/zoekt");
  CHECK(gitaly["limit_file_size"] == 1024 * 1024);
}

TEST_CASE("an index request's id is derived from the push event") {
  auto s = indexer_world();
  s.settings.search.elasticsearch_indexing = true;
  auto push = push_of(1);
  auto first = elastic_index_request(s, s.projects[1], push);
  auto again = elastic_index_request(s, s.projects[1], push);
  REQUIRE(first);
  REQUIRE(again);
  CHECK(first->event_id == again->event_id);
  CHECK(first->event_id.size() == 36);
  push.event_id = "0b7f3c52-0000-4000-8000-000000000002";
  CHECK(elastic_index_request(s, s.projects[1], push)->event_id
        != first->event_id);
}

TEST_CASE("a new default branch is indexed from the empty tree") {
  auto s = indexer_world();
  s.settings.search.elasticsearch_indexing = true;
  auto push = push_of(1);
  push.before = std::string(40, '0');
  auto e = elastic_index_request(s, s.projects[1], push);
  REQUIRE(e);
  CHECK(nlohmann::json::parse(e->body)["from_sha"]
        == "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
}

TEST_CASE("no index request without indexing, off the default branch, "
          "for a deletion or a missing repository") {
  auto s = indexer_world();
  CHECK_FALSE(elastic_index_request(s, s.projects[1], push_of(1)));
  s.settings.search.elasticsearch_indexing = true;
  CHECK_FALSE(
    elastic_index_request(s, s.projects[1], push_of(1, "refs/heads/feature")));
  CHECK_FALSE(
    elastic_index_request(s, s.projects[1], push_of(1, "refs/tags/main")));
  auto deletion = push_of(1);
  deletion.after = std::string(40, '0');
  CHECK_FALSE(elastic_index_request(s, s.projects[1], deletion));
  s.projects[1].repository_exists = false;
  CHECK_FALSE(elastic_index_request(s, s.projects[1], push_of(1)));
}

TEST_CASE("only pushes that move the default branch are indexed") {
  auto s = indexer_world();
  CHECK(pushes_default_branch(s.projects[1], push_of(1)));
  CHECK_FALSE(
    pushes_default_branch(s.projects[1], push_of(1, "refs/heads/mainline")));
  s.projects[1].default_branch = "";
  CHECK_FALSE(pushes_default_branch(s.projects[1], push_of(1, "refs/heads/")));
}
