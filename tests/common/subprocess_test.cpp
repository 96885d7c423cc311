// The child-process runner (common/subprocess.hpp) with ordinary programs.

#include "common/subprocess.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace gatehouse;
using namespace std::chrono_literals;

namespace {

constexpr auto timeout = 10s;

std::vector<std::string> plain_env() {
  const char* path = std::getenv("PATH");
  return {std::string{"PATH="} + (path ? path : "/usr/bin:/bin")};
}

} // namespace

// -- processes ----------------------------------------------------------------

TEST_CASE("run_process drains big stdout and stderr without deadlock",
          "[common][process]") {
  auto r = run_process({"sh", "-c",
                        "head -c 3000000 /dev/zero; "
                        "head -c 1000000 /dev/zero >&2; exit 3"},
                       plain_env(), timeout);
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.truncated);
  CHECK(r.exit_code == 3);
  CHECK(r.out.size() == 3000000);
  CHECK(r.err.size() == max_captured_error);
}

TEST_CASE("run_process fails a run whose output exceeds the cap",
          "[common][process]") {
  auto r = run_process({"head", "-c", "5000000", "/dev/zero"}, plain_env(),
                       timeout, {}, 1000000);
  CHECK(r.truncated);
  CHECK(r.out.size() == 1000000);
}

TEST_CASE("run_process kills a command that outlives its timeout",
          "[common][process]") {
  auto start = std::chrono::steady_clock::now();
  auto r = run_process({"sleep", "5"}, plain_env(), 100ms);
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(r.timed_out);
  CHECK(r.exit_code == 128 + 9);
  CHECK(took < 2s);
}

TEST_CASE("run_process kills the whole process group on timeout",
          "[common][process]") {
  // The grandchild keeps stdout open, so only the timeout ends the run.
  auto r
    = run_process({"sh", "-c", "sleep 30 & echo $!; wait"}, plain_env(), 300ms);
  REQUIRE(r.timed_out);
  auto grandchild = std::stoi(r.out);
  REQUIRE(grandchild > 0);
  // Gone, or a zombie waiting for init to reap it.
  auto dead = [&] {
    std::ifstream stat{"/proc/" + std::to_string(grandchild) + "/stat"};
    std::string pid, comm, state;
    if (!(stat >> pid >> comm >> state))
      return true;
    return state == "Z" || state == "X";
  };
  auto deadline = std::chrono::steady_clock::now() + 2s;
  while (!dead() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  CHECK(dead());
}

TEST_CASE("run_process gives the child /dev/null as stdin and only its env",
          "[common][process]") {
  auto cat = run_process({"cat"}, plain_env(), timeout);
  CHECK(cat.exit_code == 0);
  CHECK(cat.out.empty());
  auto env = run_process({"env"}, {"PATH=/usr/bin:/bin", "ONLY=this"}, timeout);
  CHECK(env.out == "PATH=/usr/bin:/bin\nONLY=this\n");
}

TEST_CASE("run_process feeds its input and closes it", "[subprocess]") {
  // More than a socket buffer holds, so writing and reading interleave.
  std::string input;
  for (int i = 0; input.size() < 3 * 1024 * 1024; ++i)
    input += std::to_string(i) + "\n";
  auto r = run_process({"cat"}, plain_env(), timeout, {}, max_captured_output,
                       input);
  CHECK(r.exit_code == 0);
  CHECK_FALSE(r.timed_out);
  CHECK(r.out == input);
}

TEST_CASE("run_process survives a child that does not read its input",
          "[subprocess]") {
  // The child exits at once: our writes fail with EPIPE, never SIGPIPE, and
  // the run ends with the child, not at the timeout.
  const std::string input(8 * 1024 * 1024, 'x');
  auto r = run_process({"true"}, plain_env(), timeout, {}, max_captured_output,
                       input);
  CHECK(r.exit_code == 0);
  CHECK_FALSE(r.timed_out);
  // One that never reads nor exits is ended by the timeout.
  auto stuck = run_process({"sleep", "30"}, plain_env(), 300ms, {},
                           max_captured_output, input);
  CHECK(stuck.timed_out);
}

TEST_CASE("run_process reports a program that cannot start",
          "[common][process]") {
  auto r = run_process({"gatehouse-no-such-program"}, plain_env(), timeout);
  CHECK(r.exit_code == -1);
  CHECK(r.err.find("cannot start") != std::string::npos);
  CHECK_FALSE(r.timed_out);
}

TEST_CASE("concurrent runs do not hold each other's pipes open",
          "[common][process]") {
  // A long-lived child spawned by another thread must not inherit our pipe
  // ends, or our run would wait for it.
  std::thread slow{[] {
    run_process({"sleep", "2"}, plain_env(), 5s);
  }};
  std::vector<std::thread> quick;
  std::atomic<int> slow_runs{0};
  for (int t = 0; t < 4; ++t)
    quick.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto start = std::chrono::steady_clock::now();
        auto r = run_process({"echo", "hi"}, plain_env(), 5s);
        if (r.out != "hi\n" || std::chrono::steady_clock::now() - start > 1s)
          ++slow_runs;
      }
    });
  for (auto& t : quick)
    t.join();
  slow.join();
  CHECK(slow_runs == 0);
}
