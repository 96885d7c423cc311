// `gatehouse events tail [--subject S] [--from-start]`: the operator's view
// of the push events on JetStream, one JSON line per message:
//   {"subject":…,"sequence":…,"headers":{…},"data":…}
// through an ephemeral ordered consumer (no durable state left behind).

#include "app/commands.hpp"
#include "edges/nats/auth.hpp"
#include "edges/nats/connection.hpp"
#include "edges/nats/handles.hpp"
#include "edges/nats/status_text.hpp"

#include <nats/nats.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace gatehouse {

namespace {

using ordered_json = nlohmann::ordered_json;

constexpr const char* events_usage
  = "usage: gatehouse events tail [--subject S] [--from-start]\n"
    "  --subject S    only messages whose subject matches S "
    "(default gitlab.events.>)\n"
    "  --from-start   every message the stream holds, then new ones "
    "(default: new ones only)\n";

volatile std::sig_atomic_t stop_requested = 0;

extern "C" void on_stop_signal(int) {
  stop_requested = 1;
}

int events_usage_error(const std::string& what) {
  std::cerr << "gatehouse: events: " << what << "\n\n" << events_usage;
  return 64; // EX_USAGE
}

/// Every header of `msg`, keys sorted; a key with several values maps to an
/// array.
ordered_json headers_of(natsMsg* msg) {
  ordered_json out = ordered_json::object();
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &count) != NATS_OK || !keys)
    return out;
  std::vector<std::string> names(keys, keys + count);
  std::free(static_cast<void*>(keys));
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const char** values = nullptr;
    int n = 0;
    if (natsMsgHeader_Values(msg, name.c_str(), &values, &n) != NATS_OK
        || !values)
      continue;
    if (n == 1) {
      out[name] = values[0];
    } else {
      auto list = ordered_json::array();
      for (int i = 0; i < n; ++i)
        list.push_back(values[i]);
      out[name] = std::move(list);
    }
    std::free(static_cast<void*>(values));
  }
  return out;
}

std::string render_message(natsMsg* msg) {
  ordered_json line = ordered_json::object();
  line["subject"] = natsMsg_GetSubject(msg);
  nats::msg_metadata_ptr meta;
  if (nats::create(meta, natsMsg_GetMetaData, msg) == NATS_OK && meta) {
    line["sequence"] = meta->Sequence.Stream;
  } else {
    line["sequence"] = nullptr;
  }
  line["headers"] = headers_of(msg);
  const char* data = natsMsg_GetData(msg);
  int len = natsMsg_GetDataLength(msg);
  std::string body
    = data ? std::string(data, static_cast<std::size_t>(len)) : std::string{};
  auto parsed = ordered_json::parse(body, nullptr, false);
  if (parsed.is_discarded())
    line["data"] = body;
  else
    line["data"] = std::move(parsed);
  return line.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

struct tail_options {
  std::string subject = "gitlab.events.>";
  bool from_start = false;
};

// nats.c 3.4.1 (Debian 12) leaves the signature out of CONNECT when the
// signature's first byte is 0 (nats.c #705, fixed in 3.8): nats-server then
// refuses the credentials, for 1 in 256 of the nonces it sends. Each attempt
// gets a fresh nonce, so a refusal is retried twice before it is believed
// (serve and webhooks retry once through nats.c's reconnect logic).
natsStatus connect_tail(nats::connection_ptr& nc, natsOptions* opts) {
  constexpr int attempts = 3;
  natsStatus s = NATS_OK;
  for (int i = 0; i < attempts; ++i) {
    s = nats::create(nc, natsConnection_Connect, opts);
    if (s != NATS_CONNECTION_AUTH_FAILED)
      break;
  }
  return s;
}

int tail(const config& cfg, const tail_options& opt) {
  const std::string stream = nats::nats_settings{}.stream;
  // Destroyed in reverse: the subscription first, the options last.
  nats::options_ptr opts;
  nats::connection_ptr nc;
  nats::jetstream_ptr js;
  nats::subscription_ptr sub;
  int rc = 0;
  auto fail = [&](const std::string& what, natsStatus s,
                  jsErrCode jerr = static_cast<jsErrCode>(0)) {
    std::cerr << "gatehouse: events tail: " << what << ": "
              << nats::status_text(s, jerr) << '\n';
    rc = 1;
  };
  natsStatus s = nats::create(opts, natsOptions_Create);
  if (s == NATS_OK)
    s = natsOptions_SetURL(opts.get(), cfg.nats_url.c_str());
  if (s == NATS_OK)
    s = natsOptions_SetName(opts.get(), "gatehouse-events-tail");
  if (s == NATS_OK)
    s = natsOptions_SetMaxReconnect(opts.get(), -1);
  if (s == NATS_OK)
    s = natsOptions_SetReconnectWait(opts.get(), 500);
  std::string auth_error;
  if (s != NATS_OK) {
    fail("NATS options", s);
  } else if (!nats::apply_auth(opts.get(), cfg.nats_creds_file,
                               cfg.nats_nkey_seed_file, auth_error)) {
    std::cerr << "gatehouse: " << auth_error << '\n';
    rc = 2;
  } else if ((s = connect_tail(nc, opts.get())) != NATS_OK) {
    fail("connecting to " + nats::redact_url(cfg.nats_url), s);
  } else if ((s = nats::create(js, natsConnection_JetStream, nc.get(), nullptr))
             != NATS_OK) {
    fail("JetStream", s);
  } else {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream.c_str();
    so.Ordered = true;
    so.Config.DeliverPolicy = opt.from_start ? js_DeliverAll : js_DeliverNew;
    bool told = false;
    for (;;) {
      jsErrCode jerr = static_cast<jsErrCode>(0);
      s = nats::create(sub, js_SubscribeSync, js.get(), opt.subject.c_str(),
                       nullptr, &so, &jerr);
      if (s == NATS_OK)
        break;
      if (stop_requested)
        break; // interrupted while waiting: a normal end
      if (jerr != JSStreamNotFoundErr) {
        fail("subscribing to stream " + stream + " (subject " + opt.subject
               + ")",
             s, jerr);
        break;
      }
      // `gatehouse serve` creates the stream when it first connects.
      if (!told)
        std::cerr << "gatehouse: events tail: stream " << stream
                  << " does not exist yet; waiting\n"
                  << std::flush;
      told = true;
      nats_Sleep(1000);
    }
  }
  if (rc == 0 && sub) {
    std::cerr << "gatehouse: tailing stream " << stream << ", subject "
              << opt.subject << (opt.from_start ? ", from the start" : "")
              << '\n'
              << std::flush;
    while (!stop_requested) {
      nats::msg_ptr msg;
      s = nats::create(msg, natsSubscription_NextMsg, sub.get(), 250);
      if (s == NATS_TIMEOUT)
        continue;
      if (s != NATS_OK) {
        if (s == NATS_CONNECTION_CLOSED || s == NATS_INVALID_SUBSCRIPTION) {
          fail("receiving", s);
          break;
        }
        // Slow consumer and the like: the ordered consumer recovers.
        continue;
      }
      std::cout << render_message(msg.get()) << '\n' << std::flush;
    }
  }
  // The ordered consumer is ephemeral: unsubscribing removes it.
  if (sub)
    natsSubscription_Unsubscribe(sub.get());
  return rc;
}

} // namespace

int events_command(const config& cfg, const std::vector<std::string>& args) {
  if (args.empty())
    return events_usage_error("a subcommand is required");
  if (args[0] != "tail")
    return events_usage_error("unknown subcommand " + args[0]);
  tail_options opt;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const auto& arg = args[i];
    if (arg == "--from-start") {
      opt.from_start = true;
    } else if (arg == "--subject") {
      if (i + 1 >= args.size() || args[i + 1].empty())
        return events_usage_error("--subject needs a value");
      opt.subject = args[++i];
    } else if (arg.rfind("--subject=", 0) == 0) {
      opt.subject = arg.substr(10);
      if (opt.subject.empty())
        return events_usage_error("--subject needs a value");
    } else {
      return events_usage_error("unknown argument " + arg);
    }
  }
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  return tail(cfg, opt);
}

} // namespace gatehouse
