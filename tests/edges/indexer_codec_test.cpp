// The codecs of the Zoekt indexer's calls without a server: Grape's coercion
// and texts, the undeclared parameters GitLab reads leniently, the :uuid
// capture, and each answer's exact body, JSON types and status, over HTTP
// and NATS (the same texts, the same fields).

#include "edges/http/codec.hpp"
#include "edges/http/params.hpp"
#include "edges/nats/internal_codec.hpp"

#include "gatehouse/internal/v1/error.pb.h"
#include "gatehouse/internal/v1/indexer.pb.h"

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>

#include <regex>
#include <string>
#include <utility>
#include <vector>

using namespace gatehouse;
using json = nlohmann::json;
namespace pb = gatehouse::internal::v1;

namespace {

constexpr auto heartbeat = call_id::zoekt_heartbeat;
constexpr auto tasks = call_id::zoekt_tasks;
constexpr auto callback = call_id::zoekt_callback;

const std::string uuid = "3869fe21-36d1-4612-9676-0b783ef2dcd7";

// Decodes `params` with the HTTP codec of call `Id`, the request's path
// matched as the server matches the route (its :uuid the first capture).
template <call_id Id>
auto http_decode(const json& params, const std::string& node = uuid) {
  httplib::Request req;
  std::string suffix = Id == heartbeat ? "heartbeat"
                       : Id == tasks   ? "tasks"
                                       : "callback";
  req.path = "/api/v4/internal/search/zoekt/" + node + "/" + suffix;
  std::regex route{"/api/v4/internal/search/zoekt/([^/]+)/" + suffix};
  REQUIRE(std::regex_match(req.path, req.matches, route));
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

std::string error_text(const nats::wire_reply& reply) {
  pb::Error e;
  REQUIRE(e.ParseFromString(reply.body));
  return e.message();
}

// A complete report as the 18.x indexer sends it (JSON).
json node_params() {
  return {{"node.url", "http://zoekt-1:6065"},
          {"node.search_url", "http://zoekt-1:6070"},
          {"node.name", "zoekt-1"},
          {"node.services", json::array({"zoekt", "knowledge_graph"})},
          {"node.schema_version", 2531},
          {"node.task_count", 3},
          {"node.concurrency", 8},
          {"node.version", "v1.4.0"},
          {"disk.all", 994662584320},
          {"disk.used", 532673712128},
          {"disk.indexed", 2416879},
          {"disk.free", 461988872192}};
}

json without(json p, std::initializer_list<const char*> names) {
  for (const char* n : names)
    p.erase(n);
  return p;
}

json with(json p, const char* name, json value) {
  p[name] = std::move(value);
  return p;
}

pb::ZoektNodeRequest node_request() {
  pb::ZoektNodeRequest r;
  r.set_uuid(uuid);
  r.set_node_url("http://zoekt-1:6065");
  r.set_node_search_url("http://zoekt-1:6070");
  r.set_node_name("zoekt-1");
  r.add_node_services("zoekt");
  r.add_node_services("knowledge_graph");
  r.set_node_schema_version(2531);
  r.set_node_task_count(3);
  r.set_node_concurrency(8);
  r.set_node_version("v1.4.0");
  r.set_disk_all(994662584320);
  r.set_disk_used(532673712128);
  r.set_disk_indexed(2416879);
  r.set_disk_free(461988872192);
  return r;
}

// An answer with one task of each shape: an index task with its Gitaly
// connection, a forced index of a missing repository, a delete.
indexer::heartbeat_answer answer() {
  indexer::heartbeat_answer a;
  a.node_id = 7;
  a.truncate = true;
  a.pull_frequency = "10s";
  a.stop_indexing = false;
  indexer::task_view index;
  index.name = "index";
  index.task_id = 101;
  index.repo_id = 10;
  index.gitaly
    = indexer::gitaly_connection{"tcp://gitaly:8075", "secret", "default",
                                 "@hashed/6b/86/widgets.git"};
  index.schema_version = 2531;
  index.file_size_limit = 1048576;
  index.parallelism = 1;
  index.timeout = "5400s";
  index.file_count_limit = 500000;
  index.metadata = {{"project_id", "10"},       {"traversal_ids", "5-"},
                    {"visibility_level", "0"},  {"repository_access_level", "20"},
                    {"forked", "f"},            {"archived", "f"}};
  indexer::task_view forced = index;
  forced.task_id = 102;
  forced.repo_id = 11;
  forced.gitaly.reset();
  forced.missing_repo = true;
  forced.force = true;
  forced.metadata = {{"project_id", "11"}};
  indexer::task_view remove;
  remove.name = "delete";
  remove.task_id = 103;
  remove.repo_id = 12;
  a.tasks = {index, forced, remove};
  return a;
}

const std::string index_task_json
  = R"({"name":"index","payload":{"GitalyConnectionInfo":)"
    R"({"Address":"tcp://gitaly:8075","Token":"secret","Storage":"default",)"
    R"("Path":"@hashed/6b/86/widgets.git"},)"
    R"("Callback":{"name":"index","payload":{"task_id":101,)"
    R"("schema_version":2531}},"RepoId":10,"FileSizeLimit":1048576,)"
    R"("Parallelism":1,"Timeout":"5400s","FileCountLimit":500000,)"
    R"("MissingRepo":false,"Metadata":{"project_id":"10",)"
    R"("traversal_ids":"5-","visibility_level":"0",)"
    R"("repository_access_level":"20","forked":"f","archived":"f"}}})";

const std::string forced_task_json
  = R"({"name":"index","payload":{)"
    R"("Callback":{"name":"index","payload":{"task_id":102,)"
    R"("schema_version":2531}},"RepoId":11,"FileSizeLimit":1048576,)"
    R"("Parallelism":1,"Timeout":"5400s","FileCountLimit":500000,)"
    R"("MissingRepo":true,"Metadata":{"project_id":"11"},"Force":true}})";

const std::string delete_task_json
  = R"({"name":"delete","payload":{"RepoId":12,"Callback":{"name":"delete",)"
    R"("payload":{"task_id":103,"service_type":"zoekt"}}}})";

// Whether the NATS answer's fields (protobuf's JSON, field names kept,
// int64 as strings) hold every HTTP key with its value; keys the HTTP body
// leaves out must be at their defaults over NATS.
bool same_fields(const json& http, const json& nats) {
  if (http.is_object()) {
    if (!nats.is_object())
      return false;
    for (auto& [k, v] : http.items())
      if (!nats.contains(k) || !same_fields(v, nats[k]))
        return false;
    for (auto& [k, v] : nats.items())
      if (!http.contains(k)
          && !(v == false || v == 0 || v == "" || v == "0" || v.empty()))
        return false;
    return true;
  }
  if (http.is_array()) {
    if (!nats.is_array() || nats.size() != http.size())
      return false;
    for (std::size_t i = 0; i < http.size(); ++i)
      if (!same_fields(http[i], nats[i]))
        return false;
    return true;
  }
  if (http.is_number_integer() && nats.is_string())
    return std::to_string(http.get<std::int64_t>()) == nats.get<std::string>();
  return http == nats;
}

template <class Message>
json nats_json(const std::string& body) {
  Message m;
  REQUIRE(m.ParseFromString(body));
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string text;
  REQUIRE(google::protobuf::util::MessageToJsonString(m, &text, opts).ok());
  return json::parse(text);
}

} // namespace

// -- heartbeat and tasks: decoding ----------------------------------------------

TEST_CASE("heartbeat: every parameter mapped, :uuid from the path",
          "[indexer][codec]") {
  auto q = http_decode<heartbeat>(with(node_params(), "uuid", "other"));
  REQUIRE(q);
  const auto& n = q->node;
  // The route's capture wins over a parameter of the same name.
  CHECK(n.uuid == uuid);
  CHECK(n.url == "http://zoekt-1:6065");
  CHECK(n.search_url == "http://zoekt-1:6070");
  CHECK(n.name == "zoekt-1");
  CHECK(n.services == std::vector<std::string>{"zoekt", "knowledge_graph"});
  CHECK(n.schema_version == 2531);
  CHECK(n.task_count == 3);
  CHECK(n.concurrency == 8);
  CHECK(n.version == "v1.4.0");
  CHECK(n.disk_all == 994662584320);
  CHECK(n.disk_used == 532673712128);
  CHECK(n.disk_indexed == 2416879);
  CHECK_FALSE(n.disk_blank);
  // heartbeat declares no disk.free, and GitLab reads none.
  CHECK(n.disk_free == std::nullopt);
}

TEST_CASE("heartbeat: the optional and undeclared ones may be left out",
          "[indexer][codec]") {
  auto q = http_decode<heartbeat>(json{{"node.url", "http://z:6065"},
                                       {"node.name", "z"},
                                       {"disk.all", 10},
                                       {"disk.used", 1}});
  REQUIRE(q);
  const auto& n = q->node;
  CHECK(n.search_url == std::nullopt);
  CHECK(n.services == std::nullopt);
  CHECK(n.schema_version == std::nullopt);
  CHECK(n.task_count == std::nullopt);
  CHECK(n.concurrency == std::nullopt);
  CHECK(n.version == std::nullopt);
  CHECK(n.disk_indexed == std::nullopt);
}

TEST_CASE("heartbeat: query strings and forms, every value a string",
          "[indexer][codec]") {
  std::string error;
  auto params = http::merge_params(
    "node.url=http%3A%2F%2Fz%3A6065&node.name=z&disk.all=12&disk.used=3"
    "&disk.indexed=&node.schema_version=7&node.task_count=4"
    "&node.services[]=zoekt",
    "", "", error);
  REQUIRE(params);
  auto q = http_decode<heartbeat>(*params);
  REQUIRE(q);
  CHECK(q->node.url == "http://z:6065");
  CHECK(q->node.disk_all == 12);
  CHECK(q->node.disk_used == 3);
  // "" is nil for an Integer.
  CHECK(q->node.disk_indexed == std::nullopt);
  CHECK(q->node.schema_version == 7);
  CHECK(q->node.task_count == 4);
  CHECK(q->node.services == std::vector<std::string>{"zoekt"});
}

TEST_CASE("heartbeat: Grape's texts in declaration order", "[indexer][codec]") {
  CHECK(http_refusal<heartbeat>(json::object())
        == "node.url is missing, disk.all is missing, disk.used is missing, "
           "node.name is missing");
  CHECK(http_refusal<heartbeat>(without(node_params(), {"disk.used"}))
        == "disk.used is missing");
  CHECK(http_refusal<heartbeat>(
          with(without(node_params(), {"node.url"}), "disk.all", "x"))
        == "node.url is missing, disk.all is invalid");
  CHECK(http_refusal<heartbeat>(with(node_params(), "disk.used", "1.5"))
        == "disk.used is invalid");
  CHECK(http_refusal<heartbeat>(with(node_params(), "disk.all", true))
        == "disk.all is invalid");
  CHECK(http_refusal<heartbeat>(
          with(node_params(), "node.url", json::array({"a"})))
        == "node.url is invalid");
  CHECK(http_refusal<heartbeat>(with(node_params(), "node.name", json::object()))
        == "node.name is invalid");
  CHECK(http_refusal<heartbeat>(with(node_params(), "node.services", "zoekt"))
        == "node.services is invalid");
  CHECK(http_refusal<heartbeat>(
          with(node_params(), "node.services", json::array({json::array()})))
        == "node.services is invalid");
  CHECK(http_refusal<heartbeat>(with(node_params(), "node.schema_version", "v2"))
        == "node.schema_version is invalid");
  CHECK(http_refusal<heartbeat>(
          with(node_params(), "node.knowledge_graph_schema_version", "x"))
        == "node.knowledge_graph_schema_version is invalid");
  CHECK(http_refusal<heartbeat>(with(node_params(), "disk.indexed", "many"))
        == "disk.indexed is invalid");
  // Every text of one request, in order.
  CHECK(http_refusal<heartbeat>(json{{"disk.all", "x"},
                                     {"node.services", 1},
                                     {"disk.indexed", "y"}})
        == "node.url is missing, disk.all is invalid, disk.used is missing, "
           "node.name is missing, node.services is invalid, disk.indexed is "
           "invalid");
}

TEST_CASE("heartbeat: dotted names are literal keys, nesting is not read",
          "[indexer][codec]") {
  json nested = {{"node", {{"url", "http://z:6065"}, {"name", "z"}}},
                 {"disk", {{"all", 10}, {"used", 1}}}};
  CHECK(http_refusal<heartbeat>(nested)
        == "node.url is missing, disk.all is missing, disk.used is missing, "
           "node.name is missing");
}

TEST_CASE("heartbeat: Grape's Integer and String coercions",
          "[indexer][codec]") {
  auto node = [](const char* name, json value) {
    auto q = http_decode<heartbeat>(with(node_params(), name, std::move(value)));
    REQUIRE(q);
    return q->node;
  };
  CHECK(node("disk.all", "12").disk_all == 12);
  CHECK(node("disk.all", " 1_000 ").disk_all == 1000);
  CHECK(node("disk.all", 12.9).disk_all == 12);
  CHECK(node("disk.used", "-1").disk_used == -1);
  CHECK(node("node.url", 5).url == "5");
  CHECK(node("node.name", true).name == "true");
  CHECK(node("node.services", "").services == std::vector<std::string>{});
  CHECK(node("node.services", json::array({"zoekt", nullptr, 3})).services
        == std::vector<std::string>{"zoekt", "3"});
  CHECK(node("disk.indexed", nullptr).disk_indexed == std::nullopt);
  // A required one present but nil passes Grape; the node then fails
  // GitLab's validation (422), which the answer decides.
  auto blank_url = node("node.url", nullptr);
  CHECK(blank_url.url == "");
  CHECK_FALSE(blank_url.disk_blank);
  CHECK(node("node.name", "").name == "");
  auto blank_all = node("disk.all", nullptr);
  CHECK(blank_all.disk_blank);
  CHECK(blank_all.disk_all == 0);
  CHECK(node("disk.used", "").disk_blank);
  CHECK_FALSE(node("disk.used", 0).disk_blank);
}

TEST_CASE("heartbeat: the undeclared parameters, read as GitLab reads them",
          "[indexer][codec]") {
  auto node = [](const char* name, json value) {
    auto q = http_decode<heartbeat>(with(node_params(), name, std::move(value)));
    REQUIRE(q);
    return q->node;
  };
  // `.to_i if present?`
  CHECK(node("node.task_count", "12").task_count == 12);
  CHECK(node("node.task_count", "12abc").task_count == 12);
  CHECK(node("node.task_count", " -3").task_count == -3);
  CHECK(node("node.task_count", "1_0").task_count == 10);
  CHECK(node("node.task_count", "abc").task_count == 0);
  CHECK(node("node.task_count", "").task_count == std::nullopt);
  CHECK(node("node.task_count", "  ").task_count == std::nullopt);
  CHECK(node("node.task_count", nullptr).task_count == std::nullopt);
  CHECK(node("node.task_count", 5.7).task_count == 5);
  CHECK(node("node.task_count", "99999999999999999999").task_count
        == std::numeric_limits<std::int64_t>::max());
  // Ruby raises on these (a 500 at GitLab): left out here.
  CHECK(node("node.concurrency", true).concurrency == std::nullopt);
  CHECK(node("node.concurrency", json::array({1})).concurrency == std::nullopt);
  CHECK(node("node.concurrency", "16").concurrency == 16);
  // search_url: `params['node.search_url'] || url`: "" counts.
  CHECK(node("node.search_url", "").search_url == "");
  CHECK(node("node.search_url", nullptr).search_url == std::nullopt);
  // version `if present?`, stored as sent.
  CHECK(node("node.version", "").version == std::nullopt);
  CHECK(node("node.version", " ").version == std::nullopt);
  CHECK(node("node.version", 2).version == "2");
}

TEST_CASE("heartbeat: process_health is validated as Grape declares it",
          "[indexer][codec]") {
  CHECK(http_refusal<heartbeat>(with(node_params(), "process_health",
                                     {{"indexer", {{"rss_bytes", 1024}}},
                                      {"webserver", {{"shards_loaded", "3"}}}}))
        == "");
  CHECK(http_refusal<heartbeat>(with(node_params(), "process_health", "x"))
        == "process_health is invalid");
  CHECK(http_refusal<heartbeat>(
          with(node_params(), "process_health",
               {{"indexer", {{"rss_bytes", "lots"}}},
                {"webserver", {{"shards_loaded", "x"}, {"mmap_max", "y"}}}}))
        == "process_health[indexer][rss_bytes] is invalid, "
           "process_health[webserver][mmap_max] is invalid, "
           "process_health[webserver][shards_loaded] is invalid");
}

TEST_CASE("tasks: 16.5-17.x's parameters, disk.free required",
          "[indexer][codec]") {
  CHECK(http_refusal<tasks>(json::object())
        == "node.url is missing, disk.all is missing, disk.used is missing, "
           "disk.free is missing, node.name is missing");
  CHECK(http_refusal<tasks>(with(node_params(), "disk.free", "x"))
        == "disk.free is invalid");
  auto q = http_decode<tasks>(node_params());
  REQUIRE(q);
  CHECK(q->node.uuid == uuid);
  CHECK(q->node.disk_free == 461988872192);
  CHECK(q->node.disk_indexed == 2416879);
  // Undeclared then: read as ActiveRecord casts it, never refused.
  CHECK(q->node.services == std::nullopt);
  auto lenient
    = http_decode<tasks>(with(node_params(), "node.schema_version", "7x"));
  REQUIRE(lenient);
  CHECK(lenient->node.schema_version == 7);
  CHECK(http_refusal<tasks>(with(node_params(), "node.services", 5)) == "");
}

// -- heartbeat and tasks: answers ---------------------------------------------------

TEST_CASE("heartbeat answers GitLab's keys, order and JSON types",
          "[indexer][codec]") {
  auto out = http_encode<heartbeat>(answer());
  CHECK(out.status == 200);
  CHECK(out.content_type == "application/json");
  CHECK(out.body
        == R"({"id":7,"truncate":true,"tasks":[)" + index_task_json + ","
             + forced_task_json + "," + delete_task_json
             + R"(],"pull_frequency":"10s","stop_indexing":false})");
  indexer::heartbeat_answer empty;
  empty.node_id = 9;
  empty.pull_frequency = "500ms";
  empty.stop_indexing = true;
  CHECK(http_encode<heartbeat>(empty).body
        == R"({"id":9,"truncate":false,"tasks":[],"pull_frequency":"500ms",)"
           R"("stop_indexing":true})");
}

TEST_CASE("tasks answers the keys of its last version", "[indexer][codec]") {
  auto a = answer();
  a.tasks.resize(1);
  auto out = http_encode<tasks>(a);
  CHECK(out.status == 200);
  CHECK(out.body
        == R"({"id":7,"truncate":true,"tasks":[)" + index_task_json
             + R"(],"optimized_performance":false,"pull_frequency":"10s",)"
               R"("stop_indexing":false})");
}

TEST_CASE("an invalid node is 422 on both node calls", "[indexer][codec]") {
  indexer::heartbeat_answer invalid;
  invalid.invalid_node = true;
  for (auto out :
       {http_encode<heartbeat>(invalid), http_encode<tasks>(invalid)}) {
    CHECK(out.status == 422);
    CHECK(out.content_type == "application/json");
    CHECK(out.body == R"({"message":"422 Unprocessable Entity"})");
  }
}

// -- callback -------------------------------------------------------------------------

TEST_CASE("callback: fields, task_id and repo_stats", "[indexer][codec]") {
  auto q = http_decode<callback>(
    json{{"name", "index"},
         {"success", true},
         {"payload", {{"task_id", 101}, {"schema_version", 2531}}},
         {"additional_payload",
          {{"repo_stats", {{"index_file_count", 3}, {"size_in_bytes", 1024}}}}}});
  REQUIRE(q);
  CHECK(q->uuid == uuid);
  CHECK(q->name == "index");
  CHECK(q->success);
  CHECK(q->error == std::nullopt);
  CHECK(q->task_id == 101);
  CHECK(q->size_in_bytes == 1024);
  CHECK(q->index_file_count == 3);
  // Strings holding JSON and integers, and a failure with its text.
  q = http_decode<callback>(
    json{{"name", "delete"},
         {"success", "false"},
         {"error", "repository not found"},
         {"payload", R"({"task_id":"103","service_type":"zoekt"})"},
         {"additional_payload",
          R"({"repo_stats":{"size_in_bytes":"7","index_file_count":"x"}})"}});
  REQUIRE(q);
  CHECK_FALSE(q->success);
  CHECK(q->error == "repository not found");
  CHECK(q->task_id == 103);
  CHECK(q->size_in_bytes == 7);
  CHECK(q->index_file_count == std::nullopt);
}

TEST_CASE("callback: Grape's texts", "[indexer][codec]") {
  json ok = {{"name", "index"}, {"success", true}, {"payload", {{"k", "v"}}}};
  CHECK(http_refusal<callback>(ok) == "");
  CHECK(http_refusal<callback>(json::object())
        == "name is missing, success is missing, payload is missing");
  CHECK(http_refusal<callback>(json{{"foo", "bar"}})
        == "name is missing, success is missing, payload is missing");
  CHECK(http_refusal<callback>(with(ok, "name", json::array({"x"})))
        == "name is invalid");
  CHECK(http_refusal<callback>(with(ok, "success", "maybe"))
        == "success is invalid");
  CHECK(http_refusal<callback>(with(ok, "error", json::object()))
        == "error is invalid");
  CHECK(http_refusal<callback>(with(ok, "payload", "not json"))
        == "payload is invalid");
  CHECK(http_refusal<callback>(with(ok, "payload", 5)) == "payload is invalid");
  CHECK(http_refusal<callback>(with(ok, "payload", "[1]"))
        == "payload is invalid");
  CHECK(http_refusal<callback>(with(ok, "payload", "\"s\""))
        == "payload is invalid");
  CHECK(http_refusal<callback>(with(ok, "additional_payload", "{"))
        == "additional_payload is invalid");
  CHECK(http_refusal<callback>(json{{"success", "x"}, {"payload", 1}})
        == "name is missing, success is invalid, payload is invalid");
}

TEST_CASE("callback: Grape's Boolean", "[indexer][codec]") {
  auto success = [](json value) {
    auto q = http_decode<callback>(json{
      {"name", "index"}, {"success", std::move(value)}, {"payload", "{}"}});
    REQUIRE(q);
    return q->success;
  };
  for (json yes : {json(true), json(1), json("1"), json("true"), json("True"),
                   json("TRUE"), json("t"), json("T"), json("yes"), json("y"),
                   json("on"), json("ON")})
    CHECK(success(yes));
  for (json no : {json(false), json(0), json("0"), json("false"), json("f"),
                  json("no"), json("off"), json("N")})
    CHECK_FALSE(success(no));
  // nil (null, "") passes `requires` and is not a success.
  CHECK_FALSE(success(nullptr));
  CHECK_FALSE(success(""));
  for (json bad : {json("tRUE"), json(2), json(1.0), json("yes "),
                   json::array({true}), json::object()})
    CHECK(http_refusal<callback>(
            json{{"name", "i"}, {"success", bad}, {"payload", "{}"}})
          == "success is invalid");
}

TEST_CASE("callback: which payloads carry a task_id", "[indexer][codec]") {
  auto task_id = [](json payload) {
    auto q = http_decode<callback>(
      json{{"name", "index"}, {"success", true}, {"payload", payload}});
    REQUIRE(q);
    return q->task_id;
  };
  CHECK(task_id({{"task_id", 5}}) == 5);
  CHECK(task_id({{"task_id", "5"}}) == 5);
  CHECK(task_id({{"task_id", "5x"}}) == std::nullopt);
  CHECK(task_id({{"task_id", nullptr}}) == std::nullopt);
  CHECK(task_id({{"task_id", 5.5}}) == std::nullopt);
  CHECK(task_id(json::object()) == std::nullopt);
  // An array of objects is valid JSON for Grape, and has no task_id.
  CHECK(task_id(json::array({{{"task_id", 5}}})) == std::nullopt);
  CHECK(task_id(json::array()) == std::nullopt);
  // nil passes `requires`.
  CHECK(task_id(nullptr) == std::nullopt);
  CHECK(task_id("  ") == std::nullopt);
}

TEST_CASE("callback answers 202 or 422", "[indexer][codec]") {
  auto accepted = http_encode<callback>(indexer::callback_answer{true});
  CHECK(accepted.status == 202);
  CHECK(accepted.content_type == "application/json");
  CHECK(accepted.body == R"({"message":"202 Accepted"})");
  auto unknown = http_encode<callback>(indexer::callback_answer{false});
  CHECK(unknown.status == 422);
  CHECK(unknown.body == R"({"message":"422 Unprocessable Entity"})");
}

// -- NATS -------------------------------------------------------------------------

TEST_CASE("NATS: a node report maps as over HTTP", "[indexer][codec][nats]") {
  auto over_nats = nats_decode<heartbeat>(node_request());
  auto over_http = http_decode<heartbeat>(node_params());
  REQUIRE(over_nats);
  REQUIRE(over_http);
  const auto& n = over_nats->node;
  const auto& h = over_http->node;
  CHECK(n.uuid == h.uuid);
  CHECK(n.url == h.url);
  CHECK(n.search_url == h.search_url);
  CHECK(n.name == h.name);
  CHECK(n.services == h.services);
  CHECK(n.schema_version == h.schema_version);
  CHECK(n.task_count == h.task_count);
  CHECK(n.concurrency == h.concurrency);
  CHECK(n.version == h.version);
  CHECK(n.disk_all == h.disk_all);
  CHECK(n.disk_used == h.disk_used);
  CHECK(n.disk_indexed == h.disk_indexed);
  CHECK(n.disk_free == std::nullopt);
  CHECK_FALSE(n.disk_blank);
  auto t = nats_decode<tasks>(node_request());
  REQUIRE(t);
  CHECK(t->node.disk_free == 461988872192);
  CHECK(t->node.services == std::nullopt);
  // Present "" goes on as over HTTP; left out is left out.
  pb::ZoektNodeRequest sparse;
  sparse.set_uuid(uuid);
  sparse.set_node_url("");
  sparse.set_node_name("z");
  sparse.set_disk_all(1);
  sparse.set_disk_used(0);
  sparse.set_node_version("");
  auto s = nats_decode<heartbeat>(sparse);
  REQUIRE(s);
  CHECK(s->node.url == "");
  CHECK(s->node.search_url == std::nullopt);
  CHECK(s->node.services == std::nullopt);
  CHECK(s->node.version == std::nullopt);
  CHECK(s->node.task_count == std::nullopt);
}

TEST_CASE("NATS: the HTTP edge's validation texts", "[indexer][codec][nats]") {
  pb::ZoektNodeRequest empty;
  CHECK(nats_refusal<heartbeat>(empty) == http_refusal<heartbeat>(json::object()));
  CHECK(nats_refusal<tasks>(empty) == http_refusal<tasks>(json::object()));
  auto r = node_request();
  r.clear_disk_used();
  r.clear_node_name();
  CHECK(nats_refusal<heartbeat>(r)
        == http_refusal<heartbeat>(
          without(node_params(), {"disk.used", "node.name"})));
  r = node_request();
  r.clear_disk_free();
  CHECK(nats_refusal<tasks>(r)
        == http_refusal<tasks>(without(node_params(), {"disk.free"})));
  CHECK(nats_refusal<heartbeat>(r) == "");

  pb::ZoektCallbackRequest c;
  CHECK(nats_refusal<callback>(c) == http_refusal<callback>(json::object()));
  c.set_name("index");
  c.set_success(true);
  c.set_payload("not json");
  c.set_additional_payload("[1]");
  CHECK(nats_refusal<callback>(c)
        == http_refusal<callback>(json{{"name", "index"},
                                       {"success", true},
                                       {"payload", "not json"},
                                       {"additional_payload", "[1]"}}));
  CHECK(nats_refusal<callback>(c)
        == "payload is invalid, additional_payload is invalid");
}

TEST_CASE("NATS: a callback maps as over HTTP", "[indexer][codec][nats]") {
  pb::ZoektCallbackRequest c;
  c.set_uuid(uuid);
  c.set_name("index");
  c.set_success(false);
  c.set_error("timeout");
  c.set_payload(R"({"task_id":"101"})");
  c.set_additional_payload(
    R"({"repo_stats":{"size_in_bytes":1024,"index_file_count":3}})");
  auto q = nats_decode<callback>(c);
  REQUIRE(q);
  CHECK(q->uuid == uuid);
  CHECK(q->name == "index");
  CHECK_FALSE(q->success);
  CHECK(q->error == "timeout");
  CHECK(q->task_id == 101);
  CHECK(q->size_in_bytes == 1024);
  CHECK(q->index_file_count == 3);
  // A blank payload is nil, as over HTTP.
  c.set_payload(" ");
  c.clear_additional_payload();
  q = nats_decode<callback>(c);
  REQUIRE(q);
  CHECK(q->task_id == std::nullopt);
  CHECK(q->size_in_bytes == std::nullopt);
  c.set_payload(R"([{"task_id":1}])");
  q = nats_decode<callback>(c);
  REQUIRE(q);
  CHECK(q->task_id == std::nullopt);
}

TEST_CASE("NATS: malformed payloads are 400", "[indexer][codec][nats]") {
  const std::string garbage = "\xff\xff\xff";
  auto r = nats::decode(call_tag<heartbeat>{}, garbage);
  REQUIRE_FALSE(r);
  CHECK(error_text(nats::failure_reply(r.error()))
        == "400 Bad request - malformed ZoektNodeRequest payload");
  auto c = nats::decode(call_tag<callback>{}, garbage);
  REQUIRE_FALSE(c);
  CHECK(error_text(nats::failure_reply(c.error()))
        == "400 Bad request - malformed ZoektCallbackRequest payload");
}

TEST_CASE("NATS: answers carry the HTTP body's fields and status",
          "[indexer][codec][nats]") {
  auto a = answer();
  for (auto [http_reply, nats_reply] :
       {std::pair{http_encode<heartbeat>(a),
                  nats::encode(call_tag<heartbeat>{}, a)},
        std::pair{http_encode<tasks>(a), nats::encode(call_tag<tasks>{}, a)}}) {
    CHECK(nats_reply.status == http_reply.status);
    auto http_json = json::parse(http_reply.body);
    auto nats_fields = nats_json<pb::ZoektNodeResponse>(nats_reply.body);
    INFO("HTTP " << http_json.dump() << "\nNATS " << nats_fields.dump());
    CHECK(same_fields(http_json, nats_fields));
  }
  // Round trip: the index task's fields, typed.
  pb::ZoektNodeResponse r;
  REQUIRE(r.ParseFromString(nats::encode(call_tag<heartbeat>{}, a).body));
  CHECK(r.id() == 7);
  CHECK(r.truncate());
  REQUIRE(r.tasks_size() == 3);
  const auto& index = r.tasks(0).payload();
  CHECK(index.gitalyconnectioninfo().path() == "@hashed/6b/86/widgets.git");
  CHECK(index.callback().payload().schema_version() == 2531);
  CHECK_FALSE(index.callback().payload().has_service_type());
  CHECK_FALSE(index.has_force());
  CHECK(index.metadata().at("repository_access_level") == "20");
  CHECK(r.tasks(1).payload().force());
  CHECK_FALSE(r.tasks(1).payload().has_gitalyconnectioninfo());
  CHECK(r.tasks(2).payload().callback().payload().service_type() == "zoekt");

  indexer::heartbeat_answer invalid;
  invalid.invalid_node = true;
  for (auto reply : {nats::encode(call_tag<heartbeat>{}, invalid),
                     nats::encode(call_tag<tasks>{}, invalid)}) {
    CHECK(reply.status == 422);
    CHECK(error_text(reply) == "422 Unprocessable Entity");
  }
  auto accepted = nats::encode(call_tag<callback>{}, indexer::callback_answer{});
  CHECK(accepted.status == 202);
  CHECK(same_fields(json::parse(R"({"message":"202 Accepted"})"),
                    nats_json<pb::ZoektCallbackResponse>(accepted.body)));
  auto unknown
    = nats::encode(call_tag<callback>{}, indexer::callback_answer{false});
  CHECK(unknown.status == 422);
  CHECK(error_text(unknown) == "422 Unprocessable Entity");
}
