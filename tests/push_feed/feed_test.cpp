// The agent registry's push feed against private nats-servers and a typed
// mock registry on a real actor system: delivery with the event's fields,
// redelivery after a failure, after a restart of the feed and to another
// replica, NATS restarts and a lost durable, unusable messages, and a
// prompt stop. Hidden tag [.nats]; waits are on conditions, their limits
// only bound a broken build.

#include "edges/nats/connection.hpp"
#include "edges/nats/push_feed.hpp"
#include "messages/errors.hpp"
#include "messages/interfaces.hpp"
#include "tests/support/nats_server.hpp"
#include "tests/support/process.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>
#include <nats/nats.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string durable = "gatehouse-agent-registry";

// -- the mock registry ----------------------------------------------------------

/// What the mock registry was asked and how it answers; shared with the
/// test's thread.
struct registry_script {
  enum class mode { answer, fail, silent };

  std::mutex mtx;
  mode how = mode::answer;
  /// Fail this many requests before answering (with mode::answer).
  int fail_first = 0;
  std::vector<agents::pushed_paths> received;

  void set(mode m) {
    std::lock_guard<std::mutex> guard{mtx};
    how = m;
  }

  /// Records `p`; how to answer it.
  mode record(const agents::pushed_paths& p) {
    std::lock_guard<std::mutex> guard{mtx};
    received.push_back(p);
    if (how == mode::answer && fail_first > 0) {
      --fail_first;
      return mode::fail;
    }
    return how;
  }

  std::vector<agents::pushed_paths> all() {
    std::lock_guard<std::mutex> guard{mtx};
    return received;
  }

  /// How often the event `id` arrived.
  std::size_t count(const std::string& id) {
    std::lock_guard<std::mutex> guard{mtx};
    std::size_t n = 0;
    for (auto& p : received)
      n += p.event_id == id ? 1 : 0;
    return n;
  }
};

struct mock_registry_state {
  std::vector<caf::response_promise> held;
};

/// The full agent_registry_actor interface (so the compiler checks the
/// mock); only pushed_paths is used by the feed.
agent_registry_actor::behavior_type
mock_registry(agent_registry_actor::stateful_pointer<mock_registry_state> self,
              std::shared_ptr<registry_script> script) {
  auto unused = [] { return caf::make_error(errc::internal, "not in test"); };
  return {
    [=](const agents::agent_info_query&)
      -> caf::result<agents::agent_info_answer> { return unused(); },
    [=](const agents::project_query&) -> caf::result<agents::project_answer> {
      return unused();
    },
    [=](const agents::configuration_query&)
      -> caf::result<agents::no_content> { return unused(); },
    [=](const agents::proxy_user_query&)
      -> caf::result<agents::proxy_user_answer> { return unused(); },
    [=](const agents::usage_query&) -> caf::result<agents::no_content> {
      return unused();
    },
    [=](const agents::events_query&) -> caf::result<agents::no_content> {
      return unused();
    },
    [=](const agents::runner_query&) -> caf::result<agents::runner_answer> {
      return unused();
    },
    [=](const agents::pushed_paths& p)
      -> caf::result<agents::pushed_paths_done> {
      switch (script->record(p)) {
        case registry_script::mode::answer:
          return agents::pushed_paths_done{1};
        case registry_script::mode::fail:
          return caf::make_error(errc::unavailable, "outbox unavailable");
        case registry_script::mode::silent:
          break;
      }
      self->state.held.push_back(self->make_response_promise());
      return caf::delegated<agents::pushed_paths_done>{};
    },
    [=](atom::snapshot, snapshot_ptr) {},
    [=](atom::tick) {},
  };
}

// -- a publisher and inspector --------------------------------------------------

/// Publishes events as the outbox relay does and reads the durable's state.
class publisher {
public:
  explicit publisher(const std::string& url) {
    REQUIRE(natsConnection_ConnectTo(&nc_, url.c_str()) == NATS_OK);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    REQUIRE(natsConnection_JetStream(&js_, nc_, &jo) == NATS_OK);
  }

  ~publisher() {
    jsCtx_Destroy(js_);
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }

  publisher(const publisher&) = delete;
  publisher& operator=(const publisher&) = delete;

  void publish(const std::string& subject, const std::string& id,
               const std::string& body,
               std::map<std::string, std::string> headers = {}) {
    natsMsg* msg = nullptr;
    REQUIRE(natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(),
                           static_cast<int>(body.size()))
            == NATS_OK);
    if (!id.empty())
      headers["Nats-Msg-Id"] = id;
    headers["Content-Type"] = "application/json";
    for (auto& [k, v] : headers)
      natsMsgHeader_Set(msg, k.c_str(), v.c_str());
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    auto s = js_PublishMsg(&pa, js_, msg, nullptr, &jerr);
    if (pa)
      jsPubAck_Destroy(pa);
    natsMsg_Destroy(msg);
    INFO("publish: " << natsStatus_GetText(s) << " " << jerr);
    REQUIRE(s == NATS_OK);
  }

  /// The durable exists (the feed created it, and the stream).
  bool consumer_ready() {
    jsConsumerInfo* ci = nullptr;
    auto s = js_GetConsumerInfo(&ci, js_, "GATEHOUSE_EVENTS", durable.c_str(),
                                nullptr, nullptr);
    if (ci)
      jsConsumerInfo_Destroy(ci);
    return s == NATS_OK;
  }

  /// Everything published was acknowledged (or terminated).
  bool all_acked() {
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, js_, "GATEHOUSE_EVENTS", durable.c_str(),
                           nullptr, nullptr)
        != NATS_OK)
      return false;
    bool done = ci->NumAckPending == 0 && ci->NumPending == 0;
    redelivered_ = ci->NumRedelivered;
    jsConsumerInfo_Destroy(ci);
    return done;
  }

  /// Messages redelivered and not yet acknowledged at the last all_acked().
  std::int64_t redelivered() const {
    return redelivered_;
  }

  void delete_consumer() {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    REQUIRE(js_DeleteConsumer(js_, "GATEHOUSE_EVENTS", durable.c_str(),
                              nullptr, &jerr)
            == NATS_OK);
  }

private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  std::int64_t redelivered_ = 0;
};

std::string event_id(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", n);
  return buf;
}

std::string push_body(std::int64_t project, json commits, int total) {
  return json{{"object_kind", "push"},
              {"event_name", "push"},
              {"before", std::string(40, '1')},
              {"after", std::string(40, '2')},
              {"ref", "refs/heads/main"},
              {"project_id", project},
              {"commits", std::move(commits)},
              {"total_commits_count", total}}
    .dump();
}

json commit(json added, json modified, json removed) {
  return {{"id", std::string(40, '2')},
          {"added", std::move(added)},
          {"modified", std::move(modified)},
          {"removed", std::move(removed)}};
}

std::string simple_body(std::int64_t project = 10) {
  return push_body(project,
                   json::array({commit({".gitlab/agents/a/config.yaml"},
                                       json::array(), json::array())}),
                   1);
}

/// Settings that react fast enough for tests.
nats::push_feed_settings fast_feed() {
  nats::push_feed_settings s;
  s.request_timeout = 2s;
  s.retry_delay = 50ms;
  s.max_retry_delay = 200ms;
  s.min_backoff = 20ms;
  s.max_backoff = 300ms;
  s.consumer_check_interval = 300ms;
  return s;
}

/// A process's NATS connection, nobody listening to its state reports.
std::unique_ptr<nats::connection> connect(const std::string& url) {
  nats::nats_settings settings;
  settings.url = url;
  auto conn
    = std::make_unique<nats::connection>(settings, system_status_actor{});
  std::string error;
  REQUIRE(conn->start(error));
  return conn;
}

/// A nats-server, an actor system, a replica's connection and feed, and a
/// mock registry.
struct feed_fixture {
  private_nats server;
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::shared_ptr<registry_script> script
    = std::make_shared<registry_script>();
  agent_registry_actor registry = sys.spawn(mock_registry, script);
  std::unique_ptr<nats::connection> conn;
  std::unique_ptr<nats::push_feed> feed;
  std::unique_ptr<publisher> pub;

  feed_fixture() {
    server.start();
    conn = connect(server.url());
  }

  ~feed_fixture() {
    if (feed)
      feed->stop();
    feed.reset();
    pub.reset();
    if (conn)
      conn->stop();
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
  }

  /// Starts a feed (replacing a stopped one) and waits for its durable.
  void start_feed(nats::push_feed_settings s = fast_feed()) {
    if (feed)
      feed->stop();
    feed = std::make_unique<nats::push_feed>(s, sys, registry, *conn);
    feed->start();
    if (!pub)
      pub = std::make_unique<publisher>(server.url());
    REQUIRE(eventually([&] { return pub->consumer_ready(); }, 20s));
  }

  bool acked() {
    return eventually([&] { return pub->all_acked(); }, 20s);
  }
};

} // namespace

TEST_CASE_METHOD(feed_fixture,
                 "the feed hands a push event to the registry with its "
                 "fields and acknowledges it",
                 "[.nats][push_feed]") {
  start_feed();
  pub->publish("gitlab.events.push.10", event_id(1),
               push_body(10,
                         json::array({commit({".gitlab/agents/a/config.yaml"},
                                             {"README.md"}, json::array()),
                                      commit(json::array(), {"README.md"},
                                             {"old.txt"})}),
                         2),
               {{"Gatehouse-Event", "push"}});
  // Listing fewer commits than the push brought.
  pub->publish("gitlab.events.push.11", event_id(2),
               push_body(11,
                         json::array({commit({"a"}, json::array(),
                                             json::array())}),
                         21),
               {{"Gatehouse-Event", "push"}});
  // Git could not be asked.
  pub->publish("gitlab.events.push.12", event_id(3),
               push_body(12, json::array(), 0),
               {{"Gatehouse-Event", "push"},
                {"Gatehouse-Commits", "unavailable"}});
  // Not for the feed: tags and agent events.
  pub->publish("gitlab.events.tag_push.10", event_id(4), simple_body(),
               {{"Gatehouse-Event", "tag_push"}});
  pub->publish("gitlab.events.agent_config_push.7", event_id(5), "{}",
               {{"Gatehouse-Event", "agent_config_push"}});

  REQUIRE(eventually([&] { return script->all().size() >= 3; }, 20s));
  REQUIRE(acked());
  auto got = script->all();
  REQUIRE(got.size() == 3);
  std::map<std::string, agents::pushed_paths> by_id;
  for (auto& p : got)
    by_id[p.event_id] = p;
  REQUIRE(by_id.count(event_id(1)) == 1);
  auto& first = by_id[event_id(1)];
  CHECK(first.project_id == 10);
  CHECK(first.ref == "refs/heads/main");
  CHECK(first.before == std::string(40, '1'));
  CHECK(first.after == std::string(40, '2'));
  CHECK(first.paths
        == std::vector<std::string>{".gitlab/agents/a/config.yaml",
                                    "README.md", "old.txt"});
  CHECK(first.complete);
  REQUIRE(by_id.count(event_id(2)) == 1);
  CHECK(by_id[event_id(2)].project_id == 11);
  CHECK_FALSE(by_id[event_id(2)].complete);
  REQUIRE(by_id.count(event_id(3)) == 1);
  CHECK_FALSE(by_id[event_id(3)].complete);
  CHECK(by_id[event_id(3)].paths.empty());

  auto stats = feed->stats();
  CHECK(stats.handled == 3);
  CHECK(stats.notices == 3);
  CHECK(stats.retried == 0);
  CHECK(stats.terminated == 0);
  CHECK(stats.consuming);
}

TEST_CASE_METHOD(feed_fixture,
                 "a failed or unanswered event is redelivered until the "
                 "registry handles it",
                 "[.nats][push_feed]") {
  {
    std::lock_guard<std::mutex> guard{script->mtx};
    script->fail_first = 2;
  }
  auto s = fast_feed();
  s.request_timeout = 300ms; // for the silent round below
  start_feed(s);
  pub->publish("gitlab.events.push.10", event_id(1), simple_body());
  REQUIRE(eventually([&] { return script->count(event_id(1)) == 3; }, 20s));
  REQUIRE(acked());
  CHECK(feed->stats().retried == 2);
  CHECK(feed->stats().handled == 1);

  // No answer within request_timeout counts as a failure too.
  script->set(registry_script::mode::silent);
  pub->publish("gitlab.events.push.10", event_id(2), simple_body());
  REQUIRE(eventually([&] { return script->count(event_id(2)) >= 2; }, 20s));
  script->set(registry_script::mode::answer);
  REQUIRE(acked());
  CHECK(feed->stats().retried >= 3);
  CHECK(script->count(event_id(1)) == 3); // acknowledged: never again
}

TEST_CASE_METHOD(feed_fixture,
                 "an event a stopped feed did not finish is delivered again "
                 "by the next feed, and stop() returns within a second",
                 "[.nats][push_feed]") {
  script->set(registry_script::mode::fail);
  start_feed();
  pub->publish("gitlab.events.push.10", event_id(1), simple_body());
  REQUIRE(eventually([&] { return script->count(event_id(1)) >= 2; }, 20s));
  feed->stop();
  CHECK_FALSE(feed->stats().consuming);
  CHECK_FALSE(pub->all_acked());

  // Stopped while the registry holds the event: the stop does not wait for
  // the registry's request timeout (10 s), and the event goes back.
  script->set(registry_script::mode::silent);
  auto s = fast_feed();
  s.request_timeout = 10s;
  start_feed(s);
  auto before = script->count(event_id(1));
  REQUIRE(eventually([&] { return script->count(event_id(1)) > before; },
                     20s));
  auto t0 = std::chrono::steady_clock::now();
  feed->stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);

  // An idle feed stops as promptly.
  script->set(registry_script::mode::answer);
  start_feed();
  REQUIRE(acked());
  auto delivered = script->count(event_id(1));
  t0 = std::chrono::steady_clock::now();
  feed->stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  feed->stop(); // idempotent

  // Acknowledged: a further feed gets nothing.
  start_feed();
  pub->publish("gitlab.events.push.10", event_id(2), simple_body());
  REQUIRE(eventually([&] { return script->count(event_id(2)) == 1; }, 20s));
  REQUIRE(acked());
  CHECK(script->count(event_id(1)) == delivered);
}

TEST_CASE_METHOD(feed_fixture,
                 "an unusable message is terminated once, never redelivered",
                 "[.nats][push_feed]") {
  start_feed();
  pub->publish("gitlab.events.push.10", event_id(1), "not json");
  pub->publish("gitlab.events.push.10", event_id(2), R"({"ref":"x"})");
  pub->publish("gitlab.events.push.10", "", simple_body()); // no Nats-Msg-Id
  REQUIRE(eventually([&] { return feed->stats().terminated == 3; }, 20s));
  REQUIRE(acked());
  auto small = fast_feed();
  small.max_body = 64;
  start_feed(small);
  pub->publish("gitlab.events.push.10", event_id(3), simple_body()); // > 64
  REQUIRE(eventually([&] { return feed->stats().terminated == 1; }, 20s));
  REQUIRE(acked());
  CHECK(pub->redelivered() == 0);
  CHECK(script->all().empty());

  // The feed goes on with the next event.
  start_feed();
  pub->publish("gitlab.events.push.10", event_id(4), simple_body());
  REQUIRE(eventually([&] { return script->count(event_id(4)) == 1; }, 20s));
  REQUIRE(acked());
  CHECK(script->all().size() == 1);
  CHECK(feed->stats().terminated == 0);
}

TEST_CASE_METHOD(feed_fixture,
                 "the feed rides out a nats-server restart and re-creates a "
                 "lost durable",
                 "[.nats][push_feed]") {
  start_feed();
  pub->publish("gitlab.events.push.10", event_id(1), simple_body());
  REQUIRE(eventually([&] { return script->count(event_id(1)) == 1; }, 20s));
  REQUIRE(acked());

  pub.reset();
  server.stop();
  server.start(); // same port, same store
  pub = std::make_unique<publisher>(server.url());
  pub->publish("gitlab.events.push.10", event_id(2), simple_body());
  REQUIRE(eventually([&] { return script->count(event_id(2)) == 1; }, 30s));
  REQUIRE(acked());
  CHECK(script->count(event_id(1)) == 1);

  // The durable vanishes (deleted, or a server that lost its store): the
  // feed creates it again, from the start of the stream.
  pub->delete_consumer();
  REQUIRE(eventually([&] { return pub->consumer_ready(); }, 20s));
  pub->publish("gitlab.events.push.10", event_id(3), simple_body());
  REQUIRE(eventually([&] { return script->count(event_id(3)) == 1; }, 20s));
  REQUIRE(acked());
  CHECK(feed->stats().consuming);
}

TEST_CASE_METHOD(feed_fixture,
                 "replicas share the durable: each event is handled by one",
                 "[.nats][push_feed]") {
  auto script2 = std::make_shared<registry_script>();
  agent_registry_actor registry2 = sys.spawn(mock_registry, script2);
  auto conn2 = connect(server.url());
  nats::push_feed feed2{fast_feed(), sys, registry2, *conn2};
  start_feed();
  feed2.start();
  const int n = 40;
  for (int i = 0; i < n; ++i)
    pub->publish("gitlab.events.push.10", event_id(i), simple_body());
  REQUIRE(eventually(
    [&] { return script->all().size() + script2->all().size() >= n; }, 20s));
  REQUIRE(acked());
  std::multiset<std::string> ids;
  for (auto& p : script->all())
    ids.insert(p.event_id);
  for (auto& p : script2->all())
    ids.insert(p.event_id);
  CHECK(ids.size() == static_cast<std::size_t>(n));
  CHECK(std::set<std::string>(ids.begin(), ids.end()).size()
        == static_cast<std::size_t>(n));
  feed2.stop();
  conn2->stop();
  caf::anon_send_exit(registry2, caf::exit_reason::user_shutdown);
}
