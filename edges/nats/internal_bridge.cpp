#include "edges/nats/internal_bridge.hpp"

#include "common/log.hpp"
#include "common/request_id.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <array>
#include <optional>
#include <sstream>

namespace gatehouse::nats {

namespace {

using clock_type = std::chrono::steady_clock;

using origin = request_origin;

// -- replies kept for retries
// -------------------------------------------------------

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

// -- answering
// ----------------------------------------------------------------------

// Publishes the one reply of a request and accounts for it. Never throws: a
// publish that fails is counted and logged, and the request still leaves
// the in-flight gauge.
void finish(bridge_actor_ptr self, const origin& o, const wire_reply& reply,
            bool replayed) {
  auto& st = self->state;
  auto call = st.settings.call;
  ++st.replies;
  --st.stats->in_flight;
  // Counted when handed to the publisher, before it leaves: a caller
  // holding its answer never reads a count that lacks it. A publish that
  // fails is counted again as a publish failure.
  st.stats->answered(call, reply.status, replayed);
  try {
    st.publish(o.reply, o.request_id, reply);
  } catch (const std::exception& e) {
    st.stats->publish_failed();
    log::error("nats reply not published",
               {{"call", call_name(call)}, {"error", std::string{e.what()}}});
    return;
  }
  if (!o.request_id.empty() && !replayed) {
    bool success = reply.status >= 200 && reply.status < 300;
    if (spec_of(call).changes_state) {
      // Only an applied push is worth replaying; a failure is retried.
      if (success) {
        keep(st, o.request_id, reply);
        if (st.deps.requests)
          caf::anon_send(st.deps.requests, atom::reply_put::value, o.request_id,
                         std::string{call_name(call)},
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

// Answers a request whose domain actor failed, or did not answer in time.
void finish_failed(bridge_actor_ptr self, const origin& o,
                   const caf::error& err) {
  auto code = classify(err);
  if (code == errc::internal || code == errc::unavailable)
    log::warn("nats request failed",
              {{"call", call_name(self->state.settings.call)},
               {"error", render(err)}});
  finish(self, o, failure_reply(err), false);
}

// -- deadlines
// ----------------------------------------------------------------------
//
// A request to a domain actor carries no CAF timeout: in CAF 0.17 each one
// wakes the clock thread to file it, and fires into the bridge's mailbox
// long after the answer (nothing cancels it), two thread wakeups per call,
// a fifth of the NATS edge's CPU. The bridge keeps the deadlines itself
// instead, with one scheduled tick at the earliest.

// Schedules a tick for the earliest deadline, unless one is scheduled.
void arm_deadline(bridge_actor_ptr self) {
  auto& st = self->state;
  if (st.deadline_armed || st.awaited.empty())
    return;
  auto due = st.awaited.begin()->second.deadline;
  auto wait = std::max(due - self->clock().now(), caf::timespan{0});
  self->delayed_send(self, wait, atom::tick::value);
  st.deadline_armed = true;
}

// The request `seq` if it still awaits its answer, which it no longer does.
std::optional<origin> take_awaited(bridge_actor_ptr self, std::uint64_t seq) {
  auto& awaited = self->state.awaited;
  auto it = awaited.find(seq);
  if (it == awaited.end())
    return std::nullopt; // answered at its deadline already
  auto o = std::move(it->second.origin);
  awaited.erase(it);
  return o;
}

// Answers the requests whose time is up, as a CAF request timeout would.
void expire_awaited(bridge_actor_ptr self) {
  auto& st = self->state;
  st.deadline_armed = false;
  auto now = self->clock().now();
  while (!st.awaited.empty() && st.awaited.begin()->second.deadline <= now) {
    auto o = std::move(st.awaited.begin()->second.origin);
    st.awaited.erase(st.awaited.begin());
    finish_failed(self, o, caf::make_error(caf::sec::request_timeout));
  }
  arm_deadline(self);
}

// Serves one request of call `Id`: decode, ask the call's domain actor with
// a finite deadline, encode; every failure answers through the status table
// (a timeout is a 503, as on the HTTP edge).
template <call_id Id>
void serve(bridge_actor_ptr self, const std::string& payload, const origin& o) {
  using types = call_types<Id>;
  auto request = decode(call_tag<Id>{}, payload);
  if (!request)
    return finish(self, o, failure_reply(request.error()), false);
  if constexpr (has_request_id<typename types::request>::value)
    request->request_id = o.request_id;
  auto dest = types::actor(self->state.deps.domains, *request);
  if (!dest)
    return finish(self, o, error_reply(errc::unavailable), false);
  auto& st = self->state;
  auto seq = st.next_awaited++;
  self->request(dest, caf::infinite, std::move(*request))
    .then(
      [self, seq](typename types::answer& answer) {
        auto awaited = take_awaited(self, seq);
        if (!awaited)
          return;
        wire_reply reply;
        try {
          reply = encode(call_tag<Id>{}, answer);
        } catch (const std::exception& e) {
          log::error(
            "nats reply not encoded",
            {{"call", call_name(Id)}, {"error", std::string{e.what()}}});
          reply = error_reply(errc::internal);
        }
        finish(self, *awaited, reply, false);
      },
      [self, seq](caf::error& err) {
        if (auto awaited = take_awaited(self, seq))
          finish_failed(self, *awaited, err);
      });
  st.awaited.emplace(
    seq, awaited_answer{o, self->clock().now() + st.settings.request_timeout});
  arm_deadline(self);
}

using serve_fn = void (*)(bridge_actor_ptr, const std::string&, const origin&);

// serve<Id> of every call, indexed by call_id.
const std::array<serve_fn, call_count>& servers() {
  static const auto table = [] {
    std::array<serve_fn, call_count> out{};
    for_each_call([&](auto tag) {
      constexpr auto id = decltype(tag)::value;
      if constexpr (spec_of(id).over_nats)
        out[static_cast<std::size_t>(id)] = &serve<id>;
    });
    return out;
  }();
  return table;
}

void dispatch(bridge_actor_ptr self, const nats_inbound& in, const origin& o) {
  servers()[static_cast<std::size_t>(self->state.settings.call)](self,
                                                                 in.payload, o);
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
    return finish(
      self, o, error_reply(errc::bad_request, "invalid Gatehouse-Request-Id"),
      false);
  }
  if (!o.request_id.empty()) {
    if (auto* kept = find_kept(st, o.request_id))
      return finish(self, o, *kept, true);
    if (spec_of(st.settings.call).changes_state && st.deps.requests) {
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

// -- statistics
// -------------------------------------------------------------------

void edge_stats::answered(call_id call, int status, bool replayed) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++answered_[{call_name(call), status}];
  if (replayed)
    ++replays_[call_name(call)];
}

void edge_stats::dropped(call_id call, std::int64_t n) {
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

// -- the bridge
// ---------------------------------------------------------------------

caf::behavior internal_bridge(bridge_actor_ptr self, bridge_settings settings,
                              bridge_deps deps, publish_fn publish,
                              std::shared_ptr<edge_stats> stats) {
  auto& st = self->state;
  st.settings = settings;
  st.deps = std::move(deps);
  st.publish = std::move(publish);
  st.stats = std::move(stats);
  return {
    [=](atom::tick) { expire_awaited(self); },
    [=](nats_inbound& in) {
      auto replies_before = self->state.replies;
      origin o{in.reply, {}, clock_type::now()};
      try {
        handle(self, in);
      } catch (const std::exception& e) {
        // Never let one request kill the bridge (CAF would end the actor),
        // nor leave its caller waiting out a timeout (decoding and the
        // replay paths run here; finish itself never throws).
        log::error("nats request failed",
                   {{"call", call_name(self->state.settings.call)},
                    {"error", std::string{e.what()}}});
        if (self->state.replies == replies_before && !o.reply.empty())
          finish(self, o, error_reply(errc::internal), false);
      }
    },
  };
}

} // namespace gatehouse::nats
