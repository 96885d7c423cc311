#include "edges/nats/internal_bridge.hpp"

#include "common/log.hpp"
#include "common/request_id.hpp"

#include <caf/all.hpp>

#include <sstream>

namespace gatehouse::nats {

namespace {

using clock_type = std::chrono::steady_clock;

// Where a reply goes and what it answers.
struct origin {
  std::string reply;
  std::string request_id;
  clock_type::time_point start;
};


// -- replies kept for retries -------------------------------------------------------

void forget_old(bridge_state& st, clock_type::time_point now) {
  auto& order = st.kept_order;
  while (!order.empty()
         && (now - order.front().first > st.settings.replay_window
             || order.size() > st.settings.replay_capacity)) {
    auto it = st.kept.find(order.front().second);
    if (it != st.kept.end() && it->second.at == order.front().first)
      st.kept.erase(it);
    order.pop_front();
  }
}

void keep(bridge_state& st, const std::string& id, const wire_reply& reply) {
  auto now = clock_type::now();
  st.kept[id] = kept_reply{reply, now};
  st.kept_order.emplace_back(now, id);
  forget_old(st, now);
}

const wire_reply* find_kept(bridge_state& st, const std::string& id) {
  forget_old(st, clock_type::now());
  auto it = st.kept.find(id);
  return it == st.kept.end() ? nullptr : &it->second.reply;
}

// -- answering ----------------------------------------------------------------------

void finish(bridge_actor_ptr self, const origin& o, const wire_reply& reply,
            bool replayed) {
  auto& st = self->state;
  auto call = st.settings.call;
  st.publish(o.reply, o.request_id, reply);
  st.stats->answered(call, reply.status, replayed);
  --st.stats->in_flight;
  if (!o.request_id.empty() && !replayed) {
    bool success = reply.status >= 200 && reply.status < 300;
    if (changes_state(call)) {
      // Only an applied push is worth replaying; a failure is retried.
      if (success) {
        keep(st, o.request_id, reply);
        if (st.deps.requests)
          caf::anon_send(st.deps.requests, atom::reply_put::value,
                         o.request_id, std::string{call_name(call)},
                         static_cast<std::int32_t>(reply.status), reply.body);
      }
    } else if (reply.status < 500) {
      keep(st, o.request_id, reply);
    }
  }
  auto seconds
    = std::chrono::duration<double>(clock_type::now() - o.start).count();
  nlohmann::json fields = {{"call", call_name(call)},
                           {"status", reply.status},
                           {"duration_ms", seconds * 1000.0}};
  if (!o.request_id.empty())
    fields["request_id"] = o.request_id;
  if (replayed)
    fields["replayed"] = true;
  log::info("nats request", fields);
}

// Asks `dest` and finishes with `encode(answer)`, or with the status table's
// reply to the error (a timeout is a 503, as on the HTTP edge).
template <class Result, class Handle, class Encode, class... Ts>
void ask(bridge_actor_ptr self, const origin& o, const Handle& dest,
         Encode encode, Ts&&... xs) {
  if (!dest)
    return finish(self, o, error_reply(errc::unavailable), false);
  self
    ->request(dest, self->state.settings.request_timeout,
              std::forward<Ts>(xs)...)
    .then(
      [self, o, encode](Result& answer) {
        finish(self, o, encode(answer), false);
      },
      [self, o](caf::error& err) {
        if (classify(err) != errc::timeout)
          log::warn("nats request failed",
                    {{"call", call_name(self->state.settings.call)},
                     {"error", render(err)}});
        finish(self, o, failure_reply(err), false);
      });
}

// Runs `then(value)` for a decoded request, or answers its error at once.
template <class T, class F>
void with_decoded(bridge_actor_ptr self, const origin& o, decoded<T>&& x,
                  F then) {
  if (auto* early = std::get_if<wire_reply>(&x))
    return finish(self, o, *early, false);
  then(std::get<T>(std::move(x)));
}

void dispatch(bridge_actor_ptr self, const nats_inbound& in, const origin& o) {
  auto& d = self->state.deps;
  const auto& payload = in.payload;
  switch (self->state.settings.call) {
    case internal_call::allowed:
      return with_decoded(self, o, decode_allowed(payload), [&](auto p) {
        ask<access::allowed_outcome>(
          self, o, d.access,
          [](const access::allowed_outcome& x) { return encode_allowed(x); },
          atom::allowed::value, std::move(p));
      });
    case internal_call::authorized_keys:
      return with_decoded(self, o, decode_authorized_keys(payload), [&](auto k) {
        ask<access::key_answer>(
          self, o, d.access,
          [](const access::key_answer& x) { return encode_authorized_keys(x); },
          atom::find_key::value, std::move(k));
      });
    case internal_call::discover:
      return with_decoded(self, o, decode_discover(payload), [&](auto q) {
        ask<access::discover_answer>(
          self, o, d.access,
          [](const access::discover_answer& x) { return encode_discover(x); },
          atom::discover::value, std::move(q));
      });
    case internal_call::check:
      return with_decoded(self, o, decode_check(payload), [&](no_fields) {
        ask<check_view>(
          self, o, d.status,
          [](const check_view& x) { return encode_check(x); },
          atom::check::value);
      });
    case internal_call::lfs_authenticate:
      return with_decoded(self, o, decode_lfs_authenticate(payload),
                          [&](auto q) {
                            ask<access::lfs_answer>(
                              self, o, d.access,
                              [](const access::lfs_answer& x) {
                                return encode_lfs_authenticate(x);
                              },
                              atom::lfs_auth::value, std::move(q));
                          });
    case internal_call::two_factor_recovery_codes:
      return with_decoded(self, o, decode_recovery_codes(payload), [&](auto a) {
        ask<access::shell_answer>(
          self, o, d.access,
          [](const access::shell_answer& x) { return encode_recovery_codes(x); },
          atom::recovery::value, std::move(a));
      });
    case internal_call::personal_access_token:
      return with_decoded(self, o, decode_personal_access_token(payload),
                          [&](auto q) {
                            ask<access::shell_answer>(
                              self, o, d.access,
                              [](const access::shell_answer& x) {
                                return encode_personal_access_token(x);
                              },
                              atom::make_pat::value, std::move(q));
                          });
    case internal_call::two_factor_manual_otp_check:
      return with_decoded(self, o, decode_manual_otp_check(payload),
                          [&](no_fields) {
                            finish(self, o, otp_not_available(), false);
                          });
    case internal_call::two_factor_push_otp_check:
      return with_decoded(self, o, decode_push_otp_check(payload),
                          [&](no_fields) {
                            finish(self, o, otp_not_available(), false);
                          });
    case internal_call::pre_receive:
      return with_decoded(self, o, decode_pre_receive(payload), [&](auto repo) {
        auto encode = [](bool counted) { return encode_pre_receive(counted); };
        if (o.request_id.empty())
          ask<bool>(self, o, d.push, encode, atom::pre_receive::value,
                    std::move(repo));
        else
          ask<bool>(self, o, d.push, encode, atom::pre_receive::value,
                    std::move(repo), o.request_id);
      });
    case internal_call::post_receive:
      return with_decoded(self, o, decode_post_receive(payload), [&](auto p) {
        p.request_id = o.request_id;
        ask<push::post_receive_answer>(
          self, o, d.push,
          [](const push::post_receive_answer& x) {
            return encode_post_receive(x);
          },
          atom::post_receive::value, std::move(p));
      });
    case internal_call::git_audit_event:
      return with_decoded(self, o, decode_git_audit_event(payload),
                          [&](auto p) {
                            ask<access::allowed_outcome>(
                              self, o, d.access,
                              [](const access::allowed_outcome& x) {
                                return encode_git_audit_event(x);
                              },
                              atom::allowed::value, std::move(p));
                          });
  }
  finish(self, o, error_reply(errc::internal), false);
}

void handle(bridge_actor_ptr self, nats_inbound& in) {
  auto& st = self->state;
  if (in.reply.empty()) {
    // A publish without a reply subject cannot be answered; acting on it
    // (a push) would leave the caller unable to retry safely.
    --st.stats->in_flight;
    log::warn("nats request without a reply subject dropped",
              {{"subject", in.subject}});
    return;
  }
  origin o{in.reply, in.request_id, clock_type::now()};
  if (!o.request_id.empty() && !acceptable_request_id(o.request_id)) {
    o.request_id.clear();
    return finish(self, o,
                  error_reply(errc::bad_request, "invalid Gatehouse-Request-Id"),
                  false);
  }
  if (!o.request_id.empty()) {
    if (auto* kept = find_kept(st, o.request_id))
      return finish(self, o, *kept, true);
    if (changes_state(st.settings.call) && st.deps.requests) {
      // Another replica may have answered this id already.
      auto shared = std::make_shared<nats_inbound>(std::move(in));
      auto lookup_timeout = std::max(std::chrono::milliseconds(100),
                                     st.settings.request_timeout / 4);
      self
        ->request(st.deps.requests, lookup_timeout, atom::reply_get::value,
                  o.request_id, std::string{call_name(st.settings.call)})
        .then(
          [self, shared, o](stored_reply& r) {
            if (r.found)
              finish(self, o, wire_reply{r.status, std::move(r.body)}, true);
            else
              dispatch(self, *shared, o);
          },
          // Unknown: the push store's transaction still applies it once.
          [self, shared, o](caf::error&) { dispatch(self, *shared, o); });
      return;
    }
  }
  dispatch(self, in, o);
}

} // namespace

// -- calls ----------------------------------------------------------------------------

const std::vector<internal_call>& all_internal_calls() {
  static const std::vector<internal_call> calls = {
    internal_call::allowed,
    internal_call::authorized_keys,
    internal_call::discover,
    internal_call::check,
    internal_call::lfs_authenticate,
    internal_call::two_factor_recovery_codes,
    internal_call::personal_access_token,
    internal_call::two_factor_manual_otp_check,
    internal_call::two_factor_push_otp_check,
    internal_call::pre_receive,
    internal_call::post_receive,
    internal_call::git_audit_event,
  };
  return calls;
}

const char* call_name(internal_call call) {
  switch (call) {
    case internal_call::allowed: return "allowed";
    case internal_call::authorized_keys: return "authorized_keys";
    case internal_call::discover: return "discover";
    case internal_call::check: return "check";
    case internal_call::lfs_authenticate: return "lfs_authenticate";
    case internal_call::two_factor_recovery_codes:
      return "two_factor_recovery_codes";
    case internal_call::personal_access_token: return "personal_access_token";
    case internal_call::two_factor_manual_otp_check:
      return "two_factor_manual_otp_check";
    case internal_call::two_factor_push_otp_check:
      return "two_factor_push_otp_check";
    case internal_call::pre_receive: return "pre_receive";
    case internal_call::post_receive: return "post_receive";
    case internal_call::git_audit_event: return "shellhorse.git_audit_event";
  }
  return "unknown";
}

bool changes_state(internal_call call) {
  return call == internal_call::pre_receive
         || call == internal_call::post_receive;
}

// -- statistics -------------------------------------------------------------------

void edge_stats::answered(internal_call call, int status, bool replayed) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++answered_[{call_name(call), status}];
  if (replayed)
    ++replays_[call_name(call)];
}

void edge_stats::dropped(internal_call call, std::int64_t n) {
  std::lock_guard<std::mutex> guard{mtx_};
  dropped_[call_name(call)] += static_cast<std::uint64_t>(n);
}

void edge_stats::publish_failed() {
  std::lock_guard<std::mutex> guard{mtx_};
  ++publish_failures_;
}

std::string edge_stats::render() const {
  std::ostringstream out;
  std::lock_guard<std::mutex> guard{mtx_};
  out << "# HELP gatehouse_nats_requests_total Internal calls answered over "
         "NATS by this replica.\n"
         "# TYPE gatehouse_nats_requests_total counter\n";
  for (auto& [key, n] : answered_)
    out << "gatehouse_nats_requests_total{call=\"" << key.first
        << "\",status=\"" << key.second << "\"} " << n << '\n';
  out << "# HELP gatehouse_nats_replays_total Retries answered with the "
         "reply recorded for their Gatehouse-Request-Id.\n"
         "# TYPE gatehouse_nats_replays_total counter\n";
  for (auto& [call, n] : replays_)
    out << "gatehouse_nats_replays_total{call=\"" << call << "\"} " << n
        << '\n';
  out << "# HELP gatehouse_nats_dropped_total Requests nats.c dropped because "
         "this replica fell behind (slow consumer).\n"
         "# TYPE gatehouse_nats_dropped_total counter\n";
  for (auto& [call, n] : dropped_)
    out << "gatehouse_nats_dropped_total{call=\"" << call << "\"} " << n
        << '\n';
  out << "# HELP gatehouse_nats_publish_failures_total Replies that could not "
         "be published.\n"
         "# TYPE gatehouse_nats_publish_failures_total counter\n"
         "gatehouse_nats_publish_failures_total "
      << publish_failures_ << '\n';
  out << "# HELP gatehouse_nats_in_flight Internal calls received over NATS "
         "and not answered yet.\n"
         "# TYPE gatehouse_nats_in_flight gauge\n"
         "gatehouse_nats_in_flight "
      << in_flight.load() << '\n';
  return out.str();
}

// -- the bridge ---------------------------------------------------------------------

caf::behavior internal_bridge(bridge_actor_ptr self, bridge_settings settings,
                              bridge_deps deps, publish_fn publish,
                              std::shared_ptr<edge_stats> stats) {
  auto& st = self->state;
  st.settings = settings;
  st.deps = std::move(deps);
  st.publish = std::move(publish);
  st.stats = std::move(stats);
  return {
    [=](nats_inbound& in) {
      try {
        handle(self, in);
      } catch (const std::exception& e) {
        // Never let one request kill the bridge (CAF would end the actor).
        log::error("nats request failed",
                   {{"call", call_name(self->state.settings.call)},
                    {"error", std::string{e.what()}}});
      }
    },
  };
}

} // namespace gatehouse::nats
