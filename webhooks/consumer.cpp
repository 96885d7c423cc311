#include "webhooks/consumer.hpp"

#include "common/log.hpp"
#include "edges/nats/auth.hpp"
#include "edges/nats/handles.hpp"
#include "edges/nats/pull_consumer.hpp"
#include "edges/nats/status_text.hpp"
#include "edges/nats/stream.hpp"
#include "storage/database.hpp"
#include "webhooks/heartbeat.hpp"
#include "webhooks/hook_state.hpp"
#include "webhooks/store.hpp"

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>

namespace gatehouse::webhooks {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr milliseconds fetch_wait{1000};
constexpr milliseconds max_retry_wait{5000};
constexpr auto consumer_check_interval = std::chrono::seconds(30);
/// How often an idle consumer makes sure PostgreSQL still answers before
/// it renews its heartbeat.
constexpr auto idle_probe_interval = std::chrono::seconds(10);

using nats::create;
using nats::status_text;

using nats::problem_log;

struct push_event {
  event_kind kind = event_kind::push;
  std::int64_t project_id = 0;
  std::string event_id;
  bool bulk = false;
};

std::optional<std::string> header(natsMsg* m, const char* name) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(m, name, &value) == NATS_OK && value)
    return std::string{value};
  return std::nullopt;
}

/// gitlab.events.<kind>.<project_id> plus the headers; nullopt with `why`.
std::optional<push_event> parse_event(natsMsg* m, std::string& why) {
  std::string subject = natsMsg_GetSubject(m) ? natsMsg_GetSubject(m) : "";
  const std::string prefix = "gitlab.events.";
  auto dot = subject.rfind('.');
  if (subject.rfind(prefix, 0) != 0 || dot == std::string::npos
      || dot < prefix.size()) {
    why = "subject is not gitlab.events.<kind>.<project_id>";
    return std::nullopt;
  }
  push_event ev;
  auto id_text = subject.substr(dot + 1);
  if (id_text.empty() || id_text.size() > 18
      || !std::all_of(id_text.begin(), id_text.end(),
                      [](unsigned char c) { return c >= '0' && c <= '9'; })) {
    why = "subject has no numeric project id";
    return std::nullopt;
  }
  ev.project_id = std::stoll(id_text);
  auto kind = webhook_event_kind(subject, header(m, "Gatehouse-Event"));
  if (!kind) {
    why = "unknown event kind";
    return std::nullopt;
  }
  ev.kind = *kind;
  auto id = header(m, "Nats-Msg-Id");
  if (!id || !is_uuid(*id)) {
    why = "Nats-Msg-Id is missing or not a UUID";
    return std::nullopt;
  }
  ev.event_id = *id;
  std::transform(ev.event_id.begin(), ev.event_id.end(), ev.event_id.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  ev.bulk = header(m, "Gatehouse-Bulk").value_or("") == "true";
  return ev;
}

class consumer {
public:
  consumer(const consumer_settings& settings, const stop_flag& stop)
    : settings_(settings), stop_(stop), db_(settings.database_url),
      heartbeat_(settings.heartbeat_file) {}

  ~consumer() {
    close();
  }

  int run() {
    std::string error;
    if (!connect(error)) {
      log::error("webhooks: cannot use the NATS settings", {{"error", error}});
      return 2;
    }
    milliseconds wait{500};
    int fetch_errors = 0;
    auto last_check = steady_clock::now();
    while (!stop_.requested()) {
      if (!sub_) {
        if (!ensure(error)) {
          nats_problem_.report(error);
          drop_subscription();
          if (!stop_.pause(wait))
            break;
          wait = std::min(wait * 2, max_retry_wait);
          continue;
        }
        nats_problem_.resolved("webhooks: jetstream consumer ready");
        log::info(
          "webhooks: consuming",
          {{"stream", settings_.stream}, {"consumer", settings_.durable}});
        wait = milliseconds{500};
        fetch_errors = 0;
        last_check = steady_clock::now();
      }
      natsMsgList list{};
      jsErrCode jerr = static_cast<jsErrCode>(0);
      natsStatus s = natsSubscription_Fetch(&list, sub_.get(), settings_.batch,
                                            fetch_wait.count(), &jerr);
      if (list.Count == 0) {
        natsMsgList_Destroy(&list);
        if (s == NATS_TIMEOUT || s == NATS_OK) {
          if (steady_clock::now() - last_check > consumer_check_interval) {
            last_check = steady_clock::now();
            if (!consumer_exists(error)) {
              nats_problem_.report(error);
              drop_subscription();
              continue;
            }
          }
          if (database_answers())
            heartbeat_.beat();
          continue;
        }
        nats_problem_.report("fetch: " + status_text(s, jerr));
        if (++fetch_errors >= 3)
          drop_subscription(); // rebuilt (stream, consumer) on the next turn
        if (!stop_.pause(wait))
          break;
        wait = std::min(wait * 2, max_retry_wait);
        continue;
      }
      fetch_errors = 0;
      wait = milliseconds{500};
      for (int i = 0; i < list.Count; ++i) {
        natsMsg* m = list.Msgs[i];
        if (stop_.requested() || handle(m) == handled::unfinished)
          natsMsg_Nak(m, nullptr); // not acknowledged: redelivered later
        else
          heartbeat_.beat();
      }
      natsMsgList_Destroy(&list);
    }
    log::info("webhooks: stopping");
    close();
    return 0;
  }

private:
  enum class handled { acked, unfinished };

  // nats.c runs these on its own thread, possibly after close() and this
  // object are gone: they take no closure. A disconnect of our own close()
  // is seen closed.
  static void on_disconnected(natsConnection* nc, void*) {
    if (!natsConnection_IsClosed(nc))
      log::warn("webhooks: nats disconnected; reconnecting");
  }

  static void on_reconnected(natsConnection*, void*) {
    log::info("webhooks: nats connected");
  }

  bool connect(std::string& error) {
    auto check = [&](natsStatus st, const char* what) {
      if (st == NATS_OK)
        return true;
      error = std::string{what} + ": " + status_text(st);
      return false;
    };
    if (!check(create(opts_, natsOptions_Create), "nats options")
        || !check(natsOptions_SetURL(opts_.get(), settings_.nats_url.c_str()),
                  "GATEHOUSE_NATS_URL")
        || !check(natsOptions_SetName(opts_.get(), "gatehouse-webhooks"),
                  "nats name")
        || !check(natsOptions_SetTimeout(opts_.get(), 2000), "nats timeout")
        || !check(natsOptions_SetMaxReconnect(opts_.get(), -1),
                  "nats reconnect")
        || !check(natsOptions_SetReconnectWait(opts_.get(), 500),
                  "nats reconnect")
        || !check(natsOptions_SetRetryOnFailedConnect(
                    opts_.get(), true, &consumer::on_reconnected, nullptr),
                  "nats retry")
        || !check(natsOptions_SetDisconnectedCB(
                    opts_.get(), &consumer::on_disconnected, nullptr),
                  "nats callbacks")
        || !check(natsOptions_SetReconnectedCB(
                    opts_.get(), &consumer::on_reconnected, nullptr),
                  "nats callbacks"))
      return false;
    if (!nats::apply_auth(opts_.get(), settings_.nats_creds_file,
                          settings_.nats_nkey_seed_file, error))
      return false;
    natsStatus s = create(nc_, natsConnection_Connect, opts_.get());
    if (s == NATS_OK) {
      log::info("webhooks: nats connected");
    } else if (s == NATS_NOT_YET_CONNECTED
               && nats::credentials_refused(
                 nc_.get(), settings_.nats_creds_file,
                 settings_.nats_nkey_seed_file, error)) {
      return false;
    } else if (s == NATS_NOT_YET_CONNECTED) {
      log::warn("webhooks: nats not reachable yet; retrying in the background",
                {{"error", status_text(s)}});
    } else {
      error = "GATEHOUSE_NATS_URL: " + status_text(s);
      return false;
    }
    return true;
  }

  /// The stream (created with `gatehouse serve`'s configuration when
  /// missing), the durable consumer, and a subscription bound to it.
  bool ensure(std::string& error) {
    if (!js_) {
      jsOptions jo;
      jsOptions_Init(&jo);
      jo.Wait = 5000;
      natsStatus s = create(js_, natsConnection_JetStream, nc_.get(), &jo);
      if (s != NATS_OK) {
        js_.reset();
        error = "jetstream: " + status_text(s);
        return false;
      }
    }
    nats::events_stream_config stream;
    stream.name = settings_.stream;
    stream.subjects = settings_.stream_subjects;
    stream.duplicate_window = settings_.duplicate_window;
    stream.replicas = settings_.replicas;
    nats::durable_consumer_config consumer;
    consumer.durable = settings_.durable;
    consumer.description
      = "gatehouse webhooks: delivers push events to webhooks";
    // Push and tag push events: two subjects, and a consumer has one filter.
    consumer.filter_subject = settings_.stream_subjects;
    consumer.ack_wait = ack_wait();
    return nats::subscribe_durable(js_.get(), stream, consumer, sub_, error);
  }

  bool consumer_exists(std::string& error) {
    // NATS away (unknown): keep the subscription, which resumes after a
    // reconnect.
    return nats::check_durable(js_.get(), settings_.stream, settings_.durable,
                               error)
      != nats::durable_state::gone;
  }

  milliseconds ack_wait() const {
    // Each attempt reports progress (InProgress), so this bounds one
    // attempt plus a retry pause, not a whole message.
    return std::max<milliseconds>(std::chrono::seconds(60),
                                  settings_.policy.timeout * 2
                                    + std::chrono::seconds(10));
  }

  void drop_subscription() {
    // Destroy, not Unsubscribe: the durable consumer stays.
    sub_.reset();
    js_.reset();
  }

  void close() {
    drop_subscription();
    if (nc_) {
      natsConnection_FlushTimeout(nc_.get(), 1000);
      nc_.reset();
    }
    opts_.reset();
  }

  /// Whether PostgreSQL answered the latest probe, probing again when that
  /// is older than idle_probe_interval.
  bool database_answers() {
    auto now = steady_clock::now();
    if (probed_ != steady_clock::time_point{}
        && now - probed_ < idle_probe_interval)
      return database_answered_;
    probed_ = now;
    try {
      db_.probe();
      db_problem_.resolved("webhooks: postgresql available again");
      database_answered_ = true;
    } catch (const std::exception& e) {
      db_.disconnect();
      db_problem_.report(storage::one_line(e.what()));
      database_answered_ = false;
    }
    return database_answered_;
  }

  /// Runs `fn` against PostgreSQL until it succeeds, keeping the message
  /// (InProgress) meanwhile; false when the process stops first.
  bool with_db(natsMsg* m, const std::function<void()>& fn) {
    milliseconds wait{200};
    for (;;) {
      try {
        fn();
        db_problem_.resolved("webhooks: postgresql available again");
        return true;
      } catch (const std::exception& e) {
        db_.disconnect();
        db_problem_.report(storage::one_line(e.what()));
      }
      natsMsg_InProgress(m, nullptr);
      if (!stop_.pause(wait))
        return false;
      wait = std::min(wait * 2, max_retry_wait);
    }
  }

  handled handle(natsMsg* m) {
    const char* subject = natsMsg_GetSubject(m);
    if (!webhook_event_kind(subject ? subject : "",
                            header(m, "Gatehouse-Event"))) {
      // Another kind of event on the shared stream (the agent registry's):
      // not for webhooks, and no problem either. Acknowledged unlogged, so
      // that it is neither redelivered nor noise at the rate agents report.
      natsMsg_Ack(m, nullptr);
      return handled::acked;
    }
    std::string why;
    auto ev = parse_event(m, why);
    if (!ev) {
      log::warn(
        "webhooks: unusable event dropped",
        {{"subject", natsMsg_GetSubject(m) ? natsMsg_GetSubject(m) : ""},
         {"reason", why}});
      natsMsg_Term(m, nullptr);
      return handled::acked;
    }
    const std::string body(natsMsg_GetData(m) ? natsMsg_GetData(m) : "",
                           static_cast<std::size_t>(natsMsg_GetDataLength(m)));
    std::optional<event_context> ctx;
    if (!with_db(m, [&] { ctx = db_.load(ev->project_id, ev->event_id); }))
      return handled::unfinished;
    const auto loaded_at = steady_clock::now();
    auto db_now = [&] {
      return ctx->now_ms
        + std::chrono::duration_cast<milliseconds>(steady_clock::now()
                                                   - loaded_at)
            .count();
    };
    for (const auto& hook : ctx->hooks) {
      if (hook.recorded)
        continue; // a redelivery: this hook's outcome is stored already
      outcome result;
      bool subscribed = ev->kind == event_kind::push ? hook.push_events
                                                     : hook.tag_push_events;
      auto status = status_at(hook.state, db_now());
      if (!subscribed) {
        result.kind = outcome_kind::skipped_not_subscribed;
      } else if (ev->bulk) {
        result.kind = outcome_kind::skipped_bulk;
      } else if (status != hook_status::executable) {
        result.kind = outcome_kind::skipped_disabled;
        result.error = to_string(status);
      } else {
        if (stop_.requested())
          return handled::unfinished;
        auto headers = delivery_headers(hook.target, ev->kind, ev->event_id,
                                        ctx->settings);
        auto r = deliver(
          hook.target, headers, body, ctx->settings.allow_local_requests,
          settings_.policy, [&](milliseconds d) { return stop_.pause(d); },
          [&] {
            natsMsg_InProgress(m, nullptr);
            heartbeat_.beat(); // a slow receiver is not a broken consumer
          });
        if (r.abandoned)
          return handled::unfinished;
        result.kind
          = r.delivered ? outcome_kind::delivered : outcome_kind::failed;
        result.status = r.status;
        result.attempts = r.attempts;
        result.error = r.error;
      }
      std::optional<hook_state> after;
      if (!with_db(m, [&] {
            after = db_.record(ev->event_id, hook.target.id, result,
                               settings_.backoff_base);
          }))
        return handled::unfinished;
      nlohmann::json fields{{"event_id", ev->event_id},
                            {"project_id", ev->project_id},
                            {"hook_id", hook.target.id},
                            {"outcome", to_string(result.kind)}};
      if (result.attempts > 0)
        fields["attempts"] = result.attempts;
      if (result.status != 0)
        fields["status"] = result.status;
      if (!result.error.empty())
        fields["error"] = result.error;
      if (result.kind == outcome_kind::failed)
        log::warn("webhook delivery failed", fields);
      else
        log::info("webhook delivery", fields);
      if (after && result.kind == outcome_kind::failed) {
        auto now_status = status_at(*after, db_now());
        if (now_status != hook_status::executable) {
          nlohmann::json state{{"hook_id", hook.target.id},
                               {"state", to_string(now_status)},
                               {"recent_failures", after->recent_failures}};
          if (now_status == hook_status::temporarily_disabled
              && after->disabled_until_ms)
            state["disabled_for_ms"] = *after->disabled_until_ms - db_now();
          log::warn("webhook disabled", state);
        }
      }
    }
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = natsMsg_AckSync(m, nullptr, &jerr);
    if (s != NATS_OK)
      // The outcomes are stored: a redelivery only skips these hooks.
      log::warn("webhooks: acknowledgement failed",
                {{"event_id", ev->event_id}, {"error", status_text(s, jerr)}});
    return handled::acked;
  }

  const consumer_settings& settings_;
  const stop_flag& stop_;
  store db_;
  nats::options_ptr opts_;
  nats::connection_ptr nc_;
  nats::jetstream_ptr js_;
  nats::subscription_ptr sub_;
  problem_log nats_problem_{"webhooks: jetstream not ready; retrying"};
  problem_log db_problem_{"webhooks: postgresql unavailable; retrying"};
  heartbeat heartbeat_;
  steady_clock::time_point probed_{};
  bool database_answered_ = false;
};

} // namespace

std::optional<event_kind> webhook_event_kind(
  std::string_view subject, const std::optional<std::string>& kind_header) {
  if (kind_header)
    if (auto kind = parse_event_kind(*kind_header))
      return kind;
  constexpr std::string_view prefix = "gitlab.events.";
  if (subject.substr(0, prefix.size()) != prefix)
    return std::nullopt;
  auto rest = subject.substr(prefix.size());
  auto dot = rest.find('.');
  return parse_event_kind(rest.substr(0, dot));
}

int run_consumer(const consumer_settings& settings, const stop_flag& stop) {
  consumer c{settings, stop};
  return c.run();
}

} // namespace gatehouse::webhooks
