#!/usr/bin/python3
"""End to end: git over HTTP through a stand-in for GitLab Workhorse.

A real `git` talks smart HTTP to fixtures/workhorse-standin, which does what
Workhorse does (contract other-callers.md §4.1, §4.2): it pre-authorizes every
git request with Gatehouse (same method, path, query and headers, no body,
signed with the Workhorse JWT), then either serves it with `git http-backend`
on the bare repository Gatehouse named, or passes Gatehouse's refusal back to
git. The repositories' pre-receive and post-receive hooks (fixtures/
pre-receive, fixtures/post-receive, as in the SSH test) play Gitaly's hook
flow, with GL_PROTOCOL=http. Gatehouse runs against a scratch PostgreSQL
database and a private nats-server; `gatehouse events tail --from-start`
records what reaches NATS.

Credentials are personal access tokens in the URL
(http://<user>:<token>@host/acme/widgets.git), as people clone from GitLab.

REQUIRES (a missing one fails the run): GATEHOUSE_TEST_DATABASE_URL (a
superuser URL), GATEHOUSE_TEST_BINARY, GATEHOUSE_TEST_NATS_SERVER,
GATEHOUSE_TEST_WORK_DIR. Root is not needed.

Prints one line per check and `N passed, M failed`; a failed check prints
git's side (exit status, output) and the server's side (the stand-in's log of
the pre-authorization, Gatehouse's log lines meanwhile). Exits non-zero on any
failure. Everything it starts or creates is stopped or removed at exit.
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from e2e_support import (  # noqa: E402
    CLEANUPS, FAILED, SetupError, Proc, Stack, check, describe, has_block, lines_of,
    log, require_env, run, run_main, wait_for)

FIXTURES = os.path.join(os.path.dirname(os.path.realpath(__file__)), "fixtures")
FIXTURE_FILES = ("gitlab_api.py", "pre-receive", "post-receive", "workhorse-standin")
ZERO = "0" * 40
EXTERNAL_URL = "http://gitlab.example.com"
GITALY_ADDRESS = "unix:/nonexistent/gitaly.socket"
WIDGETS, GADGETS = 10, 11  # acme/widgets (private), acme/gadgets (public)
WORKHORSE_MEDIA = "application/vnd.gitlab-workhorse+json"
NOT_FOUND = ("The project you were looking for could not be found or you don't have "
             "permission to view it.")
BASIC_DENIED = "HTTP Basic: Access denied"


def disk_path(project_id):
    """GitLab's hashed storage path of a project."""
    h = hashlib.sha256(str(project_id).encode()).hexdigest()
    return "@hashed/%s/%s/%s" % (h[0:2], h[2:4], h)


# -- set-up -------------------------------------------------------------------

def fixture_dir(work):
    """<work>/fixtures: copies of the hook scripts, the Workhorse stand-in and
    the internal-API client, the Shell secret (hex, as Rails writes it) and the
    Workhorse secret (base64 of 32 bytes); <work>/storage for the bare
    repositories."""
    root = os.path.join(work, "fixtures")
    os.mkdir(root, 0o755)
    for name in FIXTURE_FILES:
        dst = os.path.join(root, name)
        shutil.copyfile(os.path.join(FIXTURES, name), dst)
        os.chmod(dst, 0o644 if name.endswith(".py") else 0o755)
    shell_secret = os.path.join(root, "gitlab_shell_secret")
    with open(shell_secret, "w") as f:
        f.write(secrets.token_hex(16))
    workhorse_secret = os.path.join(root, "gitlab_workhorse_secret")
    with open(workhorse_secret, "w") as f:
        f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    for path in (shell_secret, workhorse_secret):
        os.chmod(path, 0o600)
    storage = os.path.join(work, "storage")
    os.mkdir(storage, 0o755)
    return root, shell_secret, workhorse_secret, storage


def fixture_config(root, gitlab_url, secret, storage):
    """What Gitaly's [gitlab] section holds, for the hooks."""
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"gitlab_url": gitlab_url, "secret_file": secret,
                   "storages": {"default": storage}}, f)


def new_tokens():
    """Personal access tokens, fresh each run: name -> clear text."""
    names = ("rita-read", "rita-write", "dev-write", "dev-read", "maya-api", "dev-revoked",
             "dev-expired", "olga-read")
    return {n: "glpat-" + secrets.token_hex(10) for n in names}


def seed_document(storage, tokens):
    today = datetime.date.today()
    later = (today + datetime.timedelta(days=30)).isoformat()
    past = (today - datetime.timedelta(days=3)).isoformat()

    def user(uid, name):
        return {"id": uid, "username": name, "name": name.capitalize(),
                "email": name + "@example.com", "public_email": "", "state": "active",
                "admin": False, "external": False, "can_create_project": True,
                "two_factor_enabled": False}

    def project(pid, path, visibility):
        return {"id": pid, "namespace_id": 5, "path": path, "name": path.capitalize(),
                "description": "", "visibility": visibility, "archived": False,
                "default_branch": "main", "storage": "default", "disk_path": disk_path(pid),
                "repository_access_level": "enabled", "merge_requests_enabled": True,
                "lfs_enabled": True, "repository_exists": True, "redirects": []}

    pats = []
    for tid, (name, uid, scopes, expires_at, revoked) in enumerate([
            ("rita-read", 2, ["read_repository"], later, False),
            ("rita-write", 2, ["write_repository"], later, False),
            ("dev-write", 3, ["write_repository"], later, False),
            ("dev-read", 3, ["read_repository"], later, False),
            ("maya-api", 4, ["api"], later, False),
            ("dev-revoked", 3, ["write_repository"], later, True),
            ("dev-expired", 3, ["write_repository"], past, False),
            ("olga-read", 6, ["read_repository"], later, False)], start=1):
        pats.append({"id": tid, "user_id": uid, "name": name, "token": tokens[name],
                     "scopes": scopes, "expires_at": expires_at, "revoked": revoked})

    return {
        "settings": {"external_url": EXTERNAL_URL,
                     "ssh_clone_url_root": "git@gitlab.example.com:",
                     "enabled_git_access_protocol": "all",
                     "gitlab_shell_operation_limit": 600},
        "storages": [{"name": "default", "gitaly_address": GITALY_ADDRESS,
                      "gitaly_token": "", "path": storage}],
        # rita reporter, dev developer, maya maintainer of acme/widgets; olga
        # is no member of anything.
        "users": [user(2, "rita"), user(3, "dev"), user(4, "maya"), user(6, "olga")],
        "namespaces": [{"id": 5, "path": "acme", "name": "Acme", "kind": "group",
                        "parent_id": None}],
        "projects": [project(WIDGETS, "widgets", "private"),
                     project(GADGETS, "gadgets", "public")],
        "members": [{"user_id": 2, "project_id": WIDGETS, "access_level": 20},
                    {"user_id": 3, "project_id": WIDGETS, "access_level": 30},
                    {"user_id": 4, "project_id": WIDGETS, "access_level": 40}],
        "protected_branches": [{"id": 1, "project_id": WIDGETS, "name": "main",
                                "push_access_level": 40, "merge_access_level": 40,
                                "allow_force_push": False}],
        "personal_access_tokens": pats,
    }


class Git:
    """git as a user on a laptop sees it: no configuration, no credential
    helper, no prompts."""

    def __init__(self, work):
        self.base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.path.join(work, "home"),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "E2E Author", "GIT_AUTHOR_EMAIL": "author@example.com",
            "GIT_COMMITTER_NAME": "E2E Committer",
            "GIT_COMMITTER_EMAIL": "committer@example.com",
        }
        os.makedirs(self.base["HOME"], exist_ok=True)

    def __call__(self, args, cwd=None):
        return subprocess.run(["git", "-c", "credential.helper="] + args, env=self.base,
                              cwd=cwd, capture_output=True, text=True, timeout=60)

    def ok(self, args, cwd=None):
        res = self(args, cwd=cwd)
        if res.returncode != 0:
            raise SetupError("git %s: %s" % (" ".join(args), res.stderr))
        return res.stdout.strip()


def bare_repository(git, storage, project_id, work, commits):
    """A bare repository at the project's disk path with `commits` commits on
    main and Gitaly-style hooks; returns (path, a work tree cloned from it)."""
    bare = os.path.join(storage, disk_path(project_id) + ".git")
    os.makedirs(os.path.dirname(bare), exist_ok=True)
    git.ok(["init", "-q", "--bare", "--initial-branch=main", bare])
    origin = os.path.join(work, "origin-%d" % project_id)
    git.ok(["init", "-q", "--initial-branch=main", origin])
    for n in range(1, commits + 1):
        with open(os.path.join(origin, "README.md"), "a") as f:
            f.write("line %d\n" % n)
        git.ok(["add", "README.md"], cwd=origin)
        git.ok(["commit", "-q", "-m", "commit %d" % n], cwd=origin)
    git.ok(["push", "-q", bare, "main"], cwd=origin)
    return bare, origin


def install_hooks(root, bare):
    for hook in ("pre-receive", "post-receive"):
        os.symlink(os.path.join(root, hook), os.path.join(bare, "hooks", hook))


def standin_port(standin):
    m = re.search(r"listening on http://[^:]+:(\d+)", standin.out())
    return int(m.group(1)) if m else None


# -- raw HTTP -------------------------------------------------------------------

class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return ", ".join(v for k, v in self.headers if k.lower() == name.lower())

    def media(self):
        return self.header("Content-Type").split(";")[0].strip().lower()

    def text(self):
        return self.body.decode("utf-8", "replace")

    def __str__(self):
        return "HTTP %d\n%s\n\n%s" % (self.status, "\n".join("%s: %s" % kv for kv in self.headers),
                                       self.text()[:2000])


def http_request(port, method, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, headers=headers or {})
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return Answer(res.status, res.getheaders(), body)


def basic(user, token):
    return {"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (user, token)).encode()).decode()}


def workhorse_jwt(secret):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    signing_input = (b64(b'{"alg":"HS256","typ":"JWT"}') + b"."
                     + b64(json.dumps({"iss": "gitlab-workhorse",
                                       "iat": int(time.time())}).encode()))
    return (signing_input + b"."
            + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


# -- assertions -----------------------------------------------------------------

class Trace:
    """What the server side wrote while a client command ran: the stand-in's
    request log and Gatehouse's log lines (read only when a check prints it,
    after a moment: Gatehouse writes its log from a thread of its own)."""

    def __init__(self, standin, gatehouse):
        self.procs = (standin, gatehouse)
        self.mark()

    def mark(self):
        self.offsets = [(len(p.out()), len(p.err())) for p in self.procs]

    def since(self):
        time.sleep(0.3)
        parts = []
        for p, (o, e) in zip(self.procs, self.offsets):
            text = (p.out()[o:] + p.err()[e:]).strip()
            parts.append("--- %s ---\n%s" % (p.name, text[-4000:] or "(nothing)"))
        return "\n".join(parts)


def remote_lines(stderr, text):
    """git prints a text/plain error body line by line after `remote: `."""
    return any(line == "remote: " + text or line.startswith("remote: " + text)
               for line in lines_of(stderr))


def main():
    require_env("GATEHOUSE_TEST_DATABASE_URL")
    binary = require_env("GATEHOUSE_TEST_BINARY")
    work = tempfile.mkdtemp(prefix="e2e-http-", dir=require_env("GATEHOUSE_TEST_WORK_DIR"))
    os.chmod(work, 0o755)
    log("work directory " + work)
    t0 = time.monotonic()

    root, shell_secret, workhorse_secret, storage = fixture_dir(work)
    tokens = new_tokens()
    stack = Stack(work, seed_document(storage, tokens),
                  {"GATEHOUSE_SHELL_SECRET_FILE": shell_secret,
                   "GATEHOUSE_WORKHORSE_SECRET_FILE": workhorse_secret},
                  on_served=lambda url: fixture_config(root, url, shell_secret, storage))
    gatehouse, gitlab_url = stack.gatehouse, stack.url
    gatehouse_port = int(gitlab_url.rsplit(":", 1)[1])

    # The repositories: acme/widgets with two commits on main, acme/gadgets
    # with one; both with Gitaly's hooks.
    git = Git(work)
    widgets, origin = bare_repository(git, storage, WIDGETS, work, 2)
    gadgets, _ = bare_repository(git, storage, GADGETS, work, 1)
    for bare in (widgets, gadgets):
        install_hooks(root, bare)

    def bare_ref(ref, bare=widgets):
        res = run(["git", "--git-dir", bare, "rev-parse", "--verify", "-q", ref],
                  check_rc=False)
        return res.stdout.strip() if res.returncode == 0 else None

    main_sha = bare_ref("refs/heads/main")

    standin = Proc("workhorse-standin",
                   [sys.executable, os.path.join(root, "workhorse-standin"),
                    "--backend", gitlab_url, "--secret-file", workhorse_secret,
                    "--storage", "default=" + storage, "--listen", "127.0.0.1:0"],
                   None, work)
    wait_for("workhorse-standin", lambda: standin_port(standin), standin)
    port = standin_port(standin)
    log("services up in %.1f s (gatehouse %s, workhorse-standin %d)"
        % (time.monotonic() - t0, gitlab_url, port))
    trace = Trace(standin, gatehouse)

    def url(user, token, project="widgets"):
        cred = "%s:%s@" % (user, token) if user else ""
        return "http://%s127.0.0.1:%d/acme/%s.git" % (cred, port, project)

    def anonymized(project="widgets"):
        return "http://127.0.0.1:%d/acme/%s.git/" % (port, project)

    def gitrun(args, cwd=None):
        trace.mark()
        return git(args, cwd=cwd)

    class Lazy:
        """A check's detail, worked out only when it is printed."""

        def __init__(self, make):
            self.make = make

        def __str__(self):
            return self.make()

    def both(res):
        return Lazy(lambda: describe(res) + "\n" + trace.since())

    def raw(method, path, headers=None, target=None):
        trace.mark()
        return http_request(target or port, method, path, headers)

    def raw_detail(what, answer):
        return Lazy(lambda: "%s\n%s\n%s" % (what, answer, trace.since()))

    info_refs = "/acme/widgets.git/info/refs?service=git-upload-pack"

    # 0. The pre-authorization route itself, straight to Gatehouse.
    a = raw("GET", info_refs, basic("dev", tokens["dev-write"]), target=gatehouse_port)
    check("pre-auth without the Workhorse JWT: 403 plain text",
          a.status == 403 and a.media() == "text/plain",
          raw_detail("GET %s (Basic dev, no Gitlab-Workhorse-Api-Request)" % info_refs, a))
    wrong = dict(basic("dev", tokens["dev-write"]))
    wrong.update({"Gitlab-Workhorse": "v18.6.0-standin",
                  "Gitlab-Workhorse-Api-Request": workhorse_jwt(secrets.token_bytes(32))})
    a = raw("GET", info_refs, wrong, target=gatehouse_port)
    check("pre-auth with a JWT signed by another secret: 403 plain text",
          a.status == 403 and a.media() == "text/plain",
          raw_detail("GET %s (JWT with a wrong secret)" % info_refs, a))
    signed = dict(basic("dev", tokens["dev-write"]))
    signed.update({"Gitlab-Workhorse": "v18.6.0-standin",
                   "Gitlab-Workhorse-Api-Request": run(
                       [binary, "jwt", "workhorse"], env=stack.env).stdout.strip()})
    a = raw("GET", info_refs, signed, target=gatehouse_port)
    try:
        doc = json.loads(a.body) if a.media() == WORKHORSE_MEDIA else {}
    except ValueError:
        doc = {}
    check("pre-auth of a developer's clone: 200 %s" % WORKHORSE_MEDIA,
          a.status == 200 and a.media() == WORKHORSE_MEDIA and isinstance(doc, dict),
          raw_detail("GET %s (Basic dev, `gatehouse jwt workhorse`)" % info_refs, a))
    expected = {"GL_ID": "user-3", "GL_USERNAME": "dev",
                "GL_REPOSITORY": "project-%d" % WIDGETS,
                "Repository.storage_name": "default",
                "Repository.relative_path": disk_path(WIDGETS) + ".git",
                "Repository.gl_repository": "project-%d" % WIDGETS,
                "Repository.gl_project_path": "acme/widgets",
                "GitalyServer.address": GITALY_ADDRESS}
    got = {k: (doc.get(k) if "." not in k else
               (doc.get(k.split(".")[0]) or {}).get(k.split(".")[1])) for k in expected}
    check("pre-auth answer names the user, the repository and Gitaly (§4.2)",
          got == expected, "expected %s\ngot      %s\nanswer:\n%s" % (
              json.dumps(expected, indent=1), json.dumps(got, indent=1), a))
    a = raw("HEAD", info_refs, basic("dev", tokens["dev-write"]))
    check("HEAD on info/refs through the stand-in: 403", a.status == 403,
          raw_detail("HEAD %s via the stand-in" % info_refs, a))

    # 1. A reporter clones with a read_repository token.
    rita = os.path.join(work, "clone-rita")
    res = gitrun(["clone", url("rita", tokens["rita-read"]), rita])
    check("reporter clone with a read_repository token succeeds", res.returncode == 0,
          both(res))
    check("reporter clone checks out main",
          res.returncode == 0 and git.ok(["rev-parse", "HEAD"], cwd=rita) == main_sha,
          both(res))

    # 2. A developer pushes a new branch with a write_repository token.
    dev = os.path.join(work, "clone-dev")
    git.ok(["clone", "-q", origin, dev])  # the same commits; pushes go over HTTP
    git.ok(["remote", "set-url", "origin", url("dev", tokens["dev-write"])], cwd=dev)
    git.ok(["checkout", "-q", "-b", "topic-http"], cwd=dev)
    for n in (1, 2):
        with open(os.path.join(dev, "topic.txt"), "a") as f:
            f.write("topic %d\n" % n)
        git.ok(["add", "topic.txt"], cwd=dev)
        git.ok(["commit", "-q", "-m", "topic commit %d" % n], cwd=dev)
    topic_sha = git.ok(["rev-parse", "HEAD"], cwd=dev)
    topic_commits = git.ok(["rev-list", "--reverse", "origin/main..topic-http"],
                           cwd=dev).split()
    res = gitrun(["push", "origin", "topic-http"], cwd=dev)
    check("developer push of a new branch (write_repository) succeeds",
          res.returncode == 0, both(res))
    check("the branch is in the repository", bare_ref("refs/heads/topic-http") == topic_sha,
          "refs/heads/topic-http = %s, pushed %s" % (bare_ref("refs/heads/topic-http"),
                                                     topic_sha))
    check("developer sees the merge-request link from post_receive", has_block(res.stderr, [
        "remote: ",
        "remote: To create a merge request for topic-http, visit:",
        "remote:   %s/acme/widgets/-/merge_requests/new?merge_request%%5Bsource_branch"
        "%%5D=topic-http" % EXTERNAL_URL,
        "remote: "]), both(res))

    # 3. The reporter fetches it (into a fresh repository should the clone
    # have failed).
    if not os.path.isdir(os.path.join(rita, ".git")):
        git.ok(["init", "-q", rita])
        git.ok(["remote", "add", "origin", url("rita", tokens["rita-read"])], cwd=rita)
    res = gitrun(["fetch", "origin"], cwd=rita)
    check("reporter fetch with a read_repository token succeeds", res.returncode == 0,
          both(res))
    fetched = git(["rev-parse", "--verify", "-q", "refs/remotes/origin/topic-http"], cwd=rita)
    check("the fetch brings the developer's branch", fetched.stdout.strip() == topic_sha,
          "origin/topic-http = %r, pushed %s" % (fetched.stdout.strip(), topic_sha))

    # 4. The developer pushes to protected main: refused by the pre-receive
    # hook's /allowed, as over SSH.
    git.ok(["checkout", "-q", "main"], cwd=dev)
    with open(os.path.join(dev, "README.md"), "a") as f:
        f.write("developer line\n")
    git.ok(["commit", "-q", "-am", "developer on main"], cwd=dev)
    res = gitrun(["push", "origin", "main"], cwd=dev)
    check("developer push to protected main is rejected", res.returncode != 0, both(res))
    check("developer sees GitLab's protected-branch message", has_block(res.stderr, [
        "remote: GitLab: You are not allowed to push code to protected branches on this "
        "project."]) and " ! [remote rejected] main -> main (pre-receive hook declined)"
        in lines_of(res.stderr), both(res))
    check("main is unchanged after the developer's push", bare_ref("refs/heads/main") == main_sha)

    # 5. A developer's read_repository token cannot push: the token lacks
    # push_code (GitAccess check 4, contract shell-gitaly.md §4.1).
    res = gitrun(["push", url("dev", tokens["dev-read"]), "topic-http:refs/heads/read-branch"],
                 cwd=dev)
    check("push with a read_repository token fails with 403", res.returncode != 0
          and "fatal: unable to access '%s': The requested URL returned error: 403"
          % anonymized() in lines_of(res.stderr), both(res))
    check("git shows `You are not allowed to upload code.` (read_repository lacks push_code)",
          remote_lines(res.stderr, "You are not allowed to upload code."), both(res))
    check("no read-branch in the repository", bare_ref("refs/heads/read-branch") is None)

    # 6. A reporter with a write_repository token cannot push: the user
    # lacks push_code on the project (check 11p with changes `_any`).
    res = gitrun(["push", url("rita", tokens["rita-write"]),
                  "topic-http:refs/heads/reporter-branch"], cwd=dev)
    check("reporter push with a write_repository token fails with 403", res.returncode != 0
          and "fatal: unable to access '%s': The requested URL returned error: 403"
          % anonymized() in lines_of(res.stderr), both(res))
    check("git shows `You are not allowed to push code to this project.`",
          remote_lines(res.stderr, "You are not allowed to push code to this project."),
          both(res))
    check("no reporter-branch in the repository", bare_ref("refs/heads/reporter-branch") is None)

    # 7. A maintainer with an api token pushes to protected main.
    git.ok(["reset", "-q", "--hard", "origin/main"], cwd=dev)
    with open(os.path.join(dev, "README.md"), "a") as f:
        f.write("maintainer line\n")
    git.ok(["commit", "-q", "-am", "maintainer on main"], cwd=dev)
    new_main = git.ok(["rev-parse", "HEAD"], cwd=dev)
    res = gitrun(["push", url("maya", tokens["maya-api"]), "main"], cwd=dev)
    check("maintainer push to protected main (api token) succeeds", res.returncode == 0,
          both(res))
    check("main moved to the maintainer's commit", bare_ref("refs/heads/main") == new_main,
          "refs/heads/main = %s, pushed %s" % (bare_ref("refs/heads/main"), new_main))

    # 8. Wrong, revoked and expired tokens: 401 with GitLab's Basic challenge.
    for name, token in (("a wrong token", "glpat-" + secrets.token_hex(10)),
                        ("a revoked token", tokens["dev-revoked"]),
                        ("an expired token", tokens["dev-expired"])):
        res = gitrun(["ls-remote", url("dev", token)])
        check("%s: git fails with `Authentication failed`" % name, res.returncode != 0
              and "fatal: Authentication failed for '%s'" % anonymized()
              in lines_of(res.stderr), both(res))
        check("%s: git shows `%s`" % (name, BASIC_DENIED),
              remote_lines(res.stderr, BASIC_DENIED), both(res))
        a = raw("GET", info_refs, basic("dev", token))
        check("%s: 401, WWW-Authenticate: Basic realm=\"GitLab\", body `%s…`"
              % (name, BASIC_DENIED), a.status == 401
              and 'Basic realm="GitLab"' in a.header("WWW-Authenticate")
              and a.text().startswith(BASIC_DENIED),
              raw_detail("GET %s (Basic dev:<%s>) via the stand-in" % (info_refs, name), a))

    # 9. Anonymous clones.
    res = gitrun(["clone", url(None, None, "gadgets"), os.path.join(work, "clone-anon")])
    check("anonymous clone of the public project succeeds", res.returncode == 0, both(res))
    res = gitrun(["clone", url(None, None), os.path.join(work, "clone-anon-private")])
    check("anonymous clone of the private project fails (git wants credentials)",
          res.returncode != 0 and "fatal: could not read Username for 'http://127.0.0.1:%d': "
          "terminal prompts disabled" % port in lines_of(res.stderr), both(res))
    a = raw("GET", info_refs)
    check("anonymous info/refs of the private project: 401 with the Basic challenge",
          a.status == 401 and 'Basic realm="GitLab"' in a.header("WWW-Authenticate")
          and a.text().startswith(BASIC_DENIED),
          raw_detail("GET %s (no credentials) via the stand-in" % info_refs, a))

    # 10. Projects that do not exist, or that the user may not see.
    for name, user, token, project in (
            ("a missing project", "dev", tokens["dev-write"], "nope"),
            ("a private project of others", "olga", tokens["olga-read"], "widgets")):
        res = gitrun(["ls-remote", url(user, token, project)])
        check("%s with valid credentials: git says `repository … not found`" % name,
              res.returncode != 0 and "fatal: repository '%s' not found" % anonymized(project)
              in lines_of(res.stderr), both(res))
        check("%s: git shows GitLab's not-found text" % name,
              remote_lines(res.stderr, NOT_FOUND), both(res))
        path = "/acme/%s.git/info/refs?service=git-upload-pack" % project
        a = raw("GET", path, basic(user, token))
        check("%s: 404 plain text, the not-found text" % name,
              a.status == 404 and a.media() == "text/plain" and a.text().strip() == NOT_FOUND,
              raw_detail("GET %s (Basic %s) via the stand-in" % (path, user), a))

    # What reached NATS: the two accepted pushes, nothing for refused ones.
    got = stack.wait_events()
    by_ref = {}
    for e in got:
        by_ref.setdefault(e.get("data", {}).get("ref"), []).append(e)
    check("two events reached NATS (topic-http, main)", len(got) == 2
          and len(by_ref.get("refs/heads/topic-http", [])) == 1
          and len(by_ref.get("refs/heads/main", [])) == 1,
          json.dumps(got, indent=1)[:4000])
    for e in by_ref.get("refs/heads/topic-http", [])[:1]:
        d = e["data"]
        ids = [c.get("id") for c in d.get("commits", [])]
        check("event subject is gitlab.events.push.%d" % WIDGETS,
              e.get("subject") == "gitlab.events.push.%d" % WIDGETS, e.get("subject"))
        check("event is the developer's push of the new branch over HTTP",
              d.get("object_kind") == "push" and d.get("before") == ZERO
              and d.get("after") == topic_sha and d.get("user_username") == "dev"
              and d.get("project_id") == WIDGETS,
              {k: d.get(k) for k in ("object_kind", "before", "after", "user_username",
                                     "project_id")})
        check("event commits match git rev-list (oldest first)",
              ids == topic_commits and d.get("total_commits_count") == len(topic_commits),
              "event %s (total %s)\nrev-list %s" % (ids, d.get("total_commits_count"),
                                                    topic_commits))
    for e in by_ref.get("refs/heads/main", [])[:1]:
        d = e["data"]
        check("event is the maintainer's push of main",
              d.get("before") == main_sha and d.get("after") == new_main
              and d.get("user_username") == "maya",
              {k: d.get(k) for k in ("before", "after", "user_username")})
    check("gatehouse and the stand-in still running", gatehouse.alive() and standin.alive())
    log("scenarios done in %.1f s" % (time.monotonic() - t0))
    if FAILED:
        for proc in (gatehouse, standin):
            print("--- %s output (tail) ---\n%s" % (proc.name, (proc.out() + proc.err())[-4000:]))
    else:
        CLEANUPS.append(lambda: shutil.rmtree(work, ignore_errors=True))


if __name__ == "__main__":
    run_main(main)
