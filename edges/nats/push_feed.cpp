#include "edges/nats/push_feed.hpp"

#include "common/log.hpp"
#include "edges/nats/connection.hpp"
#include "edges/nats/handles.hpp"
#include "edges/nats/pull_consumer.hpp"
#include "edges/nats/status_text.hpp"

#include <caf/all.hpp>

#include <nats/nats.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

namespace gatehouse::nats {

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// The registry's answer to one event, shared between the feed's thread and
/// the short-lived actor that receives it: the actor may answer after the
/// feed gave up on it (stop, deadline), so neither owns it alone.
struct reply_slot {
  enum class state { waiting, answered, failed, cancelled };

  std::mutex mtx;
  std::condition_variable cv;
  state st = state::waiting;
  int notices = 0;
  std::string error;

  /// The first outcome wins; later ones (a late answer) are dropped.
  void finish(state s, int n, std::string err) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (st != state::waiting)
        return;
      st = s;
      notices = n;
      error = std::move(err);
    }
    cv.notify_all();
  }
};

std::optional<std::string> header(natsMsg* m, const char* name) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(m, name, &value) == NATS_OK && value)
    return std::string{value};
  return std::nullopt;
}

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

struct push_feed::impl {
  impl(push_feed_settings s, caf::actor_system& system,
       agent_registry_actor r, const connection& n)
    : settings(std::move(s)), sys(system), registry(std::move(r)), nats(n) {
    settings.ack_wait = std::max(settings.ack_wait, settings.request_timeout * 2);
    settings.batch = std::max(settings.batch, 1);
  }

  push_feed_settings settings;
  caf::actor_system& sys;
  const agent_registry_actor registry;
  const connection& nats;

  // -- lifecycle (guarded by mtx) -------------------------------------------
  std::mutex mtx;
  std::condition_variable cv;
  bool started = false;
  bool stopping = false;
  /// The registry answer the worker waits for, so stop() can cancel it.
  std::shared_ptr<reply_slot> awaited;
  std::thread worker;

  // -- worker thread only ---------------------------------------------------
  jetstream_ptr js;
  natsConnection* js_conn = nullptr;
  subscription_ptr sub;
  problem_log nats_problem{"push feed: jetstream not ready; retrying"};
  problem_log registry_problem{
    "push feed: the agent registry failed an event; it is redelivered"};

  // -- counters -------------------------------------------------------------
  std::atomic<std::uint64_t> handled{0};
  std::atomic<std::uint64_t> notices{0};
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> terminated{0};
  std::atomic<std::uint64_t> nats_failures{0};
  std::atomic<bool> consuming{false};

  bool stop_requested() {
    std::lock_guard<std::mutex> guard{mtx};
    return stopping;
  }

  /// Waits `d`; false when a stop was requested (at once or meanwhile).
  bool pause(milliseconds d) {
    std::unique_lock<std::mutex> lock{mtx};
    return !cv.wait_for(lock, d, [this] { return stopping; });
  }

  // -- NATS -----------------------------------------------------------------

  /// Binds `sub` to the durable (creating stream and durable as needed).
  /// False with `error`; `counts` says whether it was a failed round trip
  /// rather than a connection that is not up.
  bool bind(std::string& error, bool& counts) {
    counts = false;
    auto* nc = nats.raw();
    if (!nc || natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) {
      error = "nats not connected";
      return false;
    }
    counts = true;
    if (!js || js_conn != nc) {
      js.reset();
      jsOptions jo;
      jsOptions_Init(&jo);
      jo.Wait = static_cast<int64_t>(settings.api_timeout.count());
      natsStatus s = create(js, natsConnection_JetStream, nc, &jo);
      if (s != NATS_OK) {
        js.reset();
        error = "jetstream: " + status_text(s);
        return false;
      }
      js_conn = nc;
    }
    durable_consumer_config consumer;
    consumer.durable = settings.durable;
    consumer.description
      = "gatehouse agent registry: push events of agent configurations";
    consumer.filter_subject = settings.filter_subject;
    consumer.ack_wait = settings.ack_wait;
    return subscribe_durable(js.get(), settings.stream, consumer, sub, error);
  }

  /// Destroys the subscription, never unsubscribes: the durable stays for
  /// the other replicas and the next start.
  void drop() {
    sub.reset();
    js.reset();
    js_conn = nullptr;
    consuming = false;
  }

  void run() {
    milliseconds backoff = settings.min_backoff;
    int fetch_errors = 0;
    auto last_check = clock_type::now();
    while (!stop_requested()) {
      if (!sub) {
        std::string error;
        bool counts = false;
        if (!bind(error, counts)) {
          drop();
          if (counts)
            ++nats_failures;
          nats_problem.report(error);
          if (!pause(backoff))
            break;
          backoff = std::min(backoff * 2, settings.max_backoff);
          continue;
        }
        consuming = true;
        nats_problem.resolved("push feed: jetstream ready again");
        log::info("push feed: consuming", {{"stream", settings.stream.name},
                                           {"consumer", settings.durable}});
        backoff = settings.min_backoff;
        fetch_errors = 0;
        last_check = clock_type::now();
      }
      natsMsgList list{};
      jsErrCode jerr = static_cast<jsErrCode>(0);
      natsStatus s = natsSubscription_Fetch(&list, sub.get(), settings.batch,
                                            settings.fetch_wait.count(), &jerr);
      if (list.Count == 0) {
        natsMsgList_Destroy(&list);
        if (s == NATS_OK || s == NATS_TIMEOUT) {
          // Idle: now and then make sure the durable is still there (a
          // server that lost its store answers nothing, not an error).
          if (clock_type::now() - last_check
              > settings.consumer_check_interval) {
            last_check = clock_type::now();
            std::string error;
            if (check_durable(js.get(), settings.stream.name, settings.durable,
                              error)
                == durable_state::gone) {
              nats_problem.report(error);
              drop();
            }
          }
          continue;
        }
        ++nats_failures;
        nats_problem.report("fetch: " + status_text(s, jerr));
        if (++fetch_errors >= 3)
          drop(); // rebuilt (stream, durable) on the next turn
        if (!pause(backoff))
          break;
        backoff = std::min(backoff * 2, settings.max_backoff);
        continue;
      }
      fetch_errors = 0;
      backoff = settings.min_backoff;
      handle_batch(list);
      natsMsgList_Destroy(&list);
    }
    drop();
  }

  void handle_batch(natsMsgList& list) {
    auto touched = clock_type::now();
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      if (stop_requested()) {
        // Back at once, for another replica or the next start.
        natsMsg_Nak(m, nullptr);
        continue;
      }
      // Events waiting behind slow ones must not be redelivered to another
      // replica meanwhile.
      if (clock_type::now() - touched > settings.ack_wait / 3) {
        for (int j = i; j < list.Count; ++j)
          natsMsg_InProgress(list.Msgs[j], nullptr);
        touched = clock_type::now();
      }
      handle(m);
    }
  }

  void terminate(natsMsg* m, const std::string& event_id,
                 const std::string& why) {
    ++terminated;
    nlohmann::json fields{
      {"subject", natsMsg_GetSubject(m) ? natsMsg_GetSubject(m) : ""},
      {"reason", why}};
    if (!event_id.empty())
      fields["event_id"] = event_id;
    msg_metadata_ptr meta;
    if (create(meta, natsMsg_GetMetaData, m) == NATS_OK && meta)
      fields["stream_seq"] = meta->Sequence.Stream;
    // Logged here, once: a terminated message is never delivered again.
    log::warn("push feed: unusable event terminated", fields);
    natsMsg_Term(m, nullptr);
  }

  /// The redelivery delay of `m` after a failure: retry_delay doubled per
  /// earlier delivery, capped.
  milliseconds retry_delay(natsMsg* m) {
    std::uint64_t delivered = 1;
    msg_metadata_ptr meta;
    if (create(meta, natsMsg_GetMetaData, m) == NATS_OK && meta)
      delivered = std::max<std::uint64_t>(meta->NumDelivered, 1);
    auto delay = settings.retry_delay;
    for (std::uint64_t k = 1; k < delivered && delay < settings.max_retry_delay;
         ++k)
      delay *= 2;
    return std::min(delay, settings.max_retry_delay);
  }

  void handle(natsMsg* m) {
    auto event_id = header(m, "Nats-Msg-Id").value_or("");
    auto size = static_cast<std::size_t>(std::max(natsMsg_GetDataLength(m), 0));
    if (size > settings.max_body) {
      terminate(m, event_id,
                "body of " + std::to_string(size) + " bytes exceeds "
                  + std::to_string(settings.max_body));
      return;
    }
    std::string why;
    auto paths = parse_pushed_paths(
      event_id,
      std::string_view{natsMsg_GetData(m) ? natsMsg_GetData(m) : "", size},
      header(m, "Gatehouse-Commits").value_or("") == "unavailable", why);
    if (!paths) {
      terminate(m, event_id, why);
      return;
    }
    auto reply = ask(std::move(*paths));
    switch (reply.st) {
      case reply_slot::state::answered: {
        ++handled;
        notices += static_cast<std::uint64_t>(std::max(reply.notices, 0));
        registry_problem.resolved("push feed: the agent registry answers again");
        // Confirmed, so that a lost ack shows in the counters; bounded like
        // every other call, for stop().
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = static_cast<int64_t>(settings.api_timeout.count());
        jsErrCode jerr = static_cast<jsErrCode>(0);
        natsStatus s = natsMsg_AckSync(m, &jo, &jerr);
        if (s != NATS_OK) {
          // Redelivered later; the registry absorbs a repeated event id.
          ++nats_failures;
          nats_problem.report("ack: " + status_text(s, jerr));
        }
        return;
      }
      case reply_slot::state::cancelled:
        natsMsg_Nak(m, nullptr);
        return;
      case reply_slot::state::waiting: // past the deadline without an answer
      case reply_slot::state::failed:
        ++retried;
        registry_problem.report(
          reply.st == reply_slot::state::failed ? reply.error : "no answer");
        natsMsg_NakWithDelay(m, retry_delay(m).count(), nullptr);
        return;
    }
  }

  /// Asks the registry through a short-lived actor and waits for its answer
  /// until the request timeout (plus a margin for CAF's own timeout
  /// message) or a stop: `waiting` means past the deadline.
  struct reply {
    reply_slot::state st = reply_slot::state::cancelled;
    int notices = 0;
    std::string error;
  };

  reply ask(agents::pushed_paths paths) {
    auto slot = std::make_shared<reply_slot>();
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (stopping)
        return {};
      awaited = slot;
    }
    sys.spawn([slot, reg = registry, timeout = settings.request_timeout,
               paths = std::move(paths)](caf::event_based_actor* self) mutable {
      self->request(reg, timeout, std::move(paths))
        .then(
          [slot](const agents::pushed_paths_done& done) {
            slot->finish(reply_slot::state::answered, done.notices, {});
          },
          [slot, self](const caf::error& err) {
            slot->finish(reply_slot::state::failed, 0,
                         self->system().render(err));
          });
    });
    auto deadline = clock_type::now() + settings.request_timeout
                    + milliseconds{500};
    reply out;
    {
      std::unique_lock<std::mutex> lock{slot->mtx};
      slot->cv.wait_until(lock, deadline, [&] {
        return slot->st != reply_slot::state::waiting;
      });
      // A copy: a late answer may still write the slot.
      out = reply{slot->st, slot->notices, slot->error};
    }
    {
      std::lock_guard<std::mutex> guard{mtx};
      awaited.reset();
    }
    return out;
  }
};

push_feed::push_feed(push_feed_settings settings, caf::actor_system& system,
                     agent_registry_actor registry, const connection& nats)
  : impl_(std::make_unique<impl>(std::move(settings), system,
                                 std::move(registry), nats)) {
  // nop
}

push_feed::~push_feed() {
  stop();
}

void push_feed::start() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (impl_->started || impl_->stopping)
    return;
  impl_->started = true;
  impl_->worker = std::thread{[this] { impl_->run(); }};
}

void push_feed::stop() {
  std::shared_ptr<reply_slot> awaited;
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    impl_->stopping = true;
    awaited = impl_->awaited;
  }
  impl_->cv.notify_all();
  if (awaited)
    awaited->finish(reply_slot::state::cancelled, 0, {});
  if (impl_->worker.joinable())
    impl_->worker.join();
}

push_feed_stats push_feed::stats() const {
  push_feed_stats out;
  out.handled = impl_->handled;
  out.notices = impl_->notices;
  out.retried = impl_->retried;
  out.terminated = impl_->terminated;
  out.nats_failures = impl_->nats_failures;
  out.consuming = impl_->consuming;
  return out;
}

} // namespace gatehouse::nats
