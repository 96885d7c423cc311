#include "storage/git_repository.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <initializer_list>

namespace gatehouse::storage {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

// -- git helpers
// ---------------------------------------------------------------

constexpr const char* default_path = "/usr/local/bin:/usr/bin:/bin";

// A directory path without trailing '/' (the root stays "/"), so that
// alternates compare equal however they were spelled.
std::string without_trailing_slash(std::string path) {
  while (path.size() > 1 && path.back() == '/')
    path.pop_back();
  return path;
}

// An entry of GIT_ALTERNATE_OBJECT_DIRECTORIES: git C-unquotes entries that
// start with '"', so a path containing ':' survives the colon-joining.
std::string alternate_entry(const std::string& path) {
  if (path.find_first_of(":\"\\\n") == std::string::npos)
    return path;
  std::string out = "\"";
  for (char c : path) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  out += '"';
  return out;
}

bool acceptable_path(const std::string& path) {
  return !path.empty() && path.front() == '/'
    && path.find('\0') == std::string::npos;
}

void set_failure(git_failure* f, std::string reason, std::string detail = {},
                 bool timed_out = false) {
  if (f == nullptr)
    return;
  f->reason = std::move(reason);
  f->detail = std::move(detail);
  f->timed_out = timed_out;
}

std::string first_line(const std::string& text) {
  auto line = text.substr(0, text.find('\n'));
  if (line.size() > 300)
    line.resize(300);
  return line;
}

// Runs git; nullopt (with `f` set) when it did not run to completion.
std::optional<git_run_result> run_to_end(const repo_location& loc,
                                         const std::vector<std::string>& args,
                                         milliseconds timeout, git_failure* f) {
  const std::string what = "git " + args.front();
  if (timeout <= milliseconds{0}) {
    set_failure(f, what + " timed out", "no time left", true);
    return std::nullopt;
  }
  auto r = run_git(loc, args, timeout);
  if (r.timed_out) {
    set_failure(
      f, what + " timed out after " + std::to_string(timeout.count()) + " ms",
      first_line(r.err), true);
    return std::nullopt;
  }
  if (r.truncated) {
    set_failure(f, what + " produced too much output");
    return std::nullopt;
  }
  if (r.exit_code < 0) {
    set_failure(f, "git could not run", first_line(r.err));
    return std::nullopt;
  }
  return r;
}

std::string exit_failure(const std::string& what, const git_run_result& r) {
  return what + " failed (exit " + std::to_string(r.exit_code) + ")";
}

// The one run / check-exit sequence of every git question: runs git to the
// end and insists on an exit code in `accepted`; otherwise nullopt, with
// `f` saying "git <command> failed (exit N)" and git's first stderr line.
std::optional<git_run_result> run_git_checked(
  const repo_location& loc, const std::vector<std::string>& args,
  milliseconds timeout, git_failure* f,
  std::initializer_list<int> accepted = {0}) {
  auto r = run_to_end(loc, args, timeout, f);
  if (!r)
    return std::nullopt;
  if (std::find(accepted.begin(), accepted.end(), r->exit_code)
      == accepted.end()) {
    set_failure(f, exit_failure("git " + args.front(), *r), first_line(r->err));
    return std::nullopt;
  }
  return r;
}

// `git rev-parse --verify --quiet <spec>`: the object id `spec` names, ""
// when it names nothing (exit 1, no output), nullopt on failure.
std::optional<std::string> verify_revision(const repo_location& loc,
                                           const std::string& spec,
                                           milliseconds timeout,
                                           git_failure* f) {
  auto r = run_to_end(
    loc, {"rev-parse", "--verify", "--quiet", "--end-of-options", spec},
    timeout, f);
  if (!r)
    return std::nullopt;
  if (r->exit_code == 1 && r->out.empty())
    return std::string{};
  auto id = first_line(r->out);
  if (r->exit_code != 0 || !is_object_id(id)) {
    set_failure(f, exit_failure("git rev-parse", *r), first_line(r->err));
    return std::nullopt;
  }
  return id;
}

void unexpected_output(git_failure* f, const char* command) {
  set_failure(f,
              std::string("git ") + command + " printed something unexpected");
}

// A revision git may be asked about: a full, non-blank object id.
bool commit_id_ok(const std::string& rev, git_failure* f) {
  if (is_object_id(rev) && !is_blank_object_id(rev))
    return true;
  set_failure(f, "a revision is not a full object id");
  return false;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos)
      end = text.size();
    if (end > pos)
      out.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

// -- commit parsing ----------------------------------------------------------

// rev-list's format: one record per commit, fields NUL-terminated, then the
// newline rev-list adds after every formatted commit. %B is the raw message.
constexpr const char* commit_format
  = "--format=%H%x00%P%x00%an%x00%ae%x00%cI%x00%B%x00";
constexpr std::size_t commit_fields = 6;

struct raw_commit {
  push::commit info;
  std::vector<std::string> parents;
};

std::optional<std::vector<raw_commit>> parse_commits(const std::string& out) {
  std::vector<raw_commit> commits;
  std::size_t pos = 0;
  while (pos < out.size()) {
    std::array<std::string, commit_fields> f;
    for (auto& field : f) {
      auto nul = out.find('\0', pos);
      if (nul == std::string::npos)
        return std::nullopt;
      field = out.substr(pos, nul - pos);
      pos = nul + 1;
    }
    if (pos >= out.size() || out[pos] != '\n')
      return std::nullopt;
    ++pos;
    raw_commit c;
    c.info.id = std::move(f[0]);
    if (!is_object_id(c.info.id))
      return std::nullopt;
    const auto& parents = f[1];
    std::size_t start = 0;
    while (start < parents.size()) {
      auto space = parents.find(' ', start);
      if (space == std::string::npos)
        space = parents.size();
      if (space > start)
        c.parents.push_back(parents.substr(start, space - start));
      start = space + 1;
    }
    c.info.author_name = std::move(f[2]);
    c.info.author_email = std::move(f[3]);
    c.info.timestamp = std::move(f[4]);
    c.info.message = std::move(f[5]);
    commits.push_back(std::move(c));
  }
  return commits;
}

bool is_utf8_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// GitLab's Commit#title (first line, or a word-boundary cut of it).
std::string commit_title(const std::string& message) {
  if (message.find_first_not_of(" \t\r\n\f\v") == std::string::npos)
    return "No commit message";
  auto full = message.substr(0, message.find_first_of("\r\n"));
  // Rails counts characters, not bytes: walk code points.
  std::size_t chars = 0;
  for (char c : full)
    if (!is_utf8_continuation(c))
      ++chars;
  if (chars < 100)
    return full;
  // String#truncate(81, separator: ' ', omission: '...'): keep the text
  // before the last space at character index <= 78, else 78 characters.
  constexpr std::size_t room = 81 - 3;
  std::size_t index = 0;
  std::size_t cut_at_room = full.size();
  std::size_t last_space = std::string::npos;
  for (std::size_t i = 0; i < full.size(); ++i) {
    if (is_utf8_continuation(full[i]))
      continue;
    if (index == room)
      cut_at_room = i;
    if (index > room)
      break;
    if (full[i] == ' ')
      last_space = i;
    ++index;
  }
  auto stop = last_space != std::string::npos ? last_space : cut_at_room;
  return full.substr(0, stop) + "...";
}

// `git diff-tree -z --name-status` output into the three lists.
bool parse_name_status(const std::string& out, push::commit& c) {
  std::vector<std::string> tokens;
  std::size_t pos = 0;
  while (pos < out.size()) {
    auto nul = out.find('\0', pos);
    if (nul == std::string::npos)
      nul = out.size();
    tokens.push_back(out.substr(pos, nul - pos));
    pos = nul + 1;
  }
  for (std::size_t i = 0; i < tokens.size();) {
    const auto& status = tokens[i];
    if (status.empty())
      return false;
    // Renames and copies carry two paths; --no-renames keeps them away, but
    // a parser must not lose its step if one appears.
    bool two_paths = status[0] == 'R' || status[0] == 'C';
    std::size_t paths = two_paths ? 2 : 1;
    if (i + paths >= tokens.size())
      return false;
    const auto& path = tokens[i + paths];
    switch (status[0]) {
      case 'A':
        c.added.push_back(path);
        break;
      case 'D':
        c.removed.push_back(path);
        break;
      case 'R':
        c.removed.push_back(tokens[i + 1]);
        c.added.push_back(path);
        break;
      case 'C':
        c.added.push_back(path);
        break;
      default:
        c.modified.push_back(path);
    }
    i += paths + 1;
  }
  return true;
}

std::vector<std::string> range_args(const std::string& oldrev,
                                    const std::string& newrev) {
  std::vector<std::string> out{"--end-of-options", newrev};
  if (!is_blank_object_id(oldrev))
    out.push_back("^" + oldrev);
  return out;
}

bool valid_range(const std::string& oldrev, const std::string& newrev,
                 git_failure* f) {
  if (!is_object_id(oldrev) || !is_object_id(newrev)
      || is_blank_object_id(newrev)) {
    set_failure(f, "a revision is not a full object id");
    return false;
  }
  return true;
}

} // namespace

git_run_result run_git(const repo_location& loc,
                       const std::vector<std::string>& args,
                       milliseconds timeout, std::string_view input) {
  git_run_result refused;
  if (!acceptable_path(loc.repo_dir)
      || (!loc.object_directory.empty()
          && !acceptable_path(loc.object_directory))
      || !std::all_of(loc.alternate_object_directories.begin(),
                      loc.alternate_object_directories.end(),
                      acceptable_path)) {
    refused.err = "repository paths must be absolute";
    return refused;
  }
  std::vector<std::string> env;
  const char* path = std::getenv("PATH");
  env.push_back(std::string{"PATH="}
                + (path != nullptr && *path != '\0' ? path : default_path));
  env.push_back("GIT_DIR=" + loc.repo_dir);
  env.push_back("GIT_CONFIG_NOSYSTEM=1");
  env.push_back("HOME=/nonexistent");
  env.push_back("GIT_TERMINAL_PROMPT=0");
  env.push_back("LC_ALL=C");
  std::vector<std::string> alternates;
  for (auto& dir : loc.alternate_object_directories)
    alternates.push_back(without_trailing_slash(dir));
  if (!loc.object_directory.empty()) {
    env.push_back("GIT_OBJECT_DIRECTORY=" + loc.object_directory);
    // receive-pack's quarantine lists the repository's own objects as an
    // alternate; make sure it is there even if the caller's list lacks it.
    auto own = without_trailing_slash(loc.repo_dir) + "/objects";
    if (std::find(alternates.begin(), alternates.end(), own) == alternates.end()
        && without_trailing_slash(loc.object_directory) != own)
      alternates.push_back(own);
  }
  if (!alternates.empty()) {
    std::string joined;
    for (auto& dir : alternates) {
      if (!joined.empty())
        joined += ':';
      joined += alternate_entry(dir);
    }
    env.push_back("GIT_ALTERNATE_OBJECT_DIRECTORIES=" + joined);
  }
  std::vector<std::string> argv{"git", "-c", "safe.directory=*", "-c",
                                "core.fsmonitor=false"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, env, timeout, {}, max_captured_output, input);
}

// -- questions ----------------------------------------------------------------

bool is_object_id(std::string_view rev) {
  if (rev.size() != 40 && rev.size() != 64)
    return false;
  return std::all_of(rev.begin(), rev.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool is_blank_object_id(std::string_view rev) {
  return is_object_id(rev)
    && rev.find_first_not_of('0') == std::string_view::npos;
}

bool is_branch_name(std::string_view name) {
  if (name.empty() || name.size() > 1024 || name.front() == '-'
      || name.front() == '/' || name.back() == '/' || name.back() == '.'
      || name == "@")
    return false;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f
        || std::string_view{" ~^:?*[\\"}.find(c) != std::string_view::npos)
      return false;
  }
  if (name.find("..") != std::string_view::npos
      || name.find("@{") != std::string_view::npos
      || name.find("//") != std::string_view::npos)
    return false;
  std::size_t start = 0;
  while (start <= name.size()) {
    auto end = name.find('/', start);
    if (end == std::string_view::npos)
      end = name.size();
    auto part = name.substr(start, end - start);
    if (part.front() == '.'
        || (part.size() >= 5 && part.substr(part.size() - 5) == ".lock"))
      return false;
    start = end + 1;
  }
  return true;
}

std::optional<bool> is_ancestor(const repo_location& loc,
                                const std::string& ancestor,
                                const std::string& descendant,
                                milliseconds timeout, git_failure* failure) {
  if (!commit_id_ok(ancestor, failure) || !commit_id_ok(descendant, failure))
    return std::nullopt;
  // Exit 0: an ancestor; 1: not one; anything else: no answer.
  auto r = run_git_checked(
    loc,
    {"merge-base", "--is-ancestor", "--end-of-options", ancestor, descendant},
    timeout, failure, {0, 1});
  if (!r)
    return std::nullopt;
  return r->exit_code == 0;
}

std::optional<std::vector<std::string>> branches_containing(
  const repo_location& loc, const std::string& sha, milliseconds timeout,
  git_failure* failure) {
  if (!commit_id_ok(sha, failure))
    return std::nullopt;
  auto r
    = run_git_checked(loc,
                      {"for-each-ref", "--format=%(refname)",
                       "--contains=" + sha, "--end-of-options", "refs/heads/"},
                      timeout, failure);
  if (!r)
    return std::nullopt;
  static constexpr std::string_view prefix = "refs/heads/";
  std::vector<std::string> names;
  for (auto& line : split_lines(r->out))
    if (line.compare(0, prefix.size(), prefix) == 0)
      names.push_back(line.substr(prefix.size()));
  return names;
}

std::optional<bool> repository_empty(const repo_location& loc,
                                     milliseconds timeout,
                                     git_failure* failure) {
  auto r = run_git_checked(loc,
                           {"for-each-ref", "--count=1", "--format=%(refname)",
                            "--end-of-options", "refs/heads/"},
                           timeout, failure);
  if (!r)
    return std::nullopt;
  return r->out.empty();
}

std::optional<std::set<std::string>> missing_objects(
  const repo_location& loc, const std::set<std::string>& revs,
  milliseconds timeout, git_failure* failure) {
  std::set<std::string> missing;
  if (revs.empty())
    return missing;
  std::string input;
  input.reserve(revs.size() * 65);
  for (auto& rev : revs) {
    if (!commit_id_ok(rev, failure))
      return std::nullopt;
    input += rev;
    input += '\n';
  }
  const std::string what = "git cat-file";
  if (timeout <= milliseconds{0}) {
    set_failure(failure, what + " timed out", "no time left", true);
    return std::nullopt;
  }
  auto r = run_git(loc, {"cat-file", "--batch-check"}, timeout, input);
  if (r.timed_out) {
    set_failure(failure,
                what + " timed out after " + std::to_string(timeout.count())
                  + " ms",
                first_line(r.err), true);
    return std::nullopt;
  }
  if (r.truncated || r.exit_code != 0) {
    set_failure(failure, exit_failure(what, r), first_line(r.err));
    return std::nullopt;
  }
  // "<id> <type> <size>" for an object, "<id> missing" for none, one line
  // per input line in order.
  for (auto& line : split_lines(r.out)) {
    const auto space = line.find(' ');
    if (space != std::string::npos && line.compare(space + 1, 7, "missing") == 0
        && revs.count(line.substr(0, space)) > 0)
      missing.insert(line.substr(0, space));
  }
  return missing;
}

std::optional<std::string> branch_commit(const repo_location& loc,
                                         const std::string& branch,
                                         milliseconds timeout,
                                         git_failure* failure) {
  if (!is_branch_name(branch)) {
    set_failure(failure, "not a valid branch name");
    return std::nullopt;
  }
  auto id = verify_revision(loc, "refs/heads/" + branch + "^{commit}", timeout,
                            failure);
  if (!id)
    return std::nullopt;
  if (id->empty()) {
    set_failure(failure, "no such branch");
    return std::nullopt;
  }
  return id;
}

std::optional<std::vector<push::commit>> list_commits(const repo_location& loc,
                                                      const std::string& oldrev,
                                                      const std::string& newrev,
                                                      std::size_t limit,
                                                      milliseconds timeout,
                                                      git_failure* failure) {
  if (!valid_range(oldrev, newrev, failure))
    return std::nullopt;
  if (limit == 0)
    return std::vector<push::commit>{};
  // `timeout` bounds the whole listing, not each of its git calls.
  const auto deadline = steady::now() + timeout;
  std::vector<std::string> args{
    "rev-list", "--no-commit-header", "--encoding=UTF-8",
    "--max-count=" + std::to_string(limit), commit_format};
  for (auto& a : range_args(oldrev, newrev))
    args.push_back(std::move(a));
  auto r = run_git_checked(loc, args, timeout, failure);
  if (!r)
    return std::nullopt;
  auto commits = parse_commits(r->out);
  if (!commits) {
    unexpected_output(failure, "rev-list");
    return std::nullopt;
  }
  std::vector<push::commit> out;
  out.reserve(commits->size());
  for (auto& c : *commits) {
    // Against the first parent, like GitLab's commit diffs; a root commit
    // against the empty tree.
    std::vector<std::string> diff{"diff-tree", "--no-commit-id",
                                  "-r",        "--name-status",
                                  "-z",        "--no-renames"};
    if (c.parents.empty()) {
      diff.insert(diff.end(), {"--root", "--end-of-options", c.info.id});
    } else {
      if (!is_object_id(c.parents.front())) {
        unexpected_output(failure, "rev-list");
        return std::nullopt;
      }
      diff.insert(diff.end(),
                  {"--end-of-options", c.parents.front(), c.info.id});
    }
    auto d = run_git_checked(loc, diff, remaining(deadline), failure);
    if (!d)
      return std::nullopt;
    if (!parse_name_status(d->out, c.info)) {
      unexpected_output(failure, "diff-tree");
      return std::nullopt;
    }
    c.info.title = commit_title(c.info.message);
    out.push_back(std::move(c.info));
  }
  return out;
}

std::optional<std::size_t> count_commits(const repo_location& loc,
                                         const std::string& oldrev,
                                         const std::string& newrev,
                                         milliseconds timeout,
                                         git_failure* failure) {
  if (!valid_range(oldrev, newrev, failure))
    return std::nullopt;
  std::vector<std::string> args{"rev-list", "--count"};
  for (auto& a : range_args(oldrev, newrev))
    args.push_back(std::move(a));
  auto r = run_git_checked(loc, args, timeout, failure);
  if (!r)
    return std::nullopt;
  auto text = first_line(r->out);
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
    unexpected_output(failure, "rev-list");
    return std::nullopt;
  }
  return n;
}

// -- push commits
// ----------------------------------------------------------------

namespace {

constexpr std::string_view heads_prefix = "refs/heads/";
constexpr std::string_view tags_prefix = "refs/tags/";

bool has_prefix(const std::string& s, std::string_view prefix) {
  return s.size() > prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// The newest `limit` commits of oldrev..newrev (oldrev blank: everything
// reachable), oldest first, and how many there are in all.
std::optional<push::ref_commits> commits_in_range(const repo_location& loc,
                                                  const std::string& oldrev,
                                                  const std::string& newrev,
                                                  std::size_t limit,
                                                  milliseconds timeout,
                                                  git_failure* failure) {
  auto listed = list_commits(loc, oldrev, newrev, limit, timeout, failure);
  if (!listed)
    return std::nullopt;
  push::ref_commits out;
  // Fewer than asked for: that is all of them, no need to count.
  if (listed->size() < limit) {
    out.total = listed->size();
  } else {
    auto total = count_commits(loc, oldrev, newrev, timeout, failure);
    if (!total)
      return std::nullopt;
    out.total = std::max(*total, listed->size());
  }
  out.commits.reserve(listed->size());
  for (auto it = listed->rbegin(); it != listed->rend(); ++it)
    out.commits.push_back(std::move(*it));
  return out;
}

} // namespace

std::optional<tag_info> describe_tag(const repo_location& loc,
                                     const std::string& rev,
                                     milliseconds timeout,
                                     git_failure* failure) {
  if (!commit_id_ok(rev, failure))
    return std::nullopt;
  const auto deadline = steady::now() + timeout;
  auto type = run_git_checked(loc, {"cat-file", "-t", rev}, timeout, failure);
  if (!type)
    return std::nullopt;
  const auto kind = first_line(type->out);
  tag_info info;
  if (kind == "commit") {
    info.target = rev;
    return info;
  }
  if (kind == "tree" || kind == "blob")
    return info;
  if (kind != "tag") {
    unexpected_output(failure, "cat-file");
    return std::nullopt;
  }
  info.annotated = true;
  auto body = run_git_checked(loc, {"cat-file", "tag", rev},
                              remaining(deadline), failure);
  if (!body)
    return std::nullopt;
  // Header lines, a blank line, then the message (Gitaly keeps it raw).
  auto split = body->out.find("\n\n");
  if (split != std::string::npos)
    info.message = body->out.substr(split + 2);
  // --verify --quiet: a tag of a tree or blob peels to nothing, silently.
  auto peeled
    = verify_revision(loc, rev + "^{commit}", remaining(deadline), failure);
  if (!peeled)
    return std::nullopt;
  if (!peeled->empty())
    info.target = std::move(*peeled);
  return info;
}

std::optional<push::ref_commits> ref_commits(const repo_location& loc,
                                             const access::ref_change& change,
                                             const std::string& default_branch,
                                             std::size_t limit,
                                             milliseconds timeout,
                                             git_failure* failure) {
  if (!is_object_id(change.oldrev) || !is_object_id(change.newrev)) {
    set_failure(failure, "a revision is not a full object id");
    return std::nullopt;
  }
  if (is_blank_object_id(change.newrev))
    return push::ref_commits{};
  if (has_prefix(change.ref, tags_prefix)) {
    auto tag = describe_tag(loc, change.newrev, timeout, failure);
    if (!tag)
      return std::nullopt;
    push::ref_commits out;
    out.tag_target = tag->target;
    out.tag_message = tag->message;
    if (tag->target) {
      // GitLab's TagHooksService: the tagged commit is the push's commit.
      auto listed = list_commits(loc, std::string(change.newrev.size(), '0'),
                                 *tag->target, 1, timeout, failure);
      if (!listed)
        return std::nullopt;
      out.total = 1;
      if (limit > 0)
        for (auto& c : *listed)
          out.commits.push_back(std::move(c));
    }
    return out;
  }
  if (!has_prefix(change.ref, heads_prefix)) {
    set_failure(failure, "not a branch or tag");
    return std::nullopt;
  }
  const std::string blank(change.newrev.size(), '0');
  if (!is_blank_object_id(change.oldrev))
    return commits_in_range(loc, change.oldrev, change.newrev, limit, timeout,
                            failure);
  const auto branch = change.ref.substr(heads_prefix.size());
  if (default_branch.empty() || branch == default_branch)
    return commits_in_range(loc, blank, change.newrev, limit, timeout, failure);
  const auto deadline = steady::now() + timeout;
  git_failure base_failure;
  auto base = branch_commit(loc, default_branch, timeout, &base_failure);
  if (!base) {
    // No default branch yet (or a name git refuses): everything reachable
    // is new, as for the default branch of an empty repository.
    if (base_failure.reason != "no such branch"
        && base_failure.reason != "not a valid branch name") {
      if (failure != nullptr)
        *failure = base_failure;
      return std::nullopt;
    }
    return commits_in_range(loc, blank, change.newrev, limit,
                            remaining(deadline), failure);
  }
  return commits_in_range(loc, *base, change.newrev, limit, remaining(deadline),
                          failure);
}

push::commit_facts answer_commits(const push::commit_questions& q,
                                  milliseconds per_call_timeout) {
  push::commit_facts facts;
  if (!q.location) {
    facts.unavailable_reason = "the repository storage has no local path";
    return facts;
  }
  facts.available = true;
  bool gave_up = false;
  for (const auto& change : q.changes) {
    if (!has_prefix(change.ref, heads_prefix)
        && !has_prefix(change.ref, tags_prefix))
      continue;
    git_failure f;
    std::optional<push::ref_commits> answer;
    if (!gave_up)
      answer = ref_commits(*q.location, change, q.default_branch, q.limit,
                           per_call_timeout, &f);
    else
      f.reason = "skipped after a git timeout";
    if (answer) {
      facts.by_ref.insert_or_assign(change.ref, std::move(*answer));
      continue;
    }
    facts.available = false;
    if (facts.unavailable_reason.empty())
      facts.unavailable_reason = f.reason.empty() ? "git failed" : f.reason;
    gave_up = gave_up || f.timed_out;
  }
  return facts;
}

git_facts answer(const git_questions& q, milliseconds per_call_timeout) {
  using steady = std::chrono::steady_clock;
  git_facts facts;
  if (q.empty())
    return facts;
  if (!q.location) {
    facts.unavailable_reason = "the repository storage has no local path";
    return facts;
  }
  const auto& loc = *q.location;
  // Each call gets its own timeout, cut to what is left of the budget.
  auto call_timeout = [&] {
    return q.deadline ? std::min(per_call_timeout, remaining(*q.deadline))
                      : per_call_timeout;
  };
  auto note = [&](const git_failure& f) {
    if (facts.unavailable_reason.empty())
      facts.unavailable_reason = f.reason.empty() ? "git failed" : f.reason;
    facts.timed_out = facts.timed_out || f.timed_out;
  };
  // Runs one kind of question and records how long it took.
  auto timed = [&](git_check check, auto&& body) {
    git_step step;
    step.check = check;
    if (facts.timed_out) {
      step.skipped = true;
    } else {
      const auto start = steady::now();
      body();
      step.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
        steady::now() - start);
      step.cancelled = facts.timed_out;
    }
    facts.steps.push_back(step);
  };

  if (q.ask_empty)
    timed(git_check::emptiness, [&] {
      git_failure f;
      facts.repository_empty = repository_empty(loc, call_timeout(), &f);
      if (!facts.repository_empty)
        note(f);
    });

  std::set<std::string> revs;
  for (auto& [ancestor, descendant] : q.ancestry) {
    revs.insert(ancestor);
    revs.insert(descendant);
  }
  revs.insert(q.branches_containing.begin(), q.branches_containing.end());
  std::set<std::string> absent;
  if (revs.size() > 2 && !facts.timed_out) {
    // Well-formed ids only: the others fail their own question below
    // without git, and must not reach git's stdin.
    std::set<std::string> ids;
    for (auto& rev : revs)
      if (is_object_id(rev) && !is_blank_object_id(rev))
        ids.insert(rev);
    git_failure f;
    if (auto missing = missing_objects(loc, ids, call_timeout(), &f))
      absent = std::move(*missing);
    else
      note(f);
  }
  git_failure absent_failure;
  absent_failure.reason = "a pushed revision is not in the repository";

  if (!q.ancestry.empty())
    timed(git_check::ancestry, [&] {
      for (auto& [ancestor, descendant] : q.ancestry) {
        if (absent.count(ancestor) > 0 || absent.count(descendant) > 0) {
          note(absent_failure);
          continue;
        }
        git_failure f;
        if (auto yes
            = is_ancestor(loc, ancestor, descendant, call_timeout(), &f))
          facts.is_ancestor.emplace(std::make_pair(ancestor, descendant), *yes);
        else
          note(f);
        if (facts.timed_out)
          break;
      }
    });
  if (!q.branches_containing.empty())
    timed(git_check::branch_basis, [&] {
      for (auto& sha : q.branches_containing) {
        if (absent.count(sha) > 0) {
          note(absent_failure);
          continue;
        }
        git_failure f;
        if (auto names = branches_containing(loc, sha, call_timeout(), &f))
          facts.branches_containing.emplace(sha, std::move(*names));
        else
          note(f);
        if (facts.timed_out)
          break;
      }
    });
  return facts;
}

} // namespace gatehouse::storage
