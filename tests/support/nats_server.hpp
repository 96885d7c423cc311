#pragma once

// A private nats-server (JetStream) that a test starts, stops and restarts.
//
// Its client port is a reserved_port: the URL is known before the first
// start (a test may point Gatehouse at a server that is not up yet) and
// stays the same across restarts, and no other test can take it meanwhile.
// Its monitoring port is random (-m -1) and read back from the ports file
// that nats-server writes (--ports_file_dir) at every start.

#include "tests/support/ports.hpp"
#include "tests/support/process.hpp"

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gatehouse::test {

class private_nats {
public:
  /// `config_file`: a configuration to start with (-c), or none. `env`
  /// reaches the server process (for $VARIABLES in the file). Not started.
  explicit private_nats(std::string config_file = {},
                        std::map<std::string, std::string> env = {})
    : config_file_(std::move(config_file)), env_(std::move(env)),
      dir_(make_temp_dir("nats")) {
    // nop
  }

  ~private_nats() {
    stop();
  }

  private_nats(const private_nats&) = delete;
  private_nats& operator=(const private_nats&) = delete;

  /// Starts the server (same port and store directory as before) and waits
  /// until JetStream is up.
  void start() {
    std::vector<std::string> argv{env_or_fail("GATEHOUSE_TEST_NATS_SERVER")};
    if (!config_file_.empty())
      argv.insert(argv.end(), {"-c", config_file_});
    argv.insert(argv.end(),
                {"-a", "127.0.0.1", "-p", std::to_string(port_.port()), "-m",
                 "-1", "--ports_file_dir", dir_, "-js", "-sd", dir_ + "/js"});
    proc_ = std::make_unique<child>(argv, env_, dir_ + "/nats");
    bool up = eventually(
      [&] {
        if (!proc_->running())
          return true;
        monitor_port_ = monitoring_port();
        if (monitor_port_ == 0)
          return false;
        httplib::Client cli{"127.0.0.1", monitor_port_};
        auto res = cli.Get("/healthz?js-enabled-only=true");
        return res && res->status == 200;
      },
      std::chrono::seconds(20));
    INFO("nats-server log: " << log());
    REQUIRE(up);
    REQUIRE(proc_->running());
  }

  /// SIGTERM (after a SIGKILL, nats-server 2.9 may lose acknowledgements it
  /// had confirmed but not yet written).
  void stop() {
    if (proc_)
      proc_->stop(SIGTERM);
    proc_.reset();
  }

  /// nats://[userinfo@]127.0.0.1:port
  std::string url(const std::string& userinfo = {}) const {
    return "nats://" + (userinfo.empty() ? "" : userinfo + "@")
      + "127.0.0.1:" + std::to_string(port_.port());
  }

  int port() const {
    return port_.port();
  }

  const std::string& config_file() const {
    return config_file_;
  }

  std::string log() const {
    return proc_ ? proc_->out() + proc_->err() : std::string{};
  }

  /// The configuration of `stream` from the monitoring endpoint, or null.
  nlohmann::json stream_config(const std::string& stream) const {
    httplib::Client cli{"127.0.0.1", monitor_port_};
    auto res = cli.Get("/jsz?streams=true&config=true");
    if (!res)
      return nullptr;
    auto jsz = nlohmann::json::parse(res->body, nullptr, false);
    if (jsz.is_discarded() || !jsz.contains("account_details"))
      return nullptr;
    for (auto& account : jsz["account_details"])
      for (auto& detail :
           account.value("stream_detail", nlohmann::json::array()))
        if (detail.value("name", "") == stream)
          return detail["config"];
    return nullptr;
  }

private:
  /// The monitoring port from the ports file of the running process
  /// ("<name>_<pid>.ports": {"nats":[...],"monitoring":["http://host:port"]});
  /// 0 until it is there and complete.
  int monitoring_port() const {
    auto path = dir_ + "/" + basename(env_or_fail("GATEHOUSE_TEST_NATS_SERVER"))
      + "_" + std::to_string(proc_->pid()) + ".ports";
    auto ports = nlohmann::json::parse(read_file(path), nullptr, false);
    if (!ports.is_object() || !ports.contains("monitoring")
        || ports["monitoring"].empty())
      return 0;
    return port_of(ports["monitoring"][0].get<std::string>());
  }

  static std::string basename(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
  }

  std::string config_file_;
  std::map<std::string, std::string> env_;
  reserved_port port_;
  std::string dir_;
  int monitor_port_ = 0;
  std::unique_ptr<child> proc_;
};

} // namespace gatehouse::test
