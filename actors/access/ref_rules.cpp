// The per-ref rules of the access decision: parsing `changes`, blank
// revisions, protected-ref patterns, ref-name validation, and the branch
// and tag checks every pushed ref passes.

#include "actors/access/ref_rules.hpp"

#include "actors/access/allowed_messages.hpp"
#include "actors/access/project_policy.hpp"
#include "actors/gitlab_paths.hpp"

#include <chrono>
#include <cstddef>
#include <string>

namespace gatehouse::access {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'
    || c == '\f' || c == '\0';
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
    || (c >= 'A' && c <= 'F');
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size()
    && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// git check-ref-format rules for a full ref name (libgit2/Rugged without
/// normalisation): no empty or '.'-leading components, no component ending
/// in ".lock", no "..", no "@{", not "@", no control characters, space,
/// '~', '^', ':', '?', '*', '[', '\\', no leading, trailing or doubled '/',
/// no trailing '.'.
bool check_ref_format(const std::string& ref) {
  if (ref.empty() || ref == "@") {
    return false;
  }
  if (ref.front() == '/' || ref.back() == '/' || ref.back() == '.') {
    return false;
  }
  if (ref.find("..") != std::string::npos || ref.find("@{") != std::string::npos
      || ref.find("//") != std::string::npos) {
    return false;
  }
  for (unsigned char c : ref) {
    if (c < 0x20 || c == 0x7f) {
      return false;
    }
    switch (c) {
      case ' ':
      case '~':
      case '^':
      case ':':
      case '?':
      case '*':
      case '[':
      case '\\':
        return false;
      default:
        break;
    }
  }
  std::size_t start = 0;
  while (start <= ref.size()) {
    std::size_t slash = ref.find('/', start);
    if (slash == std::string::npos) {
      slash = ref.size();
    }
    const std::string component = ref.substr(start, slash - start);
    if (component.empty() || component.front() == '.'
        || ends_with(component, ".lock")) {
      return false;
    }
    start = slash + 1;
  }
  return true;
}

/// Gitlab::UserAccess / DeployKeyAccess for one project. `user` is the
/// pushing user, or for a deploy key its creator (GitLab evaluates deploy
/// keys' ref permissions through the creator, and the read model has no
/// deploy-key entries in protected-ref access lists).
class ref_access {
public:
  ref_access(const snapshot& snap, const project_record& project,
             const user_record* user, bool deploy_key, bool empty_repo)
    : snap_(snap), project_(project), pol_(snap, project), user_(user),
      deploy_key_(deploy_key), empty_(empty_repo) {}

  const std::vector<protected_branch_record>& branches() const {
    static const std::vector<protected_branch_record> none;
    const auto it = snap_.protected_branches.find(project_.id);
    return it == snap_.protected_branches.end() ? none : it->second;
  }

  const std::vector<protected_tag_record>& tags() const {
    static const std::vector<protected_tag_record> none;
    const auto it = snap_.protected_tags.find(project_.id);
    return it == snap_.protected_tags.end() ? none : it->second;
  }

  /// Matches one of the project's protected branch patterns.
  bool matches_protected_branch(const std::string& name) const {
    for (const auto& pb : branches()) {
      if (ref_pattern_matches(pb.name, name)) {
        return true;
      }
    }
    return false;
  }

  /// ProtectedBranch.protected?: every branch counts as protected in an
  /// empty repository. The read model has no default-branch-protection
  /// setting: GitLab's default ("fully protected": maintainers make the
  /// initial push) is assumed.
  bool branch_protected(const std::string& name) const {
    return empty_ || matches_protected_branch(name);
  }

  bool allow_force_push(const std::string& name) const {
    for (const auto& pb : branches()) {
      if (pb.allow_force_push && ref_pattern_matches(pb.name, name)) {
        return true;
      }
    }
    return false;
  }

  bool can_access_git() const {
    return user_active(user_);
  }

  bool can_push_for_ref(const std::string& ref) const {
    if (deploy_key_) {
      // DeployKeyAccess#can_push_for_ref? checks the full ref name.
      return can_push_to_branch(ref);
    }
    return can_access_git() && pol_.push_code(user_);
  }

  bool can_push_to_branch(const std::string& name) const {
    if (!can_access_git() || !can_collaborate()) {
      return false;
    }
    if (!branch_protected(name)) {
      return true;
    }
    return protected_branch_accessible(name, /*push=*/true);
  }

  bool can_merge_to_branch(const std::string& name) const {
    if (!can_access_git()) {
      return false;
    }
    if (branch_protected(name)) {
      return protected_branch_accessible(name, /*push=*/false);
    }
    return pol_.push_code(user_);
  }

  bool can_delete_branch(const std::string& name) const {
    if (!can_access_git()) {
      return false;
    }
    if (branch_protected(name)) {
      return pol_.maintainer(user_);
    }
    return pol_.push_code(user_);
  }

  bool tag_protected(const std::string& name) const {
    for (const auto& pt : tags()) {
      if (ref_pattern_matches(pt.name, name)) {
        return true;
      }
    }
    return false;
  }

  bool can_create_tag(const std::string& name) const {
    if (!can_access_git()) {
      return false;
    }
    if (tag_protected(name)) {
      for (const auto& pt : tags()) {
        if (ref_pattern_matches(pt.name, name)
            && pol_.role_allows(user_, pt.create_access_level)) {
          return true;
        }
      }
      return false;
    }
    return pol_.admin_tag(user_);
  }

  bool admin_tag() const {
    return can_access_git() && pol_.admin_tag(user_);
  }

  bool maintainer() const {
    return pol_.maintainer(user_);
  }

  bool empty() const {
    return empty_;
  }

private:
  bool can_collaborate() const {
    if (deploy_key_) {
      // The creator must still read the project; the key's write access was
      // checked before the per-ref checks.
      return pol_.read_project(user_);
    }
    return pol_.push_code(user_);
  }

  bool protected_branch_accessible(const std::string& name, bool push) const {
    if (empty_ && user_ != nullptr
        && (user_->admin || pol_.maintainer(user_))) {
      return true; // maintainers and admins create the default branch
    }
    for (const auto& pb : branches()) {
      if (!ref_pattern_matches(pb.name, name)) {
        continue;
      }
      const int required = push ? pb.push_access_level : pb.merge_access_level;
      if (pol_.role_allows(user_, required)) {
        return true;
      }
    }
    return false;
  }

  const snapshot& snap_;
  const project_record& project_;
  project_policy pol_;
  const user_record* user_;
  bool deploy_key_;
  bool empty_;
};

std::string project_members_url(const snapshot& snap,
                                const project_record& project) {
  return gitlab::strip_trailing_slashes(snap.settings.external_url) + "/"
    + project.full_path + "/-/project_members";
}

std::string empty_project_push_message(const snapshot& snap,
                                       const project_record& project) {
  return "\nA default branch (e.g. master) does not yet exist for "
    + project.full_path
    + "\nAsk a project Owner or Maintainer to create a default branch:\n\n"
      "  "
    + project_members_url(snap, project) + "\n\n";
}

bool storage_has_path(const snapshot& snap, const project_record& project) {
  const auto it = snap.storages.find(project.storage);
  return it != snap.storages.end() && !it->second.path.empty();
}

/// Our own text for a decision that needs git facts nobody could provide.
std::string facts_unavailable(const snapshot& snap,
                              const project_record& project,
                              const git_facts& facts, const std::string& what) {
  std::string why = storage_has_path(snap, project)
    ? "git could not answer"
    : "the repository storage has no local path";
  const std::string reason = facts.unavailable_reason.empty()
    ? "no reason given"
    : facts.unavailable_reason;
  return what + " is unavailable because " + why + " (" + reason
    + "), so this push to a protected branch is refused.";
}

struct ref_context {
  const snapshot& snap;
  const project_record& project;
  const ref_access& access;
  const git_facts& facts;
  const std::string& protocol;
};

// A decision that needs a git fact git did not give: GitLab's 503 when git
// ran out of time, otherwise our refusal with the reason.
ref_refusal missing_fact(const ref_context& c, const std::string& what) {
  if (c.facts.timed_out)
    return ref_refusal{503, timed_out_message(c.facts)};
  return ref_refusal{401,
                     facts_unavailable(c.snap, c.project, c.facts, what)};
}

std::optional<ref_refusal> branch_check(const ref_context& c,
                                        const ref_change& ch,
                                        const std::string& branch) {
  const bool creation = is_blank_rev(ch.oldrev);
  const bool deletion = is_blank_rev(ch.newrev);

  if (deletion && branch == c.project.default_branch) {
    return ref_refusal{401, msg_delete_default_branch};
  }
  if (!deletion) {
    if (starts_with_full_sha(branch)) {
      return ref_refusal{401, msg_sha_branch_name};
    }
    if (!valid_ref_name(branch)) {
      return ref_refusal{401, msg_invalid_branch_name};
    }
  }
  if (!c.access.branch_protected(branch)) {
    return std::nullopt;
  }

  // Force push: both revisions real, repository not empty, old not an
  // ancestor of new, unless a matching protection allows force pushes.
  if (!c.access.empty() && !creation && !deletion
      && !c.access.allow_force_push(branch)) {
    const auto it = c.facts.is_ancestor.find({ch.oldrev, ch.newrev});
    if (it == c.facts.is_ancestor.end()) {
      return missing_fact(c, "Force-push detection for protected branch '"
                               + branch + "'");
    }
    if (!it->second) {
      return ref_refusal{401, msg_force_push_protected};
    }
  }

  auto push_checks = [&]() -> std::optional<ref_refusal> {
    // No merge-request data in the read model: a pushed commit is never the
    // in-progress merge of an open merge request.
    if (!c.access.can_push_to_branch(branch)) {
      if (c.access.empty()) {
        return ref_refusal{401, empty_project_push_message(c.snap, c.project)};
      }
      return ref_refusal{401, msg_push_protected_branch};
    }
    return std::nullopt;
  };

  if (c.access.empty()) {
    return push_checks();
  }
  if (creation) {
    if (c.access.can_push_to_branch(branch)) {
      return std::nullopt;
    }
    if (!c.access.can_merge_to_branch(branch)) {
      return ref_refusal{401, msg_create_protected_branch};
    }
    const auto it = c.facts.branches_containing.find(ch.newrev);
    if (it == c.facts.branches_containing.end()) {
      return missing_fact(c, "Checking the basis of new protected branch '"
                               + branch + "'");
    }
    bool safe = false;
    for (const auto& b : it->second) {
      if (c.access.matches_protected_branch(b)) {
        safe = true;
        break;
      }
    }
    if (!safe) {
      return ref_refusal{401, msg_invalid_commit_protected_branch};
    }
    if (c.protocol != "web") {
      return ref_refusal{401, msg_create_protected_branch_non_web};
    }
    return std::nullopt;
  }
  if (deletion) {
    if (!c.access.can_delete_branch(branch)) {
      return ref_refusal{401, msg_delete_protected_branch};
    }
    if (c.protocol != "web") {
      return ref_refusal{401, msg_delete_protected_branch_non_web};
    }
    return std::nullopt;
  }
  return push_checks();
}

std::optional<ref_refusal> tag_check(const ref_context& c, const ref_change& ch,
                                     const std::string& tag) {
  const bool creation = is_blank_rev(ch.oldrev);
  const bool deletion = is_blank_rev(ch.newrev);
  const bool update = !creation && !deletion;
  // Tag existence is not in the read model: a change with a real old
  // revision names an existing tag.
  const bool tag_exists = !creation;

  if (tag_exists && !c.access.admin_tag()) {
    return ref_refusal{401, msg_change_existing_tags};
  }
  if (creation && tag == c.project.default_branch) {
    return ref_refusal{401, msg_default_branch_tag};
  }
  if (!deletion) {
    if (!valid_utf8(tag)) {
      return ref_refusal{401, msg_tag_encoding};
    }
    if (!valid_ref_name(tag) || starts_with(tag, "refs/tags/")) {
      return ref_refusal{401, msg_prohibited_tag_name};
    }
    if (starts_with_full_sha(tag)) {
      return ref_refusal{401, msg_sha_tag_name};
    }
  }
  if (!c.access.tag_protected(tag)) {
    return std::nullopt;
  }
  if (update) {
    return ref_refusal{401, msg_update_protected_tag};
  }
  if (deletion) {
    if (!c.access.maintainer()) {
      return ref_refusal{401, msg_delete_protected_tag};
    }
    if (c.protocol != "web") {
      return ref_refusal{401, msg_delete_protected_tag_non_web};
    }
  }
  // As in GitLab, the create permission is also required for a web deletion.
  if (!c.access.can_create_tag(tag)) {
    return ref_refusal{401, msg_create_protected_tag};
  }
  return std::nullopt;
}

} // namespace

std::vector<ref_change> parse_changes(const std::string& changes) {
  std::vector<ref_change> out;
  if (changes == "_any") {
    return out;
  }
  std::size_t pos = 0;
  while (pos < changes.size()) {
    std::size_t end = changes.find('\n', pos);
    if (end == std::string::npos) {
      end = changes.size();
    }
    const std::string line = changes.substr(pos, end - pos);
    pos = end + 1;

    std::vector<std::string> fields;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && is_space(line[i])) {
        ++i;
      }
      std::size_t j = i;
      while (j < line.size() && !is_space(line[j])) {
        ++j;
      }
      if (j > i) {
        fields.push_back(line.substr(i, j - i));
      }
      i = j;
    }
    if (fields.empty()) {
      continue; // blank line
    }
    if (fields.size() < 3) {
      continue; // malformed: no ref to check
    }
    out.push_back(ref_change{fields[0], fields[1], fields[2]});
  }
  return out;
}

bool is_blank_rev(const std::string& rev) {
  if (rev.size() != 40 && rev.size() != 64) {
    return false;
  }
  for (char c : rev) {
    if (c != '0') {
      return false;
    }
  }
  return true;
}

bool ref_pattern_matches(const std::string& pattern, const std::string& name) {
  if (name.empty()) {
    return false;
  }
  if (pattern.find('*') == std::string::npos) {
    return pattern == name;
  }
  return gitlab::star_pattern_matches(pattern, name,
                                      gitlab::letter_case::sensitive);
}

bool valid_ref_name(const std::string& name) {
  if (starts_with(name, "refs/heads/") || starts_with(name, "refs/remotes/")
      || starts_with(name, "-") || name == "HEAD") {
    return false;
  }
  if (name.empty()) {
    return false;
  }
  return check_ref_format("refs/heads/" + name);
}

bool starts_with_full_sha(const std::string& name) {
  if (name.size() < 40) {
    return false;
  }
  for (std::size_t i = 0; i < 40; ++i) {
    if (!is_hex(name[i])) {
      return false;
    }
  }
  return true;
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) {
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800)
        || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))
        || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

// -- the per-ref checks
// ----------------------------------------------------------

namespace {

// Ruby's Float#to_s of a value rounded to two places, as GitLab's
// TimedLogger prints milliseconds: "12.34", "5.0".
std::string ruby_ms(std::chrono::microseconds elapsed) {
  const auto hundredths = (elapsed.count() + 5) / 10;
  std::string text = std::to_string(hundredths / 100) + ".";
  const auto fraction = hundredths % 100;
  if (fraction == 0)
    return text + "0";
  if (fraction % 10 == 0)
    return text + std::to_string(fraction / 10);
  return text + (fraction < 10 ? "0" : "") + std::to_string(fraction);
}

const char* step_text(git_check check) {
  switch (check) {
    case git_check::emptiness:
      return "Checking if the repository is empty...";
    case git_check::ancestry:
      return "Checking if you are force pushing to a protected branch...";
    case git_check::branch_basis:
      return "Checking if you are allowed to create a protected branch...";
  }
  return "Checking...";
}

} // namespace

std::string timed_out_message(const git_facts& facts) {
  std::string text = msg_push_timed_out_header;
  bool first = true;
  for (const auto& step : facts.steps) {
    if (!first)
      text += '\n';
    first = false;
    text += step_text(step.check);
    if (step.skipped)
      text += " (cancelled)";
    else if (step.cancelled)
      text += " (cancelled after " + ruby_ms(step.elapsed) + "ms)";
    else
      text += " (" + ruby_ms(step.elapsed) + "ms)";
  }
  return text;
}

void ask_ref_questions(const snapshot& snap, const project_record& project,
                       const user_record* user, bool deploy_key,
                       const std::vector<ref_change>& changes,
                       git_questions& q) {
  const ref_access access(snap, project, user, deploy_key, false);
  const bool maintainer_or_admin = access.maintainer();
  for (const auto& ch : changes) {
    // For a deploy key whose creator is not a maintainer, even the push
    // check of a tag depends on whether the repository is empty.
    if (deploy_key && !maintainer_or_admin) {
      q.ask_empty = true;
    }
    const auto branch = gitlab::branch_name(ch.ref);
    if (!branch) {
      continue;
    }
    const bool creation = is_blank_rev(ch.oldrev);
    const bool deletion = is_blank_rev(ch.newrev);
    const bool protected_branch = access.matches_protected_branch(*branch);
    // An empty repository protects every branch: it matters for protected
    // branches, and for anyone who could not make the initial push.
    if (protected_branch || !maintainer_or_admin) {
      q.ask_empty = true;
    }
    if (!protected_branch) {
      continue;
    }
    if (!creation && !deletion) {
      q.ancestry.insert({ch.oldrev, ch.newrev});
    } else if (creation && !deletion && !access.can_push_to_branch(*branch)
               && access.can_merge_to_branch(*branch)) {
      q.branches_containing.insert(ch.newrev);
    }
  }
}

std::optional<ref_refusal> check_ref_changes(
  const ref_push& push, const std::vector<ref_change>& changes) {
  const ref_access access(push.snap, push.project, push.user, push.deploy_key,
                          push.empty_repository);
  const ref_context c{push.snap, push.project, access, push.facts,
                      push.protocol};
  for (const auto& ch : changes) {
    if (!c.access.can_push_for_ref(ch.ref)) {
      return ref_refusal{401, msg_push_code};
    }
    if (const auto branch = gitlab::branch_name(ch.ref)) {
      if (auto r = branch_check(c, ch, *branch)) {
        return r;
      }
    } else if (const auto tag = gitlab::tag_name(ch.ref)) {
      if (auto r = tag_check(c, ch, *tag)) {
        return r;
      }
    }
  }
  return std::nullopt;
}

} // namespace gatehouse::access
