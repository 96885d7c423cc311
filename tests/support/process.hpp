#pragma once

// Child processes for integration tests: the real gatehouse binary and a
// private nats-server, started and stopped by the test itself.

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace gatehouse::test {

/// REQUIREs that `name` is set and non-empty: a missing service must fail
/// the run, never pass it silently.
inline std::string env_or_fail(const char* name) {
  const char* value = std::getenv(name);
  INFO("environment variable " << name << " (scripts/test sets it)");
  REQUIRE(value != nullptr);
  REQUIRE(*value != '\0');
  return value;
}

/// A fresh directory under GATEHOUSE_TEST_WORK_DIR (or /tmp).
inline std::string make_temp_dir(const std::string& prefix) {
  const char* base = std::getenv("GATEHOUSE_TEST_WORK_DIR");
  std::string templ
    = std::string{base ? base : "/tmp"} + "/" + prefix + ".XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  REQUIRE(::mkdtemp(buf.data()) != nullptr);
  return buf.data();
}

inline void write_file(const std::string& path, const std::string& text,
                       mode_t mode = 0600) {
  {
    std::ofstream out{path, std::ios::trunc};
    out << text;
  }
  ::chmod(path.c_str(), mode);
}

inline std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A child process with stdout and stderr redirected to files. Killed (and
/// reaped) on destruction.
class child {
public:
  child(std::vector<std::string> argv, std::map<std::string, std::string> env,
        const std::string& log_prefix)
    : out_path_(log_prefix + ".out"), err_path_(log_prefix + ".err") {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      // Child: the test's environment plus `env`.
      for (auto& [k, v] : env)
        ::setenv(k.c_str(), v.c_str(), 1);
      int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out, 1);
      ::dup2(err, 2);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      std::vector<char*> args;
      for (auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }

  ~child() {
    if (running())
      stop(SIGKILL);
  }

  child(const child&) = delete;
  child& operator=(const child&) = delete;

  bool running() {
    if (exited_)
      return false;
    int status = 0;
    auto r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = status;
      return false;
    }
    return true;
  }

  /// Sends `sig` and waits (up to 10 s, then SIGKILL) for the exit. Returns
  /// the exit code, or 128 + signal number.
  int stop(int sig = SIGTERM) {
    if (running())
      ::kill(pid_, sig);
    return wait(std::chrono::seconds(10));
  }

  /// Waits for exit up to `limit`; kills after that.
  int wait(std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (running() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (running()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
      exited_ = true;
    }
    if (WIFEXITED(status_))
      return WEXITSTATUS(status_);
    return 128 + WTERMSIG(status_);
  }

  std::string out() const {
    return read_file(out_path_);
  }

  std::string err() const {
    return read_file(err_path_);
  }

  pid_t pid() const {
    return pid_;
  }

private:
  std::string out_path_;
  std::string err_path_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

/// Polls `pred` every 20 ms until it holds or `limit` passes.
template <class Pred>
bool eventually(Pred pred,
                std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  do {
    if (pred())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  return pred();
}

} // namespace gatehouse::test
