#pragma once

// A private PostgreSQL cluster that a test stops and starts, as
// private_nats is for nats-server: the shared server of scripts/test must
// never go down under other tests.
//
// The cluster is created with initdb in a fresh directory under
// GATEHOUSE_TEST_WORK_DIR (as the postgres user when the test runs as root:
// initdb and postgres refuse to run as root, see gh_start_postgres in
// scripts/lib.sh), trusts local connections, and listens on 127.0.0.1 only,
// on a reserved_port that stays the same across restarts.
// GATEHOUSE_TEST_PG_BIN names the directory of initdb and pg_ctl
// (/usr/lib/postgresql/15/bin on Debian 12).

#include "tests/support/ports.hpp"
#include "tests/support/process.hpp"

#include <catch2/catch.hpp>

#include <pwd.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace gatehouse::test {

class private_postgres {
public:
  /// Creates the cluster; not started.
  private_postgres()
    : bin_(env_or_fail("GATEHOUSE_TEST_PG_BIN")), dir_(make_temp_dir("pg")) {
    REQUIRE(::chmod(dir_.c_str(), 0755) == 0);
    if (::getuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      INFO("running as root: the postgres user must exist");
      REQUIRE(pw != nullptr);
      REQUIRE(::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) == 0);
    }
    auto rc = run("initdb",
                  {"-D", data(), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                   "--locale=C.UTF-8", "--no-sync"});
    INFO("initdb: " << log_of("initdb"));
    REQUIRE(rc == 0);
  }

  ~private_postgres() {
    if (started_)
      run("pg_ctl", {"-D", data(), "-m", "immediate", "-w", "stop"});
  }

  private_postgres(const private_postgres&) = delete;
  private_postgres& operator=(const private_postgres&) = delete;

  /// Starts the server and waits until it accepts connections.
  void start() {
    auto rc
      = run("pg_ctl",
            {"-D", data(), "-l", dir_ + "/server.log", "-w", "-t", "60", "-o",
             "-c listen_addresses=127.0.0.1 -p " + std::to_string(port_.port())
               + " -k " + dir_ + " -c fsync=off -c synchronous_commit=off"
               + " -c full_page_writes=off",
             "start"});
    INFO("pg_ctl start: " << log_of("pg_ctl") << "\nserver log: " << log());
    REQUIRE(rc == 0);
    started_ = true;
  }

  /// `pg_ctl stop -m fast`: clients are disconnected, the server shuts down
  /// cleanly; returns once it is gone.
  void stop() {
    auto rc = run("pg_ctl", {"-D", data(), "-m", "fast", "-w", "stop"});
    INFO("pg_ctl stop: " << log_of("pg_ctl"));
    REQUIRE(rc == 0);
    started_ = false;
  }

  /// A superuser URL of the cluster's `postgres` database.
  std::string url() const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_.port())
      + "/postgres";
  }

  std::string log() const {
    return read_file(dir_ + "/server.log");
  }

private:
  std::string data() const {
    return dir_ + "/data";
  }

  std::string log_of(const std::string& tool) const {
    return read_file(dir_ + "/" + tool + ".out")
      + read_file(dir_ + "/" + tool + ".err");
  }

  /// Runs a tool of bin_ to completion (as postgres when root); its output
  /// goes to <dir>/<tool>.out and .err.
  int run(const std::string& tool, std::vector<std::string> args) const {
    std::vector<std::string> argv;
    if (::getuid() == 0)
      argv = {"/usr/sbin/runuser", "-u", "postgres", "--"};
    argv.push_back(bin_ + "/" + tool);
    argv.insert(argv.end(), args.begin(), args.end());
    child proc{argv, {}, dir_ + "/" + tool};
    return proc.wait(std::chrono::seconds(90));
  }

  std::string bin_;
  std::string dir_;
  reserved_port port_;
  bool started_ = false;
};

} // namespace gatehouse::test
