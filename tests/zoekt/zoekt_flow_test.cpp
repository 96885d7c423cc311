// Indexer coordination end to end (issue 13; contract other-callers §6, §7):
// the real `gatehouse serve`, PostgreSQL and a private nats-server. Zoekt
// nodes are played by HTTP calls as the indexer makes them; pushes arrive
// through post_receive as Gitaly's hook sends them; what a pipeline would
// see is read back from GATEHOUSE_EVENTS. Each case has a world of its own
// (its own database, nats-server and serve), so cases never share nodes.
// Hidden tag [.integration][zoekt].

#include "tests/integration/stack.hpp"
#include "tests/support/jetstream_reader.hpp"
#include "tests/support/nats_server.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string gitaly_address = "unix:/var/opt/gitlab/gitaly/gitaly.socket";
const std::string zoekt = "/api/v4/internal/search/zoekt/";

std::string disk_path(std::int64_t id) {
  return "@hashed/zo/ek/zoekt-project-" + std::to_string(id);
}

json seed_project(std::int64_t id, std::int64_t ns, const std::string& path,
                  json extra = json::object()) {
  json p = {{"id", id},
            {"namespace_id", ns},
            {"path", path},
            {"name", path},
            {"visibility", "private"},
            {"default_branch", "main"},
            {"storage", "default"},
            {"disk_path", disk_path(id)},
            {"repository_access_level", "enabled"}};
  p.update(extra);
  return p;
}

// Namespaces: 300 search-org (enabled) > 301 sub; 302 plain-org.
// Projects: 400 search-org/app, 401 search-org/sub/lib, 402 plain-org/other,
// 403 search-org/fork (a fork of 400, public).
json seed_document() {
  json doc;
  doc["settings"] = {{"elasticsearch_indexing", true}};
  doc["storages"] = json::array({{{"name", "default"},
                                  {"gitaly_address", gitaly_address},
                                  {"gitaly_token", "secret"}}});
  doc["namespaces"] = json::array(
    {{{"id", 300}, {"path", "search-org"}, {"name", "Search org"}},
     {{"id", 301}, {"path", "sub"}, {"name", "Sub"}, {"parent_id", 300}},
     {{"id", 302}, {"path", "plain-org"}, {"name", "Plain org"}}});
  doc["projects"] = json::array(
    {seed_project(400, 300, "app"), seed_project(401, 301, "lib"),
     seed_project(402, 302, "other"),
     seed_project(403, 300, "fork",
                  {{"forked_from_project_id", 400},
                   {"visibility", "public"}})});
  doc["users"] = json::array({{{"id", 1},
                               {"username", "pusher"},
                               {"name", "Pusher"},
                               {"email", "pusher@example.com"},
                               {"state", "active"}}});
  doc["members"] = json::array(
    {{{"user_id", 1}, {"namespace_id", 300}, {"access_level", 40}},
     {{"user_id", 1}, {"namespace_id", 302}, {"access_level", 40}}});
  doc["zoekt_enabled_namespaces"] = json::array({{{"namespace_id", 300}}});
  return doc;
}

/// A private nats-server and a seeded Gatehouse on a database of its own,
/// with assignment rounds every second; the serve is a child the case may
/// kill.
struct world {
  private_nats nats;
  std::unique_ptr<stack> gh;
  std::unique_ptr<child> serve;
  std::string shell;

  explicit world(std::map<std::string, std::string> env = {}) {
    env.emplace("GATEHOUSE_ZOEKT_ASSIGN_INTERVAL_SECONDS", "1");
    nats.start();
    gh = std::make_unique<stack>(nats.url(), std::string{}, env);
    gh->seed(seed_document());
    serve = gh->spawn();
    shell = gh->shell_token();
  }

  /// SIGKILL and start again: whatever was in flight is lost by the
  /// process, never by the system.
  void crash_and_restart() {
    serve->stop(SIGKILL);
    serve = gh->spawn();
  }

  pqxx::result query(const std::string& sql) const {
    pqxx::connection conn{gh->database_url()};
    pqxx::nontransaction tx{conn};
    return tx.exec(sql);
  }

  std::int64_t count(const std::string& sql) const {
    auto rows = query(sql);
    return rows.empty() || rows[0][0].is_null() ? 0
                                                : rows[0][0].as<std::int64_t>();
  }
};

struct answer {
  int status = 0;
  json body;
  std::string raw;
};

answer to_answer(const httplib::Result& res) {
  REQUIRE(res);
  answer a;
  a.status = res->status;
  a.raw = res->body;
  a.body = json::parse(res->body, nullptr, false);
  return a;
}

/// A node's heartbeat as the indexer sends it (JSON body, dotted keys).
answer heartbeat(world& w, const std::string& uuid, std::int64_t total,
                 std::int64_t used, std::int64_t concurrency = 0) {
  json body = {{"node.url", "http://" + uuid + ":6080"},
               {"node.name", "zoekt-" + uuid},
               {"disk.all", total},
               {"disk.used", used},
               {"disk.indexed", 0},
               {"node.schema_version", 2531}};
  if (concurrency > 0)
    body["node.concurrency"] = concurrency;
  auto cli = w.gh->client();
  return to_answer(cli.Post((zoekt + uuid + "/heartbeat").c_str(),
                            {{"Gitlab-Shell-Api-Request", w.shell}},
                            body.dump(), "application/json"));
}

answer callback(world& w, const std::string& uuid, const json& body) {
  auto cli = w.gh->client();
  return to_answer(cli.Post((zoekt + uuid + "/callback").c_str(),
                            {{"Gitlab-Shell-Api-Request", w.shell}},
                            body.dump(), "application/json"));
}

/// Gitaly's post-receive hook for a branch push of `project`.
void post_receive(world& w, std::int64_t project, const std::string& before,
                  const std::string& after,
                  const std::string& ref = "refs/heads/main") {
  auto cli = w.gh->client();
  json body = {{"gl_repository", "project-" + std::to_string(project)},
               {"identifier", "user-1"},
               {"changes", before + " " + after + " " + ref + "\n"},
               {"push_options", nullptr}};
  auto res = cli.Post("/api/v4/internal/post_receive",
                      {{"Gitlab-Shell-Api-Request", w.shell}}, body.dump(),
                      "application/json");
  REQUIRE(res);
  INFO(res->body);
  REQUIRE(res->status == 200);
}

std::string sha(int n) {
  auto s = std::to_string(n);
  return std::string(40 - s.size(), 'a') + s;
}

const std::string zeros(40, '0');

/// Heartbeats of `uuid` until a task for `project` of kind `name` arrives
/// (a node gets at most one task per repository per poll, so the initial
/// index task and a push's come in separate polls).
std::optional<json> poll_task(world& w, const std::string& uuid,
                              std::int64_t total, std::int64_t used,
                              std::int64_t project,
                              const std::string& name = "index",
                              std::chrono::milliseconds limit = 30s) {
  std::optional<json> found;
  eventually(
    [&] {
      auto a = heartbeat(w, uuid, total, used);
      if (a.status != 200 || !a.body.contains("tasks"))
        return false;
      for (const auto& t : a.body["tasks"])
        if (t["name"] == name && t["payload"]["RepoId"] == project)
          found = t;
      return found.has_value();
    },
    limit);
  return found;
}

constexpr std::int64_t tib = 1LL << 40;

} // namespace

TEST_CASE("zoekt §6: a push to an enabled namespace becomes one index task "
          "on its node, and the callback marks the repository indexed",
          "[.integration][zoekt]") {
  world w;
  auto first = heartbeat(w, "node-a", tib, tib / 10, 4);
  INFO(first.raw);
  REQUIRE(first.status == 200);
  CHECK(first.body["truncate"] == true);
  auto node_id = first.body["id"].get<std::int64_t>();
  auto again = heartbeat(w, "node-a", tib, tib / 10, 4);
  CHECK(again.body["truncate"] == false);
  CHECK(again.body["id"] == node_id);

  // The assignment round puts every project of the enabled namespace (its
  // sub-groups included) on the only node, and nothing else.
  bool assigned = eventually(
    [&] {
      return w.count("SELECT count(*) FROM zoekt_repositories WHERE node_id = "
                     + std::to_string(node_id))
             == 3;
    },
    20s);
  REQUIRE(assigned);
  CHECK(w.count("SELECT count(*) FROM zoekt_repositories WHERE project_id = "
                "402")
        == 0);

  jetstream_reader reader{w.nats.url(), "zoekt_test_"};
  post_receive(w, 400, sha(1), sha(2));
  post_receive(w, 402, sha(3), sha(4));

  // Exactly one task from the push event; none for the project outside.
  bool tasked = eventually(
    [&] {
      return w.count("SELECT count(*) FROM zoekt_tasks WHERE project_id = 400 "
                     "AND source_event_id IS NOT NULL")
             == 1;
    },
    30s);
  REQUIRE(tasked);

  // The fork's initial task: Metadata as GitLab renders it, every value a
  // string.
  auto fork = poll_task(w, "node-a", tib, tib / 10, 403);
  REQUIRE(fork);
  INFO(fork->dump());
  const auto& fp = (*fork)["payload"];
  CHECK(fp["GitalyConnectionInfo"]
        == json({{"Address", gitaly_address},
                 {"Token", "secret"},
                 {"Storage", "default"},
                 {"Path", disk_path(403) + ".git"}}));
  CHECK(fp["Callback"]["name"] == "index");
  CHECK(fp["Callback"]["payload"]["schema_version"] == 2531);
  CHECK(fp["Timeout"].is_string());
  CHECK(fp["MissingRepo"] == false);
  CHECK(fp["Metadata"]
        == json({{"project_id", "403"},
                 {"traversal_ids", "300-"},
                 {"visibility_level", "20"},
                 {"repository_access_level", "20"},
                 {"forked", "t"},
                 {"archived", "f"}}));

  // Project 400 has two tasks (the initial one and the push's). A node gets
  // the oldest task of a repository on every poll until it reports it, so
  // each is reported as it comes, with the repository's statistics.
  std::set<std::int64_t> seen;
  eventually(
    [&] {
      auto t = poll_task(w, "node-a", tib, tib / 10, 400, "index", 2s);
      if (!t)
        return false;
      auto id
        = (*t)["payload"]["Callback"]["payload"]["task_id"].get<std::int64_t>();
      auto a = callback(
        w, "node-a",
        {{"name", "index"},
         {"success", true},
         {"payload", {{"task_id", id}, {"schema_version", 2531}}},
         {"additional_payload",
          {{"repo_stats",
            {{"index_file_count", 7}, {"size_in_bytes", 4096}}}}}});
      INFO(a.raw);
      CHECK(a.status == 202);
      CHECK(a.body == json({{"message", "202 Accepted"}}));
      seen.insert(id);
      return seen.size() == 2;
    },
    30s);
  REQUIRE(seen.size() == 2);
  auto repo = w.query("SELECT state, size_bytes, index_file_count, "
                      "indexed_at IS NOT NULL FROM zoekt_repositories "
                      "WHERE project_id = 400");
  REQUIRE(repo.size() == 1);
  CHECK(repo[0][0].as<std::string>() == "ready");
  CHECK(repo[0][1].as<std::int64_t>() == 4096);
  CHECK(repo[0][2].as<std::int64_t>() == 7);
  CHECK(repo[0][3].as<bool>());
  CHECK(w.count("SELECT count(*) FROM zoekt_tasks WHERE project_id = 400 "
                "AND state <> 'done'")
        == 0);

  // A callback from a node nobody registered: 422, nothing written.
  auto unknown = callback(w, "nobody", {{"name", "index"},
                                        {"success", true},
                                        {"payload", {{"task_id", 1}}}});
  CHECK(unknown.status == 422);
  CHECK(unknown.body == json({{"message", "422 Unprocessable Entity"}}));

  // §7: one Elasticsearch index request per default-branch push, for any
  // project (elasticsearch_indexing is on), with what the indexer is
  // launched with.
  auto requests = reader.wait_for("gitlab.events.index.elastic.402", 1, 30s);
  REQUIRE(requests.size() == 1);
  const auto& body = requests[0].body;
  INFO(requests[0].data);
  CHECK(requests[0].headers["Gatehouse-Event"] == "index_elastic");
  CHECK(body["project_id"] == 402);
  CHECK(body["from_sha"] == sha(3));
  CHECK(body["to_sha"] == sha(4));
  CHECK(body["gitaly_connection_info"]["relative_path"]
        == disk_path(402) + ".git");
  CHECK(body["gitaly_connection_info"]["address"] == gitaly_address);
  CHECK(reader.wait_for("gitlab.events.index.elastic.400", 1, 30s).size()
        == 1);
}

TEST_CASE("zoekt: every push yields exactly one task, through crashes of "
          "Gatehouse and a NATS restart",
          "[.integration][zoekt]") {
  world w;
  auto first = heartbeat(w, "node-x", tib, tib / 10);
  REQUIRE(first.status == 200);
  auto node_id = first.body["id"].get<std::int64_t>();
  bool assigned = eventually(
    [&] {
      return w.count("SELECT count(*) FROM zoekt_repositories WHERE "
                     "project_id = 401 AND node_id = "
                     + std::to_string(node_id))
             == 1;
    },
    20s);
  REQUIRE(assigned);

  // Gatehouse killed right after each push is answered: the event is in the
  // outbox, maybe published, maybe handed to the feed, maybe half-handled.
  const int crashed_pushes = 3;
  for (int i = 0; i < crashed_pushes; ++i) {
    post_receive(w, 401, sha(10 + i), sha(11 + i));
    w.crash_and_restart();
  }
  // NATS down while a push is accepted, then back.
  w.nats.stop();
  post_receive(w, 401, sha(20), sha(21));
  w.nats.start();
  post_receive(w, 401, sha(21), sha(22));
  const int pushes = crashed_pushes + 2;

  bool all = eventually(
    [&] {
      return w.count("SELECT count(*) FROM zoekt_tasks WHERE project_id = 401 "
                     "AND source_event_id IS NOT NULL")
             >= pushes;
    },
    60s);
  REQUIRE(all);
  // Let a redelivery that would repeat a task have its chance: the outbox
  // drained and every push event acknowledged by the indexer's consumer.
  bool drained = eventually(
    [&] {
      return w.count("SELECT count(*) FROM gatehouse_state.outbox WHERE "
                     "published_at IS NULL")
               == 0
             && w.count("SELECT count(*) FROM gatehouse_state."
                        "indexed_push_events")
                  >= pushes;
    },
    30s);
  REQUIRE(drained);
  CHECK(w.count("SELECT count(*) FROM zoekt_tasks WHERE project_id = 401 "
                "AND source_event_id IS NOT NULL")
        == pushes);
  CHECK(w.count("SELECT count(DISTINCT source_event_id) FROM zoekt_tasks "
                "WHERE project_id = 401")
        == pushes);
  // And the Elasticsearch requests: one per push, none twice on the stream.
  jetstream_reader reader{w.nats.url(), "zoekt_test_"};
  auto requests = reader.wait_for("gitlab.events.index.elastic.401", pushes,
                                  30s);
  std::set<std::string> ids;
  for (const auto& m : requests)
    ids.insert(m.headers.at("Nats-Msg-Id"));
  CHECK(requests.size() == static_cast<std::size_t>(pushes));
  CHECK(ids.size() == static_cast<std::size_t>(pushes));
}

TEST_CASE("zoekt: a node that stops sending heartbeats has its repositories "
          "moved to a node that does",
          "[.integration][zoekt]") {
  world w{{{"GATEHOUSE_ZOEKT_LOST_NODE_SECONDS", "3"}}};
  // Node "roomy" has far more free space: the round puts everything there.
  auto roomy = heartbeat(w, "roomy", 10 * tib, tib / 10);
  REQUIRE(roomy.status == 200);
  auto roomy_id = roomy.body["id"].get<std::int64_t>();
  auto small = heartbeat(w, "small", tib, tib / 2);
  REQUIRE(small.status == 200);
  auto small_id = small.body["id"].get<std::int64_t>();
  bool on_roomy = eventually(
    [&] {
      return w.count("SELECT count(*) FROM zoekt_repositories WHERE node_id = "
                     + std::to_string(roomy_id))
             == 3;
    },
    20s);
  REQUIRE(on_roomy);

  // Only "small" keeps calling; "roomy" is lost after 3 s and its
  // repositories come to "small", each with an index task there.
  bool moved = eventually(
    [&] {
      heartbeat(w, "small", tib, tib / 2);
      return w.count("SELECT count(*) FROM zoekt_repositories WHERE node_id = "
                     + std::to_string(small_id))
             == 3;
    },
    40s);
  if (!moved) {
    std::string state;
    for (const auto& row :
         w.query("SELECT r.project_id, r.node_id, r.state, s.last_seen_at, "
                 "now() FROM zoekt_repositories r LEFT JOIN "
                 "gatehouse_state.zoekt_node_states s ON s.node_id = r.node_id "
                 "ORDER BY 1"))
      state += row[0].c_str() + std::string{" on "} + row[1].c_str() + " "
               + row[2].c_str() + " seen " + row[3].c_str() + " now "
               + row[4].c_str() + "\n";
    auto log = w.serve->err();
    INFO(state << "--- serve log (tail) ---\n"
               << log.substr(log.size() > 6000 ? log.size() - 6000 : 0));
    REQUIRE(moved);
  }
  for (auto project : {400, 401, 403}) {
    INFO(project);
    CHECK(w.count("SELECT count(*) FROM zoekt_tasks WHERE node_id = "
                  + std::to_string(small_id) + " AND project_id = "
                  + std::to_string(project) + " AND task_type = 'index_repo'")
          >= 1);
  }
  auto task = poll_task(w, "small", tib, tib / 2, 400);
  CHECK(task.has_value());
}
