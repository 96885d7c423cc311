#pragma once

#include "actors/push/push_processing.hpp"
#include "edges/http/routing.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <vector>

namespace gatehouse::http {

/// The routes of Gitaly's push hooks: /pre_receive and /post_receive.
class push_routes {
public:
  push_routes(caf::actor_system& sys, push_processing_actor push,
              std::chrono::milliseconds timeout);
  ~push_routes();

  push_routes(const push_routes&) = delete;
  push_routes& operator=(const push_routes&) = delete;

  std::vector<route> routes();

private:
  void pre_receive(call& c);
  void post_receive(call& c);

  caf::actor_system& sys_;
  push_processing_actor push_;
  std::chrono::milliseconds timeout_;
  caf::actor counted_relay_;
  caf::actor answer_relay_;
};

/// GitLab's JSON for a /post_receive answer.
json encode_post_receive(const push::post_receive_answer& answer);

} // namespace gatehouse::http
