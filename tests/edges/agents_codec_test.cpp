// The codecs of KAS's calls without a server: Grape's coercion and texts,
// the agent token's headers, and each answer's exact body and status, over
// HTTP and NATS.

#include "edges/http/codec.hpp"
#include "edges/nats/internal_codec.hpp"

#include "gatehouse/internal/v1/agents.pb.h"
#include "gatehouse/internal/v1/error.pb.h"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace gatehouse;
using json = nlohmann::json;
namespace pb = gatehouse::internal::v1;

namespace {

using header_pairs = std::vector<std::pair<std::string, std::string>>;

// Decodes `params` (and headers) with the HTTP codec of call `Id`.
template <call_id Id>
auto http_decode(const json& params, const header_pairs& headers = {}) {
  httplib::Request req;
  for (auto& [name, value] : headers)
    req.headers.emplace(name, value);
  return http::decode(call_tag<Id>{}, http::request_view{params, req});
}

template <call_id Id, class Answer>
http::text_reply http_encode(const Answer& answer) {
  return http::encode_text(call_tag<Id>{}, answer);
}

// The 400 text of a request the HTTP codec refuses; "" when it decodes.
template <call_id Id>
std::string http_refusal(const json& params) {
  auto r = http_decode<Id>(params);
  if (r)
    return "";
  auto e = status_of(r.error());
  CHECK(e.status == 400);
  CHECK(e.shape == error_shape::error);
  return e.message;
}

template <call_id Id, class Message>
auto nats_decode(const Message& msg) {
  return nats::decode(call_tag<Id>{}, msg.SerializeAsString());
}

template <call_id Id, class Message>
std::string nats_refusal(const Message& msg) {
  auto r = nats_decode<Id>(msg);
  if (r)
    return "";
  auto reply = nats::failure_reply(r.error());
  CHECK(reply.status == 400);
  pb::Error e;
  REQUIRE(e.ParseFromString(reply.body));
  return e.message();
}

agents::repository_view repository() {
  agents::repository_view r;
  r.project_id = 7;
  r.gitaly_address = "tcp://gitaly:8075";
  r.gitaly_token = "";
  r.gitaly_features
    = {{"gitaly-feature-b", "true"}, {"gitaly-feature-a", "false"}};
  r.storage_name = "default";
  r.relative_path = "@hashed/7f/6f/7f6f.git";
  r.gl_repository = "project-7";
  r.gl_project_path = "ops/agent-config";
  r.default_branch = "main";
  return r;
}

const std::string gitaly_json
  = R"("gitaly_info":{"address":"tcp://gitaly:8075","token":"",)"
    R"("features":{"gitaly-feature-b":"true","gitaly-feature-a":"false"}},)"
    R"("gitaly_repository":{"storage_name":"default",)"
    R"("relative_path":"@hashed/7f/6f/7f6f.git","git_object_directory":"",)"
    R"("git_alternate_object_directories":[],"gl_repository":"project-7",)"
    R"("gl_project_path":"ops/agent-config"},"default_branch":"main")";

} // namespace

// -- the agent token ----------------------------------------------------------

TEST_CASE("agent token: Gitlab-Agentk-Api-Request, Gitlab-Agent-Api-Request, "
          "then Authorization: Bearer",
          "[agents][codec]") {
  constexpr auto info = call_id::kubernetes_agent_info;
  auto token = [](const header_pairs& h) {
    auto q = http_decode<info>(json::object(), h);
    REQUIRE(q);
    return q->token;
  };
  CHECK(token({}) == std::nullopt);
  CHECK(token({{"Authorization", "Bearer abc"}}) == "abc");
  CHECK(token({{"Authorization", "bearer abc"}}) == "abc");
  CHECK(token({{"Authorization", "Basic abc"}}) == std::nullopt);
  CHECK(token({{"Authorization", "Bearer abc"},
               {"Gitlab-Agent-Api-Request", "agent"}})
        == "agent");
  CHECK(token({{"Authorization", "Bearer abc"},
               {"Gitlab-Agent-Api-Request", "agent"},
               {"Gitlab-Agentk-Api-Request", "agentk"}})
        == "agentk");
  // Present but empty still counts: the lookup then finds no token.
  CHECK(token({{"Gitlab-Agentk-Api-Request", ""},
               {"Gitlab-Agent-Api-Request", "agent"}})
        == "");
  // The same for every call that reads it.
  auto k1 = http_decode<call_id::agentk_agent_info>(
    json::object(), {{"Gitlab-Agent-Api-Request", "t"}});
  REQUIRE(k1);
  CHECK(k1->token == "t");
  auto k3 = http_decode<call_id::kubernetes_project_info>(
    json{{"id", "ops/agent-config"}}, {{"Authorization", "Bearer t"}});
  REQUIRE(k3);
  CHECK(k3->token == "t");
  CHECK(k3->id == "ops/agent-config");
  CHECK_FALSE(k3->autoflow);
  auto k4 = http_decode<call_id::kubernetes_verify_project_access>(
    json{{"id", 7}}, {{"Gitlab-Agentk-Api-Request", "t"}});
  REQUIRE(k4);
  CHECK(k4->token == "t");
  CHECK(k4->id == "7");
  auto none = http_decode<call_id::kubernetes_project_info>(json::object());
  REQUIRE(none);
  CHECK(none->id == std::nullopt);
}

TEST_CASE("runner info reads only Gitlab-Agent-Api-Request",
          "[agents][codec]") {
  auto token = [](const header_pairs& h) {
    auto q = http_decode<call_id::ci_runner_info>(json::object(), h);
    REQUIRE(q);
    return q->token;
  };
  CHECK(
    token({{"Authorization", "Bearer r"}, {"Gitlab-Agentk-Api-Request", "r"}})
    == std::nullopt);
  CHECK(token({{"Gitlab-Agent-Api-Request", "glrt-1"}}) == "glrt-1");
  CHECK(token({{"Gitlab-Agent-Api-Request", ""}}) == "");
}

// -- Grape's validation -------------------------------------------------------

TEST_CASE("agent_configuration: Grape's texts", "[agents][codec]") {
  constexpr auto id = call_id::kubernetes_agent_configuration;
  CHECK(http_refusal<id>(json::object())
        == "agent_id is missing, agent_config is missing");
  CHECK(http_refusal<id>(json{{"agent_config", json::object()}})
        == "agent_id is missing");
  CHECK(http_refusal<id>(json{{"agent_id", "x"}, {"agent_config", "{"}})
        == "agent_id is invalid, agent_config is invalid");
  CHECK(http_refusal<id>(json{{"agent_id", true}, {"agent_config", 5}})
        == "agent_id is invalid, agent_config is invalid");
  CHECK(http_refusal<id>(json{{"agent_id", 1}, {"agent_config", "[1]"}})
        == "agent_config is invalid");
  CHECK(http_refusal<id>(json{{"agent_id", 1}, {"agent_config", "\"s\""}})
        == "agent_config is invalid");
  // An object, an array of objects, or a string holding one.
  auto q = http_decode<id>(
    json{{"agent_id", "12"}, {"agent_config", {{"gitops", nullptr}}}});
  REQUIRE(q);
  CHECK(q->agent_id == 12);
  CHECK(q->config == R"({"gitops":null})");
  q = http_decode<id>(
    json{{"agent_id", 3}, {"agent_config", R"({"ci_access":{}})"}});
  REQUIRE(q);
  CHECK(q->config == R"({"ci_access":{}})");
  q = http_decode<id>(json{{"agent_id", 3}, {"agent_config", "[{}]"}});
  REQUIRE(q);
  CHECK(q->config == "[{}]");
  // Grape lets nil through: no agent 0, no configuration.
  q = http_decode<id>(json{{"agent_id", nullptr}, {"agent_config", " "}});
  REQUIRE(q);
  CHECK(q->agent_id == 0);
  CHECK(q->config == "null");
  // Ruby's Integer(): blanks, a sign, underscores; a float truncated.
  CHECK(http_decode<id>(json{{"agent_id", " 1_000 "}, {"agent_config", "{}"}})
          ->agent_id
        == 1000);
  CHECK(
    http_decode<id>(json{{"agent_id", 4.7}, {"agent_config", "{}"}})->agent_id
    == 4);
  CHECK(http_refusal<id>(json{{"agent_id", "1__0"}, {"agent_config", "{}"}})
        == "agent_id is invalid");
  CHECK(http_refusal<id>(
          json{{"agent_id", "99999999999999999999"}, {"agent_config", "{}"}})
        == "agent_id is invalid");
}

TEST_CASE("authorize_proxy_user: Grape's texts", "[agents][codec]") {
  constexpr auto id = call_id::kubernetes_authorize_proxy_user;
  CHECK(http_refusal<id>(json::object())
        == "agent_id is missing, access_type is missing, access_type does not "
           "have a valid value, access_key is missing");
  json base = {{"agent_id", 1},
               {"access_type", "personal_access_token"},
               {"access_key", "glpat-x"}};
  auto q = http_decode<id>(base);
  REQUIRE(q);
  CHECK(q->agent_id == 1);
  CHECK(q->access_type == "personal_access_token");
  CHECK(q->access_key == "glpat-x");
  CHECK(q->csrf_token == std::nullopt);

  auto with = [&](const char* key, json value) {
    json p = base;
    p[key] = std::move(value);
    return p;
  };
  CHECK(http_refusal<id>(with("access_type", "token"))
        == "access_type does not have a valid value");
  CHECK(http_refusal<id>(with("access_type", ""))
        == "access_type does not have a valid value");
  CHECK(http_refusal<id>(with("access_type", json::array({"x"})))
        == "access_type is invalid, access_type does not have a valid value");
  CHECK(http_refusal<id>(with("agent_id", "one")) == "agent_id is invalid");
  CHECK(http_refusal<id>(with("access_key", json::object()))
        == "access_key is invalid");
  // An empty access key passes Grape (the domain finds no token).
  CHECK(http_decode<id>(with("access_key", ""))->access_key.empty());

  json cookie = with("access_type", "session_cookie");
  CHECK(http_refusal<id>(cookie)
        == "csrf_token is missing, csrf_token is empty");
  cookie["csrf_token"] = "  ";
  CHECK(http_refusal<id>(cookie) == "csrf_token is empty");
  cookie["csrf_token"] = nullptr;
  CHECK(http_refusal<id>(cookie) == "csrf_token is empty");
  cookie["csrf_token"] = "tok";
  q = http_decode<id>(cookie);
  REQUIRE(q);
  CHECK(q->access_type == "session_cookie");
  CHECK(q->csrf_token == "tok");
}

TEST_CASE("usage_metrics: Grape's texts and the known names",
          "[agents][codec]") {
  constexpr auto id = call_id::kubernetes_usage_metrics;
  auto q = http_decode<id>(json::object());
  REQUIRE(q);
  CHECK(q->counters.empty());
  CHECK(q->unique_counters.empty());
  CHECK(http_refusal<id>(json{{"counters", "x"}}) == "counters is invalid");
  CHECK(http_refusal<id>(json{{"counters", json::array()}})
        == "counters is invalid");
  CHECK(http_refusal<id>(json{{"unique_counters", 3}})
        == "unique_counters is invalid");
  CHECK(http_refusal<id>(
          json{{"counters",
                {{"k8s_api_proxy_request", "a"},
                 {"flux_git_push_notifications_total", 1.5},
                 {"k8s_api_proxy_requests_via_pat_access", json::array()}}},
               {"unique_counters",
                {{"k8s_api_proxy_requests_unique_users_via_ci_access", 1},
                 {"flux_git_push_notified_unique_projects", {1, "x"}}}}})
        == "counters[k8s_api_proxy_request] is invalid, "
           "counters[k8s_api_proxy_requests_via_pat_access] is invalid, "
           "unique_counters[k8s_api_proxy_requests_unique_users_via_ci_"
           "access] is invalid, "
           "unique_counters[flux_git_push_notified_unique_projects] is "
           "invalid");
  // Unknown names ignored, zeros and empty lists valid, known names in
  // GitLab's order whatever the body's.
  q = http_decode<id>(json{
    {"counters",
     {{"k8s_api_proxy_request", 0},
      {"gitops_sync", "3"},
      {"not_a_counter", "x"},
      {"flux_git_push_notifications_total", nullptr}}},
    {"unique_counters",
     {{"k8s_api_proxy_requests_unique_agents_via_ci_access", json::array()},
      {"agent_users_using_ci_tunnel", {5, "6", nullptr}},
      {"bogus", "x"}}}});
  REQUIRE(q);
  using counters = std::vector<std::pair<std::string, std::int64_t>>;
  CHECK(q->counters
        == counters{{"gitops_sync", 3}, {"k8s_api_proxy_request", 0}});
  using uniques
    = std::vector<std::pair<std::string, std::vector<std::int64_t>>>;
  CHECK(q->unique_counters
        == uniques{{"agent_users_using_ci_tunnel", {5, 6}},
                   {"k8s_api_proxy_requests_unique_agents_via_ci_access", {}}});
}

TEST_CASE("agent_events: Grape's nested names", "[agents][codec]") {
  constexpr auto id = call_id::kubernetes_agent_events;
  CHECK(http_decode<id>(json::object()));
  CHECK(http_refusal<id>(json{{"events", "x"}}) == "events is invalid");
  const std::string ci = "k8s_api_proxy_requests_unique_users_via_ci_access";
  CHECK(http_refusal<id>(json{{"events", {{ci, 5}}}})
        == "events[" + ci + "] is invalid");
  CHECK(http_refusal<id>(json{{"events", {{ci, {1}}}}})
        == "events[" + ci + "] is invalid");
  // One declared field at a time, across the elements.
  CHECK(http_refusal<id>(json{{"events",
                               {{ci,
                                 {{{"user_id", "a"}, {"project_id", "b"}},
                                  {{"user_id", "c"}, {"project_id", 2}}}}}}})
        == "events[" + ci + "][0][user_id] is invalid, events[" + ci
          + "][1][user_id] is invalid, events[" + ci
          + "][0][project_id] is invalid");
  CHECK(http_refusal<id>(json{
          {"events",
           {{"register_agent_at_kas",
             {{{"agent_id", "x"},
               {"agent_version", {1}},
               {"extra_telemetry_data", {{"helm_chart_version", {{"a", 1}}}}}},
              {{"extra_telemetry_data", "x"}}}}}}})
        == "events[register_agent_at_kas][0][agent_version] is invalid, "
           "events[register_agent_at_kas][0][agent_id] is invalid, "
           "events[register_agent_at_kas][1][extra_telemetry_data] is "
           "invalid, "
           "events[register_agent_at_kas][0][extra_telemetry_data][helm_"
           "chart_version] is invalid");
  auto q = http_decode<id>(
    json{{"events",
          {{"register_agent_at_kas",
            {{{"project_id", 7},
              {"agent_id", "3"},
              {"agent_version", "v17.0.0"},
              {"architecture", "arm64"},
              {"kubernetes_version", "v1.30"},
              {"extra_telemetry_data",
               {{"installation_method", "helm"}, {"helm_chart_version", 2}}}},
             json::object()}},
           {"k8s_api_proxy_requests_unique_users_via_pat_access",
            {{{"user_id", 5}, {"project_id", nullptr}}}},
           {"unknown", "x"}}}});
  REQUIRE(q);
  REQUIRE(q->user_events.size() == 1);
  CHECK(q->user_events[0].first
        == "k8s_api_proxy_requests_unique_users_via_pat_access");
  REQUIRE(q->user_events[0].second.size() == 1);
  CHECK(q->user_events[0].second[0].user_id == 5);
  CHECK(q->user_events[0].second[0].project_id == std::nullopt);
  REQUIRE(q->registrations.size() == 2);
  auto& r = q->registrations[0];
  CHECK(r.project_id == 7);
  CHECK(r.agent_id == 3);
  CHECK(r.agent_version == "v17.0.0");
  CHECK(r.architecture == "arm64");
  CHECK(r.kubernetes_version == "v1.30");
  CHECK(r.installation_method == "helm");
  CHECK(r.helm_chart_version == "2");
  CHECK(q->registrations[1].agent_id == std::nullopt);
  CHECK(q->registrations[1].installation_method == std::nullopt);
}

TEST_CASE("autoflow: id is required, no agent token", "[agents][codec]") {
  constexpr auto id = call_id::autoflow_repository_info;
  CHECK(http_refusal<id>(json::object()) == "id is missing");
  CHECK(http_refusal<id>(json{{"id", json::array()}}) == "id is invalid");
  auto q = http_decode<id>(json{{"id", 7}}, {{"Authorization", "Bearer t"}});
  REQUIRE(q);
  CHECK(q->autoflow);
  CHECK(q->id == "7");
  CHECK(q->token == std::nullopt);
  q = http_decode<id>(json{{"id", nullptr}});
  REQUIRE(q);
  CHECK(q->id == "");
}

// -- answers ------------------------------------------------------------------

TEST_CASE("agent_info and project_info answer GitLab's body in its order",
          "[agents][codec]") {
  agents::agent_info_answer a;
  a.agent_id = 3;
  a.agent_name = "prod";
  a.repository = repository();
  for (auto out : {http_encode<call_id::agentk_agent_info>(a),
                   http_encode<call_id::kubernetes_agent_info>(a)}) {
    CHECK(out.status == 200);
    CHECK(out.content_type == "application/json");
    CHECK(out.body
          == R"({"project_id":7,"agent_id":3,"agent_name":"prod",)"
            + gitaly_json + "}");
  }
  agents::project_answer p{std::nullopt, repository()};
  p.repository.gitaly_token = std::nullopt;
  p.repository.gitaly_features.clear();
  auto out = http_encode<call_id::kubernetes_project_info>(p);
  CHECK(out.status == 200);
  CHECK(out.content_type == "application/json");
  CHECK(out.body
        == R"({"project_id":7,"gitaly_info":{"address":"tcp://gitaly:8075",)"
           R"("token":null,"features":{}},"gitaly_repository":{)"
           R"("storage_name":"default","relative_path":"@hashed/7f/6f/)"
           R"(7f6f.git","git_object_directory":"",)"
           R"("git_alternate_object_directories":[],"gl_repository":)"
           R"("project-7","gl_project_path":"ops/agent-config"},)"
           R"("default_branch":"main"})");
  // autoflow: no features.
  p.repository.with_features = false;
  p.repository.gitaly_token = "secret";
  out = http_encode<call_id::autoflow_repository_info>(p);
  CHECK(out.status == 200);
  CHECK(json::parse(out.body)["gitaly_info"]
        == json{{"address", "tcp://gitaly:8075"}, {"token", "secret"}});
}

TEST_CASE("204 answers have no body and no content type", "[agents][codec]") {
  agents::project_answer p{std::nullopt, repository()};
  auto v = http_encode<call_id::kubernetes_verify_project_access>(p);
  CHECK(v.status == 204);
  CHECK(v.body.empty());
  CHECK(v.content_type.empty());
  agents::no_content none;
  for (auto out : {http_encode<call_id::kubernetes_agent_configuration>(none),
                   http_encode<call_id::kubernetes_usage_metrics>(none),
                   http_encode<call_id::kubernetes_agent_events>(none)}) {
    CHECK(out.status == 204);
    CHECK(out.body.empty());
    CHECK(out.content_type.empty());
    CHECK(out.headers.empty());
  }
}

TEST_CASE("refusals are {\"message\":…} with their status", "[agents][codec]") {
  agents::refusal unauthorized{401, "401 Unauthorized", {}, {}};
  agents::agent_info_answer a;
  a.refused = unauthorized;
  auto out = http_encode<call_id::agentk_agent_info>(a);
  CHECK(out.status == 401);
  CHECK(out.body == R"({"message":"401 Unauthorized"})");
  CHECK(out.content_type == "application/json");
  CHECK(out.headers.empty());

  agents::project_answer p;
  p.refused = agents::refusal{404, "404 Not Found", {}, {}};
  for (auto o : {http_encode<call_id::kubernetes_project_info>(p),
                 http_encode<call_id::kubernetes_verify_project_access>(p),
                 http_encode<call_id::autoflow_repository_info>(p)}) {
    CHECK(o.status == 404);
    CHECK(o.body == R"({"message":"404 Not Found"})");
    CHECK(o.content_type == "application/json");
  }
  agents::no_content gone{agents::refusal{404, "404 Not found", {}, {}}};
  out = http_encode<call_id::kubernetes_agent_configuration>(gone);
  CHECK(out.status == 404);
  CHECK(out.body == R"({"message":"404 Not found"})");

  agents::runner_answer r;
  r.refused = unauthorized;
  out = http_encode<call_id::ci_runner_info>(r);
  CHECK(out.status == 401);
  CHECK(out.body == R"({"message":"401 Unauthorized"})");
  r.refused.reset();
  r.runner_id = 42;
  out = http_encode<call_id::ci_runner_info>(r);
  CHECK(out.status == 200);
  CHECK(out.body == R"({"runner_id":42})");
  CHECK(out.content_type == "application/json");
}

TEST_CASE("authorize_proxy_user: payload and refusals", "[agents][codec]") {
  constexpr auto id = call_id::kubernetes_authorize_proxy_user;
  agents::proxy_user_answer a;
  a.agent_id = 3;
  a.config_project_id = 7;
  a.user_id = 5;
  a.username = "alice";
  auto out = http_encode<id>(a);
  CHECK(out.status == 200);
  CHECK(out.content_type == "application/json");
  CHECK(out.body
        == R"({"agent":{"id":3,"config_project":{"id":7}},)"
           R"("user":{"id":5,"username":"alice"},"access_as":{"agent":{}}})");

  a.refused = agents::refusal{
    400, "400 Bad request - Unable to get user from request data", {}, {}};
  out = http_encode<id>(a);
  CHECK(out.status == 400);
  CHECK(
    out.body
    == R"({"message":"400 Bad request - Unable to get user from request data"})");

  // Rack::OAuth2's bearer-token errors: 401 with its challenge, 403 without.
  a.refused = agents::refusal{401, "Token has expired.", "invalid_token", {}};
  out = http_encode<id>(a);
  CHECK(out.status == 401);
  CHECK(out.content_type == "application/json");
  CHECK(
    out.body
    == R"({"error":"invalid_token","error_description":"Token has expired."})");
  REQUIRE(out.headers.size() == 1);
  CHECK(out.headers[0].first == "WWW-Authenticate");
  CHECK(out.headers[0].second
        == R"(Bearer realm="Protected by OAuth 2.0", error="invalid_token", )"
           R"(error_description="Token has expired.")");

  a.refused = agents::refusal{
    403,
    "The request requires higher privileges than provided by the access "
    "token.",
    "insufficient_scope", "k8s_proxy"};
  out = http_encode<id>(a);
  CHECK(out.status == 403);
  CHECK(out.body
        == R"({"error":"insufficient_scope","error_description":"The request )"
           R"(requires higher privileges than provided by the access token.",)"
           R"("scope":"k8s_proxy"})");
  CHECK(out.headers.empty());

  // No error code of the bearer scheme: the bare challenge.
  a.refused = agents::refusal{401, "", "unauthorized", {}};
  out = http_encode<id>(a);
  CHECK(out.body == R"({"error":"unauthorized"})");
  REQUIRE(out.headers.size() == 1);
  CHECK(out.headers[0].second == R"(Bearer realm="Protected by OAuth 2.0")");
}

// -- NATS ---------------------------------------------------------------------

TEST_CASE("NATS: tokens are request fields", "[agents][codec][nats]") {
  pb::AgentInfoRequest info;
  auto q = nats_decode<call_id::agentk_agent_info>(info);
  REQUIRE(q);
  CHECK(q->token == std::nullopt);
  info.set_agent_token("");
  q = nats_decode<call_id::kubernetes_agent_info>(info);
  REQUIRE(q);
  CHECK(q->token == "");
  info.set_agent_token("t");
  CHECK(nats_decode<call_id::agentk_agent_info>(info)->token == "t");

  pb::ProjectInfoRequest p;
  p.set_agent_token("t");
  p.set_id("ops/agent-config");
  auto pq = nats_decode<call_id::kubernetes_verify_project_access>(p);
  REQUIRE(pq);
  CHECK(pq->token == "t");
  CHECK(pq->id == "ops/agent-config");
  CHECK_FALSE(pq->autoflow);
  pq = nats_decode<call_id::autoflow_repository_info>(p);
  REQUIRE(pq);
  CHECK(pq->autoflow);
  CHECK(pq->token == std::nullopt);
  CHECK(
    nats_refusal<call_id::autoflow_repository_info>(pb::ProjectInfoRequest{})
    == "id is missing");

  pb::RunnerInfoRequest runner;
  runner.set_runner_token("glrt-1");
  CHECK(nats_decode<call_id::ci_runner_info>(runner)->token == "glrt-1");

  auto bad = nats::decode(call_tag<call_id::kubernetes_agent_info>{},
                          std::string("\xff\xff\xff", 3));
  REQUIRE_FALSE(bad);
  auto reply = nats::failure_reply(bad.error());
  CHECK(reply.status == 400);
  pb::Error e;
  REQUIRE(e.ParseFromString(reply.body));
  CHECK(e.message() == "400 Bad request - malformed AgentInfoRequest payload");
}

TEST_CASE("NATS: the HTTP edge's validation texts", "[agents][codec][nats]") {
  constexpr auto conf = call_id::kubernetes_agent_configuration;
  pb::AgentConfigurationRequest c;
  CHECK(nats_refusal<conf>(c)
        == "agent_id is missing, agent_config is missing");
  c.set_agent_id(1);
  c.set_agent_config("[1]");
  CHECK(nats_refusal<conf>(c) == "agent_config is invalid");
  c.set_agent_config(R"({"ci_access":{}})");
  auto cq = nats_decode<conf>(c);
  REQUIRE(cq);
  CHECK(cq->agent_id == 1);
  CHECK(cq->config == R"({"ci_access":{}})");

  constexpr auto proxy = call_id::kubernetes_authorize_proxy_user;
  pb::AuthorizeProxyUserRequest u;
  CHECK(nats_refusal<proxy>(u)
        == "agent_id is missing, access_type is missing, access_type does not "
           "have a valid value, access_key is missing");
  u.set_agent_id(1);
  u.set_access_key("");
  u.set_access_type("token");
  CHECK(nats_refusal<proxy>(u) == "access_type does not have a valid value");
  u.set_access_type("session_cookie");
  CHECK(nats_refusal<proxy>(u) == "csrf_token is missing, csrf_token is empty");
  u.set_csrf_token(" ");
  CHECK(nats_refusal<proxy>(u) == "csrf_token is empty");
  u.set_csrf_token("tok");
  auto uq = nats_decode<proxy>(u);
  REQUIRE(uq);
  CHECK(uq->csrf_token == "tok");
  CHECK(uq->access_key.empty());

  pb::UsageMetricsRequest m;
  (*m.mutable_counters())["k8s_api_proxy_request"] = 2;
  (*m.mutable_counters())["nope"] = 9;
  (*m.mutable_counters())["gitops_sync"] = 0;
  (*m.mutable_unique_counters())["flux_git_push_notified_unique_projects"]
    .add_ids(4);
  auto mq = nats_decode<call_id::kubernetes_usage_metrics>(m);
  REQUIRE(mq);
  using counters = std::vector<std::pair<std::string, std::int64_t>>;
  CHECK(mq->counters
        == counters{{"gitops_sync", 0}, {"k8s_api_proxy_request", 2}});
  REQUIRE(mq->unique_counters.size() == 1);
  CHECK(mq->unique_counters[0].second == std::vector<std::int64_t>{4});

  pb::AgentEventsRequest ev;
  auto* reg = ev.add_register_agent_at_kas();
  reg->set_agent_id(3);
  reg->set_agent_version("v17");
  reg->mutable_extra_telemetry_data()->set_installation_method("helm");
  ev.add_k8s_api_proxy_requests_unique_users_via_ci_access()->set_user_id(5);
  auto eq = nats_decode<call_id::kubernetes_agent_events>(ev);
  REQUIRE(eq);
  REQUIRE(eq->user_events.size() == 1);
  CHECK(eq->user_events[0].second[0].user_id == 5);
  CHECK(eq->user_events[0].second[0].project_id == std::nullopt);
  REQUIRE(eq->registrations.size() == 1);
  CHECK(eq->registrations[0].agent_id == 3);
  CHECK(eq->registrations[0].project_id == std::nullopt);
  CHECK(eq->registrations[0].installation_method == "helm");
  CHECK(eq->registrations[0].helm_chart_version == std::nullopt);
}

TEST_CASE("NATS: answers and statuses as over HTTP", "[agents][codec][nats]") {
  agents::agent_info_answer a;
  a.agent_id = 3;
  a.agent_name = "prod";
  a.repository = repository();
  auto out = nats::encode(call_tag<call_id::agentk_agent_info>{}, a);
  CHECK(out.status == 200);
  pb::AgentInfoResponse info;
  REQUIRE(info.ParseFromString(out.body));
  CHECK(info.project_id() == 7);
  CHECK(info.agent_id() == 3);
  CHECK(info.agent_name() == "prod");
  CHECK(info.gitaly_info().address() == "tcp://gitaly:8075");
  CHECK(info.gitaly_info().has_token());
  CHECK(info.gitaly_info().features().at("gitaly-feature-b") == "true");
  CHECK(info.gitaly_repository().relative_path() == "@hashed/7f/6f/7f6f.git");
  CHECK(info.gitaly_repository().gl_project_path() == "ops/agent-config");
  CHECK(info.default_branch() == "main");

  agents::project_answer p{std::nullopt, repository()};
  out = nats::encode(call_tag<call_id::kubernetes_verify_project_access>{}, p);
  CHECK(out.status == 204);
  out = nats::encode(call_tag<call_id::autoflow_repository_info>{}, p);
  CHECK(out.status == 200);
  p.refused = agents::refusal{404, "404 Not Found", {}, {}};
  out = nats::encode(call_tag<call_id::kubernetes_project_info>{}, p);
  CHECK(out.status == 404);
  pb::Error e;
  REQUIRE(e.ParseFromString(out.body));
  CHECK(e.message() == "404 Not Found");

  agents::no_content none;
  CHECK(nats::encode(call_tag<call_id::kubernetes_usage_metrics>{}, none).status
        == 204);
  none.refused = agents::refusal{404, "404 Not found", {}, {}};
  out = nats::encode(call_tag<call_id::kubernetes_agent_configuration>{}, none);
  CHECK(out.status == 404);

  agents::proxy_user_answer u;
  u.agent_id = 3;
  u.config_project_id = 7;
  u.user_id = 5;
  u.username = "alice";
  out = nats::encode(call_tag<call_id::kubernetes_authorize_proxy_user>{}, u);
  CHECK(out.status == 200);
  pb::AuthorizeProxyUserResponse ur;
  REQUIRE(ur.ParseFromString(out.body));
  CHECK(ur.agent().config_project().id() == 7);
  CHECK(ur.user().username() == "alice");
  CHECK(ur.access_as().has_agent());
  u.refused = agents::refusal{401, "Token has expired.", "invalid_token", {}};
  out = nats::encode(call_tag<call_id::kubernetes_authorize_proxy_user>{}, u);
  CHECK(out.status == 401);
  REQUIRE(e.ParseFromString(out.body));
  CHECK(e.message() == "Token has expired.");

  agents::runner_answer r;
  r.runner_id = 42;
  out = nats::encode(call_tag<call_id::ci_runner_info>{}, r);
  CHECK(out.status == 200);
  pb::RunnerInfoResponse rr;
  REQUIRE(rr.ParseFromString(out.body));
  CHECK(rr.runner_id() == 42);
}
