// The NATS bridge actor, deterministic: CAF's test coordinator, a publish
// sink that records replies, and typed mocks of the domain actors and the
// request store. Every request is answered exactly once, whatever happens
// on the way: a malformed payload, a domain that never answers, a publish
// that throws, a retry of an answered id.

#include "edges/nats/internal_bridge.hpp"
#include "tests/support/deterministic.hpp"

#include "gatehouse/internal/v1/check.pb.h"
#include "gatehouse/internal/v1/error.pb.h"
#include "gatehouse/internal/v1/push.pb.h"

#include <caf/all.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <stdexcept>

using namespace gatehouse;
using namespace gatehouse::nats;
using namespace gatehouse::test;
using namespace std::chrono_literals;
namespace pb = gatehouse::internal::v1;

namespace {

struct domain_script {
  bool silent = false;
  int checks = 0;
  int pre_receives = 0;
  std::string last_request_id;
  std::vector<caf::response_promise> held;
};

system_status_actor::behavior_type mock_status(
  system_status_actor::pointer self, domain_script* script) {
  return {
    [=](geo_query) { return geo_view{}; },
    [=](check_query) -> caf::result<check_view> {
      ++script->checks;
      if (script->silent) {
        script->held.push_back(self->make_response_promise());
        return caf::delegated<check_view>{};
      }
      return check_view{"18.6.0", "rev", true};
    },
    [=](atom::readiness) { return readiness_view{}; },
    [=](atom::nats_state, std::string&) {},
    // Answers the oldest held check: a late answer, from inside the actor
    // (a promise carries its actor's execution unit).
    [=](atom::tick) {
      if (script->held.empty())
        return;
      script->held.front().deliver(check_view{"18.6.0", "rev", true});
      script->held.erase(script->held.begin());
    },
  };
}

push_processing_actor::behavior_type mock_push(push_processing_actor::pointer,
                                               domain_script* script) {
  return {
    [=](push::pre_receive_params& p) -> caf::result<push::pre_receive_answer> {
      ++script->pre_receives;
      script->last_request_id = p.request_id;
      if (p.gl_repository.empty())
        return caf::make_error(errc::invalid_params,
                               "gl_repository is missing");
      return push::pre_receive_answer{true};
    },
    [=](push::post_receive_params&) -> caf::result<push::post_receive_answer> {
      return push::post_receive_answer{};
    },
    [=](atom::snapshot, snapshot_ptr&) {},
  };
}

struct request_store_script {
  std::optional<stored_reply> stored;
  int lookups = 0;
  std::vector<std::string> recorded;
};

request_store_actor::behavior_type mock_requests(request_store_actor::pointer,
                                                 request_store_script* script) {
  return {
    [=](atom::reply_get, std::string&, std::string&) -> stored_reply {
      ++script->lookups;
      return script->stored.value_or(stored_reply{});
    },
    [=](atom::reply_put, std::string& id, std::string&, std::int32_t,
        std::string&) { script->recorded.push_back(id); },
    [=](atom::tick) {},
  };
}

struct published {
  std::string subject;
  std::string request_id;
  wire_reply reply;
};

struct bridge_fixture : deterministic {
  domain_script domain;
  request_store_script requests;
  std::vector<published> sent;
  int publish_failures_to_throw = 0;
  std::shared_ptr<edge_stats> stats = std::make_shared<edge_stats>();
  caf::actor bridge;
  system_status_actor status;

  void start(call_id call) {
    bridge_settings settings;
    settings.call = call;
    settings.request_timeout = 1s;
    bridge_deps deps;
    status = spawn(mock_status, &domain);
    deps.domains.status = status;
    deps.domains.push = spawn(mock_push, &domain);
    deps.requests = spawn(mock_requests, &requests);
    auto publish = [this](const std::string& subject, const std::string& id,
                          const wire_reply& reply) {
      if (publish_failures_to_throw > 0) {
        --publish_failures_to_throw;
        throw std::runtime_error("publish failed");
      }
      sent.push_back({subject, id, reply});
    };
    bridge = spawn(internal_bridge, settings, deps, publish, stats);
    run();
  }

  void receive(const std::string& payload, const std::string& id = {}) {
    ++stats->in_flight;
    tell(bridge,
         nats_inbound{"gatehouse.internal.v1.x", "_INBOX.1", payload, id});
  }
};

std::string error_text(const wire_reply& r) {
  pb::Error e;
  REQUIRE(e.ParseFromString(r.body));
  return e.message();
}

std::string serialized(const google::protobuf::MessageLite& m) {
  std::string out;
  m.SerializeToString(&out);
  return out;
}

} // namespace

TEST_CASE_METHOD(bridge_fixture,
                 "a call's answer is published once as its "
                 "Protobuf response",
                 "[edge][nats_bridge]") {
  start(call_id::check);
  receive(serialized(pb::CheckRequest{}));
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].subject == "_INBOX.1");
  CHECK(sent[0].reply.status == 200);
  pb::CheckResponse r;
  REQUIRE(r.ParseFromString(sent[0].reply.body));
  CHECK(r.gitlab_version() == "18.6.0");
  CHECK(r.api_version() == "v4");
  CHECK(stats->in_flight == 0);
}

TEST_CASE_METHOD(bridge_fixture,
                 "a malformed payload is a 400 that names the "
                 "message",
                 "[edge][nats_bridge]") {
  start(call_id::pre_receive);
  receive("\xff\xff\xff");
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].reply.status == 400);
  CHECK(error_text(sent[0].reply)
        == "400 Bad request - malformed PreReceiveRequest payload");
  CHECK(domain.pre_receives == 0);
}

TEST_CASE_METHOD(bridge_fixture,
                 "the domain's validation text reaches the "
                 "caller with the HTTP edge's status",
                 "[edge][nats_bridge]") {
  start(call_id::pre_receive);
  receive(serialized(pb::PreReceiveRequest{}));
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].reply.status == 400);
  CHECK(error_text(sent[0].reply) == "gl_repository is missing");
}

TEST_CASE_METHOD(bridge_fixture,
                 "a domain actor that never answers is a 503 "
                 "after the request timeout",
                 "[edge][nats_bridge]") {
  start(call_id::check);
  domain.silent = true;
  receive(serialized(pb::CheckRequest{}));
  CHECK(sent.empty());
  CHECK(stats->in_flight == 1);
  advance(1s);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].reply.status == 503);
  CHECK(error_text(sent[0].reply) == "503 Service Unavailable");
  CHECK(stats->in_flight == 0);
}

TEST_CASE_METHOD(bridge_fixture,
                 "each request has its own deadline, and an answer after it "
                 "is not published again",
                 "[edge][nats_bridge]") {
  start(call_id::check);
  domain.silent = true;
  receive(serialized(pb::CheckRequest{}));
  advance(500ms);
  receive(serialized(pb::CheckRequest{}));
  REQUIRE(domain.held.size() == 2);
  auto answer_oldest = [&] {
    tell(status, atom::tick::value);
    run();
  };
  advance(499ms);
  CHECK(sent.empty());
  advance(1ms); // the first one's deadline
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].reply.status == 503);
  CHECK(stats->in_flight == 1);
  // The first answer comes late, the second in time.
  answer_oldest();
  CHECK(sent.size() == 1);
  answer_oldest();
  REQUIRE(sent.size() == 2);
  CHECK(sent[1].reply.status == 200);
  CHECK(stats->in_flight == 0);
  advance(2s);
  CHECK(sent.size() == 2);
}

TEST_CASE_METHOD(bridge_fixture,
                 "a publish that throws is counted, leaves "
                 "the in-flight gauge, and the bridge serves on",
                 "[edge][nats_bridge]") {
  start(call_id::check);
  publish_failures_to_throw = 1;
  receive(serialized(pb::CheckRequest{}));
  CHECK(sent.empty());
  CHECK(stats->in_flight == 0);
  CHECK_THAT(stats->render(),
             Catch::Contains("gatehouse_nats_publish_failures_total 1"));
  receive(serialized(pb::CheckRequest{}));
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].reply.status == 200);
}

TEST_CASE_METHOD(bridge_fixture,
                 "a retry of an answered id is answered from "
                 "memory without asking again",
                 "[edge][nats_bridge]") {
  start(call_id::check);
  receive(serialized(pb::CheckRequest{}), "req-1");
  receive(serialized(pb::CheckRequest{}), "req-1");
  REQUIRE(sent.size() == 2);
  CHECK(domain.checks == 1);
  CHECK(sent[1].reply.body == sent[0].reply.body);
  CHECK(sent[1].request_id == "req-1");
}

TEST_CASE_METHOD(bridge_fixture,
                 "a state-changing call asks the request store "
                 "first and replays what another replica "
                 "answered",
                 "[edge][nats_bridge]") {
  start(call_id::pre_receive);
  pb::PreReceiveRequest req;
  req.set_gl_repository("project-10");
  pb::PreReceiveResponse stored;
  stored.set_reference_counter_increased(true);
  requests.stored = stored_reply{true, 200, serialized(stored)};
  receive(serialized(req), "req-2");
  REQUIRE(sent.size() == 1);
  CHECK(requests.lookups == 1);
  CHECK(domain.pre_receives == 0);
  CHECK(sent[0].reply.body == serialized(stored));
  // Not recorded anywhere: the request id goes to the push actor, whose
  // store applies the push once.
  requests.stored.reset();
  receive(serialized(req), "req-3");
  REQUIRE(sent.size() == 2);
  CHECK(domain.pre_receives == 1);
  CHECK(domain.last_request_id == "req-3");
  CHECK(requests.recorded == std::vector<std::string>{"req-3"});
}

TEST_CASE_METHOD(bridge_fixture,
                 "an invalid request id is refused before "
                 "anything is asked",
                 "[edge][nats_bridge]") {
  start(call_id::pre_receive);
  receive(serialized(pb::PreReceiveRequest{}), std::string(300, 'x'));
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].reply.status == 400);
  CHECK(domain.pre_receives == 0);
  CHECK(requests.lookups == 0);
}
