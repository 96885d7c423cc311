#include "common/jwt.hpp"
#include "edges/http/params.hpp"
#include "edges/http/server.hpp"
#include "edges/http/status.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <ctime>
#include <future>
#include <thread>

using namespace gatehouse;
using json = nlohmann::json;

namespace {

// -- a typed mock of the system-status actor ----------------------------------

// What the mock answers; tests change it between requests.
struct mock_script {
  std::atomic<int> check_delay_ms{0};
  std::atomic<bool> postgres_up{true};
};

struct mock_status_state {
  std::vector<caf::typed_response_promise<check_view>> pending;
};

system_status_actor::behavior_type mock_status(
  system_status_actor::stateful_pointer<mock_status_state> self,
  mock_script* script) {
  return {
    [=](check_query) -> caf::result<check_view> {
      check_view view{"18.6.0", "abc123", true};
      auto delay = script->check_delay_ms.load();
      if (delay == 0)
        return view;
      auto rp = self->make_response_promise<check_view>();
      self->state.pending.push_back(rp);
      self->delayed_send(self, std::chrono::milliseconds(delay),
                         atom::tick::value);
      return rp;
    },
    [=](atom::readiness) -> readiness_view {
      readiness_view view;
      view.postgres_up = script->postgres_up.load();
      if (!view.postgres_up)
        view.postgres_error = "connection refused";
      view.nats_state = "connected";
      return view;
    },
    [=](atom::nats_state, std::string&) {
      FAIL_CHECK("the HTTP edge never reports NATS state");
    },
    [=](atom::tick) {
      for (auto& rp : self->state.pending)
        rp.deliver(check_view{"18.6.0", "late", true});
      self->state.pending.clear();
    },
  };
}

const std::string shell_key = "0123456789abcdef0123456789abcdef";
const std::string pages_key(32, 'p');

// A running HTTP edge on a free port with the mock behind it.
struct edge_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  mock_script script;
  system_status_actor status;
  std::unique_ptr<http::server> srv;
  std::thread runner;

  explicit edge_fixture(std::string root = "", std::size_t max_body = 4096) {
    status = sys.spawn(mock_status, &script);
    http::http_settings s;
    s.host = "127.0.0.1";
    s.port = 0;
    s.threads = 8;
    s.max_body = max_body;
    s.request_timeout = std::chrono::milliseconds(300);
    s.relative_url_root = root;
    s.keys[static_cast<size_t>(jwt::caller::shell)] = shell_key;
    s.keys[static_cast<size_t>(jwt::caller::pages)] = pages_key;
    srv = std::make_unique<http::server>(
      s, http::http_deps{&sys, domain_actors{status, {}, {}}, {}});
    std::string error;
    REQUIRE(srv->bind(error));
    runner = std::thread{[this] {
      srv->run();
    }};
  }

  ~edge_fixture() {
    srv->stop();
    runner.join();
    srv.reset();
    caf::anon_send_exit(status, caf::exit_reason::user_shutdown);
  }

  httplib::Client client() {
    httplib::Client cli{"127.0.0.1", srv->port()};
    cli.set_read_timeout(10, 0);
    return cli;
  }

  static httplib::Headers shell_auth(const std::string& key = shell_key) {
    return {{"Gitlab-Shell-Api-Request",
             jwt::sign(jwt::caller::shell, key, std::time(nullptr))}};
  }
};

} // namespace

// -- status table
// ---------------------------------------------------------------

TEST_CASE("the status table answers in GitLab's error shapes",
          "[http][status]") {
  using http::error_response;
  CHECK(error_response(errc::unauthenticated).status == 401);
  CHECK(error_response(errc::unauthenticated).body
        == R"({"message":"401 Unauthorized"})");
  CHECK(error_response(errc::unauthenticated, {}, jwt::caller::kas).body
        == R"({"message":"KAS JWT authentication invalid"})");
  CHECK(error_response(errc::unauthenticated, {}, jwt::caller::workhorse).status
        == 403);
  CHECK(error_response(errc::unauthenticated, {}, jwt::caller::pages).body
        == R"({"message":"401 Unauthorized"})");
  CHECK(error_response(errc::not_found, "Key").body
        == R"({"message":"404 Key Not Found"})");
  CHECK(error_response(errc::not_found).body
        == R"({"message":"404 Not Found"})");
  CHECK(error_response(errc::bad_request, "key_id is invalid").body
        == R"({"message":"400 Bad request - key_id is invalid"})");
  CHECK(error_response(errc::timeout).status == 503);
  CHECK(error_response(errc::timeout).body
        == R"({"message":"503 Service Unavailable"})");
  CHECK(error_response(errc::internal).status == 500);
  CHECK(http::route_not_found().body == R"({"error":"404 Not Found"})");
  CHECK(http::payload_too_large().status == 413);
}

// -- parameters
// -----------------------------------------------------------------

TEST_CASE("query, form and JSON parameters merge as Grape merges them",
          "[http][params]") {
  std::string error;
  SECTION("query and JSON body, the body on top") {
    auto p = http::merge_params("key_id=1&project=a%2Fb", "application/json",
                                R"({"key_id":"7","changes":"_any"})", error);
    REQUIRE(p);
    CHECK((*p)["key_id"] == "7");
    CHECK((*p)["project"] == "a/b");
    CHECK((*p)["changes"] == "_any");
  }
  SECTION("form bodies decode + and %XX, and collect name[] into arrays") {
    auto p = http::merge_params("", "application/x-www-form-urlencoded",
                                "action=git-receive-pack&protocol=ssh&"
                                "push_options[]=ci.skip&push_options[]=a+b",
                                error);
    REQUIRE(p);
    CHECK((*p)["action"] == "git-receive-pack");
    CHECK((*p)["push_options"] == json::array({"ci.skip", "a b"}));
  }
  SECTION("JSON keeps its types") {
    auto p = http::merge_params("", "application/json; charset=utf-8",
                                R"({"user_id":42,"push_options":null})", error);
    REQUIRE(p);
    CHECK((*p)["user_id"] == 42);
    CHECK((*p)["push_options"].is_null());
  }
  SECTION("a body labelled JSON that is not a JSON object is refused") {
    CHECK_FALSE(http::merge_params("", "application/json", "{nope", error));
    CHECK(error == "malformed JSON body");
    CHECK_FALSE(http::merge_params("", "application/json", "[1,2]", error));
  }
  SECTION("an empty JSON body is no parameters") {
    auto p = http::merge_params("", "application/json", "", error);
    REQUIRE(p);
    CHECK(p->empty());
  }
}

// -- the running edge
// -------------------------------------------------------------

TEST_CASE("liveness answers without touching actors and echoes X-Request-Id",
          "[http][server]") {
  edge_fixture fx;
  auto cli = fx.client();
  auto res = cli.Get("/-/liveness", {{"X-Request-Id", "abc-123"}});
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == R"({"status":"ok"})");
  CHECK(res->get_header_value("Content-Type") == "application/json");
  CHECK(res->get_header_value("X-Request-Id") == "abc-123");
  auto generated = cli.Get("/-/liveness");
  REQUIRE(generated);
  CHECK(generated->get_header_value("X-Request-Id").size() == 32);
}

TEST_CASE("check answers GitLab's fields to a valid Shell JWT",
          "[http][server]") {
  edge_fixture fx;
  auto cli = fx.client();
  auto res = cli.Get("/api/v4/internal/check", edge_fixture::shell_auth());
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  auto body = json::parse(res->body);
  CHECK(body["api_version"] == "v4");
  CHECK(body["gitlab_version"] == "18.6.0");
  CHECK(body["gitlab_rev"] == "abc123");
  CHECK(body["redis"] == true);
}

TEST_CASE("check refuses requests that are not signed by GitLab Shell",
          "[http][server][jwt]") {
  edge_fixture fx;
  auto cli = fx.client();
  auto expect_401 = [&](const httplib::Headers& headers) {
    auto res = cli.Get("/api/v4/internal/check", headers);
    REQUIRE(res);
    CHECK(res->status == 401);
    CHECK(res->body == R"({"message":"401 Unauthorized"})");
  };
  SECTION("no token") {
    expect_401({});
  }
  SECTION("a token signed with another secret") {
    expect_401(edge_fixture::shell_auth("not-the-secret"));
  }
  SECTION("a Pages token in the Shell header") {
    expect_401(
      {{"Gitlab-Shell-Api-Request",
        jwt::sign(jwt::caller::pages, pages_key, std::time(nullptr))}});
  }
  SECTION("the plain secret, as older Rails accepted") {
    expect_401({{"Gitlab-Shared-Secret", shell_key}});
  }
}

TEST_CASE("a request that times out inside an actor answers 503 while others "
          "are served",
          "[http][server][timeout]") {
  edge_fixture fx;
  fx.script.check_delay_ms = 3000; // far beyond the 300 ms request timeout
  std::atomic<bool> slow_done{false};
  auto slow = std::async(std::launch::async, [&] {
    auto cli = fx.client();
    auto res = cli.Get("/api/v4/internal/check", edge_fixture::shell_auth());
    slow_done = true;
    return res ? res->status : -1;
  });
  // While the slow request waits, other requests keep being answered.
  auto cli = fx.client();
  int served_meanwhile = 0;
  for (int i = 0; i < 5; ++i) {
    auto res = cli.Get("/-/liveness");
    REQUIRE(res);
    CHECK(res->status == 200);
    if (!slow_done)
      ++served_meanwhile;
  }
  CHECK(served_meanwhile > 0);
  CHECK(slow.get() == 503);
  // The edge recovers: the same route answers again once the actor is fast.
  fx.script.check_delay_ms = 0;
  auto res = cli.Get("/api/v4/internal/check", edge_fixture::shell_auth());
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(json::parse(res->body)["gitlab_rev"] == "abc123");
}

TEST_CASE("the timeout answer has GitLab's shape", "[http][server][timeout]") {
  edge_fixture fx;
  fx.script.check_delay_ms = 2000;
  auto cli = fx.client();
  auto res = cli.Get("/api/v4/internal/check", edge_fixture::shell_auth());
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(res->body == R"({"message":"503 Service Unavailable"})");
}

TEST_CASE("a body over the limit answers 413", "[http][server]") {
  edge_fixture fx{"", 1024};
  auto cli = fx.client();
  std::string big(4096, 'x');
  auto res = cli.Post("/api/v4/internal/check", big, "application/json");
  REQUIRE(res);
  CHECK(res->status == 413);
  CHECK(res->body == R"({"message":"413 Request Entity Too Large"})");
  // A body within the limit reaches routing (no POST route here: 404).
  auto small = cli.Post("/api/v4/internal/nothing", "{}", "application/json");
  REQUIRE(small);
  CHECK(small->status == 404);
}

TEST_CASE("an unknown route answers Grape's catch-all", "[http][server]") {
  edge_fixture fx;
  auto cli = fx.client();
  auto res = cli.Get("/api/v4/internal/nope");
  REQUIRE(res);
  CHECK(res->status == 404);
  CHECK(res->body == R"({"error":"404 Not Found"})");
  CHECK(res->get_header_value("Content-Type") == "application/json");
}

TEST_CASE("routes live below the relative URL root", "[http][server]") {
  edge_fixture fx{"/gitlab"};
  auto cli = fx.client();
  auto res
    = cli.Get("/gitlab/api/v4/internal/check", edge_fixture::shell_auth());
  REQUIRE(res);
  CHECK(res->status == 200);
  auto outside = cli.Get("/api/v4/internal/check", edge_fixture::shell_auth());
  REQUIRE(outside);
  CHECK(outside->status == 404);
}

TEST_CASE("readiness follows PostgreSQL and reports each dependency",
          "[http][server]") {
  edge_fixture fx;
  auto cli = fx.client();
  auto up = cli.Get("/-/readiness");
  REQUIRE(up);
  CHECK(up->status == 200);
  CHECK(json::parse(up->body)["checks"]["nats"]["status"] == "up");
  fx.script.postgres_up = false;
  auto down = cli.Get("/-/readiness");
  REQUIRE(down);
  CHECK(down->status == 503);
  auto body = json::parse(down->body);
  CHECK(body["checks"]["postgres"]["status"] == "down");
  CHECK(body["checks"]["postgres"]["error"] == "connection refused");
}

TEST_CASE("metrics count requests by route and status", "[http][server]") {
  edge_fixture fx;
  auto cli = fx.client();
  REQUIRE(cli.Get("/api/v4/internal/check", edge_fixture::shell_auth()));
  REQUIRE(cli.Get("/api/v4/internal/check"));
  REQUIRE(cli.Get("/nowhere"));
  // httplib runs its logger (which counts) after sending the answer: wait
  // until the last request of another connection has been counted.
  std::string body;
  int status = 0;
  for (int i = 0; i < 100; ++i) {
    auto res = cli.Get("/metrics");
    REQUIRE(res);
    status = res->status;
    body = res->body;
    if (res->body.find("status=\"401\"} 1") != std::string::npos
        && res->body.find("route=\"unmatched\",status=\"404\"")
          != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(status == 200);
  CHECK_THAT(body,
             Catch::Contains("gatehouse_http_requests_total{route=\"/api/v4/"
                             "internal/check\",status=\"200\"} 1"));
  CHECK_THAT(body,
             Catch::Contains("gatehouse_http_requests_total{route=\"/api/v4/"
                             "internal/check\",status=\"401\"} 1"));
  CHECK_THAT(body, Catch::Contains("route=\"unmatched\",status=\"404\""));
  CHECK_THAT(body,
             Catch::Contains("gatehouse_dependency_up{dependency=\"nats\"} 1"));
  CHECK_THAT(body,
             Catch::Contains("gatehouse_http_request_duration_seconds_bucket"));
}
