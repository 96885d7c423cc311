#!/usr/bin/python3
"""End to end with real git and OpenSSH (issue 5).

A real `git` talks to a real OpenSSH `sshd` on a loopback port. sshd's
AuthorizedKeysCommand (fixtures/authorized-keys-check, playing
gitlab-shell-authorized-keys-check) asks Gatehouse's /authorized_keys; the
forced command (fixtures/gitlab-shell) asks /allowed and runs git-upload-pack
or git-receive-pack on the bare repository, whose pre-receive and
post-receive hooks (fixtures/pre-receive, fixtures/post-receive) play Gitaly's
hook flow. Gatehouse runs against a scratch PostgreSQL database and a private
nats-server; `gatehouse events tail --from-start` records what reaches NATS.

REQUIRES (a missing one fails the run): GATEHOUSE_TEST_DATABASE_URL (a
superuser URL), GATEHOUSE_TEST_BINARY, GATEHOUSE_TEST_NATS_SERVER,
GATEHOUSE_TEST_WORK_DIR; root (sshd switches to the login user `git`).

Prints one line per check and `N passed, M failed`; exits non-zero on any
failure. Everything it starts or creates is stopped or removed at exit.
"""

import datetime
import fcntl
import grp
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from e2e_support import (  # noqa: E402
    CLEANUPS, FAILED, SetupError, Proc, Stack, check, describe, git_env, has_block,
    lines_of, log, require_env, reserved_port, run, run_main, tcp_open, wait_for)

FIXTURES = os.path.join(os.path.dirname(os.path.realpath(__file__)), "fixtures")
FIXTURE_FILES = ("gitlab_api.py", "gitlab-shell", "authorized-keys-check",
                 "pre-receive", "post-receive")
ZERO = "0" * 40
PROJECT_ID = 10
DISK_PATH = "@hashed/4a/44/4a44dc15364204a80fe80e9039455cc1608281820fe2b24f1e5233ade6af1dd5"
EXTERNAL_URL = "http://gitlab.example.com"
BANNER = ("Scheduled maintenance on Saturday from 22:00 to 23:00 UTC. "
          "Pushes will be refused during the window.")
RULER = "=" * 72


# -- set-up -----------------------------------------------------------------

def host_lock():
    """One e2e run per host at a time: the runs share the login user `git`
    (created and removed, or unlocked and restored) and /run/sshd."""
    lock = open("/run/gatehouse-e2e.lock", "w")
    CLEANUPS.append(lock.close)
    deadline = time.monotonic() + 240
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SetupError("another e2e run holds /run/gatehouse-e2e.lock")
            time.sleep(0.2)


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def login_user():
    """The login user `git`: created if missing (and removed at exit), its
    password field made unlocked (`*`) for the run (restored at exit)."""
    try:
        user = pwd.getpwnam("git")
    except KeyError:
        group = ["--gid", "git"] if _group_exists("git") else ["--user-group"]
        run(["useradd", "--create-home", "--home-dir", "/home/git", "--shell", "/bin/sh"]
            + group + ["git"])
        CLEANUPS.append(lambda: run(["userdel", "--remove", "git"], check_rc=False))
        user = pwd.getpwnam("git")
    if os.path.basename(user.pw_shell) in ("nologin", "false", ""):
        raise SetupError("user git has shell %r; sshd cannot run its forced command"
                         % user.pw_shell)
    with open("/etc/shadow", encoding="utf-8") as f:
        hashes = dict(line.split(":")[:2] for line in f if line.count(":") > 1)
    original = hashes.get("git", "")
    if original.startswith("!") or original.startswith("*LOCK*"):
        run(["usermod", "-p", "*", "git"])
        CLEANUPS.append(lambda: run(["usermod", "-p", original, "git"], check_rc=False))
    home = user.pw_dir
    if os.path.isdir(home) and os.stat(home).st_mode & stat.S_IWOTH:
        raise SetupError("home of git (%s) is world-writable" % home)
    return user


def assert_sshd_path_rules(path):
    """sshd refuses an AuthorizedKeysCommand unless it and every directory
    above it are root-owned and not group- or world-writable."""
    p = path
    while True:
        st = os.stat(p)
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise SetupError("%s must be root-owned and not group/world-writable "
                             "(sshd's rule for AuthorizedKeysCommand)" % p)
        if p == "/":
            return
        p = os.path.dirname(p)


def fixture_dir(user):
    """/opt/gatehouse-e2e-<random>: the fixture scripts and the Shell secret
    (root-owned, 0755), plus the storage (owned by git). Their config follows
    once Gatehouse's URL is known (fixture_config)."""
    root = "/opt/gatehouse-e2e-" + secrets.token_hex(4)
    os.mkdir(root, 0o755)
    CLEANUPS.append(lambda: shutil.rmtree(root, ignore_errors=True))
    os.chown(root, 0, 0)
    os.chmod(root, 0o755)
    for name in FIXTURE_FILES:
        dst = os.path.join(root, name)
        shutil.copyfile(os.path.join(FIXTURES, name), dst)
        os.chmod(dst, 0o644 if name.endswith(".py") else 0o755)
    secret = os.path.join(root, "gitlab_shell_secret")
    with open(secret, "w") as f:
        f.write(secrets.token_hex(16))
    os.chown(secret, 0, user.pw_gid)
    os.chmod(secret, 0o640)
    storage = os.path.join(root, "storage")
    os.mkdir(storage, 0o755)
    assert_sshd_path_rules(os.path.join(root, "authorized-keys-check"))
    return root, secret, storage


def fixture_config(root, gitlab_url, secret, storage):
    """What GitLab Shell's config.yml and Gitaly's [gitlab] section hold."""
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"gitlab_url": gitlab_url, "secret_file": secret,
                   "storages": {"default": storage}}, f)
    os.chmod(os.path.join(root, "config.json"), 0o644)


def client_key(keys_dir, name):
    path = os.path.join(keys_dir, name)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name + "@laptop", "-f", path])
    with open(path + ".pub") as f:
        return path, f.read().strip()


def seed_document(storage, pub):
    soon = (datetime.datetime.now(datetime.timezone.utc)
            + datetime.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def user(uid, name, state="active"):
        return {"id": uid, "username": name, "name": name.capitalize(),
                "email": name + "@example.com", "public_email": "", "state": state,
                "admin": False, "external": False, "can_create_project": True,
                "two_factor_enabled": False}

    def key(kid, uid, name, expires_at=None):
        return {"id": kid, "user_id": uid, "title": name, "key": pub[name],
                "usage_type": "auth_and_signing", "expires_at": expires_at}

    return {
        "settings": {"external_url": EXTERNAL_URL,
                     "ssh_clone_url_root": "git@gitlab.example.com:",
                     "enabled_git_access_protocol": "all",
                     "gitlab_shell_operation_limit": 600,
                     "broadcast_messages": [{
                         "id": 1, "message": BANNER, "target_path": None,
                         "starts_at": "2020-01-01T00:00:00Z",
                         "ends_at": "2099-01-01T00:00:00Z"}]},
        "storages": [{"name": "default", "gitaly_address": "unix:/nonexistent/gitaly.socket",
                      "gitaly_token": "", "path": storage}],
        "users": [user(2, "rita"), user(3, "dev"), user(4, "maya"),
                  user(5, "bob", state="blocked")],
        "keys": [key(11, 2, "rita", expires_at=soon), key(12, 3, "dev"),
                 key(13, 4, "maya"), key(14, 5, "bob")],
        "deploy_keys": [{"id": 21, "user_id": 4, "title": "ci-readonly",
                         "key": pub["deploy"], "expires_at": None,
                         "projects": [{"project_id": PROJECT_ID, "can_push": False}]}],
        "namespaces": [{"id": 5, "path": "acme", "name": "Acme", "kind": "group",
                        "parent_id": None}],
        "projects": [{"id": PROJECT_ID, "namespace_id": 5, "path": "widgets",
                      "name": "Widgets", "description": "", "visibility": "private",
                      "archived": False, "default_branch": "main", "storage": "default",
                      "disk_path": DISK_PATH, "repository_access_level": "enabled",
                      "merge_requests_enabled": True, "lfs_enabled": True,
                      "repository_exists": True, "redirects": []}],
        "members": [{"user_id": 2, "project_id": PROJECT_ID, "access_level": 20},
                    {"user_id": 3, "project_id": PROJECT_ID, "access_level": 30},
                    {"user_id": 4, "project_id": PROJECT_ID, "access_level": 40},
                    {"user_id": 5, "project_id": PROJECT_ID, "access_level": 30}],
        "protected_branches": [{"id": 1, "project_id": PROJECT_ID, "name": "main",
                                "push_access_level": 40, "merge_access_level": 40,
                                "allow_force_push": False}],
    }


class Git:
    """git as the SSH user sees it, with one client key."""

    def __init__(self, work, port):
        self.port = port
        self.base = git_env(work)

    def __call__(self, args, key=None, cwd=None):
        env = dict(self.base)
        if key:
            env["GIT_SSH_COMMAND"] = (
                "ssh -F /dev/null -i %s -p %d -o IdentitiesOnly=yes -o BatchMode=yes "
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                "-o LogLevel=ERROR -o ConnectTimeout=10" % (key, self.port))
        return subprocess.run(["git"] + args, env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=60)

    def ok(self, args, cwd=None):
        res = self(args, cwd=cwd)
        if res.returncode != 0:
            raise SetupError("git %s: %s" % (" ".join(args), res.stderr))
        return res.stdout.strip()


# -- assertions ---------------------------------------------------------------

def shell_error_block(message):
    """gitlab-shell's warning block (contract §5.2)."""
    return ["remote: ", "remote: " + RULER, "remote: ", "remote: " + message,
            "remote: ", "remote: " + RULER, "remote: "]


def banner_block():
    """The broadcast banner as Gitaly prints it (contract §6.2), written out
    by hand: words wrapped at 68 columns, each line centred in 72."""
    line1 = "Scheduled maintenance on Saturday from 22:00 to 23:00 UTC. Pushes"
    line2 = "will be refused during the window."
    return ["remote: " + RULER, "remote: ",
            "remote: " + " " * 3 + line1,
            "remote: " + " " * 19 + line2,
            "remote: ", "remote: " + RULER]


# -- the run ------------------------------------------------------------------

def main():
    if os.geteuid() != 0:
        raise SetupError("must run as root: sshd switches to the login user git")
    host_lock()
    work = tempfile.mkdtemp(prefix="e2e-", dir=require_env("GATEHOUSE_TEST_WORK_DIR"))
    os.chmod(work, 0o755)
    log("work directory " + work)
    t0 = time.monotonic()

    user = login_user()
    root, secret, storage = fixture_dir(user)
    log("fixture directory " + root)

    keys_dir = os.path.join(work, "keys")
    os.mkdir(keys_dir, 0o700)
    key, pub = {}, {}
    for name in ("rita", "dev", "maya", "bob", "deploy", "stranger"):
        key[name], pub[name] = client_key(keys_dir, name)

    # PostgreSQL, NATS, Gatehouse; the fixtures learn Gatehouse's URL as soon
    # as it is known.
    stack = Stack(work, seed_document(storage, pub), {"GATEHOUSE_SHELL_SECRET_FILE": secret},
                  on_served=lambda url: fixture_config(root, url, secret, storage))
    gatehouse, gitlab_url = stack.gatehouse, stack.url

    # The bare repository with two commits on main, then Gitaly's hooks.
    ssh_port = reserved_port()
    git = Git(work, ssh_port)
    bare = os.path.join(storage, DISK_PATH + ".git")
    os.makedirs(os.path.dirname(bare))
    git.ok(["init", "-q", "--bare", "--initial-branch=main", bare])
    origin = os.path.join(work, "origin")
    git.ok(["init", "-q", "--initial-branch=main", origin])
    for n in (1, 2):
        with open(os.path.join(origin, "README.md"), "a") as f:
            f.write("line %d\n" % n)
        git.ok(["add", "README.md"], cwd=origin)
        git.ok(["commit", "-q", "-m", "commit %d" % n], cwd=origin)
    git.ok(["push", "-q", bare, "main"], cwd=origin)
    for hook in ("pre-receive", "post-receive"):
        os.symlink(os.path.join(root, hook), os.path.join(bare, "hooks", hook))
    run(["chown", "-R", "%d:%d" % (user.pw_uid, user.pw_gid), storage])

    def bare_ref(ref):
        res = run(["git", "-c", "safe.directory=*", "--git-dir", bare, "rev-parse",
                   "--verify", "-q", ref], check_rc=False)
        return res.stdout.strip() if res.returncode == 0 else None

    main_sha = bare_ref("refs/heads/main")

    # sshd.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    host_key = os.path.join(work, "ssh_host_ed25519_key")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key])
    sshd_config = os.path.join(work, "sshd_config")
    with open(sshd_config, "w") as f:
        f.write("\n".join([
            "Port %d" % ssh_port,
            "ListenAddress 127.0.0.1",
            "HostKey " + host_key,
            "PidFile " + os.path.join(work, "sshd.pid"),
            "AuthorizedKeysFile none",
            "AuthorizedKeysCommand %s/authorized-keys-check git %%u %%k" % root,
            "AuthorizedKeysCommandUser git",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin no",
            "AllowUsers git",
            "StrictModes yes",
            "AcceptEnv GIT_PROTOCOL",
            "PrintMotd no",
            "LogLevel VERBOSE",
        ]) + "\n")
    run(["/usr/sbin/sshd", "-t", "-f", sshd_config])
    sshd = Proc("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", sshd_config], None, work)
    wait_for("sshd", lambda: tcp_open(ssh_port), sshd)
    log("services up in %.1f s (gatehouse %s, sshd %d)" % (time.monotonic() - t0,
                                                            gitlab_url, ssh_port))
    url = "git@127.0.0.1:acme/widgets.git"

    # 0. The plumbing: key lookup through sshd, gitlab-shell's discover.
    env_ssh = dict(git.base)
    res = subprocess.run(["ssh", "-F", "/dev/null", "-T", "-i", key["dev"], "-p", str(ssh_port),
                          "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                          "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                          "-o", "LogLevel=ERROR", "git@127.0.0.1"],
                         env=env_ssh, capture_output=True, text=True, timeout=60)
    check("discover: `ssh git@host` greets the key's owner",
          res.returncode == 0 and res.stdout.strip() == "Welcome to GitLab, @dev!",
          describe(res))

    # 1. A clone by a reporter (whose key expires in 3 days).
    rita = os.path.join(work, "clone-rita")
    res = git(["clone", url, rita], key=key["rita"])
    check("reporter clone succeeds", res.returncode == 0, describe(res))
    check("reporter clone checks out main",
          res.returncode == 0 and git.ok(["rev-parse", "HEAD"], cwd=rita) == main_sha,
          describe(res))
    check("reporter sees gitlab-shell's console message block",
          has_block(res.stderr, ["remote: ", "remote: INFO: Your SSH key is expiring soon. "
                                 "Please generate a new key.", "remote: "]), describe(res))

    # 2. A developer pushes a new branch.
    dev = os.path.join(work, "clone-dev")
    git.ok(["clone", "-q", origin, dev])  # same commits as the bare repository; pushes go over SSH
    git.ok(["remote", "set-url", "origin", url], cwd=dev)
    git.ok(["checkout", "-q", "-b", "topic-e2e"], cwd=dev)
    for n in (1, 2):
        with open(os.path.join(dev, "topic.txt"), "a") as f:
            f.write("topic %d\n" % n)
        git.ok(["add", "topic.txt"], cwd=dev)
        git.ok(["commit", "-q", "-m", "topic commit %d" % n], cwd=dev)
    topic_sha = git.ok(["rev-parse", "HEAD"], cwd=dev)
    topic_commits = git.ok(["rev-list", "--reverse", "origin/main..topic-e2e"], cwd=dev).split()
    res = git(["push", "origin", "topic-e2e"], key=key["dev"], cwd=dev)
    check("developer push of a new branch succeeds", res.returncode == 0, describe(res))
    check("the branch is in the repository", bare_ref("refs/heads/topic-e2e") == topic_sha)
    check("developer sees the merge-request link (remote: prefix)", has_block(res.stderr, [
        "remote: ",
        "remote: To create a merge request for topic-e2e, visit:",
        "remote:   %s/acme/widgets/-/merge_requests/new?merge_request%%5Bsource_branch"
        "%%5D=topic-e2e" % EXTERNAL_URL,
        "remote: "]), describe(res))
    check("developer sees the broadcast banner as Gitaly prints it",
          has_block(res.stderr, banner_block()), describe(res))

    # 3. A developer pushes to protected main.
    git.ok(["checkout", "-q", "main"], cwd=dev)
    with open(os.path.join(dev, "README.md"), "a") as f:
        f.write("developer line\n")
    git.ok(["commit", "-q", "-am", "developer on main"], cwd=dev)
    res = git(["push", "origin", "main"], key=key["dev"], cwd=dev)
    check("developer push to protected main is rejected", res.returncode != 0, describe(res))
    check("developer sees GitLab's protected-branch message", has_block(res.stderr, [
        "remote: GitLab: You are not allowed to push code to protected branches on this "
        "project."]) and " ! [remote rejected] main -> main (pre-receive hook declined)"
        in lines_of(res.stderr), describe(res))
    check("main is unchanged after the developer's push", bare_ref("refs/heads/main") == main_sha)

    # 4. A maintainer force-pushes to protected main (allow_force_push false).
    git.ok(["reset", "-q", "--hard", "HEAD~2"], cwd=dev)
    with open(os.path.join(dev, "README.md"), "w") as f:
        f.write("rewritten history\n")
    git.ok(["commit", "-q", "-am", "rewrite"], cwd=dev)
    res = git(["push", "--force", "origin", "main"], key=key["maya"], cwd=dev)
    check("maintainer force push to protected main is rejected", res.returncode != 0,
          describe(res))
    check("maintainer sees GitLab's force-push message", has_block(res.stderr, [
        "remote: GitLab: You are not allowed to force push code to a protected branch on "
        "this project."]) and " ! [remote rejected] main -> main (pre-receive hook declined)"
        in lines_of(res.stderr), describe(res))
    check("main is unchanged after the force push", bare_ref("refs/heads/main") == main_sha)

    # 5. A deploy key without write access pushes.
    res = git(["push", "origin", "topic-e2e:refs/heads/deploy-branch"], key=key["deploy"],
              cwd=dev)
    check("read-only deploy key push is rejected", res.returncode != 0, describe(res))
    check("deploy key sees gitlab-shell's block with GitLab's message",
          has_block(res.stderr, shell_error_block(
              "This deploy key does not have write access to this project."))
          and "fatal: Could not read from remote repository." in lines_of(res.stderr),
          describe(res))
    check("no deploy-branch in the repository", bare_ref("refs/heads/deploy-branch") is None)

    # 6. An unknown key.
    res = git(["ls-remote", url], key=key["stranger"], cwd=dev)
    check("unknown key is refused at the SSH layer", res.returncode != 0
          and "git@127.0.0.1: Permission denied (publickey)." in lines_of(res.stderr)
          and "fatal: Could not read from remote repository." in lines_of(res.stderr),
          describe(res))
    try:
        with urllib.request.urlopen(gitlab_url + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
    except OSError as e:
        metrics = str(e)
    check("Gatehouse answered the unknown key's lookup with 404", any(
        line.startswith("gatehouse_http_requests_total{") and "authorized_keys" in line
        and 'status="404"' in line and not line.endswith(" 0")
        for line in metrics.splitlines()),
        "\n".join(l for l in metrics.splitlines() if "authorized_keys" in l))

    # 7. A blocked user.
    res = git(["push", "origin", "topic-e2e:refs/heads/blocked-branch"], key=key["bob"],
              cwd=dev)
    check("blocked user is refused", res.returncode != 0
          and has_block(res.stderr, shell_error_block("Your account has been blocked.")),
          describe(res))
    check("no blocked-branch in the repository", bare_ref("refs/heads/blocked-branch") is None)

    # What reached NATS: one push event, for the new branch only. The stream
    # is complete once every outbox row is published (Gatehouse marks a row
    # only on its PubAck), and the tail has printed all of it once it
    # printed the stream's last message.
    got = stack.wait_events()
    pushes = [e for e in got if e.get("data", {}).get("ref") == "refs/heads/topic-e2e"]
    check("exactly one event reached NATS (the new branch)", len(got) == 1 and len(pushes) == 1,
          json.dumps(got, indent=1)[:4000])
    if pushes:
        e, d = pushes[0], pushes[0]["data"]
        ids = [c.get("id") for c in d.get("commits", [])]
        check("event subject is gitlab.events.push.%d" % PROJECT_ID,
              e.get("subject") == "gitlab.events.push.%d" % PROJECT_ID, e.get("subject"))
        check("event headers: Gatehouse-Event push, Nats-Msg-Id",
              e["headers"].get("Gatehouse-Event") == "push"
              and bool(e["headers"].get("Nats-Msg-Id")), e["headers"])
        check("event is the developer's push of the new branch",
              d.get("object_kind") == "push" and d.get("before") == ZERO
              and d.get("after") == topic_sha and d.get("user_username") == "dev"
              and d.get("project_id") == PROJECT_ID,
              {k: d.get(k) for k in ("object_kind", "before", "after", "user_username",
                                     "project_id")})
        check("event commits match git rev-list (oldest first)",
              ids == topic_commits and d.get("total_commits_count") == len(topic_commits),
              "event %s (total %s)\nrev-list %s" % (ids, d.get("total_commits_count"),
                                                    topic_commits))
    check("no event for refused refs", not any(
        e.get("data", {}).get("ref") in ("refs/heads/main", "refs/heads/deploy-branch",
                                         "refs/heads/blocked-branch") for e in got))
    check("gatehouse and sshd still running", gatehouse.alive() and sshd.alive())
    log("scenarios done in %.1f s" % (time.monotonic() - t0))
    if FAILED:
        for proc in (gatehouse, sshd):
            print("--- %s output (tail) ---\n%s" % (proc.name, (proc.out() + proc.err())[-4000:]))
    else:
        CLEANUPS.append(lambda: shutil.rmtree(work, ignore_errors=True))


if __name__ == "__main__":
    run_main(main)
