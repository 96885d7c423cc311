#include "edges/http/server.hpp"

#include "common/base64.hpp"
#include "common/log.hpp"
#include "common/request_id.hpp"
#include "edges/deadline_relay.hpp"
#include "edges/http/bridge.hpp"
#include "edges/http/codec.hpp"
#include "edges/http/metrics.hpp"
#include "edges/http/params.hpp"
#include "edges/http/routing.hpp"
#include "edges/http/status.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <vector>

namespace gatehouse::http {

namespace {

using clock_type = std::chrono::steady_clock;

// httplib hard-wires a listen backlog of 5 into Debian's .so; Linux lets a
// second listen() raise it on the bound socket (toolchain.md §3.2).
struct tuned_server : httplib::Server {
  void raise_backlog(int n) {
    ::listen(svr_sock_, n);
  }
};

// What the current request is, for the access log and metrics. httplib runs
// pre-routing, the handler and the logger of one request on one thread.
struct request_scope {
  clock_type::time_point start;
  std::string correlation_id;
  const char* route = "unmatched";
  bool active = false;
};

thread_local request_scope current;

std::string new_correlation_id() {
  return hex_encode(random_bytes(16));
}

} // namespace

struct server::impl {
  http_settings settings;
  http_deps deps;
  tuned_server svr;
  metrics stats;
  // The deadline relays: one per call (edges/deadline_relay.hpp), and one
  // for readiness.
  std::vector<caf::actor> relays;
  caf::actor readiness_relay;

  impl(http_settings s, http_deps d)
    : settings(std::move(s)), deps(std::move(d)) {
    readiness_relay = deps.sys->spawn(deadline_relay<readiness_view>);
    configure();
    register_routes();
  }

  ~impl() {
    caf::anon_send_exit(readiness_relay, caf::exit_reason::user_shutdown);
    for (auto& relay : relays)
      caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
  }

  // -- authentication ---------------------------------------------------------

  // The caller a route's rule designates for this request.
  static jwt::caller caller_for(caller_rule rule, const httplib::Request& req) {
    switch (rule) {
      case caller_rule::workhorse:
        return jwt::caller::workhorse;
      case caller_rule::kas:
        return jwt::caller::kas;
      case caller_rule::pages:
        return jwt::caller::pages;
      case caller_rule::shell_or_workhorse:
        return req.has_header(jwt::header_name(jwt::caller::shell))
          ? jwt::caller::shell
          : jwt::caller::workhorse;
      default:
        return jwt::caller::shell;
    }
  }

  bool authenticated(const httplib::Request& req, jwt::caller who) const {
    const auto& key = settings.keys[static_cast<std::size_t>(who)];
    if (!key)
      return false;
    auto token = req.get_header_value(jwt::header_name(who));
    return jwt::verify(who, token, *key, std::time(nullptr))
      == jwt::verdict::ok;
  }

  // Why `req` may not call a route of `rule`; nullopt when it may. GitLab
  // checks this before any parameter.
  std::optional<http_error> refusal(caller_rule rule,
                                    const httplib::Request& req) const {
    if (rule == caller_rule::none)
      return std::nullopt;
    auto who = caller_for(rule, req);
    if (!authenticated(req, who))
      return error_response(errc::unauthenticated, {}, who);
    // Workhorse signs the request and also names itself (GitLab's
    // require_gitlab_workhorse!).
    if (rule == caller_rule::shell_or_workhorse && who == jwt::caller::workhorse
        && req.get_header_value("Gitlab-Workhorse").empty())
      return error_response(errc::unauthenticated,
                            "Request should be executed via GitLab Workhorse",
                            who);
    return std::nullopt;
  }

  // -- route table ------------------------------------------------------------

  // The route of one call of the call table: decode, ask the domain actor
  // through the call's deadline relay, encode.
  template <call_id Id>
  void add_call_route(std::vector<route>& table, call_tag<Id> tag) {
    using types = call_types<Id>;
    auto dest = types::actor(deps.domains);
    if (!dest)
      return;
    auto relay = deps.sys->spawn(deadline_relay<typename types::answer>);
    relays.push_back(relay);
    const auto& spec = spec_of(Id);
    table.push_back(
      {spec.method, spec.path, spec.auth, [this, tag, relay, dest](call& c) {
         auto request = decode(tag, c.params);
         if (!request)
           return send_error(c.res, error_response(request.error()));
         auto answer = ask<typename types::answer>(*deps.sys, relay, dest,
                                                   settings.request_timeout,
                                                   std::move(*request));
         if (!answer)
           return send_error(c.res, error_response(answer.error()));
         auto out = encode(tag, *answer);
         send_json(c.res, out.status, out.body);
       }});
  }

  std::vector<route> routes() {
    std::vector<route> table = {
      {"GET", "/-/liveness", caller_rule::none,
       [](call& c) {
         send_json(c.res, 200, std::string{R"({"status":"ok"})"});
       }},
      {"GET", "/-/readiness", caller_rule::none,
       [this](call& c) {
         readiness(c);
       }},
      {"GET", "/metrics", caller_rule::none,
       [this](call& c) {
         metrics_page(c);
       }},
    };
    for_each_call([&](auto tag) { add_call_route(table, tag); });
    return table;
  }

  void register_routes() {
    for (auto& r : routes()) {
      auto full = settings.relative_url_root + r.path;
      auto wrapped
        = [this, r](const httplib::Request& req, httplib::Response& res) {
            dispatch(r, req, res);
          };
      // Paths are fixed strings; escape regex metacharacters ('.' in none yet,
      // but a relative root could hold any).
      std::string rx;
      for (char ch : full) {
        if (std::string{".^$|()[]{}*+?\\"}.find(ch) != std::string::npos)
          rx += '\\';
        rx += ch;
      }
      if (std::string{r.method} == "GET")
        svr.Get(rx, wrapped);
      else if (std::string{r.method} == "POST")
        svr.Post(rx, wrapped);
      else if (std::string{r.method} == "PUT")
        svr.Put(rx, wrapped);
      else if (std::string{r.method} == "DELETE")
        svr.Delete(rx, wrapped);
    }
  }

  void dispatch(const route& r, const httplib::Request& req,
                httplib::Response& res) {
    current.route = r.path.c_str();
    try {
      if (auto refused = refusal(r.auth, req)) {
        send_error(res, *refused);
        return;
      }
      std::string problem;
      auto params = request_params(req, problem);
      if (!params) {
        send_error(res, error_response(errc::bad_request, problem));
        return;
      }
      call c{req, res, std::move(*params)};
      r.fn(c);
    } catch (const std::exception& e) {
      log::error("handler failed",
                 {{"route", r.path}, {"error", std::string{e.what()}}});
      send_error(res, error_response(errc::internal));
    }
  }

  // -- handlers ---------------------------------------------------------------

  // 503 only when PostgreSQL is unreachable: without NATS Gatehouse still
  // decides and queues events, so it stays in the load balancer.
  void readiness(call& c) {
    auto view
      = ask<readiness_view>(*deps.sys, readiness_relay, deps.domains.status,
                            settings.request_timeout, atom::readiness::value);
    if (!view) {
      send_json(c.res, 503,
                dump({{"status", "failed"}, {"error", render(view.error())}}));
      return;
    }
    json pg = {{"status", view->postgres_up ? "up" : "down"}};
    if (!view->postgres_error.empty())
      pg["error"] = view->postgres_error;
    json nats = {{"status", view->nats_state == "connected" ? "up" : "down"},
                 {"state", view->nats_state}};
    send_json(c.res, view->postgres_up ? 200 : 503,
              dump({{"status", view->postgres_up ? "ok" : "failed"},
                    {"checks", {{"postgres", pg}, {"nats", nats}}}}));
  }

  void metrics_page(call& c) {
    auto text = stats.render();
    auto view
      = ask<readiness_view>(*deps.sys, readiness_relay, deps.domains.status,
                            settings.request_timeout, atom::readiness::value);
    text += "# HELP gatehouse_dependency_up Whether a dependency answers "
            "(1) or not (0).\n# TYPE gatehouse_dependency_up gauge\n";
    bool pg_up = view && view->postgres_up;
    bool nats_up = view && view->nats_state == "connected";
    text += "gatehouse_dependency_up{dependency=\"postgres\"} "
      + std::string{pg_up ? "1" : "0"} + "\n";
    text += "gatehouse_dependency_up{dependency=\"nats\"} "
      + std::string{nats_up ? "1" : "0"} + "\n";
    if (deps.extra_metrics)
      text += deps.extra_metrics();
    c.res.status = 200;
    c.res.set_content(text, "text/plain; version=0.0.4");
  }

  // -- server set-up ----------------------------------------------------------

  void configure() {
    // Without TCP_NODELAY every keep-alive answer waits ~43 ms for the
    // peer's delayed ACK (toolchain.md §5.1).
    svr.set_tcp_nodelay(true);
    auto threads = static_cast<std::size_t>(settings.threads);
    svr.new_task_queue = [threads] {
      return new httplib::ThreadPool(threads);
    };
    svr.set_keep_alive_max_count(10000);
    // An idle keep-alive connection holds a pool thread; give it back soon.
    svr.set_keep_alive_timeout(2);
    svr.set_read_timeout(5, 0);
    svr.set_write_timeout(5, 0);
    svr.set_payload_max_length(settings.max_body);

    svr.set_pre_routing_handler(
      [](const httplib::Request& req, httplib::Response& res) {
        current.start = clock_type::now();
        current.active = true;
        current.route = "unmatched";
        auto id = req.get_header_value("X-Request-Id");
        current.correlation_id
          = acceptable_request_id(id) ? id : new_correlation_id();
        res.set_header("X-Request-Id", current.correlation_id);
        return httplib::Server::HandlerResponse::Unhandled;
      });

    // httplib calls this for every status >= 400, ours included: only fill in
    // answers httplib made itself (unknown route, oversized body).
    svr.set_error_handler(httplib::Server::HandlerWithResponse{
      [](const httplib::Request&, httplib::Response& res) {
        if (!res.has_header("X-Request-Id")) {
          if (!current.active)
            current.correlation_id = new_correlation_id();
          res.set_header("X-Request-Id", current.correlation_id);
        }
        if (!res.body.empty())
          return httplib::Server::HandlerResponse::Unhandled;
        auto err = res.status == 413 ? payload_too_large() : route_not_found();
        if (res.status != 413 && res.status != 404)
          err = {res.status, dump({{"message", std::to_string(res.status)}})};
        res.set_content(err.body, "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }});

    svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        send_error(res, error_response(errc::internal));
      });

    svr.set_logger(
      [this](const httplib::Request& req, const httplib::Response& res) {
        double seconds = 0;
        if (current.active)
          seconds
            = std::chrono::duration<double>(clock_type::now() - current.start)
                .count();
        const char* route = current.route;
        stats.observe(route, res.status, seconds);
        log::info("request",
                  {{"correlation_id", res.get_header_value("X-Request-Id")},
                   {"method", req.method},
                   {"route", route},
                   {"path", req.path},
                   {"status", res.status},
                   {"duration_ms", seconds * 1000.0},
                   {"remote_addr", req.remote_addr},
                   {"remote_port", req.remote_port}});
        current.active = false;
        current.route = "unmatched";
      });
  }
};

server::server(http_settings settings, http_deps deps)
  : impl_(std::make_unique<impl>(std::move(settings), std::move(deps))) {
  // nop
}

server::~server() {
  stop();
}

bool server::bind(std::string& error) {
  auto& s = *impl_;
  if (s.settings.port == 0) {
    auto port = s.svr.bind_to_any_port(s.settings.host);
    if (port <= 0) {
      error = "cannot bind " + s.settings.host + ":0";
      return false;
    }
    s.settings.port = port;
  } else if (!s.svr.bind_to_port(s.settings.host, s.settings.port)) {
    error = "cannot bind " + s.settings.host + ":"
      + std::to_string(s.settings.port);
    return false;
  }
  s.svr.raise_backlog(4096);
  return true;
}

int server::port() const {
  return impl_->settings.port;
}

void server::run() {
  impl_->svr.listen_after_bind();
}

void server::stop() {
  if (impl_ && impl_->svr.is_running())
    impl_->svr.stop();
}

} // namespace gatehouse::http
