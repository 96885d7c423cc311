// The stop watchdog in a child process: an armed one ends a process that
// would otherwise hang, with status 0; a disarmed one lets it finish its
// own way. waitpid() blocks until the child is gone, so no timing is
// asserted: a watchdog that never fired would hang the test (ctest's
// timeout fails it). The child is this test binary run afresh for the
// hidden case below (not a bare fork: a fork would inherit the log
// writer's state without its thread).
#include "common/stop_watchdog.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

using namespace gatehouse;

namespace {

constexpr const char* mode_variable = "GATEHOUSE_TEST_WATCHDOG_CHILD";
constexpr const char* child_case = "stop watchdog child";

/// Runs the hidden child case with `mode`; returns its exit status.
int run_child(const std::string& mode) {
  std::string assignment = std::string{mode_variable} + "=" + mode;
  char* const argv[] = {const_cast<char*>("watchdog-child"),
                        const_cast<char*>(child_case), nullptr};
  char* const envp[] = {const_cast<char*>(assignment.c_str()), nullptr};
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::execve("/proc/self/exe", argv, envp);
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

} // namespace

TEST_CASE("stop watchdog child", "[.]") {
  const char* mode = std::getenv(mode_variable);
  if (!mode)
    return; // only as the child of the cases below
  stop_watchdog watchdog{"test: not stopped in time",
                         std::chrono::milliseconds(50)};
  if (std::string{mode} == "hang") {
    watchdog.arm();
    for (;;)
      ::pause(); // the stop that never finishes
  }
  if (std::string{mode} == "disarm") {
    watchdog.arm();
    watchdog.disarm();
    ::usleep(200 * 1000); // past the limit: nothing may end the process
    ::_exit(7);
  }
  ::_exit(5); // never armed: destroyed at _exit's leisure, nothing fires
}

TEST_CASE("an armed watchdog ends a hanging stop with status 0") {
  CHECK(run_child("hang") == 0);
}

TEST_CASE("a disarmed watchdog leaves the exit to the process") {
  CHECK(run_child("disarm") == 7);
}

TEST_CASE("a watchdog never armed does nothing") {
  CHECK(run_child("idle") == 5);
}
