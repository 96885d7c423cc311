// The indexer's feed against private nats-servers and a typed mock indexer
// on a real actor system: delivery with the event's fields and an ack only
// after the answer, redelivery after a failure or a timeout, unusable
// messages, a nats-server restart mid-stream, and a prompt stop. Hidden tag
// [.nats]; waits are on conditions, their limits only bound a broken build.

#include "edges/nats/connection.hpp"
#include "edges/nats/index_feed.hpp"
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
#include <string>
#include <vector>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::string durable = "gatehouse-indexer";

// -- the mock indexer -------------------------------------------------------------

/// What the mock indexer was asked and how it answers; shared with the
/// test's thread.
struct indexer_script {
  enum class mode {
    answer,
    fail,
    /// Keep the request unanswered until an (atom::assign) releases it.
    hold,
  };

  std::mutex mtx;
  mode how = mode::answer;
  /// Fail this many requests before answering (with mode::answer).
  int fail_first = 0;
  std::vector<indexer::pushed_ref> received;

  void set(mode m) {
    std::lock_guard<std::mutex> guard{mtx};
    how = m;
  }

  /// Records `p`; how to answer it.
  mode record(const indexer::pushed_ref& p) {
    std::lock_guard<std::mutex> guard{mtx};
    received.push_back(p);
    if (how == mode::answer && fail_first > 0) {
      --fail_first;
      return mode::fail;
    }
    return how;
  }

  std::vector<indexer::pushed_ref> all() {
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

struct mock_indexer_state {
  std::vector<caf::response_promise> held;
};

/// What the mock answers for every handled event.
const indexer::pushed_ref_done answer{1, 2};

/// The full indexer_actor interface (so the compiler checks the mock); the
/// feed uses only pushed_ref. (atom::assign) stands in for "the store
/// committed": it releases the held requests.
indexer_actor::behavior_type
mock_indexer(indexer_actor::stateful_pointer<mock_indexer_state> self,
             std::shared_ptr<indexer_script> script) {
  auto unused = [] { return caf::make_error(errc::internal, "not in test"); };
  return {
    [=](const indexer::heartbeat_query&)
      -> caf::result<indexer::heartbeat_answer> { return unused(); },
    [=](const indexer::tasks_query&)
      -> caf::result<indexer::heartbeat_answer> { return unused(); },
    [=](const indexer::callback_query&)
      -> caf::result<indexer::callback_answer> { return unused(); },
    [=](const indexer::pushed_ref& p) -> caf::result<indexer::pushed_ref_done> {
      switch (script->record(p)) {
        case indexer_script::mode::answer:
          return answer;
        case indexer_script::mode::fail:
          return caf::make_error(errc::unavailable, "store unavailable");
        case indexer_script::mode::hold:
          break;
      }
      self->state.held.push_back(self->make_response_promise());
      return caf::delegated<indexer::pushed_ref_done>{};
    },
    [=](atom::snapshot, snapshot_ptr) {},
    [=](atom::assign) {
      for (auto& promise : self->state.held)
        promise.deliver(answer);
      self->state.held.clear();
    },
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

  /// The durable's filter subject ("" when it cannot be read).
  std::string filter_subject() {
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, js_, "GATEHOUSE_EVENTS", durable.c_str(),
                           nullptr, nullptr)
        != NATS_OK)
      return {};
    std::string out = ci->Config && ci->Config->FilterSubject
                        ? ci->Config->FilterSubject
                        : "";
    jsConsumerInfo_Destroy(ci);
    return out;
  }

  /// Delivered and not yet acknowledged (-1 when it cannot be read).
  std::int64_t ack_pending() {
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, js_, "GATEHOUSE_EVENTS", durable.c_str(),
                           nullptr, nullptr)
        != NATS_OK)
      return -1;
    auto out = static_cast<std::int64_t>(ci->NumAckPending);
    jsConsumerInfo_Destroy(ci);
    return out;
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

std::string push_body(std::int64_t project,
                      const std::string& ref = "refs/heads/main") {
  return json{{"object_kind", "push"},
              {"event_name", "push"},
              {"before", std::string(40, '1')},
              {"after", std::string(40, '2')},
              {"ref", ref},
              {"project_id", project},
              {"commits", json::array()},
              {"total_commits_count", 0}}
    .dump();
}

/// Settings that react fast enough for tests.
nats::index_feed_settings fast_feed() {
  nats::index_feed_settings s;
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
/// mock indexer.
struct feed_fixture {
  private_nats server;
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::shared_ptr<indexer_script> script = std::make_shared<indexer_script>();
  indexer_actor indexer = sys.spawn(mock_indexer, script);
  std::unique_ptr<nats::connection> conn;
  std::unique_ptr<nats::index_feed> feed;
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
    caf::anon_send_exit(indexer, caf::exit_reason::user_shutdown);
  }

  /// Starts a feed (replacing a stopped one) and waits for its durable.
  void start_feed(nats::index_feed_settings s = fast_feed()) {
    if (feed)
      feed->stop();
    feed = std::make_unique<nats::index_feed>(s, sys, indexer, *conn);
    feed->start();
    if (!pub)
      pub = std::make_unique<publisher>(server.url());
    REQUIRE(eventually([&] { return pub->consumer_ready(); }, 20s));
  }

  /// Answers the requests the mock holds.
  void release() {
    caf::anon_send(indexer, atom::assign::value);
  }

  bool acked(std::chrono::milliseconds limit = 20s) {
    return eventually([&] { return pub->all_acked(); }, limit);
  }
};

} // namespace

TEST_CASE_METHOD(feed_fixture,
                 "the feed hands each branch push to the indexer once, with "
                 "its fields, and acknowledges it after the answer",
                 "[.nats][index_feed]") {
  start_feed();
  CHECK(pub->filter_subject() == "gitlab.events.push.>");

  // Held: not acknowledged before the indexer answered.
  script->set(indexer_script::mode::hold);
  pub->publish("gitlab.events.push.10", event_id(1), push_body(10),
               {{"Gatehouse-Event", "push"}, {"X-Request-Id", "req-1"}});
  REQUIRE(eventually([&] { return script->count(event_id(1)) == 1; }, 20s));
  CHECK(pub->ack_pending() == 1);
  CHECK(feed->stats().handled == 0);
  script->set(indexer_script::mode::answer);
  release();
  REQUIRE(acked());

  pub->publish("gitlab.events.push.11", event_id(2),
               push_body(11, "refs/heads/feature"),
               {{"Gatehouse-Event", "push"}, {"Gatehouse-Bulk", "true"}});
  // Not for the feed: tags and agent events.
  pub->publish("gitlab.events.tag_push.10", event_id(3),
               push_body(10, "refs/tags/v1"),
               {{"Gatehouse-Event", "tag_push"}});
  pub->publish("gitlab.events.agent_config_push.7", event_id(4), "{}",
               {{"Gatehouse-Event", "agent_config_push"}});
  REQUIRE(eventually([&] { return script->count(event_id(2)) == 1; }, 20s));
  REQUIRE(acked());

  auto got = script->all();
  REQUIRE(got.size() == 2);
  CHECK(got[0].event_id == event_id(1));
  CHECK(got[0].project_id == 10);
  CHECK(got[0].ref == "refs/heads/main");
  CHECK(got[0].before == std::string(40, '1'));
  CHECK(got[0].after == std::string(40, '2'));
  CHECK(got[0].correlation_id == "req-1");
  CHECK(got[1].event_id == event_id(2));
  CHECK(got[1].project_id == 11);
  CHECK(got[1].ref == "refs/heads/feature");
  CHECK(got[1].correlation_id.empty());

  auto stats = feed->stats();
  CHECK(stats.handled == 2);
  // Two events, each answered with {1, 2}.
  CHECK(stats.zoekt_tasks == 2);
  CHECK(stats.elastic_requests == 4);
  CHECK(stats.retried == 0);
  CHECK(stats.terminated == 0);
  CHECK(stats.consuming);
}

TEST_CASE_METHOD(feed_fixture,
                 "a failed or unanswered event is redelivered until the "
                 "indexer handles it",
                 "[.nats][index_feed]") {
  {
    std::lock_guard<std::mutex> guard{script->mtx};
    script->fail_first = 2;
  }
  auto s = fast_feed();
  s.request_timeout = 300ms; // for the unanswered round below
  start_feed(s);
  pub->publish("gitlab.events.push.10", event_id(1), push_body(10));
  REQUIRE(eventually([&] { return script->count(event_id(1)) == 3; }, 20s));
  REQUIRE(acked());
  CHECK(feed->stats().retried == 2);
  CHECK(feed->stats().handled == 1);

  // No answer within request_timeout counts as a failure too.
  script->set(indexer_script::mode::hold);
  pub->publish("gitlab.events.push.10", event_id(2), push_body(10));
  REQUIRE(eventually([&] { return script->count(event_id(2)) >= 2; }, 20s));
  script->set(indexer_script::mode::answer);
  REQUIRE(acked());
  CHECK(feed->stats().retried >= 3);
  CHECK(feed->stats().handled == 2);
  CHECK(script->count(event_id(1)) == 3); // acknowledged: never again
}

TEST_CASE_METHOD(feed_fixture,
                 "an unusable message is terminated once, never redelivered",
                 "[.nats][index_feed]") {
  start_feed();
  pub->publish("gitlab.events.push.10", event_id(1), "not json");
  pub->publish("gitlab.events.push.10", event_id(2),
               push_body(10, "refs/tags/v1")); // mislabelled
  pub->publish("gitlab.events.push.10", "", push_body(10)); // no Nats-Msg-Id
  REQUIRE(eventually([&] { return feed->stats().terminated == 3; }, 20s));
  REQUIRE(acked());
  auto small = fast_feed();
  small.max_body = 64;
  start_feed(small);
  pub->publish("gitlab.events.push.10", event_id(3), push_body(10)); // > 64
  REQUIRE(eventually([&] { return feed->stats().terminated == 1; }, 20s));
  REQUIRE(acked());
  CHECK(pub->redelivered() == 0);
  CHECK(script->all().empty());

  // The feed goes on with the next event.
  start_feed();
  pub->publish("gitlab.events.push.10", event_id(4), push_body(10));
  REQUIRE(eventually([&] { return script->count(event_id(4)) == 1; }, 20s));
  REQUIRE(acked());
  CHECK(script->all().size() == 1);
  CHECK(feed->stats().terminated == 0);
}

TEST_CASE_METHOD(feed_fixture,
                 "a nats-server outage mid-stream loses no event and the "
                 "durable resumes",
                 "[.nats][index_feed]") {
  auto s = fast_feed();
  // An ack lost with the server comes back after ack_wait.
  s.ack_wait = 3s;
  start_feed(s);
  for (int i = 1; i <= 5; ++i)
    pub->publish("gitlab.events.push.10", event_id(i), push_body(10));
  REQUIRE(eventually([&] { return script->all().size() == 5; }, 20s));
  REQUIRE(acked());

  // The server goes away while the indexer works on an event, which it
  // then finishes: its ack cannot reach the server, and the feed's
  // fetches fail until the server is back.
  script->set(indexer_script::mode::hold);
  pub->publish("gitlab.events.push.10", event_id(6), push_body(10));
  REQUIRE(eventually([&] { return script->count(event_id(6)) == 1; }, 20s));
  pub.reset();
  server.stop();
  script->set(indexer_script::mode::answer);
  release();
  REQUIRE(eventually([&] { return feed->stats().nats_failures > 0; }, 20s));
  server.start(); // same port, same store
  pub = std::make_unique<publisher>(server.url());
  for (int i = 7; i <= 10; ++i)
    pub->publish("gitlab.events.push.10", event_id(i), push_body(10));
  REQUIRE(eventually(
    [&] {
      for (int i = 6; i <= 10; ++i)
        if (script->count(event_id(i)) == 0)
          return false;
      return true;
    },
    30s));
  REQUIRE(acked(30s));
  for (int i = 1; i <= 5; ++i)
    CHECK(script->count(event_id(i)) == 1); // acknowledged before: never again
  for (int i = 7; i <= 10; ++i)
    CHECK(script->count(event_id(i)) == 1);
  auto stats = feed->stats();
  CHECK(stats.consuming);
  CHECK(stats.handled >= 10);
}

TEST_CASE_METHOD(feed_fixture,
                 "stop() returns within a second, busy or idle, and the "
                 "next feed gets back what it held",
                 "[.nats][index_feed]") {
  script->set(indexer_script::mode::hold);
  auto s = fast_feed();
  s.request_timeout = 10s; // far beyond the second stop() may take
  start_feed(s);
  pub->publish("gitlab.events.push.10", event_id(1), push_body(10));
  REQUIRE(eventually([&] { return script->count(event_id(1)) == 1; }, 20s));
  auto t0 = std::chrono::steady_clock::now();
  feed->stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  CHECK_FALSE(feed->stats().consuming);
  CHECK(feed->stats().handled == 0);
  CHECK_FALSE(pub->all_acked());

  // An idle feed stops as promptly; the next feed gets the event at once
  // (Nak without delay).
  script->set(indexer_script::mode::answer);
  start_feed();
  REQUIRE(eventually([&] { return script->count(event_id(1)) == 2; }, 20s));
  REQUIRE(acked());
  t0 = std::chrono::steady_clock::now();
  feed->stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  feed->stop(); // idempotent

  // Acknowledged: a further feed gets nothing again.
  start_feed();
  pub->publish("gitlab.events.push.10", event_id(2), push_body(10));
  REQUIRE(eventually([&] { return script->count(event_id(2)) == 1; }, 20s));
  REQUIRE(acked());
  CHECK(script->count(event_id(1)) == 2);
}
