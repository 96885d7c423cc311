#include "storage/git_actor.hpp"

#include "storage/git_repository.hpp"

#include <caf/all.hpp>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace gatehouse::storage {

namespace {

// Linux keeps a nice value per thread, and a child spawned by a thread
// starts with that thread's. Applied from a handler, which runs on the
// detached actor's own thread.
void apply_niceness(git_state& st) {
  if (st.niced)
    return;
  st.niced = true;
  if (st.settings.niceness > 0)
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)),
                  st.settings.niceness);
}

} // namespace

git_actor::behavior_type git(git_actor::stateful_pointer<git_state> self,
                             git_settings settings) {
  self->state.settings = settings;
  return {
    [=](atom::inspect, const access::git_questions& q) -> access::git_facts {
      apply_niceness(self->state);
      // An exception would kill the actor; a missing answer is the contract.
      try {
        return answer(q, self->state.settings.per_call_timeout);
      } catch (...) {
        access::git_facts facts;
        facts.unavailable_reason = "git could not be asked";
        return facts;
      }
    },
    [=](atom::commits, const push::commit_questions& q) -> push::commit_facts {
      apply_niceness(self->state);
      try {
        return answer_commits(q, self->state.settings.per_call_timeout);
      } catch (...) {
        push::commit_facts facts;
        facts.unavailable_reason = "git could not be asked";
        return facts;
      }
    },
  };
}

} // namespace gatehouse::storage
