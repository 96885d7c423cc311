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
#include <functional>
#include <regex>
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

namespace {

// Lines written to stdout while `body` runs, once `expected` have arrived.
std::vector<std::string> captured_lines(std::size_t expected,
                                        const std::function<void()>& body) {
  char path[] = "/tmp/gatehouse-log-test.XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  int saved = ::dup(STDOUT_FILENO);
  REQUIRE(::dup2(fd, STDOUT_FILENO) == STDOUT_FILENO);
  body();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (count_lines(path) < expected
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  ::close(fd);
  std::vector<std::string> lines;
  std::ifstream in{path};
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  std::remove(path);
  return lines;
}

// The line without its timestamp (the two calls may fall in different
// milliseconds).
std::string without_timestamp(std::string line) {
  return std::regex_replace(line,
                            std::regex{R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"},
                            "TS");
}

} // namespace

TEST_CASE("write_fields writes the line write() writes, in both formats",
          "[log]") {
  const std::string awkward = "a \"quoted\" \\ back\x01slash \xff\xfe caf\xc3\xa9";
  auto log_both = [&] {
    log::write(log::level::warn, "request",
               {{"path", awkward},
                {"status", 404},
                {"remote_port", std::int64_t{-9000000000}},
                {"duration_ms", 0.1},
                {"whole", 2.0},
                {"addr", "127.0.0.1"}});
    log::write_fields(log::level::warn, "request",
                      {{"path", awkward},
                       {"status", 404},
                       {"remote_port", std::int64_t{-9000000000}},
                       {"duration_ms", 0.1},
                       {"whole", 2.0},
                       {"addr", "127.0.0.1"}});
  };
  SECTION("json") {
    auto lines = captured_lines(2, log_both);
    REQUIRE(lines.size() == 2);
    CHECK(without_timestamp(lines[1]) == without_timestamp(lines[0]));
    CHECK_FALSE(nlohmann::json::parse(lines[1], nullptr, false).is_discarded());
  }
  SECTION("text") {
    log::set_format(log_format::text);
    auto lines = captured_lines(2, log_both);
    log::set_format(log_format::json);
    REQUIRE(lines.size() == 2);
    CHECK(without_timestamp(lines[1]) == without_timestamp(lines[0]));
  }
}
