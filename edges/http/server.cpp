#include "edges/http/server.hpp"

#include "common/base64.hpp"
#include "common/log.hpp"
#include "common/request_id.hpp"
#include "edges/http/bridge.hpp"
#include "edges/http/codec.hpp"
#include "edges/http/connection.hpp"
#include "edges/http/framing.hpp"
#include "edges/http/metrics.hpp"
#include "edges/http/params.hpp"
#include "edges/http/routing.hpp"
#include "edges/http/status.hpp"
#include "messages/errors.hpp"

#include <caf/all.hpp>

#include <httplib.h>
#include <malloc.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <regex>
#include <unordered_map>
#include <vector>

namespace gatehouse::http {

namespace {

using clock_type = std::chrono::steady_clock;

// httplib hard-wires a listen backlog of 5 into Debian's .so; Linux lets a
// second listen() raise it on the bound socket (toolchain.md §3.2).
//
// httplib's accept loop hands each socket to process_and_close_socket on a
// pool thread, which would serve it there for its whole life; that private
// virtual is overridden so the edge's connection layer (connection.hpp)
// owns the socket, and serves each request through process_request.
struct tuned_server : httplib::Server {
  void raise_backlog(int n) {
    ::listen(svr_sock_, n);
  }

  /// Takes over an accepted socket; set before listening.
  std::function<void(int)> accepted;

  /// Reads, routes and answers one request from `strm`; false when the
  /// request could not be read or the answer not written.
  bool serve_request(httplib::Stream& strm, bool& peer_closes) {
    return process_request(strm, false, peer_closes, nullptr);
  }

private:
  bool process_and_close_socket(socket_t sock) override {
    accepted(sock);
    return true;
  }
};

// httplib's thread pool, which also runs the requests the waiting room
// hands on; the room is stopped before the pool, so it never hands one to
// a pool that is gone.
struct edge_task_queue : httplib::TaskQueue {
  edge_task_queue(std::size_t threads, waiting_room& room)
    : pool(threads), room(room) {
    // nop
  }

  void enqueue(std::function<void()> fn) override {
    pool.enqueue(std::move(fn));
  }

  void shutdown() override {
    room.stop();
    pool.shutdown();
  }

  httplib::ThreadPool pool;
  waiting_room& room;
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

// Tokens this thread verified, for the server whose id they carry: a caller
// signs a token per request, with whole-second claims, so a busy caller's
// requests mostly carry one this thread has verified (jwt::verified_tokens
// says why that is safe).
thread_local jwt::verified_tokens verified_tokens;

std::uint64_t new_server_id() {
  static std::atomic<std::uint64_t> last{0};
  return ++last;
}

// The connection whose request this thread is serving, for the handlers
// httplib calls (they see only the request and the response).
thread_local connection* active_connection = nullptr;

// A body from this size on leaves freed memory that glibc keeps unless
// asked to give it back.
constexpr std::uint64_t large_body = 1024 * 1024;

// Whether httplib 0.11 reads the body of `req` before the handler runs:
// only for these methods, and a DELETE only with a Content-Length.
bool httplib_reads_body(const httplib::Request& req) {
  return req.method == "POST" || req.method == "PUT" || req.method == "PATCH"
    || (req.method == "DELETE" && req.has_header("Content-Length"));
}

// Whether the connection may not serve another request after this one:
// bytes of this request may still be unread, so the next request's start
// is unknown.
bool finishes_connection(const connection& conn) {
  return conn.must_close || !conn.screened
    || (conn.body_expected && !conn.body_consumed);
}

connection_limits limits_of(const http_settings& s) {
  connection_limits l;
  l.max_head_bytes = s.max_head_bytes;
  l.max_header_fields = s.max_header_fields;
  l.head_timeout = s.head_timeout;
  l.idle_timeout = s.idle_timeout;
  l.max_connections = s.max_connections;
  return l;
}

// Rack's reason phrases of the statuses the connection layer answers.
const char* reason_phrase(int status) {
  switch (status) {
    case 408:
      return "Request Timeout";
    case 414:
      return "URI Too Long";
    default:
      return "Request Header Fields Too Large";
  }
}

std::string new_correlation_id() {
  return hex_encode(random_bytes(16));
}

// Whether a route path is a pattern (calls.hpp: `*name`, `:name`).
bool is_pattern(const std::string& path) {
  return path.find('*') != std::string::npos
    || path.find(':') != std::string::npos;
}

// The regex of `root` + `path`: fixed text escaped (a relative root may
// hold anything), `*name` one or more segments, `:name` one segment.
std::string path_regex(const std::string& root, const std::string& path) {
  static const std::string special = ".^$|()[]{}*+?\\";
  std::string rx;
  auto literal = [&](char ch) {
    if (special.find(ch) != std::string::npos)
      rx += '\\';
    rx += ch;
  };
  for (char ch : root)
    literal(ch);
  for (std::size_t i = 0; i < path.size(); ++i) {
    char ch = path[i];
    if (ch != '*' && ch != ':') {
      literal(ch);
      continue;
    }
    auto end = i + 1;
    while (end < path.size()
           && (std::isalnum(static_cast<unsigned char>(path[end]))
               || path[end] == '_'))
      ++end;
    rx += ch == '*' ? "(.+)" : "([^/]+)";
    i = end - 1;
  }
  return rx;
}

// A refusal in plain text, as GitLab's git HTTP controllers answer the git
// client.
http_error plain_refusal(int status, std::string text) {
  return {status, std::move(text), "text/plain; charset=utf-8"};
}

// The `iss` a token names, or ruby-jwt's "<none>"; read only to word a
// refusal of a token whose signature verified.
std::string token_issuer(const std::string& token) {
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string::npos)
    return "<none>";
  auto payload = base64url_decode(
    std::string_view{token}.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!payload)
    return "<none>";
  auto claims = nlohmann::json::parse(*payload, nullptr, false);
  if (!claims.is_object() || !claims.contains("iss"))
    return "<none>";
  const auto& iss = claims["iss"];
  return iss.is_string() ? iss.get<std::string>() : iss.dump();
}

// ruby-jwt's message for a Workhorse token GitLab refuses; the git HTTP
// controllers show it to the git client (rescue_from JWT::DecodeError).
std::string workhorse_jwt_error(jwt::verdict v, const httplib::Request& req) {
  switch (v) {
    case jwt::verdict::malformed:
      return req.has_header(jwt::header_name(jwt::caller::workhorse))
        ? "Not enough or too many segments"
        : "Nil JSON web token";
    case jwt::verdict::bad_algorithm:
      return "Expected a different algorithm";
    case jwt::verdict::wrong_issuer:
      return "Invalid issuer. Expected [\"gitlab-workhorse\"], received "
        + token_issuer(req.get_header_value(
          jwt::header_name(jwt::caller::workhorse)));
    case jwt::verdict::expired:
      return "Signature has expired";
    case jwt::verdict::too_old:
      return "Token has expired";
    case jwt::verdict::future_iat:
      return "Invalid iat";
    case jwt::verdict::not_yet_valid:
      return "Signature nbf has not been reached";
    default:
      return "Signature verification failed";
  }
}

// Writes an answer of the call table; a 204's empty content type sends no
// body and no Content-Type.
void send_text(httplib::Response& res, const text_reply& out) {
  res.status = out.status;
  for (const auto& [name, value] : out.headers)
    res.set_header(name, value);
  if (!out.content_type.empty())
    res.set_content(out.body, out.content_type.c_str());
}

} // namespace

struct server::impl {
  http_settings settings;
  http_deps deps;
  connection_limits limits;
  // Names this server's keys to each thread's verified_tokens.
  const std::uint64_t id = new_server_id();
  // Connections between requests; hands each one with a complete head to
  // `queue`, the pool httplib creates when it starts listening.
  waiting_room room;
  std::atomic<edge_task_queue*> queue{nullptr};
  tuned_server svr;
  metrics stats;
  // Method and full path of each route, for pre-routing: its metrics label
  // and the caller it needs.
  struct route_key {
    std::string path;
    caller_rule auth;
  };
  std::unordered_map<std::string, route_key> route_index;
  // The routes whose path is a pattern, tried in order when no fixed path
  // matches.
  struct pattern_route {
    std::string method;
    std::regex rx;
    route_key key;
  };
  std::vector<pattern_route> pattern_index;

  // The route of `method` and `path` (below nothing: the full path).
  const route_key* find_route(const std::string& method,
                              const std::string& path) const {
    if (auto it = route_index.find(method + ' ' + path);
        it != route_index.end())
      return &it->second;
    for (const auto& p : pattern_index)
      if (p.method == method && std::regex_match(path, p.rx))
        return &p.key;
    return nullptr;
  }

  impl(http_settings s, http_deps d)
    : settings(std::move(s)), deps(std::move(d)), limits(limits_of(settings)),
      room(limits,
           [this](std::shared_ptr<connection> conn, head_verdict verdict) {
             if (auto* q = queue.load())
               q->enqueue([this, conn, verdict] { serve(conn, verdict); });
           }) {
    configure();
    register_routes();
  }

  // -- authentication ---------------------------------------------------------

  // The caller a route's rule designates for this request.
  static jwt::caller caller_for(caller_rule rule, const httplib::Request& req) {
    switch (rule) {
      case caller_rule::workhorse:
      case caller_rule::workhorse_api:
      case caller_rule::workhorse_git:
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

  jwt::verdict verify(const httplib::Request& req, jwt::caller who) const {
    const auto& key = settings.keys[static_cast<std::size_t>(who)];
    if (!key)
      return jwt::verdict::bad_signature;
    auto token = req.get_header_value(jwt::header_name(who));
    return verified_tokens.verify(who, token, *key, id, jwt::unix_now());
  }

  bool authenticated(const httplib::Request& req, jwt::caller who) const {
    return verify(req, who) == jwt::verdict::ok;
  }

  // Why `req` may not call a route of `rule`; nullopt when it may. GitLab
  // checks this before any parameter.
  std::optional<http_error> refusal(caller_rule rule,
                                    const httplib::Request& req) const {
    if (rule == caller_rule::none)
      return std::nullopt;
    auto who = caller_for(rule, req);
    if (rule == caller_rule::workhorse_git) {
      // GitLab's git HTTP controllers refuse HEAD before anything else
      // (deny_head_requests), and check Workhorse's token only after the
      // end user's credentials: the domain orders those answers
      // (request_view::workhorse_refusal).
      if (req.method == "HEAD")
        return plain_refusal(403, "");
      return std::nullopt;
    }
    if (!authenticated(req, who))
      return error_response(errc::unauthenticated, {}, who);
    // Workhorse signs the request and also names itself (GitLab's
    // require_gitlab_workhorse!).
    bool names_itself = rule == caller_rule::workhorse_api
      || (rule == caller_rule::shell_or_workhorse
          && who == jwt::caller::workhorse);
    if (names_itself && req.get_header_value("Gitlab-Workhorse").empty())
      return error_response(errc::unauthenticated,
                            "Request should be executed via GitLab Workhorse",
                            who);
    return std::nullopt;
  }

  // -- route table ------------------------------------------------------------

  // The route of one call of the call table: decode, ask the domain actor
  // (one round trip, bridge.hpp), encode.
  template <call_id Id>
  void add_call_route(std::vector<route>& table, call_tag<Id> tag) {
    using types = call_types<Id>;
    // A call whose domain actor this process lacks keeps its route and
    // answers 503, as the NATS edge does: the caller retries instead of
    // taking Grape's unknown-route 404 for "no such call".
    const bool present = types::present(deps.domains);
    const auto& spec = spec_of(Id);
    table.push_back(
      {spec.method, spec.path, spec.auth, [this, tag, present](call& c) {
         request_view in{c.params, c.req};
         if (spec_of(Id).auth == caller_rule::workhorse_git) {
           auto verdict = verify(c.req, jwt::caller::workhorse);
           if (verdict != jwt::verdict::ok)
             in.workhorse_refusal = workhorse_jwt_error(verdict, c.req);
         }
         auto request = decode(tag, in);
         if (!request)
           return send_error(c.res, error_response(request.error()));
         if (!present)
           return send_error(c.res, error_response(errc::unavailable));
         auto dest = types::actor(deps.domains, *request);
         auto answer = ask<typename types::answer>(*deps.sys, dest,
                                                   settings.request_timeout,
                                                   std::move(*request));
         if (!answer)
           return send_error(c.res, error_response(answer.error()));
         send_text(c.res, encode_text(tag, *answer));
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
      if (!is_pattern(r.path))
        route_index[std::string{r.method} + ' ' + full] = {r.path, r.auth};
      auto wrapped
        = [this, r](const httplib::Request& req, httplib::Response& res) {
            dispatch(r, req, res);
          };
      auto rx = path_regex(settings.relative_url_root, r.path);
      if (is_pattern(r.path))
        pattern_index.push_back({r.method, std::regex{rx}, {r.path, r.auth}});
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
    if (active_connection)
      active_connection->body_consumed = httplib_reads_body(req);
    try {
      // Pre-routing has refused an unauthenticated request already, before
      // its body was read; checked again so no handler ever runs without.
      if (auto refused = refusal(r.auth, req)) {
        send_error(res, *refused);
        return;
      }
      error_status refused_params{400, {}};
      auto params = request_params(req, refused_params);
      if (!params) {
        send_error(res, error_response(refused_params));
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
      = ask<readiness_view>(*deps.sys, deps.domains.status,
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
      = ask<readiness_view>(*deps.sys, deps.domains.status,
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

  // -- screening: what is decided from the head, before any body byte ---------

  // Refuses what can be refused from the request head alone, so neither a
  // body of ambiguous length nor one from an unauthenticated caller is ever
  // read: framing (RFC 9112), the body limit, the route, the caller's JWT.
  std::optional<http_error> screen(const httplib::Request& req) {
    auto* conn = active_connection;
    if (conn)
      conn->screened = true;
    std::string problem;
    auto framing = read_framing(req.headers, problem);
    if (!framing) {
      if (conn)
        conn->must_close = true; // where this request ends is unknown
      return protocol_error(400, problem);
    }
    if (conn) {
      conn->body_expected = framing->has_body();
      if (framing->chunked)
        conn->body_budget = settings.max_body;
    }
    if (framing->length > settings.max_body)
      return payload_too_large();
    auto method = req.method == "HEAD" ? std::string{"GET"} : req.method;
    const auto* found = find_route(method, req.path);
    if (!found)
      return route_not_found();
    current.route = found->path.c_str();
    if (auto refused = refusal(found->auth, req))
      return refused;
    if (conn && (framing->chunked || framing->length >= large_body))
      conn->large_body = true;
    return std::nullopt;
  }

  // Starts a request's log scope and screens it; Handled when answered.
  httplib::Server::HandlerResponse pre_route(const httplib::Request& req,
                                             httplib::Response& res) {
    current.start = clock_type::now();
    current.active = true;
    current.route = "unmatched";
    auto id = req.get_header_value("X-Request-Id");
    current.correlation_id
      = acceptable_request_id(id) ? id : new_correlation_id();
    res.set_header("X-Request-Id", current.correlation_id);
    if (auto refused = screen(req)) {
      send_error(res, *refused);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }

  // -- connections
  // --------------------------------------------------------------

  // A socket httplib accepted: served here if its request is already in,
  // else parked until it is.
  void accepted(int sock) {
    if (connection::open_count() >= limits.max_connections) {
      ::close(sock);
      return;
    }
    auto conn = std::make_shared<connection>(sock);
    bool open = conn->fill_nonblocking(limits.max_head_bytes + 1);
    auto verdict = scan_head(conn->pending(), limits);
    if (verdict == head_verdict::incomplete) {
      if (open)
        room.park(std::move(conn));
      return;
    }
    serve(std::move(conn), verdict);
  }

  // Answers the requests buffered on `conn`, in order, on this pool
  // thread; then parks the connection for its next request, or closes it.
  void serve(std::shared_ptr<connection> conn, head_verdict verdict) {
    connection_stream strm{*conn, limits};
    constexpr int max_requests_per_turn = 64;
    int served_here = 0;
    for (;;) {
      if (verdict != head_verdict::complete) {
        refuse_head(*conn, strm, verdict);
        room.linger(std::move(conn));
        return;
      }
      conn->begin_request();
      active_connection = conn.get();
      bool peer_closes = false;
      bool answered = svr.serve_request(strm, peer_closes);
      active_connection = nullptr;
      if (conn->large_body)
        ::malloc_trim(0);
      if (!answered)
        return; // the peer is gone
      if (finishes_connection(*conn)) {
        room.linger(std::move(conn));
        return;
      }
      if (peer_closes)
        return;
      // A busy keep-alive caller sends its next request at once: waiting a
      // moment for it here saves the hop through the waiting room (on
      // loopback 40 % of the throughput). Bounded in time and in requests,
      // so a connection cannot keep a thread from the others for long.
      if (conn->pending().empty() && ++served_here < max_requests_per_turn)
        conn->fill_blocking(std::chrono::milliseconds(1));
      verdict = scan_head(conn->pending(), limits);
      if (verdict == head_verdict::incomplete) {
        room.park(std::move(conn));
        return;
      }
    }
  }

  // The answer to a head that broke a limit, written here: httplib never
  // sees such a head.
  void refuse_head(connection& conn, const connection_stream& strm,
                   head_verdict verdict) {
    int status = verdict == head_verdict::timed_out ? 408
      : verdict == head_verdict::too_long_uri       ? 414
                                                    : 431;
    auto err = protocol_error(status);
    auto id = new_correlation_id();
    std::string out = "HTTP/1.1 " + std::to_string(status) + " "
      + reason_phrase(status)
      + "\r\nContent-Type: application/json\r\nContent-Length: "
      + std::to_string(err.body.size())
      + "\r\nConnection: close\r\nX-Request-Id: " + id + "\r\n\r\n" + err.body;
    write_all(conn.fd(), out, limits.io_timeout);
    stats.observe("unmatched", status, 0);
    std::string addr;
    int port = 0;
    strm.get_remote_ip_and_port(addr, port);
    log::info("request",
              {{"correlation_id", id},
               {"route", "unmatched"},
               {"status", status},
               {"remote_addr", addr},
               {"remote_port", port}});
  }

  // -- server set-up ----------------------------------------------------------

  void configure() {
    // Without TCP_NODELAY every keep-alive answer waits ~43 ms for the
    // peer's delayed ACK (toolchain.md §5.1).
    svr.set_tcp_nodelay(true);
    auto threads = static_cast<std::size_t>(settings.threads);
    svr.new_task_queue = [this, threads] {
      auto* q = new edge_task_queue(threads, room);
      queue = q;
      room.start();
      return q;
    };
    svr.accepted = [this](int sock) {
      accepted(sock);
    };
    // Only the Keep-Alive answer header shows these now: the connection
    // layer keeps a connection as long as limits.idle_timeout allows and
    // counts no requests.
    svr.set_keep_alive_max_count(10000);
    svr.set_keep_alive_timeout(
      std::chrono::duration_cast<std::chrono::seconds>(limits.idle_timeout)
        .count());
    svr.set_payload_max_length(settings.max_body);

    svr.set_pre_routing_handler(
      [this](const httplib::Request& req, httplib::Response& res) {
        return pre_route(req, res);
      });

    // A caller that waits for "100 Continue" before sending its body learns
    // of a refusal instead, and sends nothing.
    svr.set_expect_100_continue_handler(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (pre_route(req, res) != httplib::Server::HandlerResponse::Handled)
          return 100;
        // httplib writes this answer without adding its length.
        res.set_header("Content-Length", std::to_string(res.body.size()));
        return res.status;
      });

    // httplib calls this for every status >= 400, ours included: only fill in
    // answers httplib made itself (unknown route, unreadable request, a body
    // over the limit).
    svr.set_error_handler(httplib::Server::HandlerWithResponse{
      [](const httplib::Request&, httplib::Response& res) {
        if (!res.has_header("X-Request-Id")) {
          if (!current.active)
            current.correlation_id = new_correlation_id();
          res.set_header("X-Request-Id", current.correlation_id);
        }
        auto* conn = active_connection;
        // httplib answers 400 to a chunked body that the budget cut off.
        if (conn && conn->body_over_limit) {
          res.status = 413;
          res.body.clear();
        }
        if (!res.body.empty())
          return httplib::Server::HandlerResponse::Unhandled;
        auto err
          = protocol_error(res.status,
                           conn && conn->screened ? "malformed request body"
                                                  : "malformed request");
        res.set_content(err.body, "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }});

    // Says so when this answer is the connection's last, so that a client
    // does not send another request on it.
    svr.set_post_routing_handler(
      [](const httplib::Request&, httplib::Response& res) {
        if (active_connection && finishes_connection(*active_connection)) {
          res.set_header("Connection", "close");
          res.headers.erase("Keep-Alive");
        }
      });

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
        const std::string correlation_id = res.get_header_value("X-Request-Id");
        log::write_fields(log::level::info, "request",
                          {{"correlation_id", correlation_id},
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
