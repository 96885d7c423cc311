#include "storage/git_actor.hpp"

#include "storage/git_repository.hpp"

#include <caf/all.hpp>

namespace gatehouse::storage {

git_actor::behavior_type git(git_actor::stateful_pointer<git_state> self,
                             git_settings settings) {
  self->state.per_call_timeout = settings.per_call_timeout;
  return {
    [=](atom::inspect, const access::git_questions& q) -> access::git_facts {
      // An exception would kill the actor; a missing answer is the contract.
      try {
        return answer(q, self->state.per_call_timeout);
      } catch (...) {
        access::git_facts facts;
        facts.unavailable_reason = "git could not be asked";
        return facts;
      }
    },
    [=](atom::commits, const push::commit_questions& q) -> push::commit_facts {
      try {
        return answer_commits(q, self->state.per_call_timeout);
      } catch (...) {
        push::commit_facts facts;
        facts.unavailable_reason = "git could not be asked";
        return facts;
      }
    },
  };
}

} // namespace gatehouse::storage
