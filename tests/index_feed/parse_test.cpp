// A push event body (messages/push_event.schema.json) as the indexer's feed
// hands it on: indexer::pushed_ref.

#include "edges/nats/index_feed.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using gatehouse::nats::parse_pushed_ref;
using nlohmann::json;

namespace {

json event() {
  return {{"object_kind", "push"},
          {"event_name", "push"},
          {"before", std::string(40, 'a')},
          {"after", std::string(64, 'b')},
          {"ref", "refs/heads/main"},
          {"project_id", 10},
          {"commits", json::array()},
          {"total_commits_count", 0}};
}

/// Why `body` is refused; "" when it is accepted.
std::string refusal(const json& body, std::string_view id = "ev-1") {
  std::string why;
  auto p = parse_pushed_ref(id, body.dump(), "", why);
  return p ? std::string{} : why;
}

} // namespace

TEST_CASE("a push event gives its id, project, ref, revisions and "
          "correlation id",
          "[index_feed][parse]") {
  std::string why;
  auto p = parse_pushed_ref("ev-1", event().dump(), "req-42", why);
  INFO(why);
  REQUIRE(p);
  CHECK(p->event_id == "ev-1");
  CHECK(p->project_id == 10);
  CHECK(p->ref == "refs/heads/main");
  CHECK(p->before == std::string(40, 'a'));
  CHECK(p->after == std::string(64, 'b'));
  CHECK(p->correlation_id == "req-42");
}

TEST_CASE("a created or deleted branch keeps its all-zero revision",
          "[index_feed][parse]") {
  auto body = event();
  body["before"] = std::string(40, '0');
  std::string why;
  auto p = parse_pushed_ref("ev-1", body.dump(), "", why);
  REQUIRE(p);
  CHECK(p->before == std::string(40, '0'));
  CHECK(p->correlation_id.empty());
}

TEST_CASE("an unusable correlation id is dropped, not the event",
          "[index_feed][parse]") {
  std::string why;
  auto p = parse_pushed_ref("ev-1", event().dump(), "two words", why);
  REQUIRE(p);
  CHECK(p->correlation_id.empty());
  p = parse_pushed_ref("ev-1", event().dump(), std::string(129, 'x'), why);
  REQUIRE(p);
  CHECK(p->correlation_id.empty());
}

TEST_CASE("a message without a usable event id is refused",
          "[index_feed][parse]") {
  CHECK_FALSE(refusal(event(), "").empty());
  CHECK_FALSE(refusal(event(), std::string(65, 'x')).empty());
  CHECK(refusal(event(), std::string(64, 'x')).empty());
}

TEST_CASE("a body that is not a push event is refused with the reason",
          "[index_feed][parse]") {
  std::string why;
  CHECK_FALSE(parse_pushed_ref("ev-1", "not json", "", why));
  CHECK(why == "body is not a JSON object");
  CHECK_FALSE(parse_pushed_ref("ev-1", "[1]", "", why));

  auto without = [](const char* key) {
    auto body = event();
    body.erase(key);
    return body;
  };
  CHECK(refusal(without("ref")) == "ref is missing or not a string");
  CHECK(refusal(without("before")) == "before is missing or not a string");
  CHECK(refusal(without("after")) == "after is missing or not a string");
  CHECK(refusal(without("project_id"))
        == "project_id is missing or not a positive integer");

  auto with = [](const char* key, json value) {
    auto body = event();
    body[key] = std::move(value);
    return body;
  };
  CHECK(refusal(with("project_id", "10"))
        == "project_id is missing or not a positive integer");
  CHECK(refusal(with("project_id", 0))
        == "project_id is missing or not a positive integer");
  CHECK(refusal(with("project_id", 1.5))
        == "project_id is missing or not a positive integer");
  CHECK(refusal(with("ref", 7)) == "ref is missing or not a string");
  CHECK(refusal(with("ref", "refs/tags/v1")) == "ref is not a branch (refs/heads/…)");
  CHECK(refusal(with("ref", "refs/heads/")) == "ref is not a branch (refs/heads/…)");
  CHECK(refusal(with("ref", "main")) == "ref is not a branch (refs/heads/…)");
  CHECK(refusal(with("after", "HEAD")) == "before or after is not an object id");
  CHECK(refusal(with("before", std::string(40, 'A')))
        == "before or after is not an object id");
  CHECK(refusal(with("before", std::string(41, 'a')))
        == "before or after is not an object id");
}
