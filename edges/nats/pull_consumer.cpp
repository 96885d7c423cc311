#include "edges/nats/pull_consumer.hpp"

#include "common/log.hpp"
#include "edges/nats/status_text.hpp"

namespace gatehouse::nats {

namespace {

std::int64_t to_ns(std::chrono::milliseconds d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

} // namespace

bool subscribe_durable(jsCtx* js, const events_stream_config& stream,
                       const durable_consumer_config& consumer,
                       subscription_ptr& sub, std::string& error) {
  sub.reset();
  jsErrCode jerr = static_cast<jsErrCode>(0);
  stream_info_ptr si;
  natsStatus s
    = create(si, js_GetStreamInfo, js, stream.name.c_str(), nullptr, &jerr);
  if (s != NATS_OK) {
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
      error = "stream " + stream.name + ": " + status_text(s, jerr);
      return false;
    }
    // serve owns the stream's configuration: never change an existing one.
    jerr = static_cast<jsErrCode>(0);
    s = ensure_events_stream(js, stream, false, jerr);
    if (s != NATS_OK) {
      error = "creating stream " + stream.name + ": " + status_text(s, jerr);
      return false;
    }
  }
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = consumer.durable.c_str();
  cc.Description = consumer.description.c_str();
  // A new durable starts at the beginning of the stream, so events
  // published before its first start are read too.
  cc.DeliverPolicy = js_DeliverAll;
  cc.AckPolicy = js_AckExplicit;
  cc.AckWait = to_ns(consumer.ack_wait);
  cc.MaxDeliver = -1;
  if (consumer.max_ack_pending > 0)
    cc.MaxAckPending = consumer.max_ack_pending;
  cc.FilterSubject = consumer.filter_subject.c_str();
  cc.Replicas = stream.replicas;
  consumer_info_ptr ci;
  jerr = static_cast<jsErrCode>(0);
  s = create(ci, js_AddConsumer, js, stream.name.c_str(), &cc, nullptr, &jerr);
  if (s != NATS_OK) {
    // It exists with another configuration (e.g. another AckWait).
    auto add_error = status_text(s, jerr);
    jerr = static_cast<jsErrCode>(0);
    s = create(ci, js_UpdateConsumer, js, stream.name.c_str(), &cc, nullptr,
               &jerr);
    if (s != NATS_OK) {
      std::string ignored;
      if (check_durable(js, stream.name, consumer.durable, ignored)
          != durable_state::exists) {
        error = "consumer " + consumer.durable + ": " + add_error;
        return false;
      }
      log::warn("jetstream: using the existing consumer as configured",
                {{"consumer", consumer.durable}, {"error", add_error}});
    }
  }
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.name.c_str();
  so.Consumer = consumer.durable.c_str();
  jerr = static_cast<jsErrCode>(0);
  s = create(sub, js_PullSubscribe, js, consumer.filter_subject.c_str(),
             consumer.durable.c_str(), nullptr, &so, &jerr);
  if (s != NATS_OK) {
    sub.reset();
    error = "subscribe: " + status_text(s, jerr);
    return false;
  }
  return true;
}

durable_state check_durable(jsCtx* js, const std::string& stream,
                            const std::string& durable, std::string& error) {
  if (!js)
    return durable_state::unknown;
  consumer_info_ptr ci;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = create(ci, js_GetConsumerInfo, js, stream.c_str(),
                        durable.c_str(), nullptr, &jerr);
  if (s == NATS_OK)
    return durable_state::exists;
  if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr
      || jerr == JSStreamNotFoundErr) {
    error = "consumer " + durable + " is gone: " + status_text(s, jerr);
    return durable_state::gone;
  }
  return durable_state::unknown;
}

void problem_log::report(const std::string& error) {
  auto now = std::chrono::steady_clock::now();
  if (error != last_ || now - logged_ > std::chrono::seconds(30)) {
    log::warn(what_, {{"error", error}});
    last_ = error;
    logged_ = now;
  }
  active_ = true;
}

void problem_log::resolved(const char* message) {
  if (active_)
    log::info(message);
  active_ = false;
  last_.clear();
}

} // namespace gatehouse::nats
