// The HTTP codec of the Zoekt indexer's calls (contract other-callers §6;
// EE lib/api/internal/search/zoekt.rb): Grape's coercion and validation of
// the declared parameters, the undeclared ones GitLab's Node model reads
// anyway, and the answers in GitLab's key order and JSON types. Every rule
// beyond the wire's types lives in actors/indexer/.
//
// The dotted names (`node.url`, `disk.all`, …) are literal keys: Grape
// looks a declared name up in the parameter hash as it is written and never
// splits it at dots (only Rack splits form keys, and only at brackets), so
// a JSON body {"node":{"url":…}} has no `node.url` and is answered
// "node.url is missing", as GitLab answers it. The indexer sends the dotted
// keys themselves, in JSON or as query parameters.

#include "edges/http/codec.hpp"
#include "edges/http/grape_params.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::http {

namespace {

using ordered = nlohmann::ordered_json;
using namespace grape;

// -- decoding ------------------------------------------------------------------

// A required String: null is nil, which GitLab's node validation then
// refuses like "" (both leave a blank URL or name): "" says so.
std::string required_text(const json& params, const char* name,
                          grape_errors& errors) {
  return text_param(params, name, name, true, errors).value_or("");
}

// A required Integer: null and "" pass `requires` and coerce to nil, which
// GitLab's node validation refuses; `blank` records that.
std::int64_t required_integer(const json& params, const char* name,
                              bool& blank, grape_errors& errors) {
  auto* v = member(params, name);
  auto out = integer_param(params, name, name, true, errors);
  if (v && !out && integer_of(*v).ok)
    blank = true;
  return out.value_or(0);
}

// ActiveSupport's present?: nil, false, "" and blank strings, empty arrays
// and hashes are not.
bool present(const json* v) {
  if (!v || v->is_null() || (v->is_boolean() && !v->get<bool>()))
    return false;
  if (v->is_string())
    return v->get_ref<const std::string&>().find_first_not_of(" \t\r\n\v\f")
           != std::string::npos;
  if (v->is_array() || v->is_object())
    return !v->empty();
  return true;
}

// An undeclared integer GitLab reads as `params[name].to_i if present?`:
// strings as Ruby's to_i reads them, numbers truncated. Values to_i would
// raise on (true, arrays, hashes: a 500 at GitLab) are left out.
std::optional<std::int64_t> lenient_integer(const json& params,
                                            const char* name) {
  auto* v = member(params, name);
  if (!present(v))
    return std::nullopt;
  if (v->is_string())
    return ruby_to_i(v->get_ref<const std::string&>());
  if (v->is_number()) {
    auto n = integer_of(*v);
    if (n.ok)
      return n.value;
  }
  return std::nullopt;
}

// An undeclared string GitLab stores as sent: strings as they are, numbers
// as their text; anything else left out.
std::optional<std::string> lenient_text(const json& params, const char* name) {
  auto* v = member(params, name);
  if (!v || v->is_null() || v->is_array() || v->is_object())
    return std::nullopt;
  return v->is_string() ? v->get<std::string>() : dump(*v);
}

// Array[String]: an array whose elements are strings (numbers and booleans
// as their text; null elements dropped, as the other codecs' arrays do), ""
// an empty array, null nil; anything else invalid.
std::optional<std::vector<std::string>>
strings_param(const json& params, const char* name, grape_errors& errors) {
  auto* v = member(params, name);
  if (!v || v->is_null())
    return std::nullopt;
  if (v->is_string() && v->get_ref<const std::string&>().empty())
    return std::vector<std::string>{};
  if (!v->is_array()) {
    errors.add(name, "is invalid");
    return std::nullopt;
  }
  std::vector<std::string> out;
  out.reserve(v->size());
  for (auto& item : *v) {
    auto text = string_of(item);
    if (!text.ok) {
      errors.add(name, "is invalid");
      return std::nullopt;
    }
    if (text.value)
      out.push_back(std::move(*text.value));
  }
  return out;
}

// process_health (18.x heartbeat, optional Hash): indexer and webserver
// hashes of Integer process metrics. Validated as Grape does, not kept:
// GitLab's node does not store it.
void check_process_health(const json& params, grape_errors& errors) {
  auto* health = hash_param(params, "process_health", "process_health", errors);
  if (!health)
    return;
  static const char* const metrics[] = {
    "mmap_current", "mmap_max",   "restarts_1m",   "restarts_5m",
    "restarts_15m", "rss_bytes",  "uptime_seconds"};
  for (const char* process : {"indexer", "webserver"}) {
    auto outer = nested("process_health", process);
    auto* p = hash_param(*health, process, outer, errors);
    if (!p)
      continue;
    for (const char* metric : metrics)
      integer_param(*p, metric, nested(outer, metric), false, errors);
    if (std::string_view{process} == "webserver")
      integer_param(*p, "shards_loaded", nested(outer, "shards_loaded"), false,
                    errors);
  }
}

// What both node calls share, in each call's declaration order: heartbeat
// declares node.url, disk.all, disk.used, node.name, node.services,
// node.schema_version, node.knowledge_graph_schema_version, disk.indexed,
// process_health; tasks node.url, disk.all, disk.used, disk.free,
// node.name, disk.indexed.
indexer::node_report node_report_of(const request_view& in, bool tasks_call,
                                    grape_errors& errors) {
  const json& p = in.params;
  indexer::node_report r;
  // The route's :uuid; it wins over a uuid parameter, as Grape's route
  // arguments do.
  r.uuid = in.capture(0);
  r.url = required_text(p, "node.url", errors);
  r.disk_all = required_integer(p, "disk.all", r.disk_blank, errors);
  r.disk_used = required_integer(p, "disk.used", r.disk_blank, errors);
  if (tasks_call) {
    // Required in that version, read by nothing since.
    bool unused_blank = false;
    r.disk_free = required_integer(p, "disk.free", unused_blank, errors);
    if (unused_blank)
      r.disk_free.reset();
  }
  r.name = required_text(p, "node.name", errors);
  if (!tasks_call) {
    r.services = strings_param(p, "node.services", errors);
    r.schema_version = integer_param(p, "node.schema_version",
                                     "node.schema_version", false, errors);
    integer_param(p, "node.knowledge_graph_schema_version",
                  "node.knowledge_graph_schema_version", false, errors);
  } else {
    // Undeclared before 18.0; the node read it as ActiveRecord casts it.
    r.schema_version = lenient_integer(p, "node.schema_version");
  }
  r.disk_indexed
    = integer_param(p, "disk.indexed", "disk.indexed", false, errors);
  if (!tasks_call)
    check_process_health(p, errors);
  // Undeclared, read by find_or_initialize_by_task_request: search_url
  // with `||` (any value but null counts, "" too), the integers with
  // `.to_i if present?`, version `if present?`.
  if (auto* v = member(p, "node.search_url"); v && !v->is_null())
    r.search_url = lenient_text(p, "node.search_url").value_or("");
  r.task_count = lenient_integer(p, "node.task_count");
  r.concurrency = lenient_integer(p, "node.concurrency");
  if (present(member(p, "node.version")))
    r.version = lenient_text(p, "node.version");
  return r;
}

// payload.task_id: an integer, or a string holding one (ActiveRecord casts
// it when finding the task).
std::optional<std::int64_t> integer_in(const json* v) {
  if (!v)
    return std::nullopt;
  if (v->is_string()) {
    const auto& text = v->get_ref<const std::string&>();
    if (text.empty())
      return std::nullopt;
    return ruby_integer(text);
  }
  if (v->is_number_integer()) {
    auto n = integer_of(*v);
    return n.ok ? n.value : std::nullopt;
  }
  return std::nullopt;
}

// A JSON parameter (required or not), coerced: the parsed value, null when
// nil; "is missing" / "is invalid" as Grape says them.
json json_param(const json& params, const char* name, bool required,
                grape_errors& errors) {
  auto* v = member(params, name);
  if (!v) {
    if (required)
      errors.add(name, "is missing");
    return nullptr;
  }
  auto text = json_of(*v);
  if (!text.ok) {
    errors.add(name, "is invalid");
    return nullptr;
  }
  // json_of wrote it from a value we hold or parsed: it parses.
  return json::parse(*text.value, nullptr, false);
}

// -- answers ---------------------------------------------------------------------

reply json_reply(int status, const ordered& body) {
  return reply{status,
               {},
               "application/json",
               body.dump(-1, ' ', false, ordered::error_handler_t::replace)};
}

reply unprocessable() {
  return json_reply(422, ordered{{"message", "422 Unprocessable Entity"}});
}

// One task as TaskSerializerService writes it: an index payload is the
// Gitaly connection (left out for a missing repository) merged with the
// rest, so GitalyConnectionInfo comes first; Force only for a forced index.
ordered task_json(const indexer::task_view& t) {
  ordered payload = ordered::object();
  if (t.name == "delete") {
    payload["RepoId"] = t.repo_id;
    payload["Callback"]
      = {{"name", "delete"},
         {"payload", {{"task_id", t.task_id}, {"service_type", "zoekt"}}}};
    return ordered{{"name", t.name}, {"payload", std::move(payload)}};
  }
  if (t.gitaly)
    payload["GitalyConnectionInfo"] = {{"Address", t.gitaly->address},
                                       {"Token", t.gitaly->token},
                                       {"Storage", t.gitaly->storage},
                                       {"Path", t.gitaly->path}};
  payload["Callback"]
    = {{"name", "index"},
       {"payload",
        {{"task_id", t.task_id}, {"schema_version", t.schema_version}}}};
  payload["RepoId"] = t.repo_id;
  payload["FileSizeLimit"] = t.file_size_limit;
  payload["Parallelism"] = t.parallelism;
  payload["Timeout"] = t.timeout;
  payload["FileCountLimit"] = t.file_count_limit;
  payload["MissingRepo"] = t.missing_repo;
  ordered metadata = ordered::object();
  for (auto& [key, value] : t.metadata)
    metadata[key] = value;
  payload["Metadata"] = std::move(metadata);
  if (t.force)
    payload["Force"] = true;
  return ordered{{"name", t.name}, {"payload", std::move(payload)}};
}

ordered tasks_json(const std::vector<indexer::task_view>& tasks) {
  ordered out = ordered::array();
  for (auto& t : tasks)
    out.push_back(task_json(t));
  return out;
}

} // namespace

// -- heartbeat (18.0+) -------------------------------------------------------------

caf::expected<indexer::heartbeat_query>
decode(call_tag<call_id::zoekt_heartbeat>, const request_view& in) {
  grape_errors errors;
  indexer::heartbeat_query q;
  q.node = node_report_of(in, false, errors);
  return errors.result(std::move(q));
}

reply encode(call_tag<call_id::zoekt_heartbeat>,
             const indexer::heartbeat_answer& a) {
  if (a.invalid_node)
    return unprocessable();
  return json_reply(200, ordered{{"id", a.node_id},
                                 {"truncate", a.truncate},
                                 {"tasks", tasks_json(a.tasks)},
                                 {"pull_frequency", a.pull_frequency},
                                 {"stop_indexing", a.stop_indexing}});
}

// -- tasks (16.5–17.x) -------------------------------------------------------------

caf::expected<indexer::tasks_query> decode(call_tag<call_id::zoekt_tasks>,
                                           const request_view& in) {
  grape_errors errors;
  indexer::tasks_query q;
  q.node = node_report_of(in, true, errors);
  return errors.result(std::move(q));
}

// The body of the endpoint's last version (17.8–17.11) with its feature
// flags as a self-managed GitLab has them: optimized_performance off (the
// flag's default), stop_indexing sent. The earlier versions sent fewer keys;
// the indexer ignores keys it does not know and reads a missing one as
// false, so the later shape serves the older indexers too, and an indexer
// of that era learns that a new node should truncate.
reply encode(call_tag<call_id::zoekt_tasks>,
             const indexer::heartbeat_answer& a) {
  if (a.invalid_node)
    return unprocessable();
  return json_reply(200, ordered{{"id", a.node_id},
                                 {"truncate", a.truncate},
                                 {"tasks", tasks_json(a.tasks)},
                                 {"optimized_performance", false},
                                 {"pull_frequency", a.pull_frequency},
                                 {"stop_indexing", a.stop_indexing}});
}

// -- callback ------------------------------------------------------------------------

// requires name (String), success (Boolean), payload (JSON); optional
// error (String), additional_payload (JSON). A null or "" success passes
// `requires` and is nil, which GitLab treats as a failure.
caf::expected<indexer::callback_query>
decode(call_tag<call_id::zoekt_callback>, const request_view& in) {
  const json& p = in.params;
  grape_errors errors;
  indexer::callback_query q;
  q.uuid = in.capture(0);
  q.name = text_param(p, "name", "name", true, errors).value_or("");
  if (auto* v = member(p, "success")) {
    auto b = boolean_of(*v);
    if (b.ok)
      q.success = b.value.value_or(false);
    else
      errors.add("success", "is invalid");
  } else {
    errors.add("success", "is missing");
  }
  q.error = text_param(p, "error", "error", false, errors);
  auto payload = json_param(p, "payload", true, errors);
  auto additional = json_param(p, "additional_payload", false, errors);
  // GitLab digs task_id out of a hash payload (an array has none).
  if (payload.is_object())
    q.task_id = integer_in(member(payload, "task_id"));
  if (additional.is_object())
    if (auto* stats = member(additional, "repo_stats");
        stats && stats->is_object()) {
      q.size_in_bytes = integer_in(member(*stats, "size_in_bytes"));
      q.index_file_count = integer_in(member(*stats, "index_file_count"));
    }
  return errors.result(std::move(q));
}

reply encode(call_tag<call_id::zoekt_callback>,
             const indexer::callback_answer& a) {
  if (!a.node_found)
    return unprocessable();
  return json_reply(202, ordered{{"message", "202 Accepted"}});
}

} // namespace gatehouse::http
