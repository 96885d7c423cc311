#pragma once

// Real git repositories for integration tests, made with the git binary: a
// bare repository where a storage keeps it (<storage>/<disk_path>.git), a
// work repository that pushes commits into it, and commits written into a
// Gitaly-style quarantine directory (objects/incoming-*) that only a reader
// honouring GIT_OBJECT_DIRECTORY / GIT_ALTERNATE_OBJECT_DIRECTORIES can see.

#include "tests/support/process.hpp"

#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace gatehouse::test {

/// The absolute path of `name` found in PATH; REQUIREs that it exists.
inline std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs{path ? path : "/usr/bin:/bin"};
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty())
      continue;
    auto candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  INFO("program " << name << " is not in PATH");
  REQUIRE(false);
  return {};
}

struct git_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// Runs git with a fixed identity and no system or global configuration,
/// plus `env`. Never a shell.
inline git_result run_git_binary(const std::vector<std::string>& args,
                                 std::map<std::string, std::string> env = {}) {
  static const std::string git = find_program("git");
  std::map<std::string, std::string> fixed{
    {"GIT_CONFIG_NOSYSTEM", "1"},
    {"GIT_CONFIG_GLOBAL", "/dev/null"},
    {"GIT_TERMINAL_PROMPT", "0"},
    {"GIT_AUTHOR_NAME", "Test Author"},
    {"GIT_AUTHOR_EMAIL", "author@example.com"},
    {"GIT_COMMITTER_NAME", "Test Committer"},
    {"GIT_COMMITTER_EMAIL", "committer@example.com"},
    {"GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"},
    {"GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"},
  };
  for (auto& [k, v] : env)
    fixed[k] = v;
  std::vector<std::string> argv{git};
  argv.insert(argv.end(), args.begin(), args.end());
  auto dir = make_temp_dir("git");
  child proc{argv, fixed, dir + "/git"};
  git_result r;
  r.exit_code = proc.wait(std::chrono::seconds(30));
  r.out = proc.out();
  r.err = proc.err();
  return r;
}

/// Runs git, REQUIREs success and returns stdout without trailing newlines.
inline std::string git(const std::vector<std::string>& args,
                       const std::map<std::string, std::string>& env = {}) {
  auto r = run_git_binary(args, env);
  std::string cmd = "git";
  for (auto& a : args)
    cmd += " " + a;
  INFO(cmd << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  while (!r.out.empty() && (r.out.back() == '\n' || r.out.back() == '\r'))
    r.out.pop_back();
  return r.out;
}

/// A bare repository at <storage_dir>/<disk_path>.git with a work repository
/// that prepares commits and pushes them into it.
class bare_repository {
public:
  bare_repository(const std::string& storage_dir, const std::string& disk_path)
    : path_(storage_dir + "/" + disk_path + ".git"),
      work_(make_temp_dir("work")) {
    std::filesystem::create_directories(path_);
    git({"init", "--quiet", "--bare", "--initial-branch=main", path_});
    git({"init", "--quiet", "--initial-branch=main", work_});
  }

  const std::string& path() const {
    return path_;
  }

  /// Commits `content` as `file` on the work repository's current branch;
  /// returns the new commit id.
  std::string commit(const std::string& file, const std::string& content,
                     const std::string& message) {
    write_file(work_ + "/" + file, content, 0644);
    git({"-C", work_, "add", "--", file});
    git({"-C", work_, "commit", "--quiet", "-m", message});
    return git({"-C", work_, "rev-parse", "HEAD"});
  }

  /// `git push <bare> <refspec>` from the work repository (no hooks run: the
  /// bare repository has none; this only prepares objects and refs).
  void push(const std::string& refspec) {
    git({"-C", work_, "push", "--quiet", path_, refspec});
  }

  /// The commit id a ref of the bare repository points to.
  std::string rev(const std::string& ref) const {
    return git({"--git-dir=" + path_, "rev-parse", "--verify", ref});
  }

  /// Writes a new commit (tree of `tree_of`, parent `parent`) into the
  /// quarantine directory objects/<quarantine> as Gitaly's receive-pack
  /// would, without touching any ref; returns its id.
  std::string quarantined_commit(const std::string& quarantine,
                                 const std::string& tree_of,
                                 const std::string& parent,
                                 const std::string& message) {
    auto dir = path_ + "/objects/" + quarantine;
    std::filesystem::create_directories(dir);
    auto tree = git({"--git-dir=" + path_, "rev-parse", tree_of + "^{tree}"});
    return git(
      {"--git-dir=" + path_, "commit-tree", tree, "-p", parent, "-m", message},
      {{"GIT_OBJECT_DIRECTORY", dir},
       {"GIT_ALTERNATE_OBJECT_DIRECTORIES", path_ + "/objects"}});
  }

  /// Whether the object is visible in the repository's own object store
  /// (quarantined objects are not).
  bool has_object(const std::string& id) const {
    return run_git_binary({"--git-dir=" + path_, "cat-file", "-e", id})
             .exit_code
      == 0;
  }

private:
  std::string path_;
  std::string work_;
};

} // namespace gatehouse::test
