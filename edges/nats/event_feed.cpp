#include "edges/nats/event_feed.hpp"

#include "common/log.hpp"
#include "edges/nats/connection.hpp"
#include "edges/nats/handles.hpp"
#include "edges/nats/pull_consumer.hpp"
#include "edges/nats/status_text.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <thread>
#include <utility>

namespace gatehouse::nats {

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

} // namespace

// -- event_reply ----------------------------------------------------------------

void event_reply::answered(std::function<void()> count) {
  finish(state::answered, std::move(count), {});
}

void event_reply::failed(std::string error) {
  finish(state::failed, {}, std::move(error));
}

void event_reply::cancel() {
  finish(state::cancelled, {}, {});
}

void event_reply::finish(state s, std::function<void()> count,
                         std::string error) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (state_ != state::waiting)
      return;
    state_ = s;
    count_ = std::move(count);
    error_ = std::move(error);
  }
  cv_.notify_all();
}

event_reply::state event_reply::wait_until(clock_type::time_point deadline,
                                           std::function<void()>& count,
                                           std::string& error) {
  std::unique_lock<std::mutex> lock{mtx_};
  cv_.wait_until(lock, deadline, [&] { return state_ != state::waiting; });
  count = count_;
  error = error_;
  return state_;
}

std::optional<std::string> message_header(natsMsg* m, const char* name) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(m, name, &value) == NATS_OK && value)
    return std::string{value};
  return std::nullopt;
}

// -- the feed -------------------------------------------------------------------

struct event_feed::impl {
  impl(event_feed_settings s, event_feed_names n, caf::actor_system& system,
       const connection& c, event_parser p)
    : settings(std::move(s)), names(std::move(n)), sys(system), nats(c),
      parse(std::move(p)),
      not_ready_text(names.feed + ": jetstream not ready; retrying"),
      failed_text(names.feed + ": " + names.actor
                  + " failed an event; it is redelivered"),
      nats_problem{not_ready_text.c_str()},
      actor_problem{failed_text.c_str()} {
    settings.ack_wait = std::max(settings.ack_wait, settings.request_timeout * 2);
    settings.batch = std::max(settings.batch, 1);
  }

  event_feed_settings settings;
  const event_feed_names names;
  caf::actor_system& sys;
  const connection& nats;
  const event_parser parse;

  // -- lifecycle (guarded by mtx) -------------------------------------------
  std::mutex mtx;
  std::condition_variable cv;
  bool started = false;
  bool stopping = false;
  /// The answer the worker waits for, so stop() can cancel it.
  std::shared_ptr<event_reply> awaited;
  std::thread worker;

  // -- worker thread only ---------------------------------------------------
  jetstream_ptr js;
  natsConnection* js_conn = nullptr;
  subscription_ptr sub;
  // problem_log keeps the pointer: the texts live as long as the logs.
  const std::string not_ready_text;
  const std::string failed_text;
  problem_log nats_problem;
  problem_log actor_problem;

  // -- counters -------------------------------------------------------------
  std::atomic<std::uint64_t> handled{0};
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
    consumer.description = settings.description;
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
        nats_problem.resolved((names.feed + ": jetstream ready again").c_str());
        log::info(names.feed + ": consuming",
                  {{"stream", settings.stream.name},
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
    log::warn(names.feed + ": unusable event terminated", fields);
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
    auto event_id = message_header(m, "Nats-Msg-Id").value_or("");
    auto size = static_cast<std::size_t>(std::max(natsMsg_GetDataLength(m), 0));
    if (size > settings.max_body) {
      terminate(m, event_id,
                "body of " + std::to_string(size) + " bytes exceeds "
                  + std::to_string(settings.max_body));
      return;
    }
    std::string why;
    event_message msg;
    msg.event_id = event_id;
    msg.body
      = std::string_view{natsMsg_GetData(m) ? natsMsg_GetData(m) : "", size};
    msg.raw = m;
    auto request = parse(msg, why);
    if (!request) {
      terminate(m, event_id, why);
      return;
    }
    std::function<void()> count;
    std::string error;
    switch (ask(std::move(request), count, error)) {
      case event_reply::state::answered: {
        ++handled;
        if (count)
          count();
        actor_problem.resolved(
          (names.feed + ": " + names.actor + " answers again").c_str());
        // Confirmed, so that a lost ack shows in the counters; bounded like
        // every other call, for stop().
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = static_cast<int64_t>(settings.api_timeout.count());
        jsErrCode jerr = static_cast<jsErrCode>(0);
        natsStatus s = natsMsg_AckSync(m, &jo, &jerr);
        if (s != NATS_OK) {
          // Redelivered later; the actor absorbs a repeated event id.
          ++nats_failures;
          nats_problem.report("ack: " + status_text(s, jerr));
        }
        return;
      }
      case event_reply::state::cancelled:
        natsMsg_Nak(m, nullptr);
        return;
      case event_reply::state::waiting: // past the deadline without an answer
        ++retried;
        actor_problem.report("no answer");
        natsMsg_NakWithDelay(m, retry_delay(m).count(), nullptr);
        return;
      case event_reply::state::failed:
        ++retried;
        actor_problem.report(error);
        natsMsg_NakWithDelay(m, retry_delay(m).count(), nullptr);
        return;
    }
  }

  /// Sends `request` from a short-lived actor and waits for its answer
  /// until the request timeout (plus a margin for CAF's own timeout
  /// message) or a stop: `waiting` means past the deadline.
  event_reply::state ask(event_request request, std::function<void()>& count,
                         std::string& error) {
    auto reply = std::make_shared<event_reply>();
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (stopping)
        return event_reply::state::cancelled;
      awaited = reply;
    }
    sys.spawn([reply, timeout = settings.request_timeout,
               request = std::move(request)](caf::event_based_actor* self) {
      request(self, timeout, reply);
    });
    auto deadline = clock_type::now() + settings.request_timeout
                    + milliseconds{500};
    auto st = reply->wait_until(deadline, count, error);
    {
      std::lock_guard<std::mutex> guard{mtx};
      awaited.reset();
    }
    return st;
  }
};

event_feed::event_feed(event_feed_settings settings, event_feed_names names,
                       caf::actor_system& system, const connection& nats,
                       event_parser parse)
  : impl_(std::make_unique<impl>(std::move(settings), std::move(names), system,
                                 nats, std::move(parse))) {
  // nop
}

event_feed::~event_feed() {
  stop();
}

void event_feed::start() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (impl_->started || impl_->stopping)
    return;
  impl_->started = true;
  impl_->worker = std::thread{[this] { impl_->run(); }};
}

void event_feed::stop() {
  std::shared_ptr<event_reply> awaited;
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    impl_->stopping = true;
    awaited = impl_->awaited;
  }
  impl_->cv.notify_all();
  if (awaited)
    awaited->cancel();
  if (impl_->worker.joinable())
    impl_->worker.join();
}

event_feed_stats event_feed::stats() const {
  event_feed_stats out;
  out.handled = impl_->handled;
  out.retried = impl_->retried;
  out.terminated = impl_->terminated;
  out.nats_failures = impl_->nats_failures;
  out.consuming = impl_->consuming;
  return out;
}

} // namespace gatehouse::nats
