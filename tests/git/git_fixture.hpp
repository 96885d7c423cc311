#pragma once

// Real repositories in a scratch directory, built with the git binary (run
// through run_process, so the fixture needs no shell either).

#include "storage/git_repository.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace gatehouse::test {

class git_scratch {
public:
  git_scratch() {
    const char* base = std::getenv("GATEHOUSE_TEST_WORK_DIR");
    std::string templ = std::string{base ? base : "/tmp"} + "/git-test.XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    REQUIRE(::mkdtemp(buf.data()) != nullptr);
    root = buf.data();
  }

  ~git_scratch() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }

  git_scratch(const git_scratch&) = delete;
  git_scratch& operator=(const git_scratch&) = delete;

  /// Runs `git <args>` in `dir` with a fixed identity and a clock that
  /// advances one minute per call; REQUIREs success; returns stdout without
  /// its trailing newline.
  std::string git(const std::string& dir, std::vector<std::string> args,
                  std::vector<std::string> extra_env = {}) {
    const char* path = std::getenv("PATH");
    auto when = std::to_string(1767261600 + 60 * ++clock_) + " " + offset;
    std::vector<std::string> env{
      std::string{"PATH="} + (path ? path : "/usr/bin:/bin"),
      "HOME=/nonexistent",
      "GIT_CONFIG_NOSYSTEM=1",
      "GIT_AUTHOR_NAME=Ada Lovelace",
      "GIT_AUTHOR_EMAIL=ada@example.com",
      "GIT_COMMITTER_NAME=Charles Babbage",
      "GIT_COMMITTER_EMAIL=charles@example.com",
      "GIT_AUTHOR_DATE=" + when,
      "GIT_COMMITTER_DATE=" + when,
    };
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    std::vector<std::string> argv{"git", "-c", "init.defaultBranch=main", "-c",
                                  "advice.detachedHead=false"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = storage::run_process(argv, env, std::chrono::seconds(30), dir);
    INFO("git " << args.front() << " in " << dir << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    while (!r.out.empty() && r.out.back() == '\n')
      r.out.pop_back();
    return r.out;
  }

  /// A bare repository and a work repository pushing to it.
  void make_repos(const std::string& bare_name = "bare.git") {
    bare = root + "/" + bare_name;
    work = root + "/work";
    git(root, {"init", "-q", "--bare", bare});
    git(root, {"init", "-q", work});
  }

  /// make_repos, then two commits on main (a.txt "1", then "2") pushed to
  /// the bare repository: {first, second}.
  std::pair<std::string, std::string> two_commits_pushed() {
    make_repos();
    write("a.txt", "1");
    auto first = commit("one");
    write("a.txt", "2");
    auto second = commit("two");
    push("main");
    return {first, second};
  }

  void write(const std::string& rel, const std::string& text) {
    auto p = std::filesystem::path{work} / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream{p} << text;
  }

  /// Commits everything in the work tree; returns the commit id.
  std::string commit(const std::string& message) {
    git(work, {"add", "-A"});
    git(work, {"commit", "-q", "--allow-empty", "-m", message});
    return git(work, {"rev-parse", "HEAD"});
  }

  void push(const std::string& refspec) {
    git(work, {"push", "-q", bare, refspec});
  }

  storage::repo_location bare_location() const {
    return storage::repo_location{bare, {}, {}};
  }

  std::string root;
  std::string bare;
  std::string work;
  /// The committer's UTC offset for the next commits.
  std::string offset = "+0000";

private:
  int clock_ = 0;
};

} // namespace gatehouse::test
