#pragma once

// TCP ports for the servers that tests start, without probing for a free
// one: a probed port is free only until somebody else binds it, and with
// ctest running tests in parallel somebody else often does (a test's
// gatehouse once connected to another test's nats-server). Two ways instead:
//
//  - the server binds port 0 itself and the test reads the port back from
//    the server: `gatehouse serve` logs it ("gatehouse serving", see
//    serving_port), nats-server writes a ports file (tests/support/
//    nats_server.hpp);
//  - a reserved_port, where the port must be known before the server runs
//    (a URL handed out first) or must stay the same across restarts.

#include "tests/support/process.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <netinet/in.h>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

namespace gatehouse::test {

/// A TCP port on 127.0.0.1 held for this object's lifetime by a socket that
/// is bound with SO_REUSEADDR and never listens. While it is held, the
/// kernel gives the port to nobody else: neither bind() to port 0 nor an
/// outgoing connection picks it. A server that sets SO_REUSEADDR itself
/// (nats-server, sshd, PostgreSQL, cpp-httplib) still binds and listens on
/// it, and again after a restart. Until one listens, connections to the
/// port are refused.
class reserved_port {
public:
  reserved_port() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    int on = 1;
    REQUIRE(::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
  }

  ~reserved_port() {
    ::close(fd_);
  }

  reserved_port(const reserved_port&) = delete;
  reserved_port& operator=(const reserved_port&) = delete;

  int port() const {
    return port_;
  }

private:
  int fd_ = -1;
  int port_ = 0;
};

/// The port of a "host:port" or "scheme://host:port" address; 0 when there
/// is none.
inline int port_of(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos)
    return 0;
  try {
    return std::stoi(address.substr(colon + 1));
  } catch (const std::exception&) {
    return 0;
  }
}

/// The HTTP port in `gatehouse serve`'s "gatehouse serving" line in `log`
/// (JSON or text format); 0 while there is no such line yet. With
/// GATEHOUSE_HTTP_LISTEN=127.0.0.1:0 it is the only place the port shows.
inline int serving_port(const std::string& log) {
  std::istringstream in{log};
  for (std::string line; std::getline(in, line);) {
    if (line.find("gatehouse serving") == std::string::npos)
      continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object())
      return port_of(j.value("listen", ""));
    if (auto at = line.find(" listen="); at != std::string::npos)
      return port_of(line.substr(at + 8, line.find(' ', at + 8) - at - 8));
  }
  return 0;
}

/// Waits until `proc` (a `gatehouse serve`) logs that it serves and returns
/// its HTTP port; fails at once if it exits instead.
inline int wait_serving_port(child& proc,
                             std::chrono::milliseconds limit
                             = std::chrono::seconds(30)) {
  int port = 0;
  eventually(
    [&] {
      port = serving_port(proc.out() + proc.err());
      return port != 0 || !proc.running();
    },
    limit);
  INFO("gatehouse serve stdout: " << proc.out() << "\nstderr: " << proc.err());
  REQUIRE(port != 0);
  return port;
}

} // namespace gatehouse::test
