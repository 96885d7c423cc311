#pragma once

// Typed mocks of the domain actors' peers (the full interfaces of
// messages/interfaces.hpp), for deterministic tests of one actor. Each mock
// records what it was asked in a script the test owns and answers as the
// script says; the test coordinator runs them on the test's thread.

#include "messages/errors.hpp"
#include "messages/interfaces.hpp"

#include <caf/all.hpp>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace gatehouse::test {

/// The read-model loader: hands `snap` to every subscriber.
struct loader_script {
  snapshot_ptr snap;
};

inline read_model_loader_actor::behavior_type mock_loader(
  read_model_loader_actor::pointer, loader_script* script) {
  return {
    [=](atom::subscribe, caf::actor& who) {
      if (script->snap)
        caf::anon_send(who, atom::snapshot::value, script->snap);
    },
    [=](atom::get) -> caf::result<snapshot_ptr> {
      if (!script->snap)
        return caf::make_error(errc::unavailable, "not loaded");
      return script->snap;
    },
    [=](atom::tick, std::uint64_t) {},
  };
}

/// The git actor: answers the facts of the script, or never when `silent`.
struct git_script {
  access::git_facts facts;
  push::commit_facts commits;
  bool silent = false;
  int inspected = 0;
  int listed = 0;
};

struct mock_git_state {
  std::vector<caf::response_promise> held;
};

inline git_actor::behavior_type mock_git(
  git_actor::stateful_pointer<mock_git_state> self, git_script* script) {
  return {
    [=](atom::inspect,
        access::git_questions&) -> caf::result<access::git_facts> {
      ++script->inspected;
      if (script->silent) {
        self->state.held.push_back(self->make_response_promise());
        return caf::delegated<access::git_facts>{};
      }
      return script->facts;
    },
    [=](atom::commits,
        push::commit_questions&) -> caf::result<push::commit_facts> {
      ++script->listed;
      if (script->silent) {
        self->state.held.push_back(self->make_response_promise());
        return caf::delegated<push::commit_facts>{};
      }
      return script->commits;
    },
  };
}

/// The access store: records writes; `fail` makes every request fail.
struct access_store_script {
  std::vector<std::int64_t> touched;
  std::vector<std::tuple<std::int64_t, std::int64_t, std::string>> moved;
  std::vector<std::int64_t> codes_for;
  std::vector<pat_request> pats;
  std::optional<errc> fail;
};

inline access_store_actor::behavior_type mock_access_store(
  access_store_actor::pointer, access_store_script* script) {
  auto failure = [=]() -> caf::error {
    return caf::make_error(*script->fail,
                           "duplicate key value violates a constraint");
  };
  return {
    [=](atom::touch_key, std::int64_t id) { script->touched.push_back(id); },
    [=](atom::put_moved, std::int64_t user, std::int64_t project,
        std::string& text) -> caf::result<bool> {
      if (script->fail)
        return failure();
      script->moved.emplace_back(user, project, text);
      return true;
    },
    [=](atom::take_moved, std::int64_t,
        std::int64_t) -> caf::result<std::string> { return std::string{}; },
    [=](atom::signing_key, std::string&) -> caf::result<std::string> {
      if (script->fail)
        return failure();
      return std::string(32, 'k');
    },
    [=](atom::new_codes,
        std::int64_t user) -> caf::result<std::vector<std::string>> {
      if (script->fail)
        return failure();
      script->codes_for.push_back(user);
      return std::vector<std::string>(10, "0123456789abcdef");
    },
    [=](atom::create_pat, pat_request& req) -> caf::result<pat_result> {
      if (script->fail)
        return failure();
      script->pats.push_back(req);
      return pat_result{"glpat-test"};
    },
    [=](atom::upload_facts, std::string&,
        std::string&) -> caf::result<uploaded_file_facts> {
      if (script->fail)
        return failure();
      return uploaded_file_facts{};
    },
    [=](atom::keep_lfs, lfs_object_request&) -> caf::result<bool> {
      if (script->fail)
        return failure();
      return true;
    },
  };
}

/// The push store: counts and writes as the script says.
struct push_store_script {
  std::vector<std::vector<std::string>> counted;
  std::vector<post_receive_write> written;
  std::optional<errc> fail;
  std::string moved_message;
};

inline push_store_actor::behavior_type mock_push_store(
  push_store_actor::pointer, push_store_script* script) {
  return {
    [=](atom::pre_receive, std::string& repo) -> caf::result<bool> {
      if (script->fail)
        return caf::make_error(*script->fail);
      script->counted.push_back({repo});
      return true;
    },
    [=](atom::pre_receive, std::string& repo,
        std::string& id) -> caf::result<bool> {
      if (script->fail)
        return caf::make_error(*script->fail);
      script->counted.push_back({repo, id});
      return true;
    },
    [=](atom::post_receive,
        post_receive_write& w) -> caf::result<post_receive_written> {
      if (script->fail)
        return caf::make_error(*script->fail);
      script->written.push_back(w);
      return post_receive_written{true, script->moved_message};
    },
    [=](atom::flush_pushes) {},
  };
}

} // namespace gatehouse::test
