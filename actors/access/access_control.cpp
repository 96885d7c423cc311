#include "actors/access/access_control.hpp"

#include "common/base64.hpp"
#include "common/jwt.hpp"
#include "common/log.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <chrono>

namespace gatehouse {

namespace {

using self_pointer
  = access_control_actor::stateful_pointer<access_control_state>;

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// The actor a rate-limit scope names, from the request as it arrived: GitLab
// scopes gitlab_shell_operation by [action, project, key-or-user].
std::string caller_identity(const access::allowed_params& p) {
  if (p.key_id)
    return "key-" + std::to_string(*p.key_id);
  if (p.user_id)
    return "user-" + std::to_string(*p.user_id);
  if (p.username)
    return "username-" + *p.username;
  return "";
}

// Counts one operation; false when the minute's limit is spent. Counting is
// per replica (in memory): N replicas allow up to N times the limit.
bool within_operation_limit(access_control_state& st,
                            const access::allowed_params& p,
                            std::int64_t limit, std::int64_t now) {
  if (limit <= 0)
    return true;
  auto window = now / 60;
  if (st.operations_swept_at != window) {
    // Forget the previous minutes' scopes so the map stays small.
    for (auto it = st.operations.begin(); it != st.operations.end();)
      it = it->second.first == window ? std::next(it) : st.operations.erase(it);
    st.operations_swept_at = window;
  }
  auto scope = p.action + '\n' + p.project.value_or(p.gl_repository.value_or(""))
               + '\n' + caller_identity(p);
  auto& [start, count] = st.operations[scope];
  if (start != window) {
    start = window;
    count = 0;
  }
  return ++count <= limit;
}

// GitLab writes last_used_at at most once a day per key; remember the day so
// that repeated use never reaches the store.
void touch_key(self_pointer self, std::int64_t key_id, std::int64_t now) {
  auto& st = self->state;
  auto day = now / 86400;
  if (auto it = st.touched_day.find(key_id);
      it != st.touched_day.end() && it->second == day)
    return;
  if (st.snap)
    if (auto k = st.snap->keys.find(key_id); k != st.snap->keys.end()
        && k->second.last_used_at && *k->second.last_used_at / 86400 == day) {
      st.touched_day[key_id] = day;
      return;
    }
  st.touched_day[key_id] = day;
  self->send(st.store, atom::touch_key::value, key_id);
}

// Applies the decision's side effects, then answers.
void finish_allowed(self_pointer self, snapshot_ptr snap,
                    const access::allowed_params& p, const access::git_facts& f,
                    caf::typed_response_promise<access::allowed_outcome> rp) {
  auto now = now_seconds();
  auto outcome = access::check_allowed(*snap, p, f, now);
  if (outcome.used_key_id)
    touch_key(self, *outcome.used_key_id, now);
  if (outcome.status == 200 && outcome.moved_message && outcome.moved_user_id
      && outcome.moved_project_id) {
    // The next call (/post_receive) may reach another replica: keep the
    // message in PostgreSQL before answering.
    self
      ->request(self->state.store, self->state.settings.store_timeout,
                atom::put_moved::value, *outcome.moved_user_id,
                *outcome.moved_project_id, *outcome.moved_message)
      .then([rp, outcome](bool) mutable { rp.deliver(std::move(outcome)); },
            [rp, outcome](caf::error& err) mutable {
              log::warn("project-moved message not kept",
                        {{"error", render(err)}});
              rp.deliver(std::move(outcome));
            });
    return;
  }
  rp.deliver(std::move(outcome));
}

caf::result<access::allowed_outcome> on_allowed(self_pointer self,
                                                access::allowed_params& p) {
  auto& st = self->state;
  if (!st.snap)
    return caf::make_error(errc::unavailable, "read model not loaded yet");
  auto snap = st.snap;
  if (!within_operation_limit(st, p, snap->settings.gitlab_shell_operation_limit,
                              now_seconds())) {
    access::allowed_outcome limited;
    limited.status = 429;
    limited.message
      = "This endpoint has been requested too many times. Try again later.";
    return limited;
  }
  auto rp = self->make_response_promise<access::allowed_outcome>();
  auto questions = access::questions_for(*snap, p);
  if (questions.empty() || !questions.location || st.git.empty()) {
    access::git_facts facts;
    if (!questions.empty())
      facts.unavailable_reason = "the repository storage has no local path";
    finish_allowed(self, snap, p, facts, rp);
    return rp;
  }
  auto git = st.git[st.next_git++ % st.git.size()];
  self->request(git, st.settings.git_timeout, atom::inspect::value, questions)
    .then(
      [self, snap, p, rp](access::git_facts& facts) {
        finish_allowed(self, snap, p, facts, rp);
      },
      [self, snap, p, rp](caf::error& err) {
        access::git_facts facts;
        facts.unavailable_reason = "git inspection failed: " + render(err);
        finish_allowed(self, snap, p, facts, rp);
      });
  return rp;
}

std::string lfs_token(const std::string& key, const access::lfs_plan& plan,
                      const std::string& operation, std::int64_t now) {
  nlohmann::json claims = {{"iss", "gatehouse"},
                           {"sub", plan.username},
                           {"gl_repository", plan.gl_repository},
                           {"operation", operation},
                           {"iat", now},
                           {"exp", now + 7200},
                           {"jti", hex_encode(random_bytes(12))}};
  if (plan.key_id)
    claims["key_id"] = *plan.key_id;
  if (plan.user_id)
    claims["user_id"] = *plan.user_id;
  return jwt::sign_raw(R"({"alg":"HS256","typ":"JWT"})", claims.dump(), key);
}

} // namespace

access_control_actor::behavior_type
access_control(self_pointer self, access_control_settings settings,
               read_model_loader_actor loader, std::vector<git_actor> git,
               access_store_actor store) {
  self->state.settings = settings;
  self->state.git = std::move(git);
  self->state.store = store;
  self->send(loader, atom::subscribe::value,
             caf::actor_cast<caf::actor>(self));
  return {
    [=](atom::allowed, access::allowed_params& p) { return on_allowed(self, p); },
    [=](atom::find_key, std::string& blob) -> caf::result<access::key_answer> {
      if (!self->state.snap)
        return caf::make_error(errc::unavailable, "read model not loaded yet");
      return access::key_answer{access::find_authorized_key(*self->state.snap, blob)};
    },
    [=](atom::discover,
        access::discover_query& q) -> caf::result<access::discover_answer> {
      if (!self->state.snap)
        return caf::make_error(errc::unavailable, "read model not loaded yet");
      return access::discover_answer{access::discover(
        *self->state.snap, q.key_id, q.user_id, q.username)};
    },
    [=](atom::lfs_auth,
        access::lfs_query& q) -> caf::result<access::lfs_answer> {
      auto& st = self->state;
      if (!st.snap)
        return caf::make_error(errc::unavailable, "read model not loaded yet");
      auto plan = access::check_lfs_authenticate(*st.snap, q.actor, q.project);
      access::lfs_answer answer;
      answer.status = plan.status;
      answer.message = plan.message;
      if (plan.status != 200)
        return answer;
      if (plan.key_id)
        touch_key(self, *plan.key_id, now_seconds());
      answer.username = plan.username;
      answer.repository_http_path = plan.repository_http_path;
      if (!st.lfs_key.empty()) {
        answer.lfs_token = lfs_token(st.lfs_key, plan, q.operation, now_seconds());
        return answer;
      }
      // First use: fetch the key every replica shares, then answer.
      auto rp = self->make_response_promise<access::lfs_answer>();
      self
        ->request(st.store, st.settings.store_timeout, atom::signing_key::value,
                  std::string{"lfs"})
        .then(
          [self, rp, plan, answer, op = q.operation](std::string& key) mutable {
            self->state.lfs_key = key;
            answer.lfs_token = lfs_token(key, plan, op, now_seconds());
            rp.deliver(std::move(answer));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](atom::recovery,
        access::shell_actor& a) -> caf::result<access::shell_answer> {
      auto& st = self->state;
      if (!st.snap)
        return caf::make_error(errc::unavailable, "read model not loaded yet");
      if (a.key_id)
        touch_key(self, *a.key_id, now_seconds());
      auto verdict = access::check_recovery_codes(*st.snap, a);
      if (!verdict.success)
        return access::shell_answer{false, verdict.message, {}, {}, {}, {}};
      auto rp = self->make_response_promise<access::shell_answer>();
      self
        ->request(st.store, st.settings.store_timeout, atom::new_codes::value,
                  verdict.user_id)
        .then(
          [rp](std::vector<std::string>& codes) mutable {
            access::shell_answer answer;
            answer.success = true;
            answer.recovery_codes = std::move(codes);
            rp.deliver(std::move(answer));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](atom::make_pat,
        access::pat_query& q) -> caf::result<access::shell_answer> {
      auto& st = self->state;
      if (!st.snap)
        return caf::make_error(errc::unavailable, "read model not loaded yet");
      if (q.actor.key_id)
        touch_key(self, *q.actor.key_id, now_seconds());
      auto today = now_seconds() / 86400;
      auto plan = access::check_personal_access_token(
        *st.snap, q.actor, q.name, q.scopes, q.expires_at, today);
      if (!plan.verdict.success)
        return access::shell_answer{false, plan.verdict.message, {}, {}, {}, {}};
      auto rp = self->make_response_promise<access::shell_answer>();
      pat_request req{plan.verdict.user_id, plan.name, plan.scopes,
                      plan.expires_at};
      self->request(st.store, st.settings.store_timeout, atom::create_pat::value, req)
        .then(
          [rp, plan](pat_result& created) mutable {
            access::shell_answer answer;
            answer.success = true;
            answer.token = std::move(created.token);
            answer.scopes = plan.scopes;
            answer.expires_at = plan.expires_at;
            rp.deliver(std::move(answer));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](atom::snapshot, snapshot_ptr& snap) {
      self->state.snap = std::move(snap);
    },
  };
}

} // namespace gatehouse
