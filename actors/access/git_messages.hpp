#pragma once

// git_questions and git_facts travel between the access-control actor and the
// git actors; push::commit_questions and push::commit_facts between the
// push-processing actor and the git actors. They are local messages, never
// serialized: whitelisting keeps the structs free of CAF. Include this header
// wherever they are sent or handled (one definition of the whitelisting for
// the whole program).

#include "actors/access/git_access.hpp"
#include "actors/push/push_events.hpp"

#include <caf/allowed_unsafe_message_type.hpp>

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::git_questions)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::access::git_facts)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::commit_questions)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(gatehouse::push::commit_facts)
