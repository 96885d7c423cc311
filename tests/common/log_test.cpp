// The log writes lines from its own thread (common/log.cpp); what callers
// on many threads log must still arrive whole, each thread's lines in order.

#include "common/log.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace gatehouse;

namespace {

std::size_t count_lines(const std::string& path) {
  std::ifstream in{path};
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);)
    ++n;
  return n;
}

} // namespace

TEST_CASE("log lines from many threads arrive whole and in each thread's "
          "order",
          "[log]") {
  char path[] = "/tmp/gatehouse-log-test.XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  int saved = ::dup(STDOUT_FILENO);
  REQUIRE(::dup2(fd, STDOUT_FILENO) == STDOUT_FILENO);
  constexpr int threads = 8;
  constexpr int per_thread = 3000;
  // Longer than a pipe's atomic write, so torn lines would show.
  const std::string pad(5000, 'x');
  {
    std::vector<std::thread> writers;
    for (int t = 0; t < threads; ++t)
      writers.emplace_back([t, &pad] {
        for (int i = 0; i < per_thread; ++i)
          log::info("line", {{"thread", t}, {"n", i}, {"pad", pad}});
      });
    for (auto& w : writers)
      w.join();
  }
  // Written asynchronously: wait for the writer, bounded.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (count_lines(path) < threads * per_thread
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  ::close(fd);

  std::ifstream in{path};
  std::vector<int> next(threads, 0);
  std::size_t lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    CHECK(j["msg"] == "line");
    CHECK(j["pad"] == pad);
    int t = j["thread"].get<int>();
    REQUIRE(t >= 0);
    REQUIRE(t < threads);
    CHECK(j["n"].get<int>() == next[t]);
    next[t] = j["n"].get<int>() + 1;
  }
  std::remove(path);
  CHECK(lines == static_cast<std::size_t>(threads * per_thread));
  for (int t = 0; t < threads; ++t)
    CHECK(next[t] == per_thread);
}
