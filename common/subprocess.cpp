#include "common/subprocess.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace gatehouse {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

std::string system_error_text(int code) {
  // Not strerror: it may share a buffer between threads.
  return std::error_code{code, std::generic_category()}.message();
}

/// Owns a file descriptor.
struct fd_guard {
  int fd = -1;
  fd_guard() = default;
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    reset();
  }
  void reset() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
};

/// Owns the posix_spawn attribute objects.
struct spawn_setup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  spawn_setup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;
  ~spawn_setup() {
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
  }
};

std::vector<char*> c_strings(const std::vector<std::string>& xs) {
  std::vector<char*> out;
  out.reserve(xs.size() + 1);
  for (auto& x : xs)
    out.push_back(const_cast<char*>(x.c_str()));
  out.push_back(nullptr);
  return out;
}

// Waits until `pid` has exited without reaping it, so its process group id
// cannot be reused while we still signal the group. False at the deadline.
bool await_exit(pid_t pid, steady::time_point deadline) {
  auto pause = std::chrono::microseconds{200};
  for (;;) {
    siginfo_t info{};
    int rc = ::waitid(P_PID, static_cast<id_t>(pid), &info,
                      WEXITED | WNOHANG | WNOWAIT);
    if (rc == 0 && info.si_pid == pid)
      return true;
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc < 0)
      return true; // ECHILD: nothing left to wait for
    if (steady::now() >= deadline)
      return false;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds{10000});
  }
}

} // namespace

milliseconds remaining(steady::time_point deadline) {
  auto left = std::chrono::ceil<milliseconds>(deadline - steady::now());
  return std::max(left, milliseconds{0});
}

process_result run_process(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env,
                           milliseconds timeout, const std::string& working_dir,
                           std::size_t output_cap, std::string_view input) {
  process_result result;
  if (argv.empty()) {
    result.err = "no program to run";
    return result;
  }
  const auto deadline = steady::now() + timeout;
  // O_CLOEXEC: children that other threads spawn concurrently must not
  // inherit our write ends, or our reads would wait for their exit.
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    result.err = "pipe: " + system_error_text(errno);
    return result;
  }
  fd_guard out_r, out_w;
  out_r.fd = out_pipe[0];
  out_w.fd = out_pipe[1];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = "pipe: " + system_error_text(errno);
    return result;
  }
  fd_guard err_r, err_w;
  err_r.fd = err_pipe[0];
  err_w.fd = err_pipe[1];
  // Input goes through a socket pair rather than a pipe: send() with
  // MSG_NOSIGNAL cannot raise SIGPIPE in a process that did not ignore it.
  fd_guard in_r, in_w;
  if (!input.empty()) {
    int in_pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0) {
      result.err = "socketpair: " + system_error_text(errno);
      return result;
    }
    in_r.fd = in_pair[0];
    in_w.fd = in_pair[1];
    ::shutdown(in_r.fd, SHUT_WR);
  }

  pid_t pid = -1;
  int spawn_rc = 0;
  {
    spawn_setup s;
    if (in_r.fd >= 0)
      posix_spawn_file_actions_adddup2(&s.actions, in_r.fd, STDIN_FILENO);
    else
      posix_spawn_file_actions_addopen(&s.actions, STDIN_FILENO, "/dev/null",
                                       O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&s.actions, out_w.fd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&s.actions, err_w.fd, STDERR_FILENO);
    if (!working_dir.empty())
      posix_spawn_file_actions_addchdir_np(&s.actions, working_dir.c_str());
    // Own process group (killed as a whole), no blocked signals, default
    // dispositions for signals the server may ignore (SIGPIPE above all).
    sigset_t none;
    sigemptyset(&none);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGALRM,
                    SIGUSR1, SIGUSR2})
      sigaddset(&defaults, sig);
    posix_spawnattr_setsigmask(&s.attr, &none);
    posix_spawnattr_setsigdefault(&s.attr, &defaults);
    posix_spawnattr_setpgroup(&s.attr, 0);
    posix_spawnattr_setflags(&s.attr,
                             static_cast<short>(POSIX_SPAWN_SETPGROUP
                                                | POSIX_SPAWN_SETSIGMASK
                                                | POSIX_SPAWN_SETSIGDEF));
    auto args = c_strings(argv);
    auto envp = c_strings(env);
    spawn_rc = ::posix_spawnp(&pid, argv.front().c_str(), &s.actions, &s.attr,
                              args.data(), envp.data());
  }
  out_w.reset();
  err_w.reset();
  in_r.reset();
  if (spawn_rc != 0) {
    result.err
      = "cannot start " + argv.front() + ": " + system_error_text(spawn_rc);
    return result;
  }
  for (int fd : {out_r.fd, err_r.fd, in_w.fd})
    if (fd >= 0)
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::size_t input_sent = 0;
  // One write per round, like the reads; a child that stops reading its
  // input only costs us the timeout.
  auto write_once = [&] {
    for (;;) {
      auto sent = ::send(in_w.fd, input.data() + input_sent,
                         input.size() - input_sent, MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR)
        continue;
      if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (sent < 0) { // the child closed its input: it has what it wants
        in_w.reset();
        return;
      }
      input_sent += static_cast<std::size_t>(sent);
      if (input_sent == input.size())
        in_w.reset(); // end of input
      return;
    }
  };

  // One read per ready pipe per round, so a child that writes without pause
  // cannot keep us past the deadline.
  std::array<char, 64 * 1024> buf;
  auto read_once = [&](fd_guard& fd, std::string& into, std::size_t cap,
                       bool overflow_fails) {
    for (;;) {
      auto got = ::read(fd.fd, buf.data(), buf.size());
      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (got <= 0) {
        fd.reset();
        return;
      }
      auto n = static_cast<std::size_t>(got);
      auto room = cap - std::min(cap, into.size());
      into.append(buf.data(), std::min(room, n));
      if (n > room && overflow_fails)
        result.truncated = true;
      return;
    }
  };
  while ((out_r.fd >= 0 || err_r.fd >= 0) && !result.truncated) {
    auto left = remaining(deadline);
    if (left <= milliseconds{0}) {
      result.timed_out = true;
      break;
    }
    std::array<pollfd, 3> fds{};
    nfds_t n = 0;
    if (out_r.fd >= 0)
      fds[n++] = pollfd{out_r.fd, POLLIN, 0};
    if (err_r.fd >= 0)
      fds[n++] = pollfd{err_r.fd, POLLIN, 0};
    if (in_w.fd >= 0)
      fds[n++] = pollfd{in_w.fd, POLLOUT, 0};
    auto wait_ms
      = static_cast<int>(std::min<milliseconds::rep>(left.count(), 60'000));
    int ready = ::poll(fds.data(), n, wait_ms);
    if (ready < 0 && errno == EINTR)
      continue;
    if (ready < 0) {
      result.err += "poll: " + system_error_text(errno) + "\n";
      result.timed_out = true; // give up on this child like on a timeout
      break;
    }
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents == 0)
        continue;
      if (fds[i].fd == in_w.fd)
        write_once();
      else if (fds[i].fd == out_r.fd)
        read_once(out_r, result.out, output_cap, true);
      else
        read_once(err_r, result.err, max_captured_error, false);
    }
  }
  if (!result.timed_out && !result.truncated && !await_exit(pid, deadline))
    result.timed_out = true;
  // The leader is a zombie at most (not reaped yet), so the group id is
  // still ours: kill whatever is left of the group, then reap.
  ::kill(-pid, SIGKILL);
  int status = 0;
  pid_t reaped;
  do {
    reaped = ::waitpid(pid, &status, 0);
  } while (reaped < 0 && errno == EINTR);
  if (reaped != pid) {
    result.exit_code = -1;
    result.err += "waitpid: " + system_error_text(errno) + "\n";
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

} // namespace gatehouse
