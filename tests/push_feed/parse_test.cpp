// A push event body (messages/push_event.schema.json) as the agent
// registry's push feed hands it on: agents::pushed_paths.

#include "edges/nats/push_feed.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using gatehouse::nats::parse_pushed_paths;
using nlohmann::json;

namespace {

json commit(json added, json modified, json removed) {
  return {{"id", std::string(40, 'c')},
          {"message", "m\n"},
          {"added", std::move(added)},
          {"modified", std::move(modified)},
          {"removed", std::move(removed)}};
}

json event(json commits, int total) {
  return {{"object_kind", "push"},
          {"event_name", "push"},
          {"before", std::string(40, 'a')},
          {"after", std::string(40, 'b')},
          {"ref", "refs/heads/main"},
          {"project_id", 10},
          {"commits", std::move(commits)},
          {"total_commits_count", total}};
}

} // namespace

TEST_CASE("a push event gives its ref, revisions and the union of its paths",
          "[push_feed][parse]") {
  auto body
    = event(json::array(
              {commit({".gitlab/agents/a/config.yaml", "README.md"}, {"x.c"},
                      json::array()),
               commit(json::array(), {"x.c", ".gitlab/agents/a/config.yaml"},
                      {"old.txt"})}),
            2)
        .dump();
  std::string why;
  auto p = parse_pushed_paths("ev-1", body, false, why);
  INFO(why);
  REQUIRE(p);
  CHECK(p->event_id == "ev-1");
  CHECK(p->project_id == 10);
  CHECK(p->ref == "refs/heads/main");
  CHECK(p->before == std::string(40, 'a'));
  CHECK(p->after == std::string(40, 'b'));
  CHECK(p->paths
        == std::vector<std::string>{".gitlab/agents/a/config.yaml",
                                    "README.md", "old.txt", "x.c"});
  CHECK(p->complete);
}

TEST_CASE("a push event that lists only some commits is incomplete",
          "[push_feed][parse]") {
  std::string why;
  auto more = event(json::array({commit({"a"}, json::array(), json::array())}),
                    25)
                .dump();
  auto p = parse_pushed_paths("e", more, false, why);
  REQUIRE(p);
  CHECK_FALSE(p->complete);
  CHECK(p->paths == std::vector<std::string>{"a"});

  // Gatehouse-Commits: unavailable (commits [] and a count of 0).
  auto none = event(json::array(), 0).dump();
  p = parse_pushed_paths("e", none, true, why);
  REQUIRE(p);
  CHECK_FALSE(p->complete);
  CHECK(p->paths.empty());

  // A deletion: no commits, and none missing.
  p = parse_pushed_paths("e", none, false, why);
  REQUIRE(p);
  CHECK(p->complete);
}

TEST_CASE("a message that is not a push event is refused with a reason",
          "[push_feed][parse]") {
  std::string why;
  auto good = event(json::array(), 0);
  CHECK_FALSE(parse_pushed_paths("", good.dump(), false, why));
  CHECK_THAT(why, Catch::Contains("Nats-Msg-Id"));
  CHECK_FALSE(parse_pushed_paths(std::string(65, 'x'), good.dump(), false,
                                 why));
  CHECK_FALSE(parse_pushed_paths("e", "not json", false, why));
  CHECK(why == "body is not a JSON object");
  CHECK_FALSE(parse_pushed_paths("e", "[1,2]", false, why));

  auto without = [&](const char* key) {
    auto j = good;
    j.erase(key);
    return j.dump();
  };
  for (auto key : {"ref", "before", "after", "project_id", "commits",
                   "total_commits_count"}) {
    INFO(key);
    CHECK_FALSE(parse_pushed_paths("e", without(key), false, why));
    CHECK_THAT(why, Catch::Contains(key));
  }
  auto j = good;
  j["project_id"] = "10";
  CHECK_FALSE(parse_pushed_paths("e", j.dump(), false, why));
  j = good;
  j["total_commits_count"] = -1;
  CHECK_FALSE(parse_pushed_paths("e", j.dump(), false, why));
  j = good;
  j["commits"] = json::array({commit({1}, json::array(), json::array())});
  CHECK_FALSE(parse_pushed_paths("e", j.dump(), false, why));
  j["commits"] = json::array({"abc"});
  CHECK_FALSE(parse_pushed_paths("e", j.dump(), false, why));
  j["commits"] = json::array({commit("a", json::array(), json::array())});
  CHECK_FALSE(parse_pushed_paths("e", j.dump(), false, why));
}
