#pragma once

#include "common/jwt.hpp"
#include "messages/calls.hpp"
#include "messages/interfaces.hpp"

#include <caf/fwd.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace gatehouse::http {

/// Settings of the HTTP edge, validated by the wiring.
struct http_settings {
  std::string host = "127.0.0.1";
  /// 0 picks a free port (tests).
  int port = 8080;
  /// Pool threads; one serves one request at a time. Connections between
  /// requests, and requests whose head is still arriving, hold none.
  int threads = 32;
  /// Largest body, Content-Length or chunked (framing counted): 413.
  std::size_t max_body = 64u * 1024 * 1024;
  /// Request line and header fields together, in bytes: 431.
  std::size_t max_head_bytes = 32 * 1024;
  /// Header fields of one request: 431.
  std::size_t max_header_fields = 100;
  /// From a request's first byte to the end of its head: 408, then close.
  std::chrono::milliseconds head_timeout{10000};
  /// How long a keep-alive connection may wait for its next request.
  std::chrono::milliseconds idle_timeout{5000};
  /// Open connections; further ones are closed at once.
  std::size_t max_connections = 4096;
  /// How long a request may take inside the actor system.
  std::chrono::milliseconds request_timeout{10000};
  /// Prefix of every route, e.g. "/gitlab"; empty for none.
  std::string relative_url_root;
  /// HMAC key per caller (indexed by jwt::caller); unset disables the
  /// caller's routes, which then answer as an authentication failure.
  std::array<std::optional<std::string>, 4> keys;
};

/// The actors the routes talk to.
struct http_deps {
  caf::actor_system* sys = nullptr;
  /// The domain actors of the call table; the calls of an unset one are
  /// absent (tests of the edge alone), except that /-/readiness and
  /// /metrics need the status actor.
  domain_actors domains;
  /// More Prometheus text for /metrics from parts outside the actor system
  /// (the outbox relay); called on the HTTP thread, must not block.
  std::function<std::string()> extra_metrics;
};

/// The HTTP edge. Owns the httplib server and its thread pool.
class server {
public:
  server(http_settings settings, http_deps deps);
  ~server();

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds the listening socket; false with `error` set on failure.
  bool bind(std::string& error);

  /// The bound port (useful with port 0).
  int port() const;

  /// Serves until stop(); call from a thread of its own.
  void run();

  /// Stops accepting, finishes the requests in flight, makes run() return.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace gatehouse::http
