#include "edges/http/push_routes.hpp"

#include "actors/deadline_relay.hpp"
#include "edges/http/bridge.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

namespace gatehouse::http {

json encode_post_receive(const push::post_receive_answer& answer) {
  auto messages = json::array();
  for (auto& m : answer.messages)
    messages.push_back({{"message", m.message}, {"type", m.type}});
  return {{"messages", messages},
          {"reference_counter_decreased", answer.reference_counter_decreased}};
}

push_routes::push_routes(caf::actor_system& sys, push_processing_actor push,
                         std::chrono::milliseconds timeout)
  : sys_(sys), push_(std::move(push)), timeout_(timeout) {
  counted_relay_ = sys_.spawn(deadline_relay<bool>);
  answer_relay_ = sys_.spawn(deadline_relay<push::post_receive_answer>);
}

push_routes::~push_routes() {
  caf::anon_send_exit(counted_relay_, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(answer_relay_, caf::exit_reason::user_shutdown);
}

std::vector<route> push_routes::routes() {
  return {
    {"POST", "/api/v4/internal/pre_receive", auth_rule::shell,
     [this](call& c) { pre_receive(c); }},
    {"POST", "/api/v4/internal/post_receive", auth_rule::shell,
     [this](call& c) { post_receive(c); }},
  };
}

void push_routes::pre_receive(call& c) {
  auto gl_repository = string_param(c.params, "gl_repository");
  if (!gl_repository)
    return send_json(c.res, 400, json{{"error", "gl_repository is missing"}});
  auto counted = ask<bool>(sys_, counted_relay_, push_, timeout_,
                           atom::pre_receive::value, *gl_repository);
  if (!counted)
    return send_error(c.res, error_response(classify(counted.error())));
  send_json(c.res, 200, json{{"reference_counter_increased", *counted}});
}

void push_routes::post_receive(call& c) {
  std::string missing;
  for (auto name : {"gl_repository", "identifier", "changes"})
    if (!string_param(c.params, name))
      missing += std::string{missing.empty() ? "" : ", "} + name + " is missing";
  if (!missing.empty())
    return send_json(c.res, 400, json{{"error", missing}});
  push::post_receive_params p;
  p.gl_repository = *string_param(c.params, "gl_repository");
  p.identifier = *string_param(c.params, "identifier");
  p.changes = *string_param(c.params, "changes");
  // Gitaly sends null when there are none.
  if (auto options = strings_param(c.params, "push_options"))
    p.push_options = *options;
  auto answer = ask<push::post_receive_answer>(
    sys_, answer_relay_, push_, timeout_, atom::post_receive::value, p);
  if (!answer)
    return send_error(c.res, error_response(classify(answer.error())));
  send_json(c.res, 200, encode_post_receive(*answer));
}

} // namespace gatehouse::http
