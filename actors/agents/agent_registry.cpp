#include "actors/agents/agent_registry.hpp"

#include "actors/agents/rules.hpp"

#include "common/base64.hpp"
#include "common/log.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <set>

namespace gatehouse {

namespace {

using self_pointer = agent_registry_actor::stateful_pointer<agent_registry_state>;
using clock_type = std::chrono::steady_clock;

// Tokens whose last use this replica remembers; past it the memory is
// dropped (a token then gets one extra write, never a missed one).
constexpr std::size_t max_touched = 100'000;

unix_time now_of(const agent_registry_state& st) {
  if (st.settings.now)
    return st.settings.now();
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

caf::error not_loaded() {
  return caf::make_error(errc::unavailable, "read model not loaded yet");
}

// A failed store write: 503; KAS retries its reports and configurations.
caf::error store_failure(const char* what, const caf::error& err) {
  log::warn("agent store request failed",
            {{"request", what}, {"error", render(err)}});
  return caf::make_error(classify(err));
}

agents::refusal record_not_found() {
  // ActiveRecord::RecordNotFound through GitLab's API handler: lower-case f.
  return agents::refusal{404, "404 Not found", std::nullopt, std::nullopt};
}

/// GitLab's TrackUsageService: records the token's use, at most once per
/// interval, off the answer's path.
void touch(self_pointer self, std::int64_t token_id) {
  auto& st = self->state;
  auto now = clock_type::now();
  auto it = st.touched.find(token_id);
  if (it != st.touched.end() && now - it->second < st.settings.touch_interval)
    return;
  if (st.touched.size() >= max_touched)
    st.touched.clear();
  st.touched[token_id] = now;
  self->send(st.store, atom::touch_agent_token::value, token_id);
}

caf::result<agents::agent_info_answer> on_agent_info(self_pointer self,
                                                     agents::agent_info_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  auto match = agents::agent_for_token(*st.snap, q.token);
  if (!match) {
    agents::agent_info_answer out;
    out.refused = agents::unauthorized();
    return out;
  }
  touch(self, match->token_id);
  return agents::agent_info(*st.snap, *match);
}

caf::result<agents::project_answer> on_project(self_pointer self,
                                               agents::project_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  if (!q.autoflow)
    if (auto match = agents::agent_for_token(*st.snap, q.token))
      touch(self, match->token_id);
  return agents::project_info(*st.snap, q);
}

caf::result<agents::no_content> on_configuration(self_pointer self,
                                                 agents::configuration_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  auto snap = st.snap;
  auto agent = snap->agents.find(q.agent_id);
  if (agent == snap->agents.end())
    return agents::no_content{record_not_found()};
  // GitLab fails with a 500 on a configuration that is not an object (null,
  // an array) and keeps the authorizations: refuse it, change nothing.
  if (!agents::is_json_object(q.config))
    return caf::make_error(errc::invalid_params, "agent_config is invalid");
  auto write = agents::authorizations_for(*snap, agent->second, q.config);
  write.changed_event = agents::configuration_event(*snap, agent->second,
                                                    write, now_of(st));
  auto rp = self->make_response_promise<agents::no_content>();
  self->request(st.store, st.settings.store_timeout, std::move(write))
    .then(
      [rp](agents::configuration_written& written) mutable {
        // The agent may have been deleted since the snapshot.
        if (!written.agent_found)
          rp.deliver(agents::no_content{record_not_found()});
        else
          rp.deliver(agents::no_content{});
      },
      [rp](caf::error& err) mutable {
        rp.deliver(store_failure("configuration", err));
      });
  return rp;
}

/// Sends `write` to the store unless it is empty; 204 once it is durable.
caf::result<agents::no_content> store_usage(self_pointer self,
                                            agents::usage_write write) {
  if (write.counters.empty() && write.unique_ids.empty()
      && write.connections.empty())
    return agents::no_content{};
  auto rp = self->make_response_promise<agents::no_content>();
  self
    ->request(self->state.store, self->state.settings.store_timeout,
              std::move(write))
    .then([rp](agents::usage_written&) mutable { rp.deliver(agents::no_content{}); },
          [rp](caf::error& err) mutable { rp.deliver(store_failure("usage", err)); });
  return rp;
}

/// Distinct (name, id) pairs, in first-seen order.
void add_unique(agents::usage_write& write, std::set<std::pair<std::string, std::int64_t>>& seen,
                const std::string& name, std::int64_t id) {
  if (seen.insert({name, id}).second)
    write.unique_ids.emplace_back(name, id);
}

caf::result<agents::no_content> on_usage(self_pointer self,
                                         agents::usage_query& q) {
  if (auto refused = agents::usage_refusal(q))
    return agents::no_content{std::move(refused)};
  agents::usage_write write;
  std::set<std::pair<std::string, std::int64_t>> seen;
  for (auto& [name, increment] : q.counters)
    if (increment > 0)
      write.counters.emplace_back(name, increment);
  for (const auto& [name, ids] : q.unique_counters)
    for (auto id : ids)
      add_unique(write, seen, name, id);
  return store_usage(self, std::move(write));
}

caf::result<agents::no_content> on_events(self_pointer self,
                                          agents::events_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  agents::usage_write write;
  std::set<std::pair<std::string, std::int64_t>> seen;
  for (const auto& [name, events] : q.user_events) {
    if (events.empty())
      continue;
    write.counters.emplace_back(name, static_cast<std::int64_t>(events.size()));
    for (const auto& e : events)
      if (e.user_id)
        add_unique(write, seen, name, *e.user_id);
  }
  if (!q.registrations.empty())
    write.counters.emplace_back(
      "register_agent_at_kas",
      static_cast<std::int64_t>(q.registrations.size()));
  auto now = now_of(st);
  for (const auto& seen_at_kas : q.registrations) {
    // Older agents do not send their id: counted, but no connection to
    // record.
    if (!seen_at_kas.agent_id)
      continue;
    auto agent = st.snap->agents.find(*seen_at_kas.agent_id);
    if (agent == st.snap->agents.end())
      continue;
    agents::connection_write c;
    c.seen = seen_at_kas;
    c.registered = agents::connection_event(*st.snap, agent->second,
                                            seen_at_kas, "agent_registered", now);
    c.upgraded = agents::connection_event(*st.snap, agent->second, seen_at_kas,
                                          "agent_upgraded", now);
    write.connections.push_back(std::move(c));
  }
  return store_usage(self, std::move(write));
}

caf::result<agents::runner_answer> on_runner(self_pointer self,
                                             agents::runner_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  agents::runner_answer out;
  if (q.token && !q.token->empty()) {
    auto it = st.snap->runner_by_digest.find(token_digest(*q.token));
    if (it != st.snap->runner_by_digest.end()) {
      out.runner_id = it->second;
      return out;
    }
  }
  out.refused = agents::unauthorized();
  return out;
}

caf::result<agents::pushed_paths_done> on_push(self_pointer self,
                                               agents::pushed_paths& push) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  auto targets = agents::agents_configured_by(*st.snap, push);
  if (targets.empty())
    return agents::pushed_paths_done{0};
  auto rp = self->make_response_promise<agents::pushed_paths_done>();
  struct progress {
    int left = 0;
    int written = 0;
    bool failed = false;
  };
  auto p = std::make_shared<progress>();
  p->left = static_cast<int>(targets.size());
  auto now = now_of(st);
  for (const auto* agent : targets) {
    auto event = agents::config_push_event(*st.snap, *agent, push, now);
    self
      ->request(st.store, st.settings.store_timeout, atom::config_push::value,
                std::move(event))
      .then(
        [rp, p](bool written) mutable {
          p->written += written ? 1 : 0;
          if (--p->left == 0 && !p->failed)
            rp.deliver(agents::pushed_paths_done{p->written});
        },
        [rp, p](caf::error& err) mutable {
          // The feed retries the whole event; notices already written are
          // skipped then by their derived ids.
          if (!p->failed)
            rp.deliver(store_failure("config push", err));
          p->failed = true;
          --p->left;
        });
  }
  return rp;
}

void refresh_totals(self_pointer self) {
  auto& st = self->state;
  if (st.board)
    self->request(st.store, st.settings.store_timeout, atom::usage_totals::value)
      .then(
        [self](agents::usage_totals& totals) {
          self->state.board->set(std::move(totals));
        },
        [](caf::error& err) {
          log::warn("agent usage totals not refreshed",
                    {{"error", render(err)}});
        });
  self->delayed_send(self, st.settings.totals_interval, atom::tick::value);
}

} // namespace

agent_registry_actor::behavior_type agent_registry(
  self_pointer self, agent_registry_settings settings,
  read_model_loader_actor loader, agent_store_actor store,
  std::shared_ptr<agents::usage_board> board) {
  self->state.settings = std::move(settings);
  self->state.store = std::move(store);
  self->state.board = std::move(board);
  self->send(loader, atom::subscribe::value, caf::actor_cast<caf::actor>(self));
  if (self->state.board)
    self->send(self, atom::tick::value);
  return {
    [self](agents::agent_info_query& q) { return on_agent_info(self, q); },
    [self](agents::project_query& q) { return on_project(self, q); },
    [self](agents::configuration_query& q) {
      return on_configuration(self, q);
    },
    [self](agents::proxy_user_query& q) -> caf::result<agents::proxy_user_answer> {
      auto& st = self->state;
      if (!st.snap)
        return not_loaded();
      return agents::authorize_proxy_user(*st.snap, q, now_of(st));
    },
    [self](agents::usage_query& q) { return on_usage(self, q); },
    [self](agents::events_query& q) { return on_events(self, q); },
    [self](agents::runner_query& q) { return on_runner(self, q); },
    [self](agents::pushed_paths& push) { return on_push(self, push); },
    [self](atom::snapshot, snapshot_ptr& snap) {
      self->state.snap = std::move(snap);
    },
    [self](atom::tick) { refresh_totals(self); },
  };
}

} // namespace gatehouse
