// `gatehouse events tail` as an operator runs it: the real binary as a child
// process against a private nats-server. Hidden tag [.nats].

#include "tests/outbox/outbox_fixtures.hpp"

#include <sstream>

using namespace gatehouse;
using namespace gatehouse::test;
using namespace std::chrono_literals;

namespace {

struct tail_fixture {
  private_nats server;
  std::unique_ptr<nats::connection> nc;

  tail_fixture() {
    server.start();
    nc = connect_nats(server.url()); // creates the stream as serve does
  }

  ~tail_fixture() {
    nc->stop();
  }

  std::unique_ptr<child> tail(std::vector<std::string> args) {
    std::vector<std::string> argv{binary(), "events", "tail"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto proc = std::make_unique<child>(
      argv,
      std::map<std::string, std::string>{{"GATEHOUSE_NATS_URL", server.url()}},
      make_temp_dir("tail") + "/tail");
    REQUIRE(eventually(
      [&] { return proc->err().find("tailing stream") != std::string::npos; },
      15s));
    return proc;
  }
};

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in{out};
  std::string line;
  while (std::getline(in, line))
    if (!line.empty())
      lines.push_back(nlohmann::json::parse(line));
  return lines;
}

} // namespace

TEST_CASE_METHOD(tail_fixture,
                 "events tail prints each new event as a JSON line with its "
                 "headers",
                 "[.nats]") {
  js_client client{server.url()};
  // Published before the tail starts: not shown without --from-start.
  REQUIRE(client.publish("gitlab.events.push.1",
                         "00000000-0000-4000-8000-000000000001",
                         R"({"old":true})"));
  auto proc = tail({});
  REQUIRE(client.publish("gitlab.events.push.42",
                         "11111111-2222-4333-8444-555555555555",
                         R"({"object_kind":"push","project_id":42})",
                         {{"Content-Type", "application/json"},
                          {"Gatehouse-Event", "push"},
                          {"Gatehouse-Bulk", "true"}}));
  REQUIRE(client.publish("gitlab.events.tag_push.42",
                         "11111111-2222-4333-8444-555555555556", "plain text"));
  REQUIRE(eventually([&] { return json_lines(proc->out()).size() >= 2; }));
  CHECK(proc->stop(SIGINT) == 0);

  auto lines = json_lines(proc->out());
  REQUIRE(lines.size() == 2);
  auto& first = lines[0];
  // Keys in the documented order.
  CHECK(proc->out().rfind(
          R"({"subject":"gitlab.events.push.42","sequence":2,"headers":{)", 0)
        == 0);
  CHECK(first["subject"] == "gitlab.events.push.42");
  CHECK(first["sequence"] == 2);
  CHECK(
    first["headers"]
    == nlohmann::json{{"Nats-Msg-Id", "11111111-2222-4333-8444-555555555555"},
                      {"Content-Type", "application/json"},
                      {"Gatehouse-Event", "push"},
                      {"Gatehouse-Bulk", "true"}});
  CHECK(first["data"]
        == nlohmann::json{{"object_kind", "push"}, {"project_id", 42}});
  CHECK(lines[1]["subject"] == "gitlab.events.tag_push.42");
  CHECK(lines[1]["data"] == "plain text");
}

TEST_CASE_METHOD(tail_fixture,
                 "events tail --subject filters, --from-start replays, and "
                 "bad arguments exit 64",
                 "[.nats]") {
  js_client client{server.url()};
  REQUIRE(client.publish("gitlab.events.push.1",
                         "00000000-0000-4000-8000-000000000011", "{}"));
  REQUIRE(client.publish("gitlab.events.tag_push.1",
                         "00000000-0000-4000-8000-000000000012", "{}"));
  auto proc = tail({"--subject", "gitlab.events.tag_push.>", "--from-start"});
  REQUIRE(client.publish("gitlab.events.push.2",
                         "00000000-0000-4000-8000-000000000013", "{}"));
  REQUIRE(client.publish("gitlab.events.tag_push.2",
                         "00000000-0000-4000-8000-000000000014", "{}"));
  REQUIRE(eventually([&] { return json_lines(proc->out()).size() >= 2; }));
  std::this_thread::sleep_for(300ms);
  CHECK(proc->stop(SIGTERM) == 0);
  auto lines = json_lines(proc->out());
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["headers"]["Nats-Msg-Id"]
        == "00000000-0000-4000-8000-000000000012");
  CHECK(lines[1]["headers"]["Nats-Msg-Id"]
        == "00000000-0000-4000-8000-000000000014");

  for (auto args :
       std::vector<std::vector<std::string>>{{"events"},
                                             {"events", "follow"},
                                             {"events", "tail", "--subject"},
                                             {"events", "tail", "--bogus"}}) {
    std::string err;
    INFO(args.back());
    CHECK(run_cli(args, {{"GATEHOUSE_NATS_URL", server.url()}}, nullptr, &err)
          == 64);
    CHECK(err.find("usage: gatehouse events tail") != std::string::npos);
  }
}

TEST_CASE("events tail waits for the stream that serve creates", "[.nats]") {
  private_nats server;
  server.start();
  child proc{{binary(), "events", "tail"},
             {{"GATEHOUSE_NATS_URL", server.url()}},
             make_temp_dir("tail") + "/tail"};
  REQUIRE(eventually(
    [&] { return proc.err().find("does not exist yet") != std::string::npos; },
    15s));
  auto nc = connect_nats(server.url());
  REQUIRE(eventually(
    [&] { return proc.err().find("tailing stream") != std::string::npos; },
    15s));
  js_client client{server.url()};
  REQUIRE(client.publish("gitlab.events.push.3",
                         "00000000-0000-4000-8000-000000000021", "{}"));
  REQUIRE(eventually([&] { return json_lines(proc.out()).size() == 1; }));
  CHECK(proc.stop(SIGINT) == 0);
  nc->stop();
}
