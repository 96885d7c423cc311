#include "edges/nats/push_feed.hpp"

#include "edges/nats/event_feed.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <set>
#include <utility>

namespace gatehouse::nats {

namespace {

/// Adds the strings of `j[key]` to `out`; false when it is there and not an
/// array of strings.
bool add_paths(const nlohmann::json& commit, const char* key,
               std::set<std::string>& out) {
  auto it = commit.find(key);
  if (it == commit.end())
    return true;
  if (!it->is_array())
    return false;
  for (const auto& path : *it) {
    if (!path.is_string())
      return false;
    out.insert(path.get<std::string>());
  }
  return true;
}

} // namespace

// -- parsing --------------------------------------------------------------------

std::optional<agents::pushed_paths>
parse_pushed_paths(std::string_view event_id, std::string_view body,
                   bool commits_unavailable, std::string& why) {
  if (event_id.empty() || event_id.size() > 64) {
    why = "Nats-Msg-Id is missing or longer than 64 characters";
    return std::nullopt;
  }
  auto doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    why = "body is not a JSON object";
    return std::nullopt;
  }
  auto text = [&](const char* key, std::string& out) {
    auto it = doc.find(key);
    if (it == doc.end() || !it->is_string()) {
      why = std::string{key} + " is missing or not a string";
      return false;
    }
    out = it->get<std::string>();
    return true;
  };
  agents::pushed_paths out;
  out.event_id = std::string{event_id};
  if (!text("ref", out.ref) || !text("before", out.before)
      || !text("after", out.after))
    return std::nullopt;
  auto project = doc.find("project_id");
  if (project == doc.end() || !project->is_number_integer()) {
    why = "project_id is missing or not an integer";
    return std::nullopt;
  }
  out.project_id = project->get<std::int64_t>();
  auto commits = doc.find("commits");
  if (commits == doc.end() || !commits->is_array()) {
    why = "commits is missing or not an array";
    return std::nullopt;
  }
  auto total = doc.find("total_commits_count");
  if (total == doc.end() || !total->is_number_integer()
      || total->get<std::int64_t>() < 0) {
    why = "total_commits_count is missing or not a count";
    return std::nullopt;
  }
  std::set<std::string> paths;
  for (const auto& commit : *commits) {
    if (!commit.is_object() || !add_paths(commit, "added", paths)
        || !add_paths(commit, "modified", paths)
        || !add_paths(commit, "removed", paths)) {
      why = "a commit's added, modified or removed is not a list of paths";
      return std::nullopt;
    }
  }
  out.paths.assign(paths.begin(), paths.end());
  out.complete = !commits_unavailable
                 && total->get<std::int64_t>()
                      <= static_cast<std::int64_t>(commits->size());
  return out;
}

// -- the feed -------------------------------------------------------------------

namespace {

event_feed_settings engine_settings(const push_feed_settings& s) {
  event_feed_settings out;
  out.stream = s.stream;
  out.durable = s.durable;
  out.description
    = "gatehouse agent registry: push events of agent configurations";
  out.filter_subject = s.filter_subject;
  out.batch = s.batch;
  out.max_body = s.max_body;
  out.fetch_wait = s.fetch_wait;
  out.api_timeout = s.api_timeout;
  out.request_timeout = s.request_timeout;
  out.ack_wait = s.ack_wait;
  out.retry_delay = s.retry_delay;
  out.max_retry_delay = s.max_retry_delay;
  out.min_backoff = s.min_backoff;
  out.max_backoff = s.max_backoff;
  out.consumer_check_interval = s.consumer_check_interval;
  return out;
}

} // namespace

struct push_feed::impl {
  impl(const push_feed_settings& settings, caf::actor_system& system,
       agent_registry_actor registry, const connection& nats)
    : engine(engine_settings(settings), {"push feed", "the agent registry"},
             system, nats,
             [this, registry = std::move(registry)](const event_message& msg,
                                                    std::string& why) {
               return request(registry, msg, why);
             }) {
    // nop
  }

  /// Notices of the events the feed acknowledged; before engine, which
  /// counts into it from its thread.
  std::atomic<std::uint64_t> notices{0};
  event_feed engine;

  event_request request(const agent_registry_actor& registry,
                        const event_message& msg, std::string& why) {
    auto paths = parse_pushed_paths(
      msg.event_id, msg.body,
      message_header(msg.raw, "Gatehouse-Commits").value_or("")
        == "unavailable",
      why);
    if (!paths)
      return {};
    return [this, registry, paths = std::move(*paths)](
             caf::event_based_actor* self, std::chrono::milliseconds timeout,
             const std::shared_ptr<event_reply>& reply) {
      self->request(registry, timeout, paths)
        .then(
          [this, reply](const agents::pushed_paths_done& done) {
            auto n = static_cast<std::uint64_t>(std::max(done.notices, 0));
            // Counted by the feed's thread, and only when it takes the
            // answer; the feed outlives every answer it takes.
            reply->answered([this, n] { notices += n; });
          },
          [reply, self](const caf::error& err) {
            reply->failed(self->system().render(err));
          });
    };
  }
};

push_feed::push_feed(push_feed_settings settings, caf::actor_system& system,
                     agent_registry_actor registry, const connection& nats)
  : impl_(std::make_unique<impl>(settings, system, std::move(registry),
                                 nats)) {
  // nop
}

push_feed::~push_feed() {
  stop();
}

void push_feed::start() {
  impl_->engine.start();
}

void push_feed::stop() {
  impl_->engine.stop();
}

push_feed_stats push_feed::stats() const {
  auto st = impl_->engine.stats();
  push_feed_stats out;
  out.handled = st.handled;
  out.notices = impl_->notices;
  out.retried = st.retried;
  out.terminated = st.terminated;
  out.nats_failures = st.nats_failures;
  out.consuming = st.consuming;
  return out;
}

} // namespace gatehouse::nats
