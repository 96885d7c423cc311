#pragma once

#include "messages/atoms.hpp"

#include <caf/actor.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/message.hpp>
#include <caf/timespan.hpp>

namespace gatehouse {

/// Forwards a request to `dest` and answers the original sender with the
/// reply, or with `sec::request_timeout` once `deadline` has passed. It
/// always answers, so a blocking caller (an HTTP thread) may wait on it with
/// caf::infinite: the deadline lives here, on the actor side, where a finite
/// timeout costs nothing. One relay per reply type `Result`, because CAF 0.17
/// response handlers are typed.
template <class Result>
caf::behavior deadline_relay(caf::event_based_actor* self) {
  return {
    [=](atom::relay, caf::timespan deadline, caf::actor& dest,
        caf::message& request) -> caf::result<Result> {
      auto rp = self->make_response_promise<Result>();
      self->request(dest, deadline, std::move(request))
        .then([rp](Result& reply) mutable { rp.deliver(std::move(reply)); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
  };
}

} // namespace gatehouse
