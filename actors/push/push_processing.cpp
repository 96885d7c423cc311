#include "actors/push/push_processing.hpp"

#include "actors/gitlab_paths.hpp"
#include "actors/push/push_events.hpp"

#include "common/log.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <chrono>

namespace gatehouse {

namespace {

using self_pointer
  = push_processing_actor::stateful_pointer<push_processing_state>;
using answer_promise = caf::typed_response_promise<push::post_receive_answer>;

unix_time now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// Writes the events and the counter change in one transaction, then answers
// the messages. Nothing is answered before the commit: an answered push never
// loses its events.
//
// The store requests carry no CAF timeout. The store always answers: every
// query runs under a statement_timeout and a lost connection fails at once;
// and the edges give up after the caller's own deadline. A CAF timeout
// would cost, per push, two wake-ups of CAF's clock thread and a stale
// timeout message through this actor, long after the answer went out.
void commit_and_answer(self_pointer self, snapshot_ptr snap,
                       push::post_receive_params p, push::push_context ctx,
                       push::commit_facts facts, answer_promise rp) {
  post_receive_write write;
  write.gl_repository = p.gl_repository;
  write.request_id = p.request_id;
  if (ctx.user)
    write.user_id = ctx.user->id;
  if (ctx.project)
    write.project_id = ctx.project->id;
  if (ctx.project && ctx.user)
    write.events = push::build_events(*snap, ctx, p, facts, &push::random_uuid);
  auto event_count = write.events.size();
  auto i = self->state.pick_store();
  self
    ->request(self->state.stores[i], caf::infinite, atom::post_receive::value,
              std::move(write))
    .then(
      [self, i, snap, p, ctx, rp,
       event_count](post_receive_written& written) mutable {
        self->state.release(i);
        push::post_receive_answer answer;
        answer.reference_counter_decreased = written.counter_decreased;
        answer.messages = push::post_receive_messages(
          *snap, ctx, p, written.moved_message, now_seconds());
        log::info(
          "push committed",
          {{"gl_repository", p.gl_repository}, {"events", event_count}});
        rp.deliver(std::move(answer));
      },
      [self, i, rp](caf::error& err) mutable {
        self->state.release(i);
        rp.deliver(std::move(err));
      });
}

// Asks the store to count a push: (gl_repository) or (gl_repository,
// request id) when the caller may retry.
caf::result<push::pre_receive_answer> count_push(self_pointer self,
                                                 push::pre_receive_params& p) {
  if (p.gl_repository.empty())
    return caf::make_error(errc::invalid_params, "gl_repository is missing");
  auto rp = self->make_response_promise<push::pre_receive_answer>();
  auto& st = self->state;
  auto i = st.pick_store();
  auto on_counted = [self, i, rp](bool counted) mutable {
    self->state.release(i);
    rp.deliver(push::pre_receive_answer{counted});
  };
  auto on_failed = [self, i, rp](caf::error& err) mutable {
    self->state.release(i);
    // GitLab answers false when its counter store fails; Gitaly then
    // rejects the push with an empty message.
    log::warn("reference counter not increased", {{"error", render(err)}});
    rp.deliver(push::pre_receive_answer{false});
  };
  if (p.request_id.empty())
    self
      ->request(st.stores[i], caf::infinite, atom::pre_receive::value,
                std::move(p.gl_repository))
      .then(on_counted, on_failed);
  else
    self
      ->request(st.stores[i], caf::infinite, atom::pre_receive::value,
                std::move(p.gl_repository), std::move(p.request_id))
      .then(on_counted, on_failed);
  return rp;
}

// Grape's text for the required fields of /post_receive left out.
std::string missing_fields(const push::post_receive_params& p) {
  std::string out;
  for (auto& [name, value] : {std::pair{"gl_repository", &p.gl_repository},
                              std::pair{"identifier", &p.identifier},
                              std::pair{"changes", &p.changes}})
    if (value->empty())
      out += std::string{out.empty() ? "" : ", "} + name + " is missing";
  return out;
}

} // namespace

push_processing_actor::behavior_type push_processing(
  self_pointer self, push_processing_settings settings,
  read_model_loader_actor loader, std::vector<git_actor> git,
  std::vector<push_store_actor> stores) {
  self->state.settings = settings;
  self->state.git = std::move(git);
  self->state.stores = std::move(stores);
  self->send(loader, atom::subscribe::value, caf::actor_cast<caf::actor>(self));
  return {
    [=](push::pre_receive_params& p) { return count_push(self, p); },
    [=](
      push::post_receive_params& p) -> caf::result<push::post_receive_answer> {
      if (auto missing = missing_fields(p); !missing.empty())
        return caf::make_error(errc::invalid_params, missing);
      // GitLab parses gl_repository before anything else happens and
      // answers 500 for one it cannot parse (ArgumentError): the counter is
      // not decreased and nothing is recorded.
      if (!gitlab::parse_gl_repository(p.gl_repository))
        return caf::make_error(
          errc::internal, "Invalid GL Repository \"" + p.gl_repository + "\"");
      if (gitlab::too_many_changes(p.changes))
        return caf::make_error(errc::too_large, "changes");
      auto& st = self->state;
      if (!st.snap)
        return caf::make_error(errc::unavailable, "read model not loaded yet");
      auto snap = st.snap;
      auto ctx = push::resolve(*snap, p);
      auto rp = self->make_response_promise<push::post_receive_answer>();
      push::commit_facts facts;
      if (!ctx.project || !ctx.user) {
        // GitLab logs and drops a push it cannot attribute: no events.
        commit_and_answer(self, snap, p, ctx, facts, rp);
        return rp;
      }
      auto questions = push::questions_for(*snap, ctx, p);
      if (!questions.location || st.git.empty()) {
        facts.unavailable_reason = "the repository storage has no local path";
        commit_and_answer(self, snap, p, ctx, facts, rp);
        return rp;
      }
      if (questions.changes.empty()) {
        // Nothing git could add (deletions only): the facts are complete.
        facts.available = true;
        commit_and_answer(self, snap, p, ctx, facts, rp);
        return rp;
      }
      auto git = st.git[st.next_git++ % st.git.size()];
      self
        ->request(git, st.settings.git_timeout, atom::commits::value, questions)
        .then(
          [self, snap, p, ctx, rp](push::commit_facts& f) {
            commit_and_answer(self, snap, p, ctx, std::move(f), rp);
          },
          [self, snap, p, ctx, rp](caf::error& err) {
            // Events are never dropped for want of commits: they go out
            // marked Gatehouse-Commits: unavailable.
            push::commit_facts f;
            f.unavailable_reason = "git failed: " + render(err);
            commit_and_answer(self, snap, p, ctx, std::move(f), rp);
          });
      return rp;
    },
    [=](atom::snapshot, snapshot_ptr& snap) {
      self->state.snap = std::move(snap);
    },
  };
}

} // namespace gatehouse
