#include "common/jwt.hpp"
#include "edges/http/connection.hpp"
#include "edges/http/framing.hpp"
#include "edges/http/params.hpp"
#include "edges/http/routing.hpp"
#include "edges/http/server.hpp"
#include "edges/http/status.hpp"

#include <caf/all.hpp>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <functional>
#include <future>
#include <map>
#include <mutex>
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
    [=](geo_query) { return geo_view{}; },
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

// -- a typed mock of the push-processing actor
// ---------------------------------

// What the mock saw: POST routes with bodies for the framing and limit tests.
struct push_record {
  std::mutex mutex;
  std::vector<std::string> repositories;

  std::vector<std::string> seen() {
    std::lock_guard<std::mutex> guard{mutex};
    return repositories;
  }
};

push_processing_actor::behavior_type mock_push(push_processing_actor::pointer,
                                               push_record* record) {
  return {
    [=](push::pre_receive_params& p) {
      std::lock_guard<std::mutex> guard{record->mutex};
      record->repositories.push_back(p.gl_repository);
      return push::pre_receive_answer{true};
    },
    [=](push::post_receive_params&) { return push::post_receive_answer{}; },
    [=](atom::snapshot, snapshot_ptr) {},
  };
}

const std::string shell_key = "0123456789abcdef0123456789abcdef";
const std::string pages_key(32, 'p');
const std::string kas_key(32, 'k');

// A running HTTP edge on a free port with the mock behind it.
struct edge_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  mock_script script;
  push_record pushes;
  system_status_actor status;
  push_processing_actor push;
  std::unique_ptr<http::server> srv;
  std::thread runner;

  explicit edge_fixture(std::string root = "", std::size_t max_body = 4096,
                        std::function<void(http::http_settings&)> tune = {}) {
    status = sys.spawn(mock_status, &script);
    push = sys.spawn(mock_push, &pushes);
    http::http_settings s;
    s.host = "127.0.0.1";
    s.port = 0;
    s.threads = 8;
    s.max_body = max_body;
    // Long enough that a loaded CI machine never turns an ordinary call
    // into a timeout; the timeout tests shorten it.
    s.request_timeout = std::chrono::seconds(10);
    s.relative_url_root = root;
    s.keys[static_cast<size_t>(jwt::caller::shell)] = shell_key;
    s.keys[static_cast<size_t>(jwt::caller::pages)] = pages_key;
    s.keys[static_cast<size_t>(jwt::caller::kas)] = kas_key;
    if (tune)
      tune(s);
    srv = std::make_unique<http::server>(
      s, http::http_deps{&sys, domain_actors{status, {}, push, {}, {}}, {}});
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
    caf::anon_send_exit(push, caf::exit_reason::user_shutdown);
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

  // The same as a header line for raw requests.
  static std::string shell_auth_line(const std::string& key = shell_key) {
    return "Gitlab-Shell-Api-Request: "
      + jwt::sign(jwt::caller::shell, key, std::time(nullptr)) + "\r\n";
  }
};

// -- raw TCP, for what httplib's client never sends
// -----------------------------

// One parsed answer.
struct raw_answer {
  int status = 0;
  std::map<std::string, std::string> headers; // names lower-cased
  std::string body;
};

// A TCP connection to the edge on loopback. Every wait is bounded.
struct raw_connection {
  int fd = -1;
  std::string received;
  bool peer_closed = false;

  explicit raw_connection(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
            == 0);
  }

  ~raw_connection() {
    ::close(fd);
  }

  // False when the edge stopped taking bytes (it closed the connection).
  bool send(const std::string& data) {
    std::size_t off = 0;
    while (off < data.size()) {
      auto n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Receives until `done` holds, the peer closes or `limit` passes.
  void receive_until(const std::function<bool()>& done,
                     std::chrono::milliseconds limit
                     = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && !peer_closed) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        return;
      char buf[64 * 1024];
      auto n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0)
        peer_closed = true;
      else
        received.append(buf, static_cast<std::size_t>(n));
    }
  }

  // The complete answers received so far.
  std::vector<raw_answer> answers() const {
    std::vector<raw_answer> out;
    std::size_t pos = 0;
    for (;;) {
      auto end = received.find("\r\n\r\n", pos);
      if (end == std::string::npos)
        return out;
      raw_answer a;
      auto head = received.substr(pos, end - pos);
      a.status = std::stoi(head.substr(9, 3));
      std::size_t line = head.find("\r\n");
      while (line != std::string::npos) {
        auto next = head.find("\r\n", line + 2);
        auto field = head.substr(line + 2,
                                 next == std::string::npos ? std::string::npos
                                                           : next - line - 2);
        auto colon = field.find(':');
        auto name = field.substr(0, colon);
        for (auto& c : name)
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        a.headers[name] = field.substr(colon + 2);
        line = next;
      }
      auto length = std::stoul(a.headers["content-length"]);
      if (received.size() < end + 4 + length)
        return out;
      a.body = received.substr(end + 4, length);
      out.push_back(a);
      pos = end + 4 + length;
    }
  }

  // Waits for `n` answers; the answers received by then.
  std::vector<raw_answer> await_answers(std::size_t n) {
    receive_until([&] { return answers().size() >= n; });
    return answers();
  }

  // Waits until the edge closes the connection; whether it did.
  bool await_close() {
    receive_until([] { return false; });
    return peer_closed;
  }
};

std::string get_request(const std::string& path,
                        const std::string& extra = {}) {
  return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n";
}

std::string pre_receive_request(const std::string& framing,
                                const std::string& body,
                                const std::string& auth
                                = edge_fixture::shell_auth_line()) {
  return "POST /api/v4/internal/pre_receive HTTP/1.1\r\nHost: x\r\n"
         "Content-Type: application/json\r\n"
    + auth + framing + "\r\n" + body;
}

std::string chunked(const std::string& body, std::size_t chunk = 1000) {
  std::string out;
  char size[32];
  for (std::size_t i = 0; i < body.size(); i += chunk) {
    auto part = body.substr(i, chunk);
    std::snprintf(size, sizeof(size), "%zx\r\n", part.size());
    out += size + part + "\r\n";
  }
  return out + "0\r\n\r\n";
}

std::string nested_json(std::size_t depth) {
  return R"({"gl_repository":"project-1","ignored":)"
    + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
}

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
    CHECK(error == "400 Bad request - malformed JSON body");
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

TEST_CASE("KAS's calls refuse a bad KAS JWT and answer 503 without an agent "
          "registry",
          "[http][server][agents]") {
  // The fixture has no agent registry: every KAS route still exists.
  edge_fixture fx;
  auto cli = fx.client();
  auto kas = [](const std::string& key) {
    return httplib::Headers{
      {"Gitlab-Kas-Api-Request",
       jwt::sign(jwt::caller::kas, key, std::time(nullptr))},
      {"Gitlab-Agentk-Api-Request", "agent-token"}};
  };
  int routes = 0;
  for (const auto& spec : call_table) {
    if (spec.owner != domain::agents)
      continue;
    ++routes;
    auto send = [&](const httplib::Headers& headers) {
      return std::string{spec.method} == "GET"
        ? cli.Get(spec.path, headers)
        : cli.Post(spec.path, headers, "{}", "application/json");
    };
    INFO(spec.path);
    for (const auto& headers :
         {httplib::Headers{}, kas("another-secret-of-32-characters!"),
          edge_fixture::shell_auth()}) {
      auto res = send(headers);
      REQUIRE(res);
      CHECK(res->status == 401);
      CHECK(res->body == R"({"message":"KAS JWT authentication invalid"})");
      CHECK(res->get_header_value("Content-Type") == "application/json");
    }
    // Past the JWT: Grape's 400s are the codec's, the rest is the
    // registry's, which this process lacks.
    auto res = send(kas(kas_key));
    REQUIRE(res);
    if (spec.id == call_id::kubernetes_agent_configuration) {
      CHECK(res->status == 400);
      CHECK(res->body
            == R"({"error":"agent_id is missing, agent_config is missing"})");
    } else if (spec.id == call_id::kubernetes_authorize_proxy_user) {
      CHECK(res->status == 400);
    } else if (spec.id == call_id::autoflow_repository_info) {
      CHECK(res->status == 400);
      CHECK(res->body == R"({"error":"id is missing"})");
    } else {
      CHECK(res->status == 503);
      CHECK(res->body == R"({"message":"503 Service Unavailable"})");
    }
  }
  CHECK(routes == 10);
}

void short_request_timeout(http::http_settings& s) {
  s.request_timeout = std::chrono::milliseconds(300);
}

TEST_CASE("a request that times out inside an actor answers 503 while others "
          "are served",
          "[http][server][timeout]") {
  edge_fixture fx{"", 4096, short_request_timeout};
  fx.script.check_delay_ms = 3000; // far beyond the 300 ms request timeout
  // httplib's client reads every status line with a function-local static
  // regex. Built here, before the second thread exists: built by two
  // threads at once, the guard that orders them sits in uninstrumented
  // libcpp-httplib, and TSan reports the regex's first use as a race.
  auto cli = fx.client();
  REQUIRE(cli.Get("/-/liveness"));
  std::atomic<bool> slow_done{false};
  auto slow = std::async(std::launch::async, [&] {
    auto cli = fx.client();
    auto res = cli.Get("/api/v4/internal/check", edge_fixture::shell_auth());
    slow_done = true;
    return res ? res->status : -1;
  });
  // While the slow request waits, other requests keep being answered.
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
  edge_fixture fx{"", 4096, short_request_timeout};
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

// -- hostile input (issue 9)
// -------------------------------------------------------

TEST_CASE("JSON nesting is counted before parsing", "[http][params][limits]") {
  std::string error;
  // GitLab's JsonValidation allows 32 levels on the internal API.
  CHECK(http::merge_params("", "application/json", nested_json(32), error));
  CHECK_FALSE(
    http::merge_params("", "application/json", nested_json(33), error));
  CHECK(error == "Parameters nested too deeply");
  SECTION("brackets inside strings do not count") {
    auto text = R"({"a":")" + std::string(500, '[') + R"(\"]"})";
    auto p = http::merge_params("", "application/json", text, error);
    REQUIRE(p);
    CHECK((*p)["a"].get<std::string>().size() == 502);
  }
}

TEST_CASE("a JSON body nested 100k levels deep answers 400 and the edge "
          "lives on",
          "[http][server][limits]") {
  edge_fixture fx{"", 1024 * 1024};
  raw_connection conn{fx.srv->port()};
  auto body = nested_json(100000);
  REQUIRE(conn.send(pre_receive_request(
    "Content-Length: " + std::to_string(body.size()) + "\r\n", body)));
  auto answers = conn.await_answers(1);
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].status == 400);
  CHECK(answers[0].body == R"({"error":"Parameters nested too deeply"})");
  CHECK(fx.pushes.seen().empty());
  // GitLab's own limit passes.
  auto ok = fx.client().Post("/api/v4/internal/pre_receive",
                             edge_fixture::shell_auth(), nested_json(32),
                             "application/json");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(fx.pushes.seen() == std::vector<std::string>{"project-1"});
}

TEST_CASE("a string parameter with a NUL byte answers GitLab's plain 400",
          "[http][server][limits]") {
  edge_fixture fx{"", 1024 * 1024};
  auto cli = fx.client();
  for (auto body :
       {std::string{R"({"gl_repository":"project-1\u0000x"})"},
        std::string{R"({"gl_repository":"project-1","o":["a\u0000"]})"}}) {
    INFO(body);
    auto res = cli.Post("/api/v4/internal/pre_receive",
                        edge_fixture::shell_auth(), body, "application/json");
    REQUIRE(res);
    CHECK(res->status == 400);
    CHECK(res->body == "Bad Request");
    CHECK(res->get_header_value("Content-Type") == "text/plain");
  }
  // Form fields too.
  auto res = cli.Post("/api/v4/internal/pre_receive",
                      edge_fixture::shell_auth(), "gl_repository=project-1%00",
                      "application/x-www-form-urlencoded");
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK(fx.pushes.seen().empty());
  // Deeper than GitLab looks, a NUL passes.
  res = cli.Post("/api/v4/internal/pre_receive", edge_fixture::shell_auth(),
                 R"({"gl_repository":"project-1","o":{"p":["a\u0000"]}})",
                 "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("a chunked body is held to the body limit",
          "[http][server][limits]") {
  edge_fixture fx{"", 64 * 1024};
  SECTION("within the limit it is read and decoded") {
    raw_connection conn{fx.srv->port()};
    auto body = R"({"gl_repository":"project-7","pad":")"
      + std::string(20000, 'x') + "\"}";
    REQUIRE(conn.send(
      pre_receive_request("Transfer-Encoding: chunked\r\n", chunked(body))));
    auto answers = conn.await_answers(1);
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].status == 200);
    CHECK(answers[0].body == R"({"reference_counter_increased":true})");
    CHECK(fx.pushes.seen() == std::vector<std::string>{"project-7"});
  }
  SECTION("past it the answer is 413 and the connection closes") {
    raw_connection conn{fx.srv->port()};
    REQUIRE(
      conn.send(pre_receive_request("Transfer-Encoding: chunked\r\n", "")));
    // Far more than the limit, sent while the edge reads; it stops reading.
    std::string chunk = chunked(std::string(16 * 1024, 'x'));
    chunk.resize(chunk.size() - 5); // no last chunk: an endless body
    for (int i = 0; i < 16 && conn.send(chunk); ++i) {
    }
    auto answers = conn.await_answers(1);
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].status == 413);
    CHECK(answers[0].body == R"({"message":"413 Request Entity Too Large"})");
    CHECK(answers[0].headers["connection"] == "close");
    CHECK(conn.await_close());
    CHECK(fx.pushes.seen().empty());
  }
}

TEST_CASE("the JWT is checked before a body is read",
          "[http][server][limits]") {
  edge_fixture fx{"", 1024 * 1024};
  auto bad_token = edge_fixture::shell_auth_line("not-the-secret");
  // The head announces a body that never comes: an answer proves the edge
  // did not wait for it.
  auto refused_unread = [&](const std::string& framing) {
    raw_connection conn{fx.srv->port()};
    REQUIRE(conn.send(pre_receive_request(framing, "", bad_token)));
    auto answers = conn.await_answers(1);
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].status == 401);
    CHECK(answers[0].body == R"({"message":"401 Unauthorized"})");
    CHECK(answers[0].headers["connection"] == "close");
    CHECK(conn.await_close());
  };
  SECTION("Content-Length") {
    refused_unread("Content-Length: 1000000\r\n");
  }
  SECTION("chunked") {
    refused_unread("Transfer-Encoding: chunked\r\n");
  }
  SECTION("Expect: 100-continue gets the refusal instead of 100") {
    refused_unread("Content-Length: 10\r\nExpect: 100-continue\r\n");
  }
  SECTION("a declared body over the limit is refused unread") {
    raw_connection conn{fx.srv->port()};
    REQUIRE(
      conn.send(pre_receive_request("Content-Length: 268435456\r\n", "")));
    auto answers = conn.await_answers(1);
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].status == 413);
  }
  CHECK(fx.pushes.seen().empty());
}

TEST_CASE("ambiguous framing answers 400 and closes the connection",
          "[http][server][framing]") {
  edge_fixture fx{"", 64 * 1024};
  auto body = std::string{R"({"gl_repository":"project-1"})"};
  auto length = "Content-Length: " + std::to_string(body.size()) + "\r\n";
  auto refused = [&](const std::string& framing, const std::string& reason) {
    raw_connection conn{fx.srv->port()};
    REQUIRE(conn.send(pre_receive_request(framing, body)
                      + get_request("/-/liveness")));
    auto answers = conn.await_answers(1);
    REQUIRE(answers.size() >= 1);
    CHECK(answers[0].status == 400);
    CHECK(answers[0].body
          == R"({"message":"400 Bad request - )" + reason + "\"}");
    CHECK(answers[0].headers["connection"] == "close");
    CHECK(conn.await_close());
    // Nothing after the refused head is taken for a request.
    CHECK(conn.answers().size() == 1);
  };
  SECTION("two different Content-Length fields") {
    refused(length + "Content-Length: 5\r\n",
            "more than one Content-Length header");
  }
  SECTION("Transfer-Encoding other than chunked, with a Content-Length") {
    refused("Transfer-Encoding: xchunked\r\n" + length,
            "Transfer-Encoding other than chunked");
  }
  SECTION("chunked and a Content-Length") {
    refused("Transfer-Encoding: chunked\r\n" + length,
            "both Transfer-Encoding and Content-Length");
  }
  SECTION("two Transfer-Encoding fields") {
    refused("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "more than one Transfer-Encoding header");
  }
  SECTION("a Content-Length that is not a number") {
    refused("Content-Length: -1\r\n", "invalid Content-Length");
  }
  CHECK(fx.pushes.seen().empty());
}

TEST_CASE("framing is read as RFC 9112 says", "[http][framing]") {
  std::string problem;
  auto framing = http::read_framing({{"content-length", "12"}}, problem);
  REQUIRE(framing);
  CHECK(framing->length == 12);
  CHECK_FALSE(framing->chunked);
  framing = http::read_framing({{"Transfer-Encoding", "Chunked"}}, problem);
  REQUIRE(framing);
  CHECK(framing->chunked);
  CHECK_FALSE(http::read_framing({{"Content-Length", "1 2"}}, problem));
  CHECK_FALSE(
    http::read_framing({{"Transfer-Encoding", "gzip, chunked"}}, problem));
  CHECK_FALSE(http::read_framing(
    {{"Content-Length", "3"}, {"content-length", "3"}}, problem));
}

TEST_CASE("pipelined requests are all answered, in order",
          "[http][server][framing]") {
  edge_fixture fx{"", 64 * 1024};
  raw_connection conn{fx.srv->port()};
  auto body = std::string{R"({"gl_repository":"project-2"})"};
  auto length = "Content-Length: " + std::to_string(body.size()) + "\r\n";
  REQUIRE(conn.send(
    get_request("/-/liveness", "X-Request-Id: first\r\n")
    + pre_receive_request(length, body)
    + get_request("/api/v4/internal/check",
                  "X-Request-Id: third\r\n" + edge_fixture::shell_auth_line())
    + get_request("/-/liveness", "X-Request-Id: fourth\r\n")));
  auto answers = conn.await_answers(4);
  REQUIRE(answers.size() == 4);
  CHECK(answers[0].headers["x-request-id"] == "first");
  CHECK(answers[1].body == R"({"reference_counter_increased":true})");
  CHECK(answers[2].headers["x-request-id"] == "third");
  CHECK(json::parse(answers[2].body)["api_version"] == "v4");
  CHECK(answers[3].headers["x-request-id"] == "fourth");
  CHECK(fx.pushes.seen() == std::vector<std::string>{"project-2"});
}

TEST_CASE("oversized request lines and heads answer 414 and 431",
          "[http][server][limits]") {
  edge_fixture fx;
  auto expect
    = [&](const std::string& request, int status, const std::string& body) {
        raw_connection conn{fx.srv->port()};
        conn.send(request); // the edge may close before taking all of it
        auto answers = conn.await_answers(1);
        REQUIRE(answers.size() == 1);
        CHECK(answers[0].status == status);
        CHECK(answers[0].body == body);
        CHECK(answers[0].headers["content-type"] == "application/json");
        CHECK(conn.await_close());
      };
  SECTION("a URL past 8 KiB") {
    expect(get_request("/-/liveness?q=" + std::string(9000, 'a')), 414,
           R"({"message":"414 URI Too Long"})");
  }
  SECTION("a URL that never ends") {
    expect("GET /" + std::string(40000, 'a'), 414,
           R"({"message":"414 URI Too Long"})");
  }
  SECTION("a header field of 40 KiB") {
    expect(
      get_request("/-/liveness", "X-Big: " + std::string(40000, 'b') + "\r\n"),
      431, R"({"message":"431 Request Header Fields Too Large"})");
  }
  SECTION("many small header fields") {
    std::string fields;
    for (int i = 0; i < 150; ++i)
      fields += "X-F" + std::to_string(i) + ": v\r\n";
    expect(get_request("/-/liveness", fields), 431,
           R"({"message":"431 Request Header Fields Too Large"})");
  }
  // A normal request after them is served.
  auto res = fx.client().Get("/-/liveness");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("request heads are judged as a whole", "[http][limits]") {
  http::connection_limits limits;
  limits.max_head_bytes = 100;
  limits.max_header_fields = 2;
  using v = http::head_verdict;
  CHECK(http::scan_head("GET / HTTP/1.1\r\nA: b\r\n", limits) == v::incomplete);
  CHECK(http::scan_head("GET / HTTP/1.1\r\nA: b\r\n\r\nGET", limits)
        == v::complete);
  CHECK(http::scan_head("GET / HTTP/1.1\r\nA: b\r\nB: c\r\nC: d\r\n", limits)
        == v::too_many_fields);
  CHECK(http::scan_head("GET / HTTP/1.1\r\nA: " + std::string(100, 'x'), limits)
        == v::too_large);
}

TEST_CASE("slow and idle connections hold no thread", "[http][server][slow]") {
  // 4 threads, 64 connections that each hold a partial head or nothing.
  edge_fixture fx{"", 4096, [](http::http_settings& s) {
                    s.threads = 4;
                  }};
  std::vector<std::unique_ptr<raw_connection>> slow;
  for (int i = 0; i < 32; ++i) {
    slow.push_back(std::make_unique<raw_connection>(fx.srv->port()));
    REQUIRE(slow.back()->send("GET /-/liveness HTTP/1.1\r\nX-Slow: "));
    slow.push_back(std::make_unique<raw_connection>(fx.srv->port()));
  }
  auto cli = fx.client();
  for (int i = 0; i < 5; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto res = cli.Get("/-/liveness");
    auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(res);
    CHECK(res->status == 200);
    // Before: the answer waited for a thread until an idle connection's
    // keep-alive timeout (2 s) or a slow head's read timeout (5 s).
    CHECK(took < std::chrono::milliseconds(500));
    // Each slow client sends a byte more; the heads stay incomplete.
    for (std::size_t k = 0; k < slow.size(); k += 2)
      REQUIRE(slow[k]->send("x"));
  }
}

TEST_CASE("a head that arrives too slowly answers 408",
          "[http][server][slow]") {
  edge_fixture fx{"", 4096, [](http::http_settings& s) {
                    s.head_timeout = std::chrono::milliseconds(300);
                    s.idle_timeout = std::chrono::milliseconds(300);
                  }};
  raw_connection slow{fx.srv->port()};
  REQUIRE(slow.send("GET /-/liveness HTTP/1.1\r\n"));
  // A byte every 100 ms: each recv is quick, the head as a whole is not.
  auto start = std::chrono::steady_clock::now();
  while (slow.answers().empty() && !slow.peer_closed
         && std::chrono::steady_clock::now() - start
           < std::chrono::seconds(5)) {
    slow.send("X");
    slow.receive_until([&] { return !slow.answers().empty(); },
                       std::chrono::milliseconds(100));
  }
  auto answers = slow.answers();
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].status == 408);
  CHECK(answers[0].body == R"({"message":"408 Request Timeout"})");
  CHECK(slow.await_close());
  SECTION("an idle connection is closed without an answer") {
    raw_connection idle{fx.srv->port()};
    CHECK(idle.await_close());
    CHECK(idle.received.empty());
  }
}

TEST_CASE("an id parameter is an integer or a string of digits, never "
          "wrapped around",
          "[http][params]") {
  auto params = json::parse(
    R"({"a": 42, "b": "42", "c": 18446744073709551615, "d": "two",
        "e": "", "f": null, "g": 9223372036854775807})");
  std::string invalid;
  CHECK(http::id_param(params, "a", invalid) == 42);
  CHECK(http::id_param(params, "b", invalid) == 42);
  CHECK(http::id_param(params, "g", invalid) == INT64_MAX);
  CHECK_FALSE(http::id_param(params, "e", invalid));
  CHECK_FALSE(http::id_param(params, "f", invalid));
  CHECK_FALSE(http::id_param(params, "missing", invalid));
  CHECK(invalid.empty());
  CHECK_FALSE(http::id_param(params, "c", invalid));
  CHECK_FALSE(http::id_param(params, "d", invalid));
  CHECK(invalid == "c is invalid, d is invalid");
}
