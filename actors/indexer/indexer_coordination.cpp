#include "actors/indexer/indexer_coordination.hpp"

#include "common/log.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <algorithm>

namespace gatehouse {

namespace {

using self_pointer
  = indexer_actor::stateful_pointer<indexer_coordination_state>;
using heartbeat_promise
  = caf::typed_response_promise<indexer::heartbeat_answer>;
using push_promise = caf::typed_response_promise<indexer::pushed_ref_done>;

caf::error not_loaded() {
  return caf::make_error(errc::unavailable, "read model not loaded yet");
}

// Any failed store request, its timeout included, is the store being
// unavailable: the node polls again, the feed redelivers.
caf::error store_failure(const char* what, const caf::error& err) {
  log::warn("indexer store request failed",
            {{"request", what}, {"error", render(err)}});
  return caf::make_error(errc::unavailable, "indexer store unavailable");
}

// -- heartbeat and tasks ------------------------------------------------------

void answer_with_tasks(self_pointer self, heartbeat_promise rp,
                       indexer::node_written written) {
  auto& st = self->state;
  const auto& search = st.snap->settings.search;
  auto limit = indexer::concurrency_limit(written.node, search);
  // Paused: GitLab hands out no tasks; the take still counts the backlog.
  indexer::task_take take{
    written.node.id,
    search.zoekt_indexing_paused ? 0 : static_cast<int>(limit)};
  self->request(st.store, st.settings.store_timeout, take)
    .then(
      [self, rp, written, limit](indexer::tasks_taken& taken) mutable {
        // The snapshot as it is now: settings may have changed meanwhile.
        const auto& snap = *self->state.snap;
        indexer::heartbeat_answer out;
        out.node_id = written.node.id;
        out.truncate = written.created;
        for (const auto& task : taken.tasks)
          if (auto view = indexer::render_task(snap, written.node, task))
            out.tasks.push_back(std::move(*view));
        out.pull_frequency = indexer::pull_frequency(taken.backlog, limit);
        out.stop_indexing
          = indexer::stop_indexing(written.node, snap.settings.search);
        rp.deliver(std::move(out));
      },
      [rp](caf::error& err) mutable {
        rp.deliver(store_failure("task_take", err));
      });
}

caf::result<indexer::heartbeat_answer> on_poll(self_pointer self,
                                               indexer::node_report& report) {
  auto& st = self->state;
  if (!indexer::node_report_valid(report)) {
    indexer::heartbeat_answer out;
    out.invalid_node = true;
    return out;
  }
  if (!st.snap)
    return not_loaded();
  auto rp = self->make_response_promise<indexer::heartbeat_answer>();
  indexer::node_write write{std::move(report), indexer::debounce_seconds};
  self->request(st.store, st.settings.store_timeout, std::move(write))
    .then(
      [self, rp](indexer::node_written& written) mutable {
        answer_with_tasks(self, rp, std::move(written));
      },
      [rp](caf::error& err) mutable {
        rp.deliver(store_failure("node_write", err));
      });
  return rp;
}

// -- callback -----------------------------------------------------------------

caf::result<indexer::callback_answer> on_callback(self_pointer self,
                                                  indexer::callback_query& q) {
  auto rp = self->make_response_promise<indexer::callback_answer>();
  indexer::callback_write write{std::move(q.uuid), q.task_id, q.success,
                                q.size_in_bytes, q.index_file_count};
  self
    ->request(self->state.store, self->state.settings.store_timeout,
              std::move(write))
    .then(
      [rp](indexer::callback_written& written) mutable {
        rp.deliver(indexer::callback_answer{written.node_found});
      },
      [rp](caf::error& err) mutable {
        rp.deliver(store_failure("callback_write", err));
      });
  return rp;
}

// -- pushes -------------------------------------------------------------------

void write_push(self_pointer self, push_promise rp,
                indexer::push_index_write write) {
  self
    ->request(self->state.store, self->state.settings.store_timeout,
              std::move(write))
    .then(
      [rp](indexer::push_index_written& written) mutable {
        rp.deliver(indexer::pushed_ref_done{written.task_created ? 1 : 0,
                                            written.elastic_written ? 1 : 0});
      },
      [rp](caf::error& err) mutable {
        rp.deliver(store_failure("push_index_write", err));
      });
}

caf::result<indexer::pushed_ref_done> on_push(self_pointer self,
                                              indexer::pushed_ref& push) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  const auto& snap = *st.snap;
  auto project = snap.projects.find(push.project_id);
  // Deleted since the push: nothing to index (its repository, if any, is
  // dropped by a round).
  if (project == snap.projects.end())
    return indexer::pushed_ref_done{};
  indexer::push_index_write write;
  write.event_id = push.event_id;
  write.project_id = push.project_id;
  write.zoekt = indexer::zoekt_indexed(snap, project->second)
    && indexer::pushes_default_branch(project->second, push);
  write.elastic = indexer::elastic_index_request(snap, project->second, push);
  if (!write.zoekt && !write.elastic)
    return indexer::pushed_ref_done{};
  auto rp = self->make_response_promise<indexer::pushed_ref_done>();
  if (!write.zoekt || st.room) {
    if (write.zoekt)
      write.node_id = st.room->best();
    write_push(self, rp, std::move(write));
    return rp;
  }
  // No round has read the index state yet: read it once for the choice.
  self->request(st.store, st.settings.round_timeout, atom::index_state::value)
    .then(
      [self, rp, write](indexer::index_state& state) mutable {
        auto& room = self->state.room.emplace(state, self->state.settings.lost_after);
        write.node_id = room.best();
        write_push(self, rp, std::move(write));
      },
      [rp](caf::error& err) mutable {
        rp.deliver(store_failure("index_state", err));
      });
  return rp;
}

// -- assignment rounds --------------------------------------------------------

/// Sends an assign after `delay` unless one is due by then already.
void schedule_round(self_pointer self, caf::timespan delay) {
  auto& due = self->state.rounds_due;
  auto at = self->clock().now() + delay;
  if (std::any_of(due.begin(), due.end(), [at](auto t) { return t <= at; }))
    return;
  due.push_back(at);
  self->delayed_send(self, delay, atom::assign::value);
}

void finish_round(self_pointer self) {
  auto& st = self->state;
  st.round_running = false;
  ++st.rounds_done;
  if (st.round_again) {
    st.round_again = false;
    schedule_round(self, st.settings.assign_after_change);
  }
  // Keeps the periodic schedule alive without doubling it.
  if (st.rounds_due.empty())
    schedule_round(self, st.settings.assign_interval);
}

void write_round(self_pointer self, indexer::assignment_write write) {
  auto& st = self->state;
  auto sizes = std::to_string(write.assign.size()) + " assign, "
    + std::to_string(write.wait.size()) + " wait, "
    + std::to_string(write.drop.size()) + " drop";
  self->request(st.store, st.settings.round_timeout, std::move(write))
    .then(
      [self, sizes](indexer::assignment_written& written) {
        log::info("zoekt assignment round",
                  {{"changes", sizes},
                   {"index_tasks", written.index_tasks},
                   {"delete_tasks", written.delete_tasks}});
        finish_round(self);
      },
      [self](caf::error& err) {
        store_failure("assignment_write", err);
        finish_round(self);
      });
}

void start_round(self_pointer self) {
  auto& st = self->state;
  if (!st.snap) {
    finish_round(self);
    return;
  }
  st.round_running = true;
  self->request(st.store, st.settings.round_timeout, atom::index_state::value)
    .then(
      [self](indexer::index_state& state) {
        auto& st = self->state;
        st.room.emplace(state, st.settings.lost_after);
        indexer::assignment_limits limits;
        limits.lost_after = st.settings.lost_after;
        limits.max_changes = st.settings.max_changes_per_round;
        auto write = indexer::plan_assignments(*st.snap, state, limits);
        if (write.assign.empty() && write.wait.empty() && write.drop.empty())
          finish_round(self);
        else
          write_round(self, std::move(write));
      },
      [self](caf::error& err) {
        store_failure("index_state", err);
        finish_round(self);
      });
}

void on_assign(self_pointer self) {
  auto& st = self->state;
  // Timers fire in order: the earliest due one is this message (an assign
  // sent by someone else finds none due and removes nothing).
  auto& due = st.rounds_due;
  auto earliest = std::min_element(due.begin(), due.end());
  if (earliest != due.end() && *earliest <= self->clock().now())
    due.erase(earliest);
  if (st.round_running) {
    st.round_again = true;
    return;
  }
  start_round(self);
}

void on_snapshot(self_pointer self, snapshot_ptr snap) {
  auto& st = self->state;
  if (!snap)
    return;
  static const std::vector<std::int64_t> none;
  const auto& before = st.snap ? st.snap->zoekt_enabled_namespaces : none;
  bool changed = before != snap->zoekt_enabled_namespaces;
  st.snap = std::move(snap);
  if (changed)
    schedule_round(self, st.settings.assign_after_change);
}

} // namespace

indexer_actor::behavior_type indexer_coordination(
  self_pointer self, indexer_coordination_settings settings,
  read_model_loader_actor loader, indexer_store_actor store) {
  // A zero interval would run rounds back to back; no budget, none at all.
  settings.assign_interval
    = std::max(settings.assign_interval, std::chrono::seconds{1});
  settings.max_changes_per_round
    = std::max<std::size_t>(settings.max_changes_per_round, 1);
  self->state.settings = std::move(settings);
  self->state.store = std::move(store);
  self->send(loader, atom::subscribe::value, caf::actor_cast<caf::actor>(self));
  schedule_round(self, self->state.settings.assign_interval);
  return {
    [self](indexer::heartbeat_query& q) { return on_poll(self, q.node); },
    [self](indexer::tasks_query& q) { return on_poll(self, q.node); },
    [self](indexer::callback_query& q) { return on_callback(self, q); },
    [self](indexer::pushed_ref& push) { return on_push(self, push); },
    [self](atom::snapshot, snapshot_ptr& snap) {
      on_snapshot(self, std::move(snap));
    },
    [self](atom::assign) { on_assign(self); },
  };
}

} // namespace gatehouse
