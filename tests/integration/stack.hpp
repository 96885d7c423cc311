#pragma once

// A running `gatehouse serve` for integration tests: its own scratch database
// (migrated and seeded through the CLI), secret files, an HTTP port of its
// own (it binds port 0 and logs the port).

#include "common/jwt.hpp"
#include "tests/support/nats_server.hpp"
#include "tests/support/ports.hpp"
#include "tests/support/process.hpp"
#include "tests/support/scratch_database.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gatehouse::test {

inline std::string binary() {
  return env_or_fail("GATEHOUSE_TEST_BINARY");
}

/// Runs the gatehouse CLI to completion; returns the exit code.
inline int run_cli(const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env,
                   std::string* out = nullptr, std::string* err = nullptr) {
  static int counter = 0;
  std::vector<std::string> argv{binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto dir = make_temp_dir("cli");
  child proc{argv, env, dir + "/cli" + std::to_string(++counter)};
  auto rc = proc.wait(std::chrono::seconds(60));
  if (out)
    *out = proc.out();
  if (err)
    *err = proc.err();
  return rc;
}

/// An HTTP answer with its body parsed (discarded JSON when not JSON).
struct reply {
  int status = 0;
  std::string body;
  std::string content_type;
  nlohmann::json j;
};

inline reply make_reply(const httplib::Result& res) {
  REQUIRE(res);
  reply r;
  r.status = res->status;
  r.body = res->body;
  r.content_type = res->get_header_value("Content-Type");
  r.j = nlohmann::json::parse(res->body, nullptr, false);
  return r;
}

/// Secret files for the four callers in a fresh directory.
struct secret_files {
  std::string dir = make_temp_dir("secrets");
  std::string shell = dir + "/shell";
  std::string workhorse = dir + "/workhorse";
  std::string kas = dir + "/kas";
  std::string pages = dir + "/pages";

  secret_files() {
    write_file(shell, "d2f7c1e0a9b84c3f8e6a5b4c3d2e1f00\n");
    write_file(workhorse, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
    write_file(kas, "a2FzLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ=");
    write_file(pages, "cGFnZXMtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWYwMTI=");
  }

  std::map<std::string, std::string> env() const {
    return {{"GATEHOUSE_SHELL_SECRET_FILE", shell},
            {"GATEHOUSE_WORKHORSE_SECRET_FILE", workhorse},
            {"GATEHOUSE_KAS_SECRET_FILE", kas},
            {"GATEHOUSE_PAGES_SECRET_FILE", pages}};
  }
};

/// A started `gatehouse serve` and the HTTP port it bound.
struct serving {
  std::unique_ptr<child> proc;
  int port = 0;
};

/// Starts `gatehouse serve` with `env` (whose GATEHOUSE_HTTP_LISTEN asks for
/// port 0) and waits until it serves and its liveness (under `root`)
/// answers.
inline serving serve(const std::map<std::string, std::string>& env,
                     const std::string& name, const std::string& root = {}) {
  serving s;
  s.proc = std::make_unique<child>(std::vector<std::string>{binary(), "serve"},
                                   env, make_temp_dir(name) + "/gatehouse");
  s.port = wait_serving_port(*s.proc);
  bool live = eventually(
    [&] {
      httplib::Client cli{"127.0.0.1", s.port};
      cli.set_connection_timeout(2, 0);
      auto res = cli.Get(root + "/-/liveness");
      return res && res->status == 200;
    },
    std::chrono::seconds(20));
  INFO("gatehouse stderr: " << s.proc->err());
  REQUIRE(live);
  return s;
}

/// A served Gatehouse. `nats_url` defaults to the suite's nats-server.
class stack {
public:
  explicit stack(std::string nats_url = {}, std::string database_url = {},
                 std::map<std::string, std::string> extra_env = {}) {
    env_ = secrets_.env();
    env_["GATEHOUSE_DATABASE_URL"]
      = database_url.empty() ? db_.url() : database_url;
    env_["GATEHOUSE_NATS_URL"]
      = nats_url.empty() ? env_or_fail("GATEHOUSE_TEST_NATS_URL") : nats_url;
    env_["GATEHOUSE_HTTP_LISTEN"] = "127.0.0.1:0";
    env_["GATEHOUSE_LOG_FORMAT"] = "json";
    // An empty value removes the variable (a caller left unconfigured).
    for (auto& [k, v] : extra_env)
      if (v.empty())
        env_.erase(k);
      else
        env_[k] = v;
    if (auto it = env_.find("GATEHOUSE_RELATIVE_URL_ROOT"); it != env_.end())
      root_ = it->second.back() == '/'
        ? it->second.substr(0, it->second.size() - 1)
        : it->second;
    own_database_ = database_url.empty();
    if (own_database_) {
      std::string err;
      INFO("gatehouse migrate: " << err);
      REQUIRE(run_cli({"migrate"}, env_, nullptr, &err) == 0);
    }
  }

  /// Loads a seed document through the CLI.
  void seed(const nlohmann::json& doc) {
    auto path = make_temp_dir("seed") + "/seed.json";
    write_file(path, doc.dump());
    std::string err;
    auto rc = run_cli({"seed", path}, env_, nullptr, &err);
    INFO(err);
    REQUIRE(rc == 0);
  }

  /// Starts `gatehouse serve` and waits for liveness, and, on the stack's
  /// own database, until it decides: the read model loads after start, and
  /// until then every access call answers 503.
  void start() {
    proc_ = spawn();
  }

  /// Waits until the served Gatehouse's read model is loaded and its first
  /// PostgreSQL probe has succeeded (what /check reports as "redis": on a
  /// busy machine the read model can load first); `proc` (the stack's own
  /// process by default) gives its log when it never does.
  void wait_deciding(const child* proc = nullptr) const {
    if (!proc)
      proc = proc_.get();
    auto token = shell_token();
    bool deciding = eventually(
      [&] {
        auto res = client().Get(root_ + "/api/v4/internal/discover?username=-",
                                {{"Gitlab-Shell-Api-Request", token}});
        if (!res || res->status == 503)
          return false;
        auto check = client().Get(root_ + "/api/v4/internal/check",
                                  {{"Gitlab-Shell-Api-Request", token}});
        return check && check->status == 200
               && check->body.find("\"redis\":true") != std::string::npos;
      },
      std::chrono::seconds(20));
    INFO("gatehouse stderr: " << (proc ? proc->err() : std::string{}));
    REQUIRE(deciding);
  }

  /// Starts another `gatehouse serve` with this stack's environment, as a
  /// child the caller owns (so that it can SIGKILL it), and points client()
  /// at it once it is live (and deciding, on the stack's own database).
  std::unique_ptr<child> spawn() {
    auto s = serve(env_, "serve", root_);
    http_port_ = s.port;
    if (own_database_ && env_.count("GATEHOUSE_SHELL_SECRET_FILE"))
      wait_deciding(s.proc.get());
    return std::move(s.proc);
  }

  httplib::Client client() const {
    httplib::Client cli{"127.0.0.1", http_port_};
    cli.set_connection_timeout(2, 0);
    cli.set_read_timeout(15, 0);
    return cli;
  }

  /// A Shell token minted by `gatehouse jwt shell`, as an operator would.
  std::string shell_token() const {
    std::string out;
    REQUIRE(run_cli({"jwt", "shell"}, env_, &out) == 0);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
      out.pop_back();
    return out;
  }

  nlohmann::json readiness(int* status = nullptr) const {
    auto res = client().Get("/-/readiness");
    REQUIRE(res);
    if (status)
      *status = res->status;
    return nlohmann::json::parse(res->body);
  }

  int stop() {
    return proc_ ? proc_->stop(SIGTERM) : -1;
  }

  std::string log() const {
    return proc_ ? proc_->out() + proc_->err() : std::string{};
  }

  const std::map<std::string, std::string>& env() const {
    return env_;
  }

  const secret_files& secrets() const {
    return secrets_;
  }

  const std::string& database_url() const {
    return db_.url();
  }

private:
  scratch_database db_;
  secret_files secrets_;
  int http_port_ = 0;
  /// GATEHOUSE_RELATIVE_URL_ROOT without a trailing slash.
  std::string root_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<child> proc_;
  /// The stack migrated a scratch database of its own (else the caller's
  /// database may be unreachable on purpose).
  bool own_database_ = false;
};

} // namespace gatehouse::test
