#include "edges/nats/index_feed.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <utility>

namespace gatehouse::nats {

namespace {

/// 40 (SHA-1) or 64 (SHA-256) lower-case hex digits (the schema's
/// object_id).
bool is_object_id(const std::string& s) {
  return (s.size() == 40 || s.size() == 64)
         && std::all_of(s.begin(), s.end(), [](char c) {
              return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
            });
}

/// A correlation id worth passing on: short printable ASCII, so that the
/// INDEXER can log it as it is.
bool is_printable_id(std::string_view s) {
  return s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
           return c > ' ' && c < 0x7f;
         });
}

} // namespace

// -- parsing --------------------------------------------------------------------

std::optional<indexer::pushed_ref>
parse_pushed_ref(std::string_view event_id, std::string_view body,
                 std::string_view correlation_id, std::string& why) {
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
  indexer::pushed_ref out;
  out.event_id = std::string{event_id};
  if (!text("ref", out.ref) || !text("before", out.before)
      || !text("after", out.after))
    return std::nullopt;
  // The filter admits branch pushes only; a tag here is a mislabelled event.
  if (out.ref.size() <= 11 || out.ref.compare(0, 11, "refs/heads/") != 0) {
    why = "ref is not a branch (refs/heads/…)";
    return std::nullopt;
  }
  if (!is_object_id(out.before) || !is_object_id(out.after)) {
    why = "before or after is not an object id";
    return std::nullopt;
  }
  auto project = doc.find("project_id");
  if (project == doc.end() || !project->is_number_integer()
      || project->get<std::int64_t>() <= 0) {
    why = "project_id is missing or not a positive integer";
    return std::nullopt;
  }
  out.project_id = project->get<std::int64_t>();
  // A malformed correlation id costs only the correlation, not the event.
  if (is_printable_id(correlation_id))
    out.correlation_id = std::string{correlation_id};
  return out;
}

// -- the feed -------------------------------------------------------------------

struct index_feed::impl {
  impl(index_feed_settings settings, caf::actor_system& system,
       indexer_actor indexer, const connection& nats)
    : engine(std::move(settings), {"index feed", "the indexer"}, system, nats,
             [this, indexer = std::move(indexer)](const event_message& msg,
                                                  std::string& why) {
               return request(indexer, msg, why);
             }) {
    // nop
  }

  // What the acknowledged events caused; declared before the engine, whose
  // thread counts into them (only for answers it takes, while it runs).
  std::atomic<std::uint64_t> zoekt_tasks{0};
  std::atomic<std::uint64_t> elastic_requests{0};
  event_feed engine;

  event_request request(const indexer_actor& indexer, const event_message& msg,
                        std::string& why) {
    auto ref = parse_pushed_ref(
      msg.event_id, msg.body,
      message_header(msg.raw, correlation_header).value_or(""), why);
    if (!ref)
      return {};
    return [this, indexer, ref = std::move(*ref)](
             caf::event_based_actor* self, std::chrono::milliseconds timeout,
             const std::shared_ptr<event_reply>& reply) {
      self->request(indexer, timeout, ref)
        .then(
          [this, reply](const indexer::pushed_ref_done& done) {
            auto tasks = static_cast<std::uint64_t>(std::max(done.zoekt_tasks, 0));
            auto requests
              = static_cast<std::uint64_t>(std::max(done.elastic_requests, 0));
            reply->answered([this, tasks, requests] {
              zoekt_tasks += tasks;
              elastic_requests += requests;
            });
          },
          [reply, self](const caf::error& err) {
            reply->failed(self->system().render(err));
          });
    };
  }
};

index_feed::index_feed(index_feed_settings settings, caf::actor_system& system,
                       indexer_actor indexer, const connection& nats)
  : impl_(std::make_unique<impl>(std::move(settings), system,
                                 std::move(indexer), nats)) {
  // nop
}

index_feed::~index_feed() {
  stop();
}

void index_feed::start() {
  impl_->engine.start();
}

void index_feed::stop() {
  impl_->engine.stop();
}

index_feed_stats index_feed::stats() const {
  auto st = impl_->engine.stats();
  index_feed_stats out;
  out.handled = st.handled;
  out.zoekt_tasks = impl_->zoekt_tasks;
  out.elastic_requests = impl_->elastic_requests;
  out.retried = st.retried;
  out.terminated = st.terminated;
  out.nats_failures = st.nats_failures;
  out.consuming = st.consuming;
  return out;
}

} // namespace gatehouse::nats
