// Faults with real processes (issue 9): the real `gatehouse serve` while
// PostgreSQL stops and comes back, while nats-server is down under push
// load, after a SIGKILL under push load, and while PostgreSQL refuses one
// statement of a push's transaction. Every server runs on 127.0.0.1; every
// wait is bounded and, where a condition can be awaited, awaited rather
// than slept. Hidden tag [.faults]; the measured figures are printed.

#include "tests/outbox/outbox_fixtures.hpp"
#include "tests/support/postgres_server.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

const std::string zeros(40, '0');
/// Alice's keys: 2 is seeded from the start, 3 is added by a later seed.
const std::string key2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP2X2ZT+BHT4AtZc"
                         "aFb3IxHq6JcA9/0bd7LMLN9luRQ8 k2@test";
const std::string key3 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNQH1KbaI2jBlE"
                         "vOd5BtAQg89pYBTGPpe9Rga4PZwhG k3@test";

/// User 2 alice, developer of project 11 acme/remote on a storage without a
/// local path (pushes then need no git repository: their events say that
/// commits are unavailable). `with_key3` adds alice's second key.
json fault_seed(bool with_key3 = false) {
  json doc;
  doc["settings"] = {{"external_url", "https://gitlab.example.com"},
                     {"ssh_clone_url_root", "git@gitlab.example.com:"},
                     {"enabled_git_access_protocol", "all"},
                     {"receive_max_input_size_mb", 0},
                     {"gitlab_version", "18.6.0"},
                     {"gitlab_shell_operation_limit", 0}};
  doc["storages"]
    = json::array({{{"name", "remote"},
                    {"gitaly_address", "tcp://remote-gitaly:8075"},
                    {"gitaly_token", ""}}});
  doc["users"] = json::array({{{"id", 2},
                               {"username", "alice"},
                               {"name", "Alice Developer"},
                               {"email", "alice@example.com"},
                               {"public_email", ""},
                               {"state", "active"},
                               {"admin", false},
                               {"external", false},
                               {"can_create_project", true},
                               {"two_factor_enabled", false}}});
  auto key = [](int id, const std::string& line) {
    return json{{"id", id},
                {"user_id", 2},
                {"title", "key"},
                {"key", line},
                {"usage_type", "auth_and_signing"},
                {"expires_at", nullptr}};
  };
  doc["keys"] = json::array({key(2, key2)});
  if (with_key3)
    doc["keys"].push_back(key(3, key3));
  doc["namespaces"] = json::array({{{"id", 5},
                                    {"path", "acme"},
                                    {"name", "Acme"},
                                    {"kind", "group"},
                                    {"parent_id", nullptr}}});
  doc["projects"] = json::array({{{"id", 11},
                                  {"namespace_id", 5},
                                  {"path", "remote"},
                                  {"name", "remote"},
                                  {"description", ""},
                                  {"visibility", "private"},
                                  {"archived", false},
                                  {"default_branch", "main"},
                                  {"storage", "remote"},
                                  {"disk_path", "@hashed/aa/aa/remote"},
                                  {"repository_access_level", "enabled"},
                                  {"merge_requests_enabled", true},
                                  {"lfs_enabled", true},
                                  {"repository_exists", true},
                                  {"redirects", json::array()}}});
  doc["members"]
    = json::array({{{"user_id", 2}, {"project_id", 11}, {"access_level", 30}}});
  return doc;
}

/// A fake 40-hex object id numbered `n`.
std::string fake_sha(int n) {
  char buf[41];
  std::snprintf(buf, sizeof buf, "%040x", n);
  return buf;
}

/// Milliseconds since `t0`.
long long ms_since(steady::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now()
                                                               - t0)
    .count();
}

/// GitLab Shell's and Gitaly's calls to one served Gatehouse. An answer
/// that never came is status 0.
struct hooks {
  const stack& gh;
  std::string token = gh.shell_token();

  reply post(const std::string& path, const json& body) const {
    auto cli = gh.client();
    auto res = cli.Post(path.c_str(), {{"Gitlab-Shell-Api-Request", token}},
                        body.dump(), "application/json");
    if (!res)
      return reply{};
    return make_reply(res);
  }

  reply allowed(int key_id) const {
    return post("/api/v4/internal/allowed",
                {{"action", "git-upload-pack"},
                 {"project", "acme/remote"},
                 {"changes", "_any"},
                 {"protocol", "ssh"},
                 {"key_id", std::to_string(key_id)}});
  }

  reply pre_receive() const {
    return post("/api/v4/internal/pre_receive",
                {{"gl_repository", "project-11"}});
  }

  reply post_receive(const std::string& changes) const {
    return post("/api/v4/internal/post_receive",
                {{"gl_repository", "project-11"},
                 {"identifier", "key-2"},
                 {"changes", changes},
                 {"push_options", nullptr}});
  }

  /// A push of one new branch numbered `n` (one event): pre_receive, then
  /// post_receive; true when both answered 200.
  bool push(int n) const {
    if (pre_receive().status != 200)
      return false;
    return post_receive(zeros + " " + fake_sha(n) + " refs/heads/load-"
                        + std::to_string(n) + "\n")
             .status
      == 200;
  }

  int readiness() const {
    auto res = gh.client().Get("/-/readiness");
    return res ? res->status : 0;
  }

  /// The value of an unlabelled gauge in /metrics; -2 when absent.
  long long metric(const std::string& name) const {
    auto res = gh.client().Get("/metrics");
    if (!res)
      return -2;
    std::istringstream in{res->body};
    for (std::string line; std::getline(in, line);)
      if (line.rfind(name + " ", 0) == 0)
        return std::stoll(line.substr(name.size() + 1));
    return -2;
  }
};

/// Pushes from a few threads, each a new branch with one event, until
/// stopped; records which pushes were answered 200 and which were not.
class push_load {
public:
  push_load(const hooks& api, int first, int threads = 4) : next_(first) {
    for (int t = 0; t < threads; ++t)
      threads_.emplace_back([this, &api] {
        while (running_) {
          int n = next_++;
          bool ok = api.push(n);
          {
            std::lock_guard<std::mutex> guard{mx_};
            (ok ? answered_ : failed_).push_back(n);
          }
          // A moderate rate (a few hundred pushes a second at most), so
          // that a 20 s outage leaves a backlog the test can drain quickly.
          std::this_thread::sleep_for(10ms);
        }
      });
  }

  ~push_load() {
    stop();
  }

  /// Ends the load; every push in flight completes first.
  void stop() {
    running_ = false;
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
  }

  std::size_t answered() const {
    std::lock_guard<std::mutex> guard{mx_};
    return answered_.size();
  }

  std::vector<int> answered_pushes() const {
    std::lock_guard<std::mutex> guard{mx_};
    return answered_;
  }

  std::vector<int> failed_pushes() const {
    std::lock_guard<std::mutex> guard{mx_};
    return failed_;
  }

  /// The first push number after every one this load made.
  int next() const {
    return next_;
  }

private:
  std::atomic<bool> running_{true};
  std::atomic<int> next_;
  mutable std::mutex mx_;
  std::vector<int> answered_;
  std::vector<int> failed_;
  std::vector<std::thread> threads_;
};

/// Waits until `load` has had `more` further pushes answered.
void wait_answered(const push_load& load, std::size_t more,
                   std::chrono::milliseconds limit = 30s) {
  auto target = load.answered() + more;
  REQUIRE(eventually([&] { return load.answered() >= target; }, limit));
}

std::int64_t db_count(const std::string& url, const std::string& sql) {
  pqxx::connection conn{url};
  return count(conn, sql);
}

std::int64_t unpublished(const stack& gh) {
  return db_count(gh.database_url(),
                  "SELECT count(*) FROM gatehouse_state.outbox WHERE "
                  "published_at IS NULL");
}

/// After the relay drained the outbox: every outbox row is on the stream
/// exactly once (no two messages share a Nats-Msg-Id), every push in
/// `answered` has its event there, and nothing else is. Returns the number
/// of events on the stream.
std::size_t check_events_exactly_once(const stack& gh, const private_nats& nats,
                                      const std::vector<int>& answered,
                                      const std::vector<int>& unanswered) {
  REQUIRE(eventually([&] { return unpublished(gh) == 0; }, 60s));
  js_client js{nats.url()};
  auto msgs = js.read_all();
  std::set<std::string> ids;
  std::multiset<std::string> afters;
  for (const auto& m : msgs) {
    INFO("message " << m.subject << " " << m.data);
    CHECK(m.subject == "gitlab.events.push.11");
    CHECK(ids.insert(m.headers.at("Nats-Msg-Id")).second);
    afters.insert(json::parse(m.data).value("after", ""));
  }
  CHECK(static_cast<std::int64_t>(msgs.size())
        == db_count(gh.database_url(),
                    "SELECT count(*) FROM gatehouse_state.outbox"));
  for (int n : answered) {
    INFO("answered push " << n);
    CHECK(afters.count(fake_sha(n)) == 1);
  }
  // A push left unanswered (its Gatehouse was killed) may or may not have
  // been committed; if it was, its event is there once.
  for (int n : unanswered) {
    INFO("unanswered push " << n);
    CHECK(afters.count(fake_sha(n)) <= 1);
  }
  CHECK(msgs.size() >= answered.size());
  CHECK(msgs.size() <= answered.size() + unanswered.size());
  return msgs.size();
}

/// A private nats-server and a seeded Gatehouse on a scratch database of
/// the shared PostgreSQL, not started: each case starts it its own way.
struct events_fixture {
  private_nats nats;
  std::unique_ptr<stack> gh;

  events_fixture() {
    nats.start();
    gh = std::make_unique<stack>(nats.url());
    gh->seed(fault_seed());
  }
};

} // namespace

TEST_CASE("PostgreSQL stopped: readiness fails fast, decisions go on from "
          "the read model, writes fail within the request timeout; back: "
          "full service and a caught-up read model",
          "[.faults]") {
  constexpr auto request_timeout = 2000ms;
  private_postgres pg;
  pg.start();
  private_nats nats;
  nats.start();
  stack gh{nats.url(),
           pg.url(),
           {{"GATEHOUSE_REQUEST_TIMEOUT_MS",
             std::to_string(request_timeout.count())}}};
  {
    std::string err;
    INFO("gatehouse migrate: " << err);
    REQUIRE(run_cli({"migrate"}, gh.env(), nullptr, &err) == 0);
  }
  gh.seed(fault_seed());
  gh.start();
  gh.wait_deciding();
  hooks api{gh};
  REQUIRE(api.readiness() == 200);
  REQUIRE(api.allowed(2).status == 200);
  REQUIRE(api.push(1));

  pg.stop();
  auto stopped = steady::now();
  REQUIRE(eventually([&] { return api.readiness() == 503; }, 5s));
  auto readiness_ms = ms_since(stopped);
  std::cout << "faults: PostgreSQL stopped: readiness 503 after "
            << readiness_ms << " ms\n";
  CHECK(readiness_ms <= 2000);

  // Decisions come from the read model in memory.
  auto t = steady::now();
  auto allowed = api.allowed(2);
  INFO("allowed: " << allowed.body);
  CHECK(allowed.status == 200);
  CHECK(allowed.j.value("gl_repository", "") == "project-11");
  std::cout << "faults: /allowed without PostgreSQL: " << allowed.status
            << " in " << ms_since(t) << " ms\n";

  // GitLab rescues its counter store's failure: 200, not increased.
  t = steady::now();
  auto pre = api.pre_receive();
  auto pre_ms = ms_since(t);
  INFO("pre_receive: " << pre.body);
  CHECK(pre.status == 200);
  CHECK(pre.j == json{{"reference_counter_increased", false}});
  CHECK(pre_ms <= request_timeout.count() + 500);
  std::cout << "faults: pre_receive without PostgreSQL: " << pre.status << " "
            << pre.body << " in " << pre_ms << " ms\n";

  // A write answers 503 within the request timeout (plus 0.5 s for the
  // answer's way back).
  t = steady::now();
  auto post
    = api.post_receive(zeros + " " + fake_sha(2) + " refs/heads/outage\n");
  auto post_ms = ms_since(t);
  INFO("post_receive: " << post.body);
  CHECK(post.status == 503);
  CHECK(post.j == json{{"message", "503 Service Unavailable"}});
  CHECK(post_ms <= request_timeout.count() + 500);
  std::cout << "faults: post_receive without PostgreSQL: " << post.status
            << " in " << post_ms << " ms\n";
  // Nothing hangs: the process still serves.
  CHECK(gh.client().Get("/-/liveness")->status == 200);

  pg.start();
  auto restarted = steady::now();
  REQUIRE(eventually([&] { return api.readiness() == 200; }, 5s));
  auto back_ms = ms_since(restarted);
  REQUIRE(eventually([&] { return api.push(3); }, 5s));
  auto push_ms = ms_since(restarted);
  std::cout << "faults: PostgreSQL back: readiness 200 after " << back_ms
            << " ms, a push answered 200 after " << push_ms << " ms\n";
  CHECK(back_ms <= 5000);
  CHECK(push_ms <= 5000);

  // The read model follows changes made after the outage.
  CHECK(api.allowed(3).status != 200);
  gh.seed(fault_seed(true));
  auto seeded = steady::now();
  REQUIRE(eventually([&] { return api.allowed(3).status == 200; }, 5s));
  std::cout << "faults: a seed after the outage visible in /allowed after "
            << ms_since(seeded) << " ms\n";
  CHECK(gh.stop() == 0);
}

TEST_CASE_METHOD(
  events_fixture,
  "nats-server stopped under push load: pushes answer, events wait "
  "in the outbox, and all arrive exactly once after it is back",
  "[.faults]") {
  gh->start();
  hooks api{*gh};
  push_load load{api, 1};
  wait_answered(load, 20);

  nats.stop();
  auto stopped = steady::now();
  auto answered_at_stop = load.answered();
  // The issue asks for a minute: FAULTS_NATS_OUTAGE_S=60 runs that; 20 s
  // shows the same and keeps the suite short. Meanwhile the backlog shows
  // in /metrics and readiness stays 200 (Gatehouse still decides and queues
  // events).
  const char* outage_env = std::getenv("FAULTS_NATS_OUTAGE_S");
  const long long outage_ms
    = std::clamp(outage_env ? std::atoll(outage_env) : 20LL, 1LL, 600LL)
      * 1000;
  long long max_pending = -1;
  bool ready = true;
  while (ms_since(stopped) < outage_ms) {
    max_pending = std::max(max_pending, api.metric("gatehouse_outbox_pending"));
    ready = ready && api.readiness() == 200;
    std::this_thread::sleep_for(500ms);
  }
  auto answered_down = load.answered() - answered_at_stop;
  auto pending_db = unpublished(*gh);
  std::cout << "faults: NATS down " << outage_ms / 1000
            << " s: " << answered_down
            << " pushes answered meanwhile, gatehouse_outbox_pending up to "
            << max_pending << ", " << pending_db << " unpublished rows\n";
  CHECK(answered_down > 0);
  CHECK(max_pending > 0);
  CHECK(pending_db > 0);
  CHECK(ready);

  nats.start(); // same port, same store directory
  auto restarted = steady::now();
  wait_answered(load, 20);
  load.stop();
  CHECK(load.failed_pushes().empty());
  auto events = check_events_exactly_once(*gh, nats, load.answered_pushes(),
                                          load.failed_pushes());
  std::cout << "faults: NATS back: " << load.answered_pushes().size()
            << " pushes answered in all, " << events
            << " events on the stream, each once, drained "
            << ms_since(restarted) << " ms after the restart\n";
  CHECK(events == load.answered_pushes().size());
  CHECK(eventually([&] { return api.metric("gatehouse_outbox_pending") == 0; },
                   10s));
}

TEST_CASE_METHOD(events_fixture,
                 "gatehouse killed with SIGKILL under push load: the next one "
                 "publishes every answered push's events exactly once",
                 "[.faults]") {
  auto first = gh->spawn();
  gh->wait_deciding();
  std::vector<int> answered;
  std::vector<int> unanswered;
  int next = 1;
  {
    hooks api{*gh};
    push_load load{api, next};
    wait_answered(load, 50);
    CHECK(first->stop(SIGKILL) == 128 + SIGKILL);
    load.stop();
    answered = load.answered_pushes();
    unanswered = load.failed_pushes();
    next = load.next();
  }
  std::cout << "faults: SIGKILL: " << answered.size()
            << " pushes answered before the kill, " << unanswered.size()
            << " not answered\n";

  auto second = gh->spawn(); // same database, same NATS
  gh->wait_deciding();
  {
    hooks api{*gh};
    push_load load{api, next};
    wait_answered(load, 20);
    load.stop();
    CHECK(load.failed_pushes().empty());
    auto more = load.answered_pushes();
    answered.insert(answered.end(), more.begin(), more.end());
  }
  auto events = check_events_exactly_once(*gh, nats, answered, unanswered);
  std::cout << "faults: after the restart: " << answered.size()
            << " pushes answered, " << events
            << " events on the stream, each once\n";
  CHECK(second->stop(SIGTERM) == 0);
}

TEST_CASE_METHOD(
  events_fixture,
  "PostgreSQL refusing one statement of a push's transaction: an "
  "error, nothing half-applied; without the fault the push works",
  "[.faults]") {
  gh->start();
  hooks api{*gh};
  pqxx::connection conn{gh->database_url()};
  // A test-only trigger: the outbox refuses the event of one marked ref.
  // The push's transaction has by then decreased the counter and inserted
  // the event of its first ref.
  exec(conn,
       "CREATE FUNCTION gatehouse_state.fault_test_refuse() "
       "RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
       "IF NEW.body LIKE '%refs/heads/poison%' THEN "
       "RAISE EXCEPTION 'fault test: outbox row refused'; END IF; "
       "RETURN NEW; END $$");
  exec(conn,
       "CREATE TRIGGER fault_test_refuse BEFORE INSERT ON "
       "gatehouse_state.outbox FOR EACH ROW EXECUTE FUNCTION "
       "gatehouse_state.fault_test_refuse()");
  auto counter = [&] {
    return query1(conn,
                  "SELECT value FROM gatehouse_state.reference_counters "
                  "WHERE gl_repository = 'project-11'");
  };
  auto outbox_rows = [&] {
    return count(conn, "SELECT count(*) FROM gatehouse_state.outbox");
  };
  const auto changes = zeros + " " + fake_sha(1) + " refs/heads/fine\n" + zeros
    + " " + fake_sha(2) + " refs/heads/poison\n";

  REQUIRE(api.pre_receive().j == json{{"reference_counter_increased", true}});
  REQUIRE(counter() == "1");
  auto r = api.post_receive(changes);
  INFO("post_receive: " << r.body);
  CHECK(r.status == 503);
  CHECK(r.j == json{{"message", "503 Service Unavailable"}});
  CHECK(counter() == "1");
  CHECK(outbox_rows() == 0);
  std::cout << "faults: one statement refused: post_receive " << r.status
            << ", counter still " << counter() << ", " << outbox_rows()
            << " outbox rows\n";

  exec(conn, "DROP TRIGGER fault_test_refuse ON gatehouse_state.outbox");
  r = api.post_receive(changes);
  INFO("post_receive: " << r.body);
  CHECK(r.status == 200);
  CHECK(counter() == "0");
  CHECK(outbox_rows() == 2);
  REQUIRE(eventually([&] { return unpublished(*gh) == 0; }, 20s));
  js_client js{nats.url()};
  CHECK(js.stream_messages() == 2);
}

TEST_CASE("migrate waits for a PostgreSQL that starts late, and gives up "
          "with a clear error after GATEHOUSE_DATABASE_WAIT_SECONDS",
          "[.faults]") {
  private_postgres pg; // created, not started: nothing listens yet
  std::map<std::string, std::string> env{
    {"GATEHOUSE_DATABASE_URL", pg.url()},
    {"GATEHOUSE_LOG_FORMAT", "json"},
    {"GATEHOUSE_DATABASE_WAIT_SECONDS", "1"}};
  std::string out, err;
  CHECK(run_cli({"migrate"}, env, &out, &err) == 1);
  INFO(out << err);
  CHECK_THAT(out, Catch::Contains("waiting for postgresql")
                    && Catch::Contains("giving up"));
  CHECK_THAT(err, Catch::Contains("cannot connect to PostgreSQL"));

  env["GATEHOUSE_DATABASE_WAIT_SECONDS"] = "120";
  child migrate{{binary(), "migrate"}, env, make_temp_dir("migrate") + "/m"};
  REQUIRE(eventually(
    [&] {
      return migrate.out().find("waiting for postgresql") != std::string::npos;
    },
    20s));
  REQUIRE(migrate.running());
  pg.start();
  CHECK(migrate.wait(60s) == 0);
  INFO(migrate.out() << migrate.err());
  CHECK_THAT(migrate.out(), Catch::Contains("postgresql reachable")
                              && Catch::Contains("migrations: "));
}

TEST_CASE("serve exits within 5 s of SIGTERM after PostgreSQL and "
          "nats-server went away",
          "[.faults]") {
  private_postgres pg;
  pg.start();
  private_nats nats;
  nats.start();
  stack gh{nats.url(), pg.url()};
  {
    std::string err;
    INFO("gatehouse migrate: " << err);
    REQUIRE(run_cli({"migrate"}, gh.env(), nullptr, &err) == 0);
  }
  gh.seed(fault_seed());
  gh.start();
  gh.wait_deciding();
  hooks api{gh};
  REQUIRE(api.push(1));

  pg.stop();
  nats.stop();
  REQUIRE(eventually([&] { return api.readiness() == 503; }, 10s));
  // A write in flight while the stop comes: it waits for PostgreSQL.
  std::thread writer{[&] {
    api.post_receive(zeros + " " + fake_sha(9) + " refs/heads/late\n");
  }};
  std::this_thread::sleep_for(200ms);
  auto t = steady::now();
  int rc = gh.stop();
  auto took_ms = ms_since(t);
  writer.join();
  INFO(gh.log());
  CHECK(rc == 0);
  CHECK(took_ms < 5000);
  // Stopped in order, not by the stop deadline's forced exit.
  CHECK_THAT(gh.log(), !Catch::Contains("not stopped in time"));
  CHECK_THAT(gh.log(), Catch::Contains("nats internal edge stopped"));
  std::cout << "faults: serve stopped " << took_ms
            << " ms after SIGTERM without PostgreSQL and NATS\n";
}
