#pragma once

// Running a child process safely from a multi-threaded server: posix_spawn
// with an argv vector (never a shell), an explicit environment, stdin from
// /dev/null, its own process group, a finite timeout after which the whole
// group is killed, capped output, and the child always reaped. Used for git
// (storage/git_repository.hpp); nothing here knows about git.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse {

/// Captured stdout beyond this makes the run fail (and the process killed):
/// no answer we need is that large.
inline constexpr std::size_t max_captured_output = 16 * 1024 * 1024;

/// Captured stderr beyond this is discarded (the process keeps running).
inline constexpr std::size_t max_captured_error = 64 * 1024;

/// What a child process did.
struct process_result {
  /// The exit status; 128 + signal when a signal ended it; -1 when it could
  /// not be started (or reaped), with the reason in `err`.
  int exit_code = -1;
  /// Captured stdout (at most the output cap).
  std::string out;
  /// Captured stderr (at most max_captured_error bytes).
  std::string err;
  /// The timeout ran out and the process group was killed.
  bool timed_out = false;
  /// Stdout exceeded the cap and the process group was killed.
  bool truncated = false;
};

/// Runs `argv` (argv[0] looked up in this process's PATH) with exactly the
/// environment `env` ("NAME=value" entries), stdin from /dev/null (or fed
/// `input`, then closed, when `input` is not empty), in its own
/// process group, from `working_dir` (when not empty). Waits at most
/// `timeout` for it to finish, then kills the group. Never throws for
/// process failures; the result says what happened.
process_result run_process(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env,
                           std::chrono::milliseconds timeout,
                           const std::string& working_dir = {},
                           std::size_t output_cap = max_captured_output,
                           std::string_view input = {});

/// The time left until `deadline`, rounded up to whole milliseconds and
/// never negative: the timeout for the next step of a bounded sequence.
std::chrono::milliseconds remaining(
  std::chrono::steady_clock::time_point deadline);

} // namespace gatehouse
