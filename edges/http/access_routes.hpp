#pragma once

#include "actors/access/access_control.hpp"
#include "edges/http/routing.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <vector>

namespace gatehouse::http {

/// The routes of GitLab Shell's and Gitaly's access calls: decode the
/// parameters, ask the access-control actor, encode GitLab's answer.
class access_routes {
public:
  access_routes(caf::actor_system& sys, access_control_actor access,
                std::chrono::milliseconds timeout);
  ~access_routes();

  access_routes(const access_routes&) = delete;
  access_routes& operator=(const access_routes&) = delete;

  std::vector<route> routes();

private:
  void allowed(call& c);
  void authorized_keys(call& c);
  void discover(call& c);
  void lfs_authenticate(call& c);
  void recovery_codes(call& c);
  void personal_access_token(call& c);
  void git_audit_event(call& c);

  caf::actor_system& sys_;
  access_control_actor access_;
  std::chrono::milliseconds timeout_;
  // One deadline relay per reply type (actors/deadline_relay.hpp).
  caf::actor allowed_relay_;
  caf::actor key_relay_;
  caf::actor discover_relay_;
  caf::actor lfs_relay_;
  caf::actor shell_relay_;
};

/// Turns the decoded /allowed parameters into the decision's input; sets
/// `invalid` to Grape's message when an id is not numeric.
access::allowed_params decode_allowed(const json& params, std::string& invalid);

/// GitLab's JSON for an /allowed decision: the success body, the
/// {"status":false,"message":…} denial, or the 429 object.
json encode_allowed(const access::allowed_outcome& outcome);

} // namespace gatehouse::http
