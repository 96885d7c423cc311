// `gatehouse webhooks` as a process, against a private nats-server, a
// scratch PostgreSQL database (migrated and seeded through the CLI) and an
// in-process HTTP receiver. Events are published into GATEHOUSE_EVENTS here,
// with the headers `gatehouse serve` puts on them.
#include "webhooks/delivery.hpp"

#include "tests/support/nats_server.hpp"
#include "tests/support/process.hpp"
#include "tests/support/scratch_database.hpp"
#include "tests/webhooks/receiver.hpp"

#include <catch2/catch.hpp>
#include <nats/nats.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <arpa/inet.h>
#include <memory>
#include <netinet/in.h>
#include <random>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace gatehouse::test;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string secret_token = "tok-Zq8vW3nK-never-logged";

std::string new_uuid() {
  static std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<unsigned> byte(0, 255);
  unsigned char b[16];
  for (auto& x : b)
    x = static_cast<unsigned char>(byte(rng));
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out += '-';
    out += hex[b[i] >> 4];
    out += hex[b[i] & 15];
  }
  return out;
}

/// Runs the gatehouse CLI to completion; returns the exit code.
int run_cli(const std::vector<std::string>& args,
            const std::map<std::string, std::string>& env,
            std::string* err = nullptr) {
  static int counter = 0;
  std::vector<std::string> argv{env_or_fail("GATEHOUSE_TEST_BINARY")};
  argv.insert(argv.end(), args.begin(), args.end());
  auto dir = make_temp_dir("whcli");
  child proc{argv, env, dir + "/cli" + std::to_string(++counter)};
  auto rc = proc.wait(seconds(60));
  if (err)
    *err = proc.out() + proc.err();
  return rc;
}

/// A private nats-server with JetStream, started at once unless told not
/// to (its URL is known before).
class nats_server : public private_nats {
public:
  explicit nats_server(bool started = true) {
    if (started)
      start();
  }

  /// Stops the server and starts it again on the same port and store.
  void restart(milliseconds down = milliseconds{0}) {
    stop();
    std::this_thread::sleep_for(down);
    start();
  }
};

/// Publishes events the way `gatehouse serve` does and inspects the consumer.
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
    natsConnection_Destroy(nc_);
  }

  /// Waits for the stream that `gatehouse webhooks` creates when missing.
  /// Waits until `gatehouse webhooks` has created the stream and its
  /// durable consumer (one request after the stream: a test that reads the
  /// consumer right after the stream appears may find none).
  void wait_for_stream() {
    bool exists = eventually(
      [&] {
        jsConsumerInfo* ci = nullptr;
        auto s = js_GetConsumerInfo(&ci, js_, "GATEHOUSE_EVENTS",
                                    "gatehouse-webhooks", nullptr, nullptr);
        if (ci)
          jsConsumerInfo_Destroy(ci);
        return s == NATS_OK;
      },
      seconds(20));
    REQUIRE(exists);
  }

  void publish(const std::string& kind, long project_id, const std::string& id,
               const std::string& body, bool bulk = false,
               const std::string& event_header = {}) {
    auto subject = "gitlab.events." + kind + "." + std::to_string(project_id);
    const auto& header_kind = event_header.empty() ? kind : event_header;
    natsMsg* msg = nullptr;
    REQUIRE(natsMsg_Create(&msg, subject.c_str(), nullptr, body.data(),
                           static_cast<int>(body.size()))
            == NATS_OK);
    natsMsgHeader_Set(msg, "Nats-Msg-Id", id.c_str());
    natsMsgHeader_Set(msg, "Content-Type", "application/json");
    natsMsgHeader_Set(msg, "Gatehouse-Event", header_kind.c_str());
    if (bulk)
      natsMsgHeader_Set(msg, "Gatehouse-Bulk", "true");
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    auto s = js_PublishMsg(&pa, js_, msg, nullptr, &jerr);
    if (pa)
      jsPubAck_Destroy(pa);
    natsMsg_Destroy(msg);
    INFO("publish: " << natsStatus_GetText(s) << " " << jerr);
    REQUIRE(s == NATS_OK);
  }

  /// Everything published was acknowledged by the durable consumer.
  bool all_acked() {
    jsConsumerInfo* ci = nullptr;
    auto s = js_GetConsumerInfo(&ci, js_, "GATEHOUSE_EVENTS",
                                "gatehouse-webhooks", nullptr, nullptr);
    if (s != NATS_OK)
      return false;
    bool done = ci->NumAckPending == 0 && ci->NumPending == 0;
    redelivered_ = ci->NumRedelivered;
    last_state_ = "ack pending " + std::to_string(ci->NumAckPending)
      + ", pending " + std::to_string(ci->NumPending) + ", redelivered "
      + std::to_string(ci->NumRedelivered) + ", delivered "
      + std::to_string(ci->Delivered.Consumer) + ", ack floor "
      + std::to_string(ci->AckFloor.Consumer);
    jsConsumerInfo_Destroy(ci);
    return done;
  }

  /// The consumer's configuration as nats-server holds it.
  std::pair<int64_t, int> consumer_ack_wait_and_policy() {
    jsConsumerInfo* ci = nullptr;
    REQUIRE(js_GetConsumerInfo(&ci, js_, "GATEHOUSE_EVENTS",
                               "gatehouse-webhooks", nullptr, nullptr)
            == NATS_OK);
    std::pair<int64_t, int> out{ci->Config->AckWait,
                                static_cast<int>(ci->Config->AckPolicy)};
    jsConsumerInfo_Destroy(ci);
    return out;
  }

  /// The consumer's counters at the last all_acked().
  std::string last_state_;
  std::int64_t redelivered_ = 0;

private:
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

json seed_doc(bool allow_local, const json& hooks) {
  return json{
    {"settings",
     {{"external_url", "https://gitlab.example.com"},
      {"gitlab_version", "18.6.0"},
      {"allow_local_requests_from_web_hooks_and_services", allow_local}}},
    {"storages",
     json::array(
       {{{"name", "default"}, {"gitaly_address", "unix:/tmp/gitaly.sock"}}})},
    {"namespaces",
     json::array({{{"id", 5}, {"path", "acme"}, {"name", "Acme"}}})},
    {"projects",
     json::array({{{"id", 10}, {"namespace_id", 5}, {"path", "widgets"}},
                  {{"id", 11}, {"namespace_id", 5}, {"path", "gadgets"}}})},
    {"webhooks", hooks}};
}

json hook(long id, long project, const std::string& url,
          const std::string& token = "", bool push = true, bool tag = true,
          bool enabled = true) {
  return {
    {"id", id},          {"project_id", project}, {"url", url},
    {"token", token},    {"push_events", push},   {"tag_push_events", tag},
    {"enabled", enabled}};
}

std::string push_body(const std::string& ref, int n) {
  // Non-ASCII and key order must reach the receiver byte for byte.
  return R"({"object_kind":"push","event_name":"push","ref":")" + ref
    + R"(","n":)" + std::to_string(n)
    + R"(,"user_name":"Zoë Ünïcode","project_id":10,"commits":[]})";
}

/// The database, nats-server and a running `gatehouse webhooks`.
class world {
public:
  world(bool allow_local, const json& hooks,
        std::map<std::string, std::string> extra = {}) {
    env_["GATEHOUSE_DATABASE_URL"] = db_.url();
    env_["GATEHOUSE_NATS_URL"] = nats_.url();
    env_["GATEHOUSE_LOG_FORMAT"] = "json";
    env_["GATEHOUSE_WEBHOOK_RETRIES"] = "2";
    env_["GATEHOUSE_WEBHOOK_TIMEOUT_MS"] = "3000";
    env_["GATEHOUSE_WEBHOOK_BACKOFF_BASE_MS"] = "60000";
    for (auto& [k, v] : extra)
      env_[k] = v;
    std::string err;
    INFO("gatehouse migrate: " << err);
    REQUIRE(run_cli({"migrate"}, env_, &err) == 0);
    seed(seed_doc(allow_local, hooks));
    start();
    pub_ = std::make_unique<publisher>(nats_.url());
    pub_->wait_for_stream();
  }

  void seed(const json& doc) {
    auto path = make_temp_dir("whseed") + "/seed.json";
    write_file(path, doc.dump());
    std::string err;
    auto rc = run_cli({"seed", path}, env_, &err);
    INFO(err);
    REQUIRE(rc == 0);
  }

  void start() {
    log_prefix_ = make_temp_dir("whproc") + "/webhooks";
    proc_ = std::make_unique<child>(
      std::vector<std::string>{env_or_fail("GATEHOUSE_TEST_BINARY"),
                               "webhooks"},
      env_, log_prefix_);
  }

  /// SIGTERM; returns the exit code.
  int stop() {
    return proc_->stop(SIGTERM);
  }

  std::string log() const {
    return proc_->out() + proc_->err();
  }

  publisher& pub() {
    return *pub_;
  }

  pqxx::connection& sql() {
    if (!sql_)
      sql_ = std::make_unique<pqxx::connection>(db_.url());
    return *sql_;
  }

  /// outcome, status (0 for NULL), attempts, error of (event, hook).
  struct row {
    std::string outcome;
    int status = 0;
    int attempts = 0;
    std::string error;
  };

  std::optional<row> delivery(const std::string& event, long hook_id) {
    pqxx::nontransaction tx{sql()};
    auto r = tx.exec_params(
      "SELECT outcome, COALESCE(status, 0), attempts, COALESCE(error, '')"
      " FROM gatehouse_state.webhook_deliveries"
      " WHERE event_id = $1::uuid AND hook_id = $2",
      event, hook_id);
    if (r.empty())
      return std::nullopt;
    return row{r[0][0].as<std::string>(), r[0][1].as<int>(), r[0][2].as<int>(),
               r[0][3].as<std::string>()};
  }

  /// Waits for the outcome row of (event, hook).
  row wait_delivery(const std::string& event, long hook_id,
                    milliseconds limit = seconds(20)) {
    std::optional<row> r;
    bool found = eventually(
      [&] { return (r = delivery(event, hook_id)).has_value(); }, limit);
    INFO("event " << event << " hook " << hook_id << "\n" << log());
    REQUIRE(found);
    return *r;
  }

  long count_deliveries(const std::string& where = "true") {
    pqxx::nontransaction tx{sql()};
    return tx
      .exec1("SELECT count(*) FROM gatehouse_state.webhook_deliveries WHERE "
             + where)[0]
      .as<long>();
  }

  /// recent_failures, backoff_count, ms until disabled_until (or -1 when
  /// NULL), permanently_disabled.
  std::tuple<int, int, long, bool> state(long hook_id) {
    pqxx::nontransaction tx{sql()};
    auto r = tx.exec_params("SELECT recent_failures, backoff_count,"
                            " COALESCE((extract(epoch FROM disabled_until - "
                            "now()) * 1000)::bigint, -1),"
                            " permanently_disabled FROM "
                            "gatehouse_state.webhook_states WHERE hook_id = $1",
                            hook_id);
    if (r.empty())
      return {0, 0, -1, false};
    return {r[0][0].as<int>(), r[0][1].as<int>(), r[0][2].as<long>(),
            r[0][3].as<bool>()};
  }

  bool acked() {
    bool done = eventually([&] { return pub_->all_acked(); }, seconds(20));
    UNSCOPED_INFO("consumer: " << pub_->last_state_ << "\n" << log());
    return done;
  }

  const std::map<std::string, std::string>& env() const {
    return env_;
  }

  nats_server& nats() {
    return nats_;
  }

  bool running() {
    return proc_->running();
  }

  /// A new publisher connection (after a nats-server restart).
  void reconnect_publisher() {
    pub_.reset();
    pub_ = std::make_unique<publisher>(nats_.url());
  }

  /// Makes the scratch database refuse connections (and drops the existing
  /// ones), as if PostgreSQL were down, or accept them again.
  void database_available(bool available) {
    pqxx::connection admin{env_or_fail("GATEHOUSE_TEST_DATABASE_URL")};
    pqxx::nontransaction tx{admin};
    tx.exec("ALTER DATABASE " + tx.quote_name(db_.name())
            + " WITH ALLOW_CONNECTIONS " + (available ? "true" : "false"));
    if (!available) {
      sql_.reset();
      tx.exec_params("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = $1 AND pid <> pg_backend_pid()",
                     db_.name());
    }
  }

private:
  scratch_database db_;
  nats_server nats_;
  std::map<std::string, std::string> env_;
  std::string log_prefix_;
  std::unique_ptr<child> proc_;
  std::unique_ptr<publisher> pub_;
  std::unique_ptr<pqxx::connection> sql_;
};

} // namespace

TEST_CASE("push and tag push events reach the subscribed hooks with GitLab's "
          "headers and body",
          "[.integration][webhooks]") {
  receiver rx;
  world w{true,
          json::array({hook(1, 10, rx.url("/hook?x=1"), secret_token),
                       hook(2, 10, rx.url("/plain"), "", true, false),
                       hook(3, 10, rx.url("/off"), "t", true, true, false),
                       hook(4, 11, rx.url("/other"), "t")})};
  auto [ack_wait, policy] = w.pub().consumer_ack_wait_and_policy();
  CHECK(ack_wait >= 60LL * 1000 * 1000 * 1000);
  CHECK(policy == static_cast<int>(js_AckExplicit));

  const auto e1 = new_uuid(), e2 = new_uuid(), e3 = new_uuid();
  const auto b1 = push_body("refs/heads/main", 1);
  const auto b2 = R"({"object_kind":"tag_push","ref":"refs/tags/v1.0"})";
  w.pub().publish("push", 10, e1, b1);
  w.pub().publish("tag_push", 10, e2, b2);
  w.pub().publish("push", 10, e3, push_body("refs/heads/b4", 3), true);

  CHECK(w.wait_delivery(e3, 2).outcome == "skipped_bulk");
  REQUIRE(w.acked());
  auto d = w.wait_delivery(e1, 1);
  CHECK(d.outcome == "delivered");
  CHECK(d.status == 200);
  CHECK(d.attempts == 1);
  CHECK(d.error.empty());
  CHECK(w.wait_delivery(e1, 2).outcome == "delivered");
  CHECK(w.wait_delivery(e2, 1).outcome == "delivered");
  auto ns = w.wait_delivery(e2, 2);
  CHECK(ns.outcome == "skipped_not_subscribed");
  CHECK(ns.attempts == 0);
  CHECK(w.wait_delivery(e3, 1).outcome == "skipped_bulk");
  // Disabled hooks and other projects' hooks are not considered.
  CHECK(w.count_deliveries("hook_id IN (3, 4)") == 0);
  CHECK(w.count_deliveries() == 6);

  auto reqs = rx.requests();
  REQUIRE(reqs.size() == 3); // e1 to hooks 1 and 2, e2 to hook 1; none bulk
  std::map<std::pair<std::string, std::string>, received_request> by;
  for (auto& r : reqs)
    by[{r.path, r.header("X-Gitlab-Event-UUID")}] = r;
  REQUIRE(by.count({"/hook", e1}) == 1);
  REQUIRE(by.count({"/plain", e1}) == 1);
  REQUIRE(by.count({"/hook", e2}) == 1);

  auto& r1 = by[{"/hook", e1}];
  CHECK(r1.body == b1);
  CHECK(r1.query_x == "1");
  CHECK(r1.header("Content-Type") == "application/json");
  CHECK(r1.header("X-Gitlab-Event") == "Push Hook");
  CHECK(r1.header("X-Gitlab-Token") == secret_token);
  CHECK(r1.header("X-Gitlab-Event-UUID") == e1);
  CHECK(r1.header("X-Gitlab-Webhook-UUID")
        == gatehouse::webhooks::webhook_uuid(1));
  CHECK(r1.header("Idempotency-Key")
        == gatehouse::webhooks::idempotency_key(e1, 1));
  CHECK(r1.header("X-Gitlab-Instance") == "https://gitlab.example.com");
  CHECK(r1.header("User-Agent") == "GitLab/18.6.0");
  CHECK(r1.header("Host") == "127.0.0.1:" + std::to_string(rx.port()));

  auto& r2 = by[{"/plain", e1}];
  CHECK(r2.body == b1);
  CHECK_FALSE(r2.has_header("X-Gitlab-Token"));
  CHECK(r2.header("X-Gitlab-Webhook-UUID")
        != r1.header("X-Gitlab-Webhook-UUID"));
  CHECK(r2.header("Idempotency-Key") != r1.header("Idempotency-Key"));

  auto& r3 = by[{"/hook", e2}];
  CHECK(r3.body == b2);
  CHECK(r3.header("X-Gitlab-Event") == "Tag Push Hook");
  CHECK(r3.header("X-Gitlab-Webhook-UUID")
        == r1.header("X-Gitlab-Webhook-UUID"));

  CHECK(w.stop() == 0);
  auto log = w.log();
  CHECK(log.find(secret_token) == std::string::npos);
  CHECK(log.find("Zoë") == std::string::npos); // nor the body
  CHECK_THAT(log, Catch::Contains("webhook delivery"));
}

TEST_CASE("a failing receiver: retries, auto-disable, skips while disabled, "
          "resumes after the backoff",
          "[.integration][webhooks]") {
  receiver rx;
  rx.status = 500;
  world w{true,
          json::array({hook(1, 10, rx.url("/hook"), secret_token)}),
          {{"GATEHOUSE_WEBHOOK_BACKOFF_BASE_MS", "5000"}}};

  std::vector<std::string> events;
  for (int i = 0; i < 4; ++i) {
    events.push_back(new_uuid());
    w.pub().publish("push", 10, events.back(), push_body("refs/heads/main", i));
    auto d = w.wait_delivery(events.back(), 1);
    CHECK(d.outcome == "failed");
    CHECK(d.status == 500);
    CHECK(d.attempts == 3); // 1 + GATEHOUSE_WEBHOOK_RETRIES
    CHECK(d.error == "HTTP 500");
    // Every attempt of one delivery carries the same Idempotency-Key.
    auto reqs = rx.requests();
    REQUIRE(reqs.size() == static_cast<std::size_t>(3 * (i + 1)));
    for (std::size_t k = reqs.size() - 3; k < reqs.size(); ++k) {
      CHECK(reqs[k].header("Idempotency-Key")
            == gatehouse::webhooks::idempotency_key(events.back(), 1));
      CHECK(reqs[k].header("X-Gitlab-Event-UUID") == events.back());
    }
    auto [failures, backoffs, until_ms, permanent] = w.state(1);
    CHECK(failures == i + 1);
    CHECK_FALSE(permanent);
    if (i < 3) {
      CHECK(backoffs == 0);
      CHECK(until_ms == -1);
    } else {
      // The 4th consecutive failure: disabled for base x 2^0.
      CHECK(backoffs == 1);
      CHECK(until_ms > 2000);
      CHECK(until_ms <= 5000);
    }
  }

  // While disabled: skipped, acknowledged, and the consumer moves on.
  const auto e5 = new_uuid(), e6 = new_uuid();
  w.pub().publish("push", 10, e5, push_body("refs/heads/main", 5));
  w.pub().publish("tag_push", 10, e6, push_body("refs/tags/v2", 6));
  auto s5 = w.wait_delivery(e5, 1);
  CHECK(s5.outcome == "skipped_disabled");
  CHECK(s5.attempts == 0);
  CHECK(w.wait_delivery(e6, 1).outcome == "skipped_disabled");
  CHECK(w.acked());
  CHECK(rx.count() == 12);
  CHECK(std::get<1>(w.state(1)) == 1);

  // After the backoff the hook is tried again; a success resets it.
  rx.status = 200;
  REQUIRE(eventually([&] { return std::get<2>(w.state(1)) < 0; }, seconds(10)));
  const auto e7 = new_uuid();
  w.pub().publish("push", 10, e7, push_body("refs/heads/main", 7));
  auto d7 = w.wait_delivery(e7, 1);
  CHECK(d7.outcome == "delivered");
  CHECK(d7.attempts == 1);
  CHECK(rx.count() == 13);
  auto [failures, backoffs, until_ms, permanent] = w.state(1);
  CHECK(failures == 0);
  CHECK(backoffs == 0);
  CHECK(until_ms == -1);
  CHECK_FALSE(permanent);
  CHECK(w.acked());
  CHECK(w.stop() == 0);
  CHECK(w.log().find(secret_token) == std::string::npos);
}

TEST_CASE("without allow_local, loopback targets are refused and count as "
          "failures",
          "[.integration][webhooks]") {
  receiver rx;
  world w{false,
          json::array({hook(1, 10, rx.url("/hook"), secret_token),
                       hook(2, 10, rx.url("/hook", "localhost"), "")})};
  const auto e1 = new_uuid();
  w.pub().publish("push", 10, e1, push_body("refs/heads/main", 1));
  auto d1 = w.wait_delivery(e1, 1);
  CHECK(d1.outcome == "failed");
  CHECK(d1.attempts == 0);
  CHECK(d1.status == 0);
  CHECK_THAT(d1.error, Catch::StartsWith("blocked: 127.0.0.1"));
  auto d2 = w.wait_delivery(e1, 2);
  CHECK(d2.outcome == "failed");
  CHECK_THAT(d2.error, Catch::StartsWith("blocked: localhost resolves to "));
  CHECK(std::get<0>(w.state(1)) == 1);
  CHECK(std::get<0>(w.state(2)) == 1);
  CHECK(w.acked());
  CHECK(rx.count() == 0);
  CHECK(w.stop() == 0);
}

TEST_CASE("an event whose outcome is stored already is not delivered again",
          "[.integration][webhooks]") {
  receiver rx;
  world w{true, json::array({hook(1, 10, rx.url("/hook"), secret_token)})};
  const auto e1 = new_uuid(), e2 = new_uuid();
  // As if the consumer died after storing e1's outcome but before its ack.
  {
    pqxx::work tx{w.sql()};
    tx.exec_params("INSERT INTO gatehouse_state.webhook_deliveries"
                   " (event_id, hook_id, outcome, status, attempts)"
                   " VALUES ($1::uuid, 1, 'delivered', 200, 1)",
                   e1);
    tx.commit();
  }
  w.pub().publish("push", 10, e1, push_body("refs/heads/main", 1));
  w.pub().publish("push", 10, e2, push_body("refs/heads/main", 2));
  CHECK(w.wait_delivery(e2, 1).outcome == "delivered");
  CHECK(w.acked());
  auto reqs = rx.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].header("X-Gitlab-Event-UUID") == e2);
  CHECK(w.count_deliveries() == 2);
  CHECK(w.stop() == 0);
}

/// A PostgreSQL that hangs: connections are taken (the listen backlog) and
/// never answered.
class silent_server {
public:
  silent_server() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 64) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
  }

  ~silent_server() {
    ::close(fd_);
  }

  silent_server(const silent_server&) = delete;
  silent_server& operator=(const silent_server&) = delete;

  int port() const {
    return port_;
  }

private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_CASE("a stop leaves no nats.c thread behind the library's teardown",
          "[.integration][webhooks]") {
  // The shim holds the delivery thread of the connection's request/reply
  // subscription until the library is closed, as a loaded machine once did;
  // a process that exits before that thread has let go of the library
  // crashed (SEGV at 0x10 in pthread_mutex_trylock, nats.c's atexit handler
  // having destroyed the lock the thread took).
  nats_server nats;
  const char* asan = std::getenv("ASAN_OPTIONS");
  std::map<std::string, std::string> env{
    {"GATEHOUSE_DATABASE_URL", "postgresql://gatehouse@127.0.0.1:1/none"},
    {"GATEHOUSE_NATS_URL", nats.url()},
    {"GATEHOUSE_LOG_FORMAT", "json"},
    {"LD_PRELOAD", GATEHOUSE_NATS_EXIT_SHIM},
    // The shim comes before the sanitizer runtime of a sanitized build.
    {"ASAN_OPTIONS",
     std::string{asan ? asan : ""} + (asan && *asan ? ":" : "")
       + "verify_asan_link_order=0"}};
  auto prefix = make_temp_dir("whproc") + "/webhooks";
  child proc{{env_or_fail("GATEHOUSE_TEST_BINARY"), "webhooks"}, env, prefix};
  publisher pub{nats.url()};
  pub.wait_for_stream(); // JetStream API calls made: the subscription exists
  bool consuming = eventually(
    [&] { return proc.out().find("webhooks: consuming") != std::string::npos; },
    seconds(20));
  INFO(proc.out() << proc.err());
  REQUIRE(consuming);
  CHECK(proc.stop(SIGTERM) == 0);
  CHECK_THAT(proc.out(), Catch::Contains("webhooks: stopped"));
}

TEST_CASE("a stop ends the process within 5 s while PostgreSQL hangs",
          "[.integration][webhooks]") {
  // Each connection attempt waits 30 s for an answer; the event is taken
  // and waits for PostgreSQL when the stop comes.
  silent_server pg;
  nats_server nats;
  std::map<std::string, std::string> env{
    {"GATEHOUSE_DATABASE_URL",
     "postgresql://gatehouse@127.0.0.1:" + std::to_string(pg.port())
       + "/none?connect_timeout=30"},
    {"GATEHOUSE_NATS_URL", nats.url()},
    {"GATEHOUSE_LOG_FORMAT", "json"}};
  auto prefix = make_temp_dir("whproc") + "/webhooks";
  child proc{{env_or_fail("GATEHOUSE_TEST_BINARY"), "webhooks"}, env, prefix};
  publisher pub{nats.url()};
  pub.wait_for_stream();
  pub.publish("push", 10, new_uuid(), push_body("refs/heads/main", 1));
  std::this_thread::sleep_for(seconds(2)); // fetched, stuck in PostgreSQL
  REQUIRE(proc.running());
  auto t0 = std::chrono::steady_clock::now();
  int rc = proc.stop(SIGTERM);
  auto took = std::chrono::steady_clock::now() - t0;
  INFO(proc.out() << proc.err());
  CHECK(rc == 0);
  CHECK(took < seconds(5));
  CHECK_THAT(proc.out(), Catch::Contains("not stopped in time"));
  // Unacknowledged: JetStream delivers it again to the next run.
  CHECK_FALSE(pub.all_acked());
}

TEST_CASE("the consumer waits for NATS and PostgreSQL, creates the stream, "
          "and never crashes meanwhile",
          "[.integration][webhooks]") {
  receiver rx;
  scratch_database db;
  nats_server nats{false};
  std::map<std::string, std::string> env{{"GATEHOUSE_DATABASE_URL", db.url()},
                                         {"GATEHOUSE_NATS_URL", nats.url()},
                                         {"GATEHOUSE_LOG_FORMAT", "json"}};
  // Neither nats-server nor the schema exist yet.
  auto prefix = make_temp_dir("whproc") + "/webhooks";
  child proc{{env_or_fail("GATEHOUSE_TEST_BINARY"), "webhooks"}, env, prefix};
  std::this_thread::sleep_for(seconds(2));
  REQUIRE(proc.running());

  nats.start();
  publisher pub{nats.url()};
  pub.wait_for_stream(); // created by the consumer
  const auto e1 = new_uuid();
  pub.publish("push", 10, e1, push_body("refs/heads/main", 1));
  std::this_thread::sleep_for(seconds(1));
  REQUIRE(proc.running()); // PostgreSQL has no schema yet: it keeps retrying
  CHECK(rx.count() == 0);

  std::string err;
  REQUIRE(run_cli({"migrate"}, env, &err) == 0);
  auto path = make_temp_dir("whseed") + "/seed.json";
  write_file(
    path,
    seed_doc(true, json::array({hook(1, 10, rx.url("/hook"), "")})).dump());
  REQUIRE(run_cli({"seed", path}, env, &err) == 0);

  // The consumer may have taken e1 between migrate and seed, when the
  // schema existed without the hook (acked, nothing to deliver); an event
  // published after the seed must arrive.
  const auto e2 = new_uuid();
  pub.publish("push", 10, e2, push_body("refs/heads/main", 2));
  auto arrived = [&](const std::string& id) {
    for (auto& r : rx.requests())
      if (r.header("X-Gitlab-Event-UUID") == id)
        return true;
    return false;
  };
  bool delivered = eventually([&] { return arrived(e2); }, seconds(20));
  INFO(proc.out() << proc.err());
  CHECK(delivered);
  CHECK(eventually([&] { return pub.all_acked(); }, seconds(20)));
  CHECK(proc.stop(SIGTERM) == 0);
}

TEST_CASE("the consumer rides out a nats-server restart and a PostgreSQL "
          "outage",
          "[.integration][webhooks]") {
  receiver rx;
  world w{true, json::array({hook(1, 10, rx.url("/hook"), secret_token)})};
  const auto e1 = new_uuid(), e2 = new_uuid(), e3 = new_uuid();
  w.pub().publish("push", 10, e1, push_body("refs/heads/main", 1));
  CHECK(w.wait_delivery(e1, 1).outcome == "delivered");
  CHECK(w.acked());

  // nats-server stopped, down for 2 s, back with the same store.
  w.nats().restart(seconds(2));
  w.reconnect_publisher();
  w.pub().publish("push", 10, e2, push_body("refs/heads/main", 2));
  CHECK(w.wait_delivery(e2, 1, seconds(30)).outcome == "delivered");
  REQUIRE(w.running());

  // PostgreSQL refuses connections: the event waits, nothing is delivered
  // without its outcome being stored, and nothing crashes.
  w.database_available(false);
  w.pub().publish("push", 10, e3, push_body("refs/heads/main", 3));
  std::this_thread::sleep_for(seconds(3));
  REQUIRE(w.running());
  CHECK(rx.count() == 2);
  w.database_available(true);
  CHECK(w.wait_delivery(e3, 1, seconds(30)).outcome == "delivered");
  CHECK(rx.count() == 3);
  CHECK(w.acked());
  CHECK(w.stop() == 0);
  auto log = w.log();
  CHECK_THAT(log, Catch::Contains("postgresql unavailable"));
  CHECK(log.find(secret_token) == std::string::npos);
}

TEST_CASE("the heartbeat file is renewed while the consumer consumes and "
          "reaches PostgreSQL, and only then",
          "[.integration][webhooks]") {
  receiver rx;
  const auto beat = make_temp_dir("whbeat") + "/heartbeat";
  auto beating = [&] { return ::access(beat.c_str(), F_OK) == 0; };
  world w{true,
          json::array({hook(1, 10, rx.url("/hook"), secret_token)}),
          {{"GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE", beat}}};
  INFO(w.log());
  REQUIRE(eventually(beating, seconds(20)));
  // Idle and healthy: renewed (a removed file comes back).
  ::unlink(beat.c_str());
  CHECK(eventually(beating, seconds(10)));

  // PostgreSQL refuses connections: once an idle probe has failed, the
  // file is no longer renewed, although the process runs and consumes.
  w.database_available(false);
  REQUIRE(eventually(
    [&] { return w.log().find("postgresql unavailable") != std::string::npos; },
    seconds(30)));
  ::unlink(beat.c_str());
  std::this_thread::sleep_for(seconds(3));
  CHECK_FALSE(beating());
  REQUIRE(w.running());

  w.database_available(true);
  CHECK(eventually(beating, seconds(30)));
  CHECK(w.stop() == 0);
  // A stopped consumer leaves no heartbeat behind.
  CHECK_FALSE(beating());
}

TEST_CASE("the agent registry's events on the stream are acknowledged and "
          "skipped without a warning",
          "[.integration][webhooks]") {
  receiver rx;
  world w{true, json::array({hook(1, 10, rx.url("/hook"), secret_token)})};
  const auto a1 = new_uuid(), a2 = new_uuid(), a3 = new_uuid(),
             e1 = new_uuid();
  const std::string agent_body = R"({"agent_id":7,"project_id":10})";
  w.pub().publish("agent_configuration", 7, a1, agent_body);
  w.pub().publish("agent_connection", 7, a2, agent_body, false,
                  "agent_registered");
  w.pub().publish("agent_config_push", 7, a3, agent_body);
  w.pub().publish("push", 10, e1, push_body("refs/heads/main", 1));
  CHECK(w.wait_delivery(e1, 1).outcome == "delivered");
  REQUIRE(w.acked());
  CHECK(w.pub().redelivered_ == 0);
  // Only the push event reached a hook or left a trace.
  CHECK(rx.count() == 1);
  CHECK(w.count_deliveries() == 1);
  CHECK(w.stop() == 0);
  auto log = w.log();
  CHECK(log.find("agent_config") == std::string::npos);
  CHECK(log.find("unusable event") == std::string::npos);
  CHECK(log.find("\"level\":\"warn\"") == std::string::npos);
}
