#include "tests/integration/stack.hpp"

#include <catch2/catch.hpp>

#include <ctime>

using namespace gatehouse;
using namespace gatehouse::test;
using json = nlohmann::json;

TEST_CASE("serve answers check with the seeded version and a reachable store",
          "[.integration][serve]") {
  stack gh;
  gh.seed({{"settings", {{"gitlab_version", "17.9.1"}}}});
  gh.start();
  auto cli = gh.client();
  auto res = cli.Get("/api/v4/internal/check",
                     {{"Gitlab-Shell-Api-Request", gh.shell_token()}});
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  auto body = json::parse(res->body);
  CHECK(body["api_version"] == "v4");
  CHECK(body["gitlab_version"] == "17.9.1");
  CHECK(body["redis"] == true);
  CHECK(body["gitlab_rev"].is_string());
  CHECK_FALSE(body["gitlab_rev"].get<std::string>().empty());

  SECTION("without a token it answers 401 in GitLab's shape") {
    auto denied = cli.Get("/api/v4/internal/check");
    REQUIRE(denied);
    CHECK(denied->status == 401);
    CHECK(denied->body == R"({"message":"401 Unauthorized"})");
  }
  SECTION("an expired token is refused") {
    auto key = read_file(gh.secrets().shell);
    key.pop_back(); // the trailing newline the file carries
    auto old = jwt::sign(jwt::caller::shell, key, std::time(nullptr) - 600);
    auto denied
      = cli.Get("/api/v4/internal/check", {{"Gitlab-Shell-Api-Request", old}});
    REQUIRE(denied);
    CHECK(denied->status == 401);
  }
  SECTION("neither the secret nor the token reaches the log") {
    auto token = gh.shell_token();
    REQUIRE(
      cli.Get("/api/v4/internal/check", {{"Gitlab-Shell-Api-Request", token}}));
    gh.stop();
    auto log = gh.log();
    CHECK_THAT(log, Catch::Contains("\"msg\":\"request\""));
    CHECK_THAT(log, !Catch::Contains(token));
    CHECK_THAT(log, !Catch::Contains("d2f7c1e0a9b84c3f8e6a5b4c3d2e1f00"));
  }
}

TEST_CASE("every request is logged as one JSON line with its correlation id",
          "[.integration][serve]") {
  stack gh;
  gh.start();
  auto cli = gh.client();
  auto res = cli.Get("/-/liveness", {{"X-Request-Id", "corr-42"}});
  REQUIRE(res);
  CHECK(res->get_header_value("X-Request-Id") == "corr-42");
  gh.stop();
  bool found = false;
  std::istringstream lines{gh.log()};
  for (std::string line; std::getline(lines, line);) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || j.value("msg", "") != "request")
      continue;
    if (j.value("correlation_id", "") == "corr-42") {
      found = true;
      CHECK(j["route"] == "/-/liveness");
      CHECK(j["status"] == 200);
      CHECK(j["duration_ms"].is_number());
    }
  }
  CHECK(found);
}

TEST_CASE("readiness stays 200 and reports NATS down while nats-server is "
          "away, and Gatehouse reconnects when it returns",
          "[.integration][nats]") {
  private_nats nats;
  // Gatehouse starts first: NATS being down must not stop it.
  stack gh{nats.url()};
  gh.start();
  int status = 0;
  auto ready = gh.readiness(&status);
  CHECK(status == 200);
  CHECK(ready["checks"]["nats"]["status"] == "down");

  nats.start();
  REQUIRE(eventually(
    [&] { return gh.readiness()["checks"]["nats"]["status"] == "up"; },
    std::chrono::seconds(15)));
  // Once connected it creates the event stream.
  REQUIRE(eventually(
    [&] { return !nats.stream_config("GATEHOUSE_EVENTS").is_null(); },
    std::chrono::seconds(15)));
  auto stream = nats.stream_config("GATEHOUSE_EVENTS");
  CHECK(stream["subjects"] == json::array({"gitlab.events.>"}));
  CHECK(stream["storage"] == "file");
  // JetStream reports the duplicate window in nanoseconds: at least 2 min.
  CHECK(stream["duplicate_window"].get<std::int64_t>() >= 120'000'000'000LL);

  nats.stop();
  REQUIRE(eventually(
    [&] { return gh.readiness()["checks"]["nats"]["status"] == "down"; },
    std::chrono::seconds(15)));
  ready = gh.readiness(&status);
  CHECK(status == 200);
  CHECK(ready["checks"]["postgres"]["status"] == "up");
  auto metrics = gh.client().Get("/metrics");
  REQUIRE(metrics);
  CHECK_THAT(metrics->body,
             Catch::Contains("gatehouse_dependency_up{dependency=\"nats\"} 0"));

  nats.start();
  REQUIRE(eventually(
    [&] { return gh.readiness()["checks"]["nats"]["status"] == "up"; },
    std::chrono::seconds(20)));
  metrics = gh.client().Get("/metrics");
  REQUIRE(metrics);
  CHECK_THAT(metrics->body,
             Catch::Contains("gatehouse_dependency_up{dependency=\"nats\"} 1"));
  gh.stop();
  nats.stop();
}

TEST_CASE("readiness answers 503 and check reports the store unreachable when "
          "PostgreSQL is down",
          "[.integration][serve]") {
  // Held but never listened on: connections are refused.
  reserved_port nothing_there;
  auto closed = "postgresql://postgres@127.0.0.1:"
    + std::to_string(nothing_there.port()) + "/nothing?connect_timeout=1";
  stack gh{{}, closed};
  gh.start();
  int status = 0;
  REQUIRE(eventually([&] {
    gh.readiness(&status);
    return status == 503;
  }));
  auto ready = gh.readiness(&status);
  CHECK(ready["checks"]["postgres"]["status"] == "down");
  CHECK(ready["checks"]["postgres"].contains("error"));
  auto res = gh.client().Get("/api/v4/internal/check",
                             {{"Gitlab-Shell-Api-Request", gh.shell_token()}});
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(json::parse(res->body)["redis"] == false);
  auto live = gh.client().Get("/-/liveness");
  REQUIRE(live);
  CHECK(live->status == 200);
}

TEST_CASE("a body over GATEHOUSE_HTTP_MAX_BODY answers 413",
          "[.integration][serve]") {
  stack gh{{}, {}, {{"GATEHOUSE_HTTP_MAX_BODY", "2048"}}};
  gh.start();
  auto res = gh.client().Post("/api/v4/internal/allowed",
                              std::string(10000, ' '), "application/json");
  REQUIRE(res);
  CHECK(res->status == 413);
  CHECK(res->body == R"({"message":"413 Request Entity Too Large"})");
}

TEST_CASE("routes follow GATEHOUSE_RELATIVE_URL_ROOT",
          "[.integration][serve]") {
  stack gh{{}, {}, {{"GATEHOUSE_RELATIVE_URL_ROOT", "/gitlab/"}}};
  gh.start();
  auto token = gh.shell_token();
  auto res = gh.client().Get("/gitlab/api/v4/internal/check",
                             {{"Gitlab-Shell-Api-Request", token}});
  REQUIRE(res);
  CHECK(res->status == 200);
  auto bare = gh.client().Get("/api/v4/internal/check",
                              {{"Gitlab-Shell-Api-Request", token}});
  REQUIRE(bare);
  CHECK(bare->status == 404);
  CHECK(bare->body == R"({"error":"404 Not Found"})");
}
