// check_allowed: GitLab's /allowed decision, exact statuses and messages.

#include "tests/access/world.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace gatehouse;
using namespace gatehouse::access;
using namespace gatehouse::access::test;

namespace {

const std::string not_found
  = "The project you were looking for could not be found or you don't have "
    "permission to view it.";
const std::string wiki_not_found
  = "The wiki you were looking for could not be found.";
const std::string download_denied
  = "You are not allowed to download code from this project.";
const std::string push_denied
  = "You are not allowed to push code to this project.";
const std::string push_protected_denied
  = "You are not allowed to push code to protected branches on this project.";
const std::string delete_protected_denied
  = "You are not allowed to delete protected branches from this project. Only "
    "a "
    "project maintainer or owner can delete a protected branch.";
const std::string delete_protected_web_only
  = "You can only delete protected branches using the web interface.";
const std::string upload_denied
  = "You are not allowed to upload code for this project.";
const std::string deploy_key_read_only
  = "This deploy key does not have write access to this project.";

// Users.
constexpr std::int64_t root = 1;
constexpr std::int64_t maint = 2;
constexpr std::int64_t dev = 3;
constexpr std::int64_t rep = 4;
constexpr std::int64_t guest = 5;
constexpr std::int64_t outsider = 6;
constexpr std::int64_t ext = 7;

/// acme/widgets (10, private), acme/sub/gadgets (11, private, members via
/// the acme group), a personal key 100 + id for every user.
world base_world() {
  world w;
  w.ns(5, "acme");
  w.ns(6, "acme/sub", 5);
  w.project(10, 5, "widgets");
  w.project(11, 6, "gadgets");
  w.user(root, "root").admin = true;
  w.user(maint, "maint");
  w.user(dev, "dev");
  w.user(rep, "rep");
  w.user(guest, "guest");
  w.user(outsider, "outsider");
  w.user(ext, "ext").external = true;
  for (std::int64_t id = 1; id <= 7; ++id) {
    w.key(100 + id, id);
  }
  w.member(maint, 10, 40);
  w.member(dev, 10, 30);
  w.member(rep, 10, 20);
  w.member(guest, 10, 10);
  w.ns_member(dev, 5, 30);
  return w;
}

allowed_outcome run(const world& w, const allowed_params& p,
                    const git_facts& facts = plain_facts()) {
  return check_allowed(w.s, p, facts, now);
}

void expect_ok(const allowed_outcome& o) {
  INFO(o.message);
  CHECK(o.status == 200);
  CHECK(o.message.empty());
  CHECK(o.success.has_value());
}

void expect_denied(const allowed_outcome& o, int status,
                   const std::string& message) {
  CHECK(o.status == status);
  CHECK(o.message == message);
  CHECK_FALSE(o.success.has_value());
}

// The changes of the upstream permission matrix.
std::map<std::string, std::string> matrix_changes() {
  return {
    {"any", "_any"},
    {"new_branch", change(Z, B, "refs/heads/wow")},
    {"master", change(A, B, "refs/heads/master")},
    {"feature", change(A, B, "refs/heads/feature")},
    {"delete_feature", change(B, Z, "refs/heads/feature")},
    {"tag_update", change(A, B, "refs/tags/v1.0.0")},
    {"new_tag", change(Z, B, "refs/tags/v7.8.9")},
    {"both",
     change(A, B, "refs/heads/master") + change(A, B, "refs/heads/feature")},
  };
}

/// Expected message per change ("" = allowed).
using expectations = std::map<std::string, std::string>;

void run_matrix(const world& w, std::int64_t user_id, const expectations& exp) {
  git_facts facts = plain_facts();
  facts.is_ancestor[{A, B}] = true;
  for (const auto& [name, changes] : matrix_changes()) {
    INFO("user " << user_id << " change " << name);
    auto p = changes == "_any"
      ? by_user(user_id, "acme/widgets.git", "git-receive-pack")
      : hook(user_id, 10, changes);
    const auto o = run(w, p, facts);
    const auto& want = exp.at(name);
    if (want.empty()) {
      expect_ok(o);
    } else {
      expect_denied(o, 401, want);
    }
  }
}

const expectations maintainer_row = {
  {"any", ""},
  {"new_branch", ""},
  {"master", ""},
  {"feature", ""},
  {"delete_feature", delete_protected_web_only},
  {"tag_update", ""},
  {"new_tag", ""},
  {"both", ""},
};

const expectations developer_row = {
  {"any", ""},
  {"new_branch", ""},
  {"master", ""},
  {"feature", push_protected_denied},
  {"delete_feature", delete_protected_denied},
  {"tag_update", ""},
  {"new_tag", ""},
  {"both", push_protected_denied},
};

const expectations nobody_row = {
  {"any", push_denied},
  {"new_branch", push_denied},
  {"master", push_denied},
  {"feature", push_denied},
  {"delete_feature", push_denied},
  {"tag_update", push_denied},
  {"new_tag", push_denied},
  {"both", push_denied},
};

} // namespace

// -- permission matrix (§4.3)
// ---------------------------------------------------------

TEST_CASE("permission matrix: maintainers can push to feature",
          "[access][matrix]") {
  for (const char* pattern : {"feature", "feat*"}) {
    INFO("protection " << pattern);
    world w = base_world();
    w.protect_branch(10, pattern, 40, 40);
    run_matrix(w, maint, maintainer_row);
    run_matrix(w, root, maintainer_row); // admin, not a member
    run_matrix(w, dev, developer_row);
    run_matrix(w, rep, nobody_row);
    run_matrix(w, guest, nobody_row);
  }
}

TEST_CASE("permission matrix: developers can push", "[access][matrix]") {
  world w = base_world();
  w.protect_branch(10, "feat*", 30, 40);
  auto dev_row = developer_row;
  dev_row["feature"] = "";
  dev_row["both"] = "";
  run_matrix(w, dev, dev_row);
  run_matrix(w, maint, maintainer_row);
  run_matrix(w, rep, nobody_row);
}

TEST_CASE("permission matrix: no one can push", "[access][matrix]") {
  world w = base_world();
  w.protect_branch(10, "feature", 0, 40);
  auto row = maintainer_row;
  row["feature"] = push_protected_denied;
  row["both"] = push_protected_denied;
  run_matrix(w, maint, row);
  run_matrix(w, root, row);
  run_matrix(w, dev, developer_row);
}

TEST_CASE("protected branch for admins only", "[access][matrix]") {
  world w = base_world();
  w.protect_branch(10, "feature", 60, 60);
  git_facts facts = plain_facts();
  facts.is_ancestor[{A, B}] = true;
  const auto changes = change(A, B, "refs/heads/feature");
  expect_denied(run(w, hook(maint, 10, changes), facts), 401,
                push_protected_denied);
  expect_ok(run(w, hook(root, 10, changes), facts));
}

TEST_CASE("group membership grants access to sub-group projects",
          "[access][matrix]") {
  world w = base_world();
  expect_ok(run(w, by_user(dev, "acme/sub/gadgets.git", "git-receive-pack")));
  expect_ok(run(w, hook(dev, 11, change(A, B, "refs/heads/master"))));
  expect_denied(run(w, by_user(maint, "acme/sub/gadgets.git")), 404, not_found);
}

// -- visibility, users, deploy keys (§4.4)
// -------------------------------------------

TEST_CASE("private project: members by level", "[access][visibility]") {
  world w = base_world();
  const std::string path = "acme/widgets.git";
  expect_ok(run(w, by_user(maint, path)));
  expect_ok(run(w, by_user(dev, path)));
  expect_ok(run(w, by_user(rep, path)));
  expect_denied(run(w, by_user(guest, path)), 401, download_denied);
  expect_denied(run(w, by_user(guest, path, "git-receive-pack")), 401,
                push_denied);
  expect_denied(run(w, by_user(rep, path, "git-receive-pack")), 401,
                push_denied);
  expect_denied(run(w, by_user(outsider, path)), 404, not_found);
  expect_denied(run(w, by_user(outsider, path, "git-receive-pack")), 404,
                not_found);
  expect_denied(run(w, by_user(ext, path)), 404, not_found);
  expect_denied(run(w, anonymous(path)), 404, not_found);
  expect_denied(run(w, anonymous(path, "git-receive-pack")), 404, not_found);
  // Admins read and push everything.
  expect_ok(run(w, by_user(root, path)));
  expect_ok(run(w, by_user(root, path, "git-receive-pack")));
  expect_ok(run(w, by_user(root, path, "git-upload-archive")));
}

TEST_CASE("internal project: signed-in non-external users",
          "[access][visibility]") {
  world w = base_world();
  w.s.projects[10].visibility = "internal";
  const std::string path = "acme/widgets.git";
  expect_ok(run(w, by_user(outsider, path)));
  expect_ok(run(w, by_user(guest, path)));
  expect_denied(run(w, by_user(outsider, path, "git-receive-pack")), 401,
                push_denied);
  expect_denied(run(w, by_user(ext, path)), 404, not_found);
  w.member(ext, 10, 20);
  expect_ok(run(w, by_user(ext, path)));
  w.member(ext, 10, 10);
  expect_denied(run(w, by_user(ext, path)), 401, download_denied);
  expect_denied(run(w, anonymous(path)), 404, not_found);
}

TEST_CASE("public project: anyone pulls", "[access][visibility]") {
  world w = base_world();
  w.s.projects[10].visibility = "public";
  const std::string path = "acme/widgets.git";
  expect_ok(run(w, by_user(outsider, path)));
  expect_ok(run(w, by_user(ext, path)));
  expect_ok(run(w, by_user(guest, path)));
  const auto anon = run(w, anonymous(path));
  expect_ok(anon);
  CHECK(anon.actor_identity.empty());
  CHECK(anon.success->gl_id.empty());
  CHECK_FALSE(anon.success->gl_username);
  CHECK_FALSE(anon.success->gl_key_type);
  CHECK_FALSE(anon.success->gl_key_id);
  expect_denied(run(w, anonymous(path, "git-receive-pack")), 401,
                upload_denied);
  expect_denied(run(w, by_user(outsider, path, "git-receive-pack")), 401,
                push_denied);
  expect_denied(run(w, by_user(guest, path, "git-receive-pack")), 401,
                push_denied);
}

TEST_CASE("repository feature levels", "[access][visibility]") {
  world w = base_world();
  const std::string path = "acme/widgets.git";

  SECTION("disabled blocks everyone, admins included") {
    w.s.projects[10].repository_access_level = "disabled";
    expect_denied(run(w, by_user(maint, path)), 401, download_denied);
    expect_denied(run(w, by_user(root, path)), 401, download_denied);
    expect_denied(run(w, by_user(maint, path, "git-receive-pack")), 401,
                  push_denied);
    expect_denied(run(w, hook(maint, 10, change(A, B, "refs/heads/master"))),
                  401, push_denied);
    w.s.projects[10].visibility = "public";
    expect_denied(run(w, anonymous(path)), 401, download_denied);
  }
  SECTION("private: members with Reporter on a public project") {
    w.s.projects[10].visibility = "public";
    w.s.projects[10].repository_access_level = "private";
    expect_ok(run(w, by_user(rep, path)));
    expect_ok(run(w, by_user(root, path)));
    expect_denied(run(w, by_user(guest, path)), 401, download_denied);
    expect_denied(run(w, by_user(outsider, path)), 401, download_denied);
    expect_denied(run(w, anonymous(path)), 401, download_denied);
    expect_ok(run(w, by_user(dev, path, "git-receive-pack")));
  }
}

TEST_CASE("deploy keys", "[access][deploy_key]") {
  world w = base_world();
  const std::string path = "acme/widgets.git";
  auto& ro = w.deploy_key(200, maint);
  ro.deploy_projects[10] = false;
  auto& rw = w.deploy_key(201, maint);
  rw.deploy_projects[10] = true;
  auto& stranger = w.deploy_key(202, maint);
  stranger.deploy_projects[11] = true;

  SECTION("read-only key pulls but cannot push") {
    const auto o = run(w, by_key(200, path));
    expect_ok(o);
    CHECK(o.success->gl_key_type == "deploy_key");
    CHECK(o.success->gl_key_id == 200);
    CHECK(o.success->gl_id == "user-2"); // the creator
    CHECK(o.success->gl_username == "maint");
    CHECK(o.actor_identity == "key-200");
    CHECK(o.used_key_id == 200);
    expect_denied(run(w, by_key(200, path, "git-receive-pack")), 401,
                  deploy_key_read_only);
  }
  SECTION("write-enabled key pushes") {
    expect_ok(run(w, by_key(201, path, "git-receive-pack")));
    auto p = hook(0, 10, change(A, B, "refs/heads/master"));
    p.user_id.reset();
    p.key_id = 201;
    expect_ok(run(w, p));
  }
  SECTION("key not enabled for the project") {
    expect_denied(run(w, by_key(202, path)), 404, not_found);
    expect_denied(run(w, by_key(202, path, "git-receive-pack")), 404,
                  not_found);
    w.s.projects[10].visibility = "internal";
    expect_denied(run(w, by_key(202, path)), 404, not_found);
    w.s.projects[10].visibility = "public";
    expect_ok(run(w, by_key(202, path)));
    expect_denied(run(w, by_key(202, path, "git-receive-pack")), 401,
                  deploy_key_read_only);
  }
  SECTION("a blocked creator does not stop pulls") {
    w.s.users[maint].state = "blocked";
    expect_ok(run(w, by_key(200, path)));
  }
  SECTION("disabled repository feature blocks deploy keys") {
    w.s.projects[10].repository_access_level = "disabled";
    expect_denied(run(w, by_key(200, path)), 401, download_denied);
  }
  SECTION("expired deploy key") {
    rw.expires_at = now - 1;
    expect_denied(run(w, by_key(201, path)), 401, "Your SSH key has expired.");
  }
}

TEST_CASE("deploy keys and per-ref rules go through the creator",
          "[access][deploy_key]") {
  world w = base_world();
  w.protect_branch(10, "feature", 40, 40);
  auto& k = w.deploy_key(201, dev);
  k.deploy_projects[10] = true;
  git_facts facts = plain_facts();
  facts.is_ancestor[{A, B}] = true;
  auto push = [&](std::int64_t key_id, const std::string& changes) {
    allowed_params p = hook(0, 10, changes);
    p.user_id.reset();
    p.key_id = key_id;
    return run(w, p, facts);
  };

  expect_ok(push(201, change(A, B, "refs/heads/master")));
  expect_ok(push(201, "_any"));
  // No deploy-key entries in the access lists: a developer's key cannot push
  // to a maintainers-only branch.
  expect_denied(push(201, change(A, B, "refs/heads/feature")), 401,
                push_protected_denied);
  // A maintainer's key can.
  w.s.keys[201].user_id = maint;
  expect_ok(push(201, change(A, B, "refs/heads/feature")));

  SECTION("a reporter's key cannot change existing tags") {
    w.s.keys[201].user_id = rep;
    expect_ok(push(201, change(Z, B, "refs/tags/v2")));
    expect_denied(
      push(201, change(A, B, "refs/tags/v1")), 401,
      "You are not allowed to change existing tags on this project.");
  }
  SECTION("an orphaned or blocked creator cannot push real changes") {
    w.s.keys[201].user_id.reset();
    expect_ok(push(201, "_any"));
    expect_denied(push(201, change(A, B, "refs/heads/master")), 401,
                  push_denied);
    w.s.keys[201].user_id = maint;
    w.s.users[maint].state = "blocked";
    expect_denied(push(201, change(A, B, "refs/heads/master")), 401,
                  push_denied);
  }
  SECTION("orphaned deploy key: empty gl_id") {
    w.s.keys[201].user_id.reset();
    const auto o = push(201, "_any");
    expect_ok(o);
    CHECK(o.success->gl_id.empty());
    CHECK_FALSE(o.success->gl_username);
    CHECK(o.success->gl_key_type == "deploy_key");
  }
}

// -- actors
// ----------------------------------------------------------------------------

TEST_CASE("actor resolution", "[access][actor]") {
  world w = base_world();
  const std::string path = "acme/widgets.git";

  SECTION("personal key") {
    const auto o = run(w, by_key(103, path));
    expect_ok(o);
    CHECK(o.actor_identity == "key-103");
    CHECK(o.used_key_id == 103);
    CHECK(o.success->gl_id == "user-3");
    CHECK(o.success->gl_username == "dev");
    CHECK(o.success->gl_key_type == "key");
    CHECK(o.success->gl_key_id == 103);
  }
  SECTION("user id") {
    const auto o = run(w, by_user(dev, path));
    expect_ok(o);
    CHECK(o.actor_identity == "user-3");
    CHECK_FALSE(o.used_key_id);
    CHECK(o.success->gl_id == "user-3");
    CHECK_FALSE(o.success->gl_key_type);
  }
  SECTION("username, case-insensitively") {
    allowed_params p = anonymous(path);
    p.protocol = "ssh";
    p.username = "DeV";
    const auto o = run(w, p);
    expect_ok(o);
    CHECK(o.actor_identity == "user-3");
  }
  SECTION("key_id wins over user_id") {
    auto p = by_key(106, path);
    p.user_id = dev;
    expect_denied(run(w, p), 404, not_found);
  }
  SECTION("unknown key id: anonymous") {
    const auto o = run(w, by_key(0, path));
    expect_denied(o, 404, not_found);
    CHECK(o.actor_identity.empty());
    CHECK_FALSE(o.used_key_id);
    w.s.projects[10].visibility = "public";
    const auto pub = run(w, by_key(0, path));
    expect_ok(pub);
    CHECK(pub.success->gl_id.empty());
  }
  SECTION("unknown user id and username: anonymous") {
    expect_denied(run(w, by_user(999, path)), 404, not_found);
    allowed_params p = anonymous(path);
    p.username = "nobody";
    expect_denied(run(w, p), 404, not_found);
  }
  SECTION("signing-only key behaves as no key") {
    w.s.keys[103].usage_type = "signing";
    const auto o = run(w, by_key(103, path));
    expect_denied(o, 404, not_found);
    CHECK(o.actor_identity.empty());
    CHECK_FALSE(o.used_key_id);
    w.s.keys[103].usage_type = "auth";
    expect_ok(run(w, by_key(103, path)));
  }
}

TEST_CASE("user states", "[access][actor]") {
  world w = base_world();
  const std::string path = "acme/widgets.git";
  auto state = [&](const std::string& s) {
    w.s.users[dev].state = s;
    return run(w, by_key(103, path));
  };
  expect_denied(state("blocked"), 401, "Your account has been blocked.");
  expect_denied(state("banned"), 401, "Your account has been blocked.");
  expect_denied(state("blocked_pending_approval"), 401,
                "Your account is pending approval from your administrator and "
                "hence blocked.");
  expect_denied(state("deactivated"), 401,
                "Your account has been deactivated by your administrator. "
                "Please log back in from a web browser to reactivate your "
                "account at https://gitlab.example.com");
  w.s.settings.external_url = "https://gitlab.example.com/";
  expect_denied(state("deactivated"), 401,
                "Your account has been deactivated by your administrator. "
                "Please log back in from a web browser to reactivate your "
                "account at https://gitlab.example.com");
  // Blocked users learn they are blocked even for a project they cannot see.
  w.s.users[outsider].state = "blocked";
  expect_denied(run(w, by_user(outsider, path, "git-receive-pack")), 401,
                "Your account has been blocked.");
  expect_ok(state("active"));
}

TEST_CASE("key expiry and the expiring-soon console message",
          "[access][actor]") {
  world w = base_world();
  const std::string path = "acme/widgets.git";
  auto& k = w.s.keys[103];

  k.expires_at = now;
  expect_denied(run(w, by_key(103, path)), 401, "Your SSH key has expired.");
  k.expires_at = now - 10 * day;
  expect_denied(run(w, by_key(103, path, "git-receive-pack")), 401,
                "Your SSH key has expired.");

  k.expires_at = now + 3 * day;
  auto o = run(w, by_key(103, path));
  expect_ok(o);
  CHECK(o.success->gl_console_messages
        == std::vector<std::string>{
          "INFO: Your SSH key is expiring soon. Please generate a new key."});

  k.expires_at = now + 7 * day;
  o = run(w, by_key(103, path));
  expect_ok(o);
  CHECK(o.success->gl_console_messages.empty());

  k.expires_at.reset();
  o = run(w, by_key(103, path));
  CHECK(o.success->gl_console_messages.empty());

  // Users without keys never get it.
  o = run(w, by_user(dev, path));
  CHECK(o.success->gl_console_messages.empty());
}

// -- protocol, command, archive, repository
// ------------------------------------------

TEST_CASE("protocol settings", "[access][protocol]") {
  world w = base_world();
  const std::string path = "acme/widgets.git";
  auto with = [&](const std::string& setting, const std::string& protocol,
                  const std::string& action = "git-upload-pack") {
    w.s.settings.enabled_git_access_protocol = setting;
    auto p = by_user(dev, path, action);
    p.protocol = protocol;
    return run(w, p);
  };
  expect_ok(with("all", "ssh"));
  expect_ok(with("", "http"));
  expect_ok(with("ssh", "ssh"));
  expect_denied(with("ssh", "http"), 401,
                "Git access over HTTP is not allowed");
  expect_denied(with("ssh", "http", "git-receive-pack"), 401,
                "Git access over HTTP is not allowed");
  expect_denied(with("http", "ssh"), 401, "Git access over SSH is not allowed");
  expect_ok(with("http", "http"));
  expect_ok(with("http", "web"));
  expect_ok(with("ssh", "web"));
  // The protocol check runs before everything else.
  w.s.settings.enabled_git_access_protocol = "http";
  expect_denied(run(w, by_user(outsider, "nowhere/none.git")), 401,
                "Git access over SSH is not allowed");
}

TEST_CASE("unknown commands", "[access][command]") {
  world w = base_world();
  for (const char* action : {"", "git-lfs-authenticate", "rm -rf"}) {
    INFO(action);
    expect_denied(run(w, by_user(dev, "acme/widgets.git", action)), 401,
                  "The command you're trying to execute is not allowed.");
  }
  // Before the project lookup.
  expect_denied(run(w, by_user(dev, "nowhere/none.git", "")), 401,
                "The command you're trying to execute is not allowed.");
}

TEST_CASE("archived project: pull yes, push no", "[access][archived]") {
  world w = base_world();
  w.s.projects[10].archived = true;
  expect_ok(run(w, by_user(maint, "acme/widgets.git")));
  expect_denied(run(w, by_user(maint, "acme/widgets.git", "git-receive-pack")),
                401, "You can't push code to an archived project.");
  expect_denied(run(w, by_user(root, "acme/widgets.git", "git-receive-pack")),
                401, "You can't push code to an archived project.");
  expect_denied(run(w, hook(maint, 10, change(A, B, "refs/heads/master"))), 401,
                "You can't push code to an archived project.");
}

TEST_CASE("repository does not exist yet", "[access][repository]") {
  world w = base_world();
  w.s.projects[10].repository_exists = false;
  expect_denied(run(w, by_user(maint, "acme/widgets.git")), 404,
                "A repository for this project does not exist yet.");
  expect_denied(run(w, by_user(maint, "acme/widgets.git", "git-receive-pack")),
                404, "A repository for this project does not exist yet.");
  expect_denied(run(w, by_user(maint, "acme/widgets.wiki.git")), 404,
                "A repository for this wiki does not exist yet.");
  // Visibility first.
  expect_denied(run(w, by_user(outsider, "acme/widgets.git")), 404, not_found);
}

// -- paths, wikis, redirects
// ----------------------------------------------------------

TEST_CASE("repository paths", "[access][paths]") {
  world w = base_world();
  for (const char* path :
       {"acme/widgets.git", "/acme/widgets.git", "acme/widgets",
        "ACME/Widgets.git", "/Acme/widgets"}) {
    INFO(path);
    const auto o = run(w, by_user(dev, path));
    expect_ok(o);
    CHECK(o.project_id == 10);
    CHECK_FALSE(o.moved_message);
    CHECK(o.success->gl_repository == "project-10");
    CHECK(o.success->gl_project_path == "acme/widgets");
  }
  expect_denied(run(w, by_user(dev, "acme/nothing.git")), 404, not_found);
  expect_denied(run(w, by_user(dev, "acme/widgets.git.git")), 404, not_found);
  expect_denied(run(w, by_user(dev, "acme/nothing.git", "git-receive-pack")),
                404, not_found);
}

TEST_CASE("paths without a namespace", "[access][paths]") {
  world w = base_world();
  const std::string text
    = "The namespace you were looking for could not be found.";
  expect_denied(run(w, by_user(dev, "widgets.git")), 404, text);
  expect_denied(run(w, by_user(dev, "/widgets.git", "git-receive-pack")), 404,
                text);
  auto p = by_user(dev, "");
  expect_denied(run(w, p), 404, text);
  p.project.reset();
  expect_denied(run(w, p), 404, text);
}

TEST_CASE("snippet and design repositories are not in the read model",
          "[access][paths]") {
  world w = base_world();
  // By path: no container of any type, so GitLab falls back to the project
  // type without one.
  expect_denied(run(w, by_user(dev, "snippets/7.git")), 404, not_found);
  expect_denied(run(w, by_user(dev, "acme/widgets/snippets/7.git")), 404,
                not_found);
  expect_denied(run(w, by_user(dev, "acme/widgets.design.git")), 404,
                not_found);
  // By gl_repository.
  auto p = hook(dev, 10, "_any");
  p.gl_repository = "snippet-7";
  expect_denied(run(w, p), 404,
                "The snippet you were looking for could not be found.");
  p.user_id.reset();
  p.key_id = 200;
  w.deploy_key(200, maint).deploy_projects[10] = true;
  expect_denied(run(w, p), 401,
                "The authentication mechanism is not supported.");
  p = hook(dev, 10, "_any");
  p.gl_repository = "design-3";
  expect_denied(run(w, p), 404, not_found);
  p.gl_repository = "group-5-wiki";
  expect_denied(run(w, p), 404, wiki_not_found);
  p.gl_repository = "project-abc";
  expect_denied(run(w, p), 404, not_found);
  p.gl_repository = "project-0";
  expect_denied(run(w, p), 404, not_found);
  p.gl_repository = "project-99";
  expect_denied(run(w, p), 404, not_found);
  p.gl_repository = "wiki-99";
  expect_denied(run(w, p), 404, wiki_not_found);
}

TEST_CASE("wiki repositories", "[access][wiki]") {
  world w = base_world();
  SECTION("by path") {
    const auto o = run(w, by_user(dev, "acme/widgets.wiki.git"));
    expect_ok(o);
    CHECK(o.project_id == 10);
    CHECK(o.success->gl_repository == "wiki-10");
    CHECK(o.success->gl_project_path == "acme/widgets.wiki");
    CHECK(o.success->gl_project_id == 10);
    REQUIRE(o.success->gitaly);
    CHECK(o.success->gitaly->relative_path
          == "@hashed/4a/44/4a44dc1510.wiki.git");
    CHECK(o.success->gitaly->gl_repository == "wiki-10");
    CHECK(o.success->gitaly->gl_project_path == "acme/widgets.wiki");
  }
  SECTION("by gl_repository") {
    auto p = hook(dev, 10, change(A, B, "refs/heads/master"));
    p.gl_repository = "wiki-10";
    const auto o = run(w, p);
    expect_ok(o);
    CHECK(o.success->gl_repository == "wiki-10");
  }
  SECTION("guests of a private project pull the wiki, only developers push") {
    expect_ok(run(w, by_user(guest, "acme/widgets.wiki.git")));
    expect_ok(
      run(w, by_user(dev, "acme/widgets.wiki.git", "git-receive-pack")));
    expect_denied(
      run(w, by_user(rep, "acme/widgets.wiki.git", "git-receive-pack")), 401,
      "You are not allowed to write to this project's wiki.");
  }
  SECTION("non-members get the wiki not-found text") {
    expect_denied(run(w, by_user(outsider, "acme/widgets.wiki.git")), 404,
                  wiki_not_found);
    expect_denied(
      run(w, by_user(outsider, "acme/widgets.wiki.git", "git-receive-pack")),
      404, wiki_not_found);
  }
  SECTION("a project literally named *.wiki wins") {
    w.project(12, 5, "widgets.wiki");
    w.member(dev, 12, 30);
    const auto o = run(w, by_user(dev, "acme/widgets.wiki.git"));
    expect_ok(o);
    CHECK(o.success->gl_repository == "project-12");
  }
  SECTION("deploy keys") {
    auto& k = w.deploy_key(200, maint);
    k.deploy_projects[10] = false;
    expect_ok(run(w, by_key(200, "acme/widgets.wiki.git")));
    expect_denied(
      run(w, by_key(200, "acme/widgets.wiki.git", "git-receive-pack")), 401,
      deploy_key_read_only);
    k.deploy_projects[10] = true;
    expect_ok(run(w, by_key(200, "acme/widgets.wiki.git", "git-receive-pack")));
  }
  SECTION("a missing wiki project falls back to the project type") {
    expect_denied(run(w, by_user(dev, "acme/nothing.wiki.git")), 404,
                  not_found);
  }
}

TEST_CASE("redirected paths", "[access][redirects]") {
  world w = base_world();
  w.redirect("acme/old-widgets", 10);
  w.s.settings.ssh_clone_url_root = "ssh://git@gitlab.example.com:2222/";

  SECTION("ssh pull: moved message, success") {
    const auto o = run(w, by_user(dev, "/Acme/Old-Widgets.git"));
    expect_ok(o);
    CHECK(o.project_id == 10);
    CHECK(o.success->gl_project_path == "acme/widgets");
    REQUIRE(o.moved_message);
    CHECK(*o.moved_message
          == "Project 'Acme/Old-Widgets' was moved to 'acme/widgets'.\n\n"
             "Please update your Git remote:\n\n"
             "  git remote set-url origin "
             "ssh://git@gitlab.example.com:2222/acme/widgets.git\n");
    CHECK(o.moved_user_id == dev);
    CHECK(o.moved_project_id == 10);
  }
  SECTION("http push") {
    auto p = by_user(dev, "acme/old-widgets.git", "git-receive-pack");
    p.protocol = "http";
    const auto o = run(w, p);
    expect_ok(o);
    REQUIRE(o.moved_message);
    CHECK(*o.moved_message
          == "Project 'acme/old-widgets' was moved to 'acme/widgets'.\n\n"
             "Please update your Git remote:\n\n"
             "  git remote set-url origin "
             "https://gitlab.example.com/acme/widgets.git\n");
  }
  SECTION("derived ssh root") {
    w.s.settings.ssh_clone_url_root.clear();
    w.s.settings.external_url = "https://gitlab.example.com:8443/";
    const auto o = run(w, by_key(103, "acme/old-widgets"));
    REQUIRE(o.moved_message);
    CHECK(*o.moved_message
          == "Project 'acme/old-widgets' was moved to 'acme/widgets'.\n\n"
             "Please update your Git remote:\n\n"
             "  git remote set-url origin "
             "git@gitlab.example.com:acme/widgets.git\n");
    CHECK(o.moved_user_id == dev);
  }
  SECTION("wiki through a redirect") {
    const auto o = run(w, by_user(dev, "acme/old-widgets.wiki.git"));
    expect_ok(o);
    CHECK(o.success->gl_repository == "wiki-10");
    REQUIRE(o.moved_message);
    CHECK(*o.moved_message
          == "Project wiki 'acme/old-widgets.wiki' was moved to "
             "'acme/widgets.wiki'.\n\n"
             "Please update your Git remote:\n\n"
             "  git remote set-url origin "
             "ssh://git@gitlab.example.com:2222/acme/widgets.wiki.git\n");
  }
  SECTION("kept even when a later check refuses") {
    const auto o = run(w, by_user(guest, "acme/old-widgets.git"));
    expect_denied(o, 401, download_denied);
    CHECK(o.moved_message);
    CHECK(o.moved_user_id == guest);
  }
  SECTION("no moved message without a user") {
    w.s.projects[10].visibility = "public";
    auto anon = run(w, anonymous("acme/old-widgets.git"));
    expect_ok(anon);
    CHECK_FALSE(anon.moved_message);
    w.deploy_key(200, maint).deploy_projects[10] = false;
    auto dk = run(w, by_key(200, "acme/old-widgets.git"));
    expect_ok(dk);
    CHECK_FALSE(dk.moved_message);
  }
  SECTION("not readable through a redirect: plain not found, no message") {
    const auto o = run(w, by_user(outsider, "acme/old-widgets.git"));
    expect_denied(o, 404, not_found);
    CHECK_FALSE(o.moved_message);
  }
  SECTION("gl_repository never redirects") {
    const auto o = run(w, hook(dev, 10, "_any"));
    expect_ok(o);
    CHECK_FALSE(o.moved_message);
  }
}

// -- per-ref checks (§4.2)
// --------------------------------------------------------------

TEST_CASE("force push to protected branches", "[access][branches]") {
  world w = base_world();
  w.protect_branch(10, "feature", 40, 40);
  const auto changes = change(A, B, "refs/heads/feature");

  SECTION("fast-forward is fine") {
    git_facts f = plain_facts();
    f.is_ancestor[{A, B}] = true;
    expect_ok(run(w, hook(maint, 10, changes), f));
  }
  SECTION("rewrite is refused") {
    git_facts f = plain_facts();
    f.is_ancestor[{A, B}] = false;
    expect_denied(
      run(w, hook(maint, 10, changes), f), 401,
      "You are not allowed to force push code to a protected branch "
      "on this project.");
    expect_denied(
      run(w, hook(root, 10, changes), f), 401,
      "You are not allowed to force push code to a protected branch "
      "on this project.");
    // Unprotected branches may be rewritten.
    expect_ok(run(w, hook(dev, 10, change(A, B, "refs/heads/topic")), f));
  }
  SECTION("allowed by the protection, still subject to push rights") {
    w.s.protected_branches[10][0].allow_force_push = true;
    git_facts f = plain_facts();
    f.is_ancestor[{A, B}] = false;
    expect_ok(run(w, hook(maint, 10, changes), f));
    expect_denied(run(w, hook(dev, 10, changes), f), 401,
                  push_protected_denied);
    // No ancestry needed at all then.
    expect_ok(run(w, hook(maint, 10, changes), plain_facts()));
  }
  SECTION("unknown ancestry: refused with the reason") {
    git_facts f = plain_facts();
    f.unavailable_reason = "storage \"default\" has no local path";
    w.s.storages["default"].path.clear();
    expect_denied(
      run(w, hook(maint, 10, changes), f), 401,
      "Force-push detection for protected branch 'feature' is "
      "unavailable because the repository storage has no local path "
      "(storage \"default\" has no local path), so this push to a "
      "protected branch is refused.");
    w.s.storages["default"].path = "/repos";
    f.unavailable_reason = "git timed out";
    expect_denied(
      run(w, hook(maint, 10, changes), f), 401,
      "Force-push detection for protected branch 'feature' is "
      "unavailable because git could not answer (git timed out), so "
      "this push to a protected branch is refused.");
  }
}

TEST_CASE("protected branch creation", "[access][branches]") {
  world w = base_world();
  w.protect_branch(10, "feature*", 40, 30);
  w.protect_branch(10, "stable", 40, 40);
  const auto create = change(Z, C, "refs/heads/feature-2");

  SECTION("maintainers create them anywhere") {
    expect_ok(run(w, hook(maint, 10, create)));
  }
  SECTION(
    "developers who may merge: only from a protected commit, only on web") {
    git_facts f = plain_facts();
    f.branches_containing[C] = {"master", "topic"};
    expect_denied(
      run(w, hook(dev, 10, create), f), 401,
      "You can only use an existing protected branch ref as the basis "
      "of a new protected branch.");
    f.branches_containing[C] = {"topic", "stable"};
    expect_denied(run(w, hook(dev, 10, create), f), 401,
                  "You can only create protected branches using the web "
                  "interface and API.");
    expect_ok(run(w, hook(dev, 10, create, "web"), f));
  }
  SECTION("containing branches unknown") {
    git_facts f = plain_facts();
    f.unavailable_reason = "git failed";
    expect_denied(run(w, hook(dev, 10, create), f), 401,
                  "Checking the basis of new protected branch 'feature-2' is "
                  "unavailable because git could not answer (git failed), so "
                  "this push to a protected branch is refused.");
  }
  SECTION("developers who may not merge") {
    expect_denied(run(w, hook(dev, 10, change(Z, C, "refs/heads/stable"))), 401,
                  "You are not allowed to create protected branches on this "
                  "project.");
  }
}

TEST_CASE("protected branch deletion over ssh and web", "[access][branches]") {
  world w = base_world();
  w.protect_branch(10, "feature", 40, 40);
  const auto del = change(B, Z, "refs/heads/feature");
  expect_denied(run(w, hook(maint, 10, del)), 401, delete_protected_web_only);
  expect_denied(run(w, hook(maint, 10, del, "http")), 401,
                delete_protected_web_only);
  expect_ok(run(w, hook(maint, 10, del, "web")));
  expect_ok(run(w, hook(root, 10, del, "web")));
  expect_denied(run(w, hook(dev, 10, del, "web")), 401,
                delete_protected_denied);
  // Unprotected branches: developers delete them.
  expect_ok(run(w, hook(dev, 10, change(B, Z, "refs/heads/topic"))));
}

TEST_CASE("branch names and the default branch", "[access][branches]") {
  world w = base_world();
  const std::string sha = "267208abfe40e546f5e847444276f7d43a39503e";
  const std::string sha256
    = "09b9fd3ea68e9b95a51b693a29568c898e27d1476bbd83c825664f18467fc175";
  const std::string sha_msg
    = "You cannot create a branch with a SHA-1 or SHA-256 branch name.";
  const std::string invalid_msg
    = "You cannot create a branch with an invalid name.";

  expect_denied(run(w, hook(maint, 10, change(B, Z, "refs/heads/master"))), 401,
                "The default branch of a project cannot be deleted.");
  expect_denied(
    run(w, hook(root, 10, change(B, Z, "refs/heads/master"), "web")), 401,
    "The default branch of a project cannot be deleted.");
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/heads/" + sha))), 401,
                sha_msg);
  expect_denied(run(w, hook(dev, 10, change(A, B, "refs/heads/" + sha256))),
                401, sha_msg);
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/heads/" + sha + "-x"))),
                401, sha_msg);
  expect_ok(run(w, hook(dev, 10, change(Z, B, "refs/heads/fix-" + sha))));
  expect_ok(run(w, hook(dev, 10, change(B, Z, "refs/heads/" + sha))));
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/heads/-wrong"))), 401,
                invalid_msg);
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/heads/HEAD"))), 401,
                invalid_msg);
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/heads/a..b"))), 401,
                invalid_msg);
  expect_ok(run(w, hook(dev, 10, change(B, Z, "refs/heads/-wrong"))));
  // Other refs only need push rights.
  expect_ok(run(w, hook(dev, 10, change(Z, B, "refs/notes/commits"))));
  expect_denied(run(w, hook(rep, 10, change(Z, B, "refs/notes/commits"))), 401,
                push_denied);
}

TEST_CASE("empty repository", "[access][branches]") {
  world w = base_world();
  git_facts empty;
  empty.repository_empty = true;
  const std::string members_message
    = "\nA default branch (e.g. master) does not yet exist for acme/widgets\n"
      "Ask a project Owner or Maintainer to create a default branch:\n\n"
      "  https://gitlab.example.com/acme/widgets/-/project_members\n\n";
  const auto first = change(Z, B, "refs/heads/master");
  expect_denied(run(w, hook(dev, 10, first), empty), 401, members_message);
  expect_ok(run(w, hook(maint, 10, first), empty));
  expect_ok(run(w, hook(root, 10, first), empty));
  // Without the fact, the repository counts as not empty.
  expect_ok(run(w, hook(dev, 10, first), plain_facts()));
  // A no-one protection does not stop a maintainer's initial push.
  w.protect_branch(10, "master", 0, 0);
  expect_ok(run(w, hook(maint, 10, first), empty));
  expect_denied(run(w, hook(dev, 10, first), empty), 401, members_message);
}

TEST_CASE("tags", "[access][tags]") {
  world w = base_world();
  const std::string prohibited
    = "You cannot create a tag with a prohibited pattern.";
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/tags/master"))), 401,
                "You cannot use default branch name to create a tag");
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/tags/refs/tags/v1"))),
                401, prohibited);
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/tags/-v1"))), 401,
                prohibited);
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/tags/v1..2"))), 401,
                prohibited);
  expect_denied(
    run(
      w,
      hook(dev, 10,
           change(Z, B, "refs/tags/267208abfe40e546f5e847444276f7d43a39503e"))),
    401, "You cannot create a tag with a SHA-1 or SHA-256 tag name.");
  expect_denied(run(w, hook(dev, 10, change(Z, B, "refs/tags/v\xff"))), 401,
                "Tag names must be valid when converted to UTF-8 encoding");
  expect_ok(run(w, hook(dev, 10, change(A, B, "refs/tags/v1.0.0"))));
  expect_ok(run(w, hook(dev, 10, change(A, Z, "refs/tags/v1.0.0"))));
  expect_ok(run(w, hook(dev, 10, change(A, Z, "refs/tags/-v1"))));
}

TEST_CASE("protected tags", "[access][tags]") {
  world w = base_world();
  w.protect_tag(10, "release-*", 40);
  const auto create = change(Z, B, "refs/tags/release-1");
  const auto update = change(A, B, "refs/tags/release-1");
  const auto del = change(A, Z, "refs/tags/release-1");

  expect_ok(run(w, hook(maint, 10, create)));
  expect_ok(run(w, hook(root, 10, create)));
  expect_denied(run(w, hook(dev, 10, create)), 401,
                "You are not allowed to create this tag as it is protected.");
  expect_denied(run(w, hook(maint, 10, update)), 401,
                "Protected tags cannot be updated.");
  expect_denied(
    run(w, hook(dev, 10, del, "web")), 401,
    "You are not allowed to delete protected tags from this project. "
    "Only a project maintainer or owner can delete a protected tag.");
  expect_denied(run(w, hook(maint, 10, del)), 401,
                "You can only delete protected tags using the web interface.");
  expect_ok(run(w, hook(maint, 10, del, "web")));

  SECTION("developers may create when the tag allows them") {
    w.s.protected_tags[10][0].create_access_level = 30;
    expect_ok(run(w, hook(dev, 10, create)));
  }
  SECTION("no one may create: even a web deletion needs the create right") {
    w.s.protected_tags[10][0].create_access_level = 0;
    expect_denied(run(w, hook(maint, 10, create)), 401,
                  "You are not allowed to create this tag as it is protected.");
    expect_denied(run(w, hook(maint, 10, del, "web")), 401,
                  "You are not allowed to create this tag as it is protected.");
  }
}

TEST_CASE("the first refused change decides", "[access][branches]") {
  world w = base_world();
  w.protect_branch(10, "feature", 40, 40);
  git_facts f = plain_facts();
  f.is_ancestor[{A, B}] = true;
  const auto changes = change(A, B, "refs/heads/master")
    + change(Z, B, "refs/tags/master") + change(A, B, "refs/heads/feature");
  expect_denied(run(w, hook(dev, 10, changes), f), 401,
                "You cannot use default branch name to create a tag");
  // Empty real changes pass like GitLab's empty change list.
  expect_ok(run(w, hook(rep, 10, "")));
}

// -- success body
// ---------------------------------------------------------------------------

TEST_CASE("success body", "[access][success]") {
  world w = base_world();
  const auto o
    = run(w, by_key(103, "acme/sub/gadgets.git", "git-receive-pack"));
  expect_ok(o);
  const auto& s = *o.success;
  CHECK(o.project_id == 11);
  CHECK(s.gl_repository == "project-11");
  CHECK(s.gl_project_path == "acme/sub/gadgets");
  CHECK(s.gl_project_id == 11);
  CHECK(s.gl_root_namespace_id == 5);
  CHECK(s.gl_id == "user-3");
  CHECK(s.gl_username == "dev");
  CHECK(s.gl_key_type == "key");
  CHECK(s.gl_key_id == 103);
  CHECK(s.git_config_options
        == std::vector<std::string>{"uploadpack.allowFilter=true",
                                    "uploadpack.allowAnySHA1InWant=true"});
  REQUIRE(s.gitaly);
  CHECK(s.gitaly->storage_name == "default");
  CHECK(s.gitaly->relative_path == "@hashed/4a/44/4a44dc1511.git");
  CHECK(s.gitaly->gl_repository == "project-11");
  CHECK(s.gitaly->gl_project_path == "acme/sub/gadgets");
  CHECK(s.gitaly->address == "unix:/var/opt/gitlab/gitaly/gitaly.socket");
  CHECK_FALSE(s.gitaly->token); // empty token: JSON null
  CHECK(s.gl_console_messages.empty());
  CHECK(o.actor_identity == "key-103");
  CHECK(o.used_key_id == 103);
}

TEST_CASE("success body: max input size, token, other storage",
          "[access][success]") {
  world w = base_world();
  w.s.settings.receive_max_input_size_mb = 1;
  w.storage("other", "tcp://gitaly-2:8075", "s3cret", "");
  w.s.projects[10].storage = "other";
  auto o = run(w, by_user(dev, "acme/widgets.git", "git-upload-archive"));
  expect_ok(o);
  CHECK(o.success->git_config_options
        == std::vector<std::string>{"uploadpack.allowFilter=true",
                                    "uploadpack.allowAnySHA1InWant=true",
                                    "receive.maxInputSize=1048576"});
  REQUIRE(o.success->gitaly);
  CHECK(o.success->gitaly->storage_name == "other");
  CHECK(o.success->gitaly->address == "tcp://gitaly-2:8075");
  CHECK(o.success->gitaly->token == "s3cret");
  w.s.settings.receive_max_input_size_mb = 300;
  o = run(w, by_user(dev, "acme/widgets.git"));
  CHECK(o.success->git_config_options.back()
        == "receive.maxInputSize=314572800");
}

TEST_CASE("denials still report actor and project", "[access][success]") {
  world w = base_world();
  const auto o = run(w, by_key(105, "acme/widgets.git"));
  expect_denied(o, 401, download_denied);
  CHECK(o.actor_identity == "key-105");
  CHECK(o.used_key_id == 105);
  CHECK(o.project_id == 10);
  const auto missing = run(w, by_key(105, "acme/none.git"));
  CHECK_FALSE(missing.project_id);
}
