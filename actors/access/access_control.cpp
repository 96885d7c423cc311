#include "actors/access/access_control.hpp"

#include "actors/access/git_access.hpp"
#include "actors/access/http_auth.hpp"
#include "actors/access/shell_calls.hpp"
#include "actors/gitlab_paths.hpp"
#include "common/base64.hpp"
#include "common/ids.hpp"
#include "common/jwt.hpp"
#include "common/log.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>

namespace gatehouse {

unix_time system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

namespace {

using self_pointer
  = access_control_actor::stateful_pointer<access_control_state>;

// GitLab's texts of these calls (contract shell-gitaly §2.1, §2.10, §2.13).
constexpr const char* rate_limit_text
  = "This endpoint has been requested too many times. Try again later.";
constexpr const char* otp_not_available = "Feature is not available";
constexpr const char* no_valid_action = "No valid action specified";
constexpr const char* no_audit_needed = "No git audit event needed";

caf::error not_loaded() {
  return caf::make_error(errc::unavailable, "read model not loaded yet");
}

// A store failure as the caller sees it: its class only. PostgreSQL's own
// text stays in the log.
caf::error store_failure(const caf::error& err) {
  log::warn("access store request failed", {{"error", render(err)}});
  return caf::make_error(classify(err));
}

// Grape's text for required parameters left out, in the order given:
// "action is missing, protocol is missing".
std::string missing_text(
  std::initializer_list<std::pair<const char*, bool>> fields) {
  std::string out;
  for (auto& [name, present] : fields)
    if (!present)
      out += std::string{out.empty() ? "" : ", "} + name + " is missing";
  return out;
}

// Counts one operation; false when the minute's limit is spent. Counting is
// per replica (in memory): N replicas allow up to N times the limit. The
// scope names its caller (access::caller_identity), so a caller's requests
// all reach one partition (access::partition_hash) and count here.
bool within_operation_limit(access_control_state& st,
                            const access::allowed_params& p, std::int64_t limit,
                            std::int64_t now) {
  if (limit <= 0)
    return true;
  // Anonymous git clients over HTTP share no identity: one bucket per
  // project would throttle a public project's every anonymous clone.
  if (p.protocol == "http" && access::caller_identity(p).empty())
    return true;
  auto window = now / 60;
  if (st.operations_swept_at != window) {
    // Forget the previous minutes' scopes so the map stays small.
    for (auto it = st.operations.begin(); it != st.operations.end();)
      it = it->second.first == window ? std::next(it) : st.operations.erase(it);
    st.operations_swept_at = window;
  }
  auto scope = p.action + '\n'
    + p.project.value_or(p.gl_repository.value_or("")) + '\n'
    + access::caller_identity(p);
  auto& [start, count] = st.operations[scope];
  if (start != window) {
    start = window;
    count = 0;
  }
  return ++count <= limit;
}

// GitLab writes last_used_at at most once a day per key; remember the day so
// that repeated use never reaches the store. Per partition: a key's calls
// reach the one its caller identity hashes to ("key-<id>").
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

// What a decision of /allowed hands to whoever asked for it.
using allowed_done = std::function<void(access::allowed_outcome)>;

// Applies the decision's side effects, then hands the outcome on.
void finish_allowed(self_pointer self, snapshot_ptr snap,
                    const access::allowed_params& p, const access::git_facts& f,
                    allowed_done done) {
  auto now = self->state.settings.now();
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
      .then(
        [done, outcome](bool) { done(outcome); },
        [done, outcome](caf::error& err) {
          log::warn("project-moved message not kept", {{"error", render(err)}});
          done(outcome);
        });
    return;
  }
  done(std::move(outcome));
}

// The synchronous half of the /allowed decision, shared by /allowed and the
// git audit event: input validation, the read model, the rate limit. An
// error here is the answer.
caf::error admit_allowed(self_pointer self, const access::allowed_params& p) {
  auto& st = self->state;
  if (p.gitaly_client_context_bin)
    if (auto problem
        = access::gitaly_context_problem(*p.gitaly_client_context_bin))
      return caf::make_error(errc::bad_request, *problem);
  if (gitlab::too_many_changes(p.changes))
    return caf::make_error(errc::too_large, "changes");
  if (!st.snap)
    return not_loaded();
  if (!within_operation_limit(st, p,
                              st.snap->settings.gitlab_shell_operation_limit,
                              st.settings.now()))
    return caf::make_error(errc::rate_limited, rate_limit_text);
  return {};
}

// The git actor for an inspection of `questions` questions: round-robin
// within its lane (all actors form one lane when no cheap lane is set).
git_actor pick_git(access_control_state& st, std::size_t questions) {
  const auto all = st.git.size();
  const auto cheap = std::min(st.settings.cheap_git_workers, all);
  if (cheap == 0 || cheap == all)
    return st.git[st.next_git++ % all];
  if (questions <= st.settings.cheap_git_questions)
    return st.git[st.next_cheap_git++ % cheap];
  return st.git[cheap + st.next_git++ % (all - cheap)];
}

// The rest of the decision once admitted: git facts, the decision and its
// side effects; `done` runs with the outcome.
void decide_allowed(self_pointer self, const access::allowed_params& p,
                    allowed_done done) {
  auto& st = self->state;
  auto snap = st.snap;
  auto questions = access::questions_for(*snap, p);
  if (questions.empty() || !questions.location || st.git.empty()) {
    access::git_facts facts;
    if (!questions.empty())
      facts.unavailable_reason = "the repository storage has no local path";
    finish_allowed(self, snap, p, facts, std::move(done));
    return;
  }
  questions.deadline
    = std::chrono::steady_clock::now() + st.settings.git_timeout;
  auto git = pick_git(st, questions.count());
  // A little longer than the budget: the git actor answers at the deadline
  // with what it has, which says more than a bare timeout.
  const auto wait = st.settings.git_timeout + st.settings.git_timeout / 20;
  self->request(git, wait, atom::inspect::value, questions)
    .then(
      [self, snap, p, done](access::git_facts& facts) {
        finish_allowed(self, snap, p, facts, done);
      },
      [self, snap, p, done](caf::error& err) {
        access::git_facts facts;
        facts.unavailable_reason = "git inspection failed: " + render(err);
        // The git actor was busy past the budget (or gone): GitLab's 503.
        facts.timed_out = true;
        finish_allowed(self, snap, p, facts, done);
      });
}

// Answers a request that runs the /allowed decision, mapping its outcome to
// `Answer` with `map`. The promise is made only once admitted: after
// make_response_promise, a returned error would no longer reach the caller.
template <class Answer, class Map>
caf::result<Answer> answer_allowed(self_pointer self,
                                   const access::allowed_params& p, Map map) {
  if (auto err = admit_allowed(self, p))
    return err;
  auto rp = self->make_response_promise<Answer>();
  decide_allowed(self, p, [rp, map](access::allowed_outcome o) mutable {
    rp.deliver(map(std::move(o)));
  });
  return rp;
}

// The access check of a git audit event: GitLab's required fields, then the
// action, then the same decision as /allowed.
caf::result<access::audit_answer> on_audit(self_pointer self,
                                           access::audit_query& q) {
  auto missing = missing_text({{"action", q.action.has_value()},
                               {"protocol", q.protocol.has_value()},
                               {"gl_repository", q.gl_repository.has_value()},
                               {"changes", q.changes.has_value()}});
  if (!missing.empty())
    return caf::make_error(errc::invalid_params, missing);
  if (*q.action != "git-upload-pack" && *q.action != "git-receive-pack")
    return access::audit_answer{400, no_valid_action};
  access::allowed_params p;
  p.action = *q.action;
  p.protocol = *q.protocol;
  p.gl_repository = q.gl_repository;
  p.changes = *q.changes;
  p.project = q.project;
  p.key_id = q.key_id;
  p.user_id = q.user_id;
  p.username = q.username;
  p.push_options = std::move(q.push_options);
  return answer_allowed<access::audit_answer>(
    self, p, [](access::allowed_outcome o) {
      // Community edition: git audit streaming is never configured.
      if (o.status != 200)
        return access::audit_answer{o.status, std::move(o.message)};
      return access::audit_answer{200, no_audit_needed};
    });
}

// Rails' identifier parameter ("key-<n>", "user-<n>") fills the ids the
// caller did not send.
void apply_identifier(access::discover_query& q) {
  if (!q.identifier)
    return;
  const auto& id = *q.identifier;
  if (id.rfind("key-", 0) == 0 && !q.key_id)
    q.key_id = parse_id(std::string_view{id}.substr(4));
  else if (id.rfind("user-", 0) == 0 && !q.user_id)
    q.user_id = parse_id(std::string_view{id}.substr(5));
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

caf::result<access::lfs_answer> on_lfs(self_pointer self,
                                       access::lfs_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  auto plan = access::check_lfs_authenticate(*st.snap, q.caller, q.project);
  access::lfs_answer answer;
  answer.status = plan.status;
  answer.message = plan.message;
  if (plan.status != 200)
    return answer;
  auto now = st.settings.now();
  if (plan.key_id)
    touch_key(self, *plan.key_id, now);
  answer.username = plan.username;
  answer.repository_http_path = plan.repository_http_path;
  if (!st.lfs_key.empty()) {
    answer.lfs_token = lfs_token(st.lfs_key, plan, q.operation, now);
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
        answer.lfs_token = lfs_token(key, plan, op, self->state.settings.now());
        rp.deliver(std::move(answer));
      },
      [rp](caf::error& err) mutable { rp.deliver(store_failure(err)); });
  return rp;
}

// -- git over HTTP (Workhorse's pre-authorization, other-callers §4.2) ---------

// The command a git HTTP request runs, as GitLab's git_command names it.
std::string git_command(const access::git_http_query& q) {
  switch (q.action) {
    case access::git_http_action::info_refs:
      return q.service.value_or("");
    case access::git_http_action::upload_pack:
      return "git-upload-pack";
    case access::git_http_action::receive_pack:
      break;
  }
  return "git-receive-pack";
}

// A refusal for the git client: plain text, a 401 with GitLab's challenge.
access::git_http_answer git_http_refusal(int status, std::string message,
                                         bool challenge = false) {
  access::git_http_answer a;
  a.status = status;
  a.message = std::move(message);
  a.challenge = challenge;
  return a;
}

// The /allowed outcome as the git client sees it: GitLab's git HTTP
// controller answers a forbidden access 403 where /allowed answers 401.
access::git_http_answer git_http_answer_of(const snapshot& snap,
                                           access::allowed_outcome o) {
  if (o.status != 200 || !o.success)
    return git_http_refusal(o.status == 401 ? 403 : o.status,
                            std::move(o.message));
  access::git_http_answer a;
  // Workhorse's GitConfigOptions (GitLab's git_http_ok): only the push
  // size limit, whatever the command.
  if (snap.settings.receive_max_input_size_mb > 0)
    a.git_config_options.push_back(
      "receive.maxInputSize="
      + std::to_string(snap.settings.receive_max_input_size_mb * 1048576));
  a.success = std::move(o.success);
  return a;
}

// GitLab's order: the end user's credentials (401), then Workhorse's own
// token (403), then the access decision /allowed makes, for protocol http
// and what the credential allows.
caf::result<access::git_http_answer> on_git_http(self_pointer self,
                                                 access::git_http_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  const auto& snap = *st.snap;
  const auto command = git_command(q);
  const auto project = q.repository_path + ".git";
  access::allowed_params p;
  p.action = command;
  p.project = project;
  p.protocol = "http";
  if (q.credentials.provided) {
    auto client = access::authenticate_by_token(snap, q.credentials.password,
                                                st.settings.now());
    if (!client.authenticated)
      return git_http_refusal(401, access::http_basic_denied(snap), true);
    p.user_id = client.user_id;
    p.abilities = client.abilities;
  } else if (command == "git-upload-pack"
             && access::http_download_allowed(snap, project)) {
    p.abilities = access::git_abilities{true, false};
  } else {
    return git_http_refusal(401, access::http_basic_denied(snap), true);
  }
  if (q.workhorse_refusal)
    return git_http_refusal(403, *q.workhorse_refusal);
  auto snap_ptr = st.snap;
  return answer_allowed<access::git_http_answer>(
    self, p, [snap_ptr](access::allowed_outcome o) {
      return git_http_answer_of(*snap_ptr, std::move(o));
    });
}

// -- LFS uploads (other-callers §4.3) ---------------------------------------

using lfs_shape = access::lfs_upload_answer::shape;

access::lfs_upload_answer lfs_refusal(int status, std::string message,
                                      lfs_shape shape = lfs_shape::plain,
                                      bool challenge = false) {
  access::lfs_upload_answer a;
  a.status = status;
  a.message = std::move(message);
  a.refusal_shape = shape;
  a.challenge = challenge;
  return a;
}

// Git LFS's JSON errors, linking GitLab's help.
access::lfs_upload_answer lfs_json_refusal(const snapshot& snap, int status,
                                           std::string message) {
  auto a = lfs_refusal(status, std::move(message), lfs_shape::lfs_json);
  a.documentation_url = access::lfs_documentation_url(snap);
  return a;
}

bool lower_hex_sha256(const std::string& oid) {
  return oid.size() == 64
    && std::all_of(oid.begin(), oid.end(), [](char c) {
         return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
       });
}

// The signed upload parameters of Workhorse's finalize: the field list of
// Gitlab-Workhorse-Multipart-Fields must name `file`, and the
// `file.gitlab-workhorse-upload` token holds its parameters (GitLab's
// Multipart middleware uses only these signed values).
std::optional<nlohmann::json> signed_upload(const access::lfs_upload_query& q,
                                            const std::string& key) {
  if (key.empty() || !q.multipart_fields_token || !q.upload_token)
    return std::nullopt;
  auto fields = jwt::signed_payload(*q.multipart_fields_token, key);
  auto upload = jwt::signed_payload(*q.upload_token, key);
  if (!fields || !upload)
    return std::nullopt;
  auto f = nlohmann::json::parse(*fields, nullptr, false);
  auto u = nlohmann::json::parse(*upload, nullptr, false);
  if (!f.is_object() || !f.contains("rewritten_fields")
      || !f["rewritten_fields"].is_object()
      || !f["rewritten_fields"].contains("file") || !u.is_object()
      || !u.contains("upload") || !u["upload"].is_object())
    return std::nullopt;
  return u["upload"];
}

// The finalize once access is granted: the file's facts from the store,
// GitLab's checks (LfsObjectUploader's path, size and sha256), then the
// object kept.
void finalize_lfs(self_pointer self, access::lfs_upload_query q,
                  const project_record& project, bool wiki,
                  caf::typed_response_promise<access::lfs_upload_answer> rp) {
  auto& st = self->state;
  auto snap = st.snap;
  auto upload = signed_upload(q, st.settings.workhorse_key);
  if (!upload)
    {
        rp.deliver(lfs_refusal(422, "Unprocessable entity"));
        return;
      }
  auto text = [&](const char* name) {
    auto it = upload->find(name);
    return it != upload->end() && it->is_string() ? it->get<std::string>()
                                                  : std::string{};
  };
  auto path = text("path");
  auto signed_sha256 = text("sha256");
  const auto lfs_dir = st.settings.uploads_dir + "/lfs-objects";
  auto project_id = project.id;
  self
    ->request(st.store, st.settings.store_timeout, atom::upload_facts::value,
              path, lfs_dir + "/tmp/uploads")
    .then(
      [self, rp, q, path, signed_sha256, lfs_dir, project_id,
       wiki](uploaded_file_facts& f) mutable {
        if (!f.found)
          {
        rp.deliver(lfs_refusal(422, "Unprocessable entity"));
        return;
      }
        if (!f.inside_allowed)
          {
        rp.deliver(
            lfs_refusal(400, "insecure path used '" + path + "'"));
        return;
      }
        if (std::to_string(f.size) != q.size || f.sha256 != q.oid
            || (!signed_sha256.empty() && signed_sha256 != q.oid))
          {
        rp.deliver(lfs_refusal(400, "SHA256 or size mismatch"));
        return;
      }
        lfs_object_request keep{q.oid,   f.size,    f.real_path,
                                lfs_dir, project_id, wiki ? "wiki" : "project"};
        self
          ->request(self->state.store, self->state.settings.store_timeout,
                    atom::keep_lfs::value, keep)
          .then(
            [rp, q](bool) mutable {
              access::lfs_upload_answer a;
              a.oid = q.oid;
              rp.deliver(std::move(a));
            },
            [rp](caf::error& err) mutable { rp.deliver(store_failure(err)); });
      },
      [rp](caf::error& err) mutable { rp.deliver(store_failure(err)); });
}

// GitLab's LfsRequest order: the end user's credentials (a token, or the
// LFS token /lfs_authenticate minted), Workhorse's token, LFS enabled for
// the project, then upload access (403 when the user may at least
// download, else 404, so a private project stays hidden).
caf::result<access::lfs_upload_answer>
on_lfs_upload(self_pointer self, access::lfs_upload_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  const auto& snap = *st.snap;
  auto now = st.settings.now();
  access::git_client client;
  if (q.credentials.provided) {
    client = access::authenticate_by_token(snap, q.credentials.password, now);
    if (!client.authenticated)
      client = access::authenticate_by_lfs_token(
        snap, q.credentials.login, q.credentials.password, st.lfs_key, now);
  }
  if (!client.authenticated)
    return lfs_refusal(401, access::http_basic_denied(snap), lfs_shape::plain,
                       true);
  if (q.workhorse_refusal)
    return lfs_refusal(403, *q.workhorse_refusal);
  auto [project, wiki] = access::find_repository_project(
    snap, q.repository_path + ".git");
  if (project == nullptr || !project->lfs_enabled || !lower_hex_sha256(q.oid)
      || q.size.empty() || q.size.size() > 18
      || !std::all_of(q.size.begin(), q.size.end(),
                      [](char c) { return c >= '0' && c <= '9'; }))
    return lfs_json_refusal(snap, 404, "Not found.");
  access::allowed_params push;
  push.action = "git-receive-pack";
  push.project = q.repository_path + ".git";
  push.protocol = "http";
  push.user_id = client.user_id;
  push.key_id = client.deploy_key_id;
  push.abilities = client.abilities;
  if (auto err = admit_allowed(self, push))
    return err;
  auto rp = self->make_response_promise<access::lfs_upload_answer>();
  auto snap_ptr = st.snap;
  const project_record& target = *project;
  bool is_wiki = wiki;
  decide_allowed(self, push, [self, rp, q, push, snap_ptr, &target,
                              is_wiki](access::allowed_outcome o) mutable {
    if (o.status == 200) {
      if (q.finalize)
        {
        finalize_lfs(self, q, target, is_wiki, rp);
        return;
      }
      access::lfs_upload_answer a;
      a.temp_path = self->state.settings.uploads_dir + "/lfs-objects/tmp/uploads";
      a.oid = q.oid;
      a.size = std::stoll(q.size);
      {
        rp.deliver(std::move(a));
        return;
      }
    }
    auto download = push;
    download.action = "git-upload-pack";
    decide_allowed(self, download,
                   [rp, snap_ptr](access::allowed_outcome d) mutable {
                     if (d.status == 200)
                       rp.deliver(lfs_json_refusal(
                         *snap_ptr, 403,
                         "Access forbidden. Check your access level."));
                     else
                       rp.deliver(
                         lfs_json_refusal(*snap_ptr, 404, "Not found."));
                   });
  });
  return rp;
}

// -- workhorse/authorize_upload (other-callers §4.4) ------------------------

caf::result<access::upload_answer> on_upload(self_pointer self,
                                             access::upload_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  // GitLab's request_authenticated?: an API token with the api scope.
  auto client = access::authenticate_by_token(*st.snap, q.token.value_or(""),
                                              st.settings.now());
  auto token = client.authenticated
    ? st.snap->tokens_by_digest.find(token_digest(*q.token))
    : st.snap->tokens_by_digest.end();
  bool api_scope = token != st.snap->tokens_by_digest.end()
    && std::find(token->second.scopes.begin(), token->second.scopes.end(),
                 "api")
         != token->second.scopes.end();
  if (!api_scope)
    return caf::make_error(errc::unauthenticated);
  return access::upload_answer{st.settings.uploads_dir + "/uploads/tmp"};
}

caf::result<access::shell_answer> on_recovery(self_pointer self,
                                              access::recovery_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  if (q.caller.key_id)
    touch_key(self, *q.caller.key_id, st.settings.now());
  auto verdict = access::check_recovery_codes(*st.snap, q.caller);
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
      [rp](caf::error& err) mutable { rp.deliver(store_failure(err)); });
  return rp;
}

caf::result<access::shell_answer> on_pat(self_pointer self,
                                         access::pat_query& q) {
  auto& st = self->state;
  if (!st.snap)
    return not_loaded();
  auto now = st.settings.now();
  if (q.caller.key_id)
    touch_key(self, *q.caller.key_id, now);
  auto plan = access::check_personal_access_token(
    *st.snap, q.caller, q.name, q.scopes, q.expires_at, now / 86400);
  if (!plan.verdict.success)
    return access::shell_answer{false, plan.verdict.message, {}, {}, {}, {}};
  auto rp = self->make_response_promise<access::shell_answer>();
  pat_request req{plan.verdict.user_id, plan.name, plan.scopes,
                  plan.expires_at};
  self
    ->request(st.store, st.settings.store_timeout, atom::create_pat::value, req)
    .then(
      [rp, plan](pat_result& created) mutable {
        access::shell_answer answer;
        answer.success = true;
        answer.token = std::move(created.token);
        answer.scopes = plan.scopes;
        answer.expires_at = plan.expires_at;
        rp.deliver(std::move(answer));
      },
      [rp](caf::error& err) mutable { rp.deliver(store_failure(err)); });
  return rp;
}

} // namespace

access_control_actor::behavior_type access_control(
  self_pointer self, access_control_settings settings,
  read_model_loader_actor loader, std::vector<git_actor> git,
  access_store_actor store) {
  self->state.settings = std::move(settings);
  self->state.git = std::move(git);
  self->state.store = store;
  self->send(loader, atom::subscribe::value, caf::actor_cast<caf::actor>(self));
  return {
    [=](access::allowed_params& p) -> caf::result<access::allowed_outcome> {
      return answer_allowed<access::allowed_outcome>(
        self, p, [](access::allowed_outcome o) { return o; });
    },
    [=](access::audit_query& q) { return on_audit(self, q); },
    [=](access::key_query& q) -> caf::result<access::authorized_key> {
      if (q.key.empty())
        return caf::make_error(errc::invalid_params, "key is missing");
      if (!self->state.snap)
        return not_loaded();
      if (auto key = access::find_authorized_key(*self->state.snap, q.key))
        return std::move(*key);
      return caf::make_error(errc::not_found, "Key");
    },
    [=](access::discover_query& q) -> caf::result<access::discover_answer> {
      if (!self->state.snap)
        return not_loaded();
      apply_identifier(q);
      return access::discover_answer{
        access::discover(*self->state.snap, q.key_id, q.user_id, q.username)};
    },
    [=](access::lfs_query& q) { return on_lfs(self, q); },
    [=](access::git_http_query& q) { return on_git_http(self, q); },
    [=](access::upload_query& q) { return on_upload(self, q); },
    [=](access::lfs_upload_query& q) { return on_lfs_upload(self, q); },
    [=](access::recovery_query& q) { return on_recovery(self, q); },
    [=](access::pat_query& q) { return on_pat(self, q); },
    [=](access::otp_query&) -> caf::result<access::shell_answer> {
      // Community edition: GitLab answers this for both OTP checks (§2.10).
      return access::shell_answer{false, otp_not_available, {}, {}, {}, {}};
    },
    [=](atom::snapshot, snapshot_ptr& snap) {
      self->state.snap = std::move(snap);
      // LFS uploads verify the LFS tokens /lfs_authenticate mints: fetch
      // their key once, ahead of the first upload.
      auto& st = self->state;
      if (st.lfs_key.empty() && !st.lfs_key_requested) {
        st.lfs_key_requested = true;
        self
          ->request(st.store, st.settings.store_timeout,
                    atom::signing_key::value, std::string{"lfs"})
          .then([self](std::string& key) { self->state.lfs_key = key; },
                [self](caf::error&) { self->state.lfs_key_requested = false; });
      }
    },
  };
}

} // namespace gatehouse
