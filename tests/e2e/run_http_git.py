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

Git LFS uploads (§4.3) are checked by playing Workhorse directly against
Gatehouse with urllib: the body-less PUT …/gitlab-lfs/objects/<oid>/<size>/
authorize, the body stored under the TempPath it answers (below
GATEHOUSE_UPLOADS_DIR, in the work directory), and the re-sent form-encoded PUT
with Workhorse's signed upload token and Gitlab-Workhorse-Multipart-Fields;
the kept file and the lfs_objects / lfs_objects_projects rows are checked in
the scratch database.

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
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from e2e_support import (  # noqa: E402
    CLEANUPS, FAILED, SetupError, Proc, Stack, check, describe, git_env, has_block,
    lines_of, log, require_env, run, run_main, wait_for)

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
        self.base = git_env(work)

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


def hs256_jwt(secret, claims):
    """A compact HS256 token, as Workhorse's secret.JWTTokenString and the Go
    Shell client make them."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    signing_input = (b64(json.dumps({"alg": "HS256", "typ": "JWT"},
                                    separators=(",", ":")).encode()) + b"."
                     + b64(json.dumps(claims, separators=(",", ":")).encode()))
    return (signing_input + b"."
            + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


def read_workhorse_secret(path):
    """Workhorse's key: the base64 text of -secretPath decoded (32 bytes)."""
    with open(path, "rb") as f:
        return base64.b64decode(f.read().strip(), validate=True)


def shell_jwt(secret_path):
    """gitlab-shell's Gitlab-Shell-Api-Request: the secret file's text, trimmed,
    is the key; iss gitlab-shell, iat now, exp now + 60 s."""
    with open(secret_path, "rb") as f:
        key = f.read().strip()
    now = int(time.time())
    return hs256_jwt(key, {"iss": "gitlab-shell", "iat": now, "exp": now + 60})


def urllib_request(port, method, path, headers=None, body=None):
    """One request with urllib, as an Answer (an HTTP error status is an
    answer, not an exception)."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body,
                                 headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return Answer(res.status, res.getheaders(), res.read())
    except urllib.error.HTTPError as e:
        with e:
            return Answer(e.code, e.headers.items(), e.read())


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
    # Where Workhorse stores LFS bodies and Gatehouse keeps the objects
    # (GitLab's lfs.storage_path): below the work directory, removed with it.
    uploads = os.path.join(work, "uploads")
    stack = Stack(work, seed_document(storage, tokens),
                  {"GATEHOUSE_SHELL_SECRET_FILE": shell_secret,
                   "GATEHOUSE_WORKHORSE_SECRET_FILE": workhorse_secret,
                   "GATEHOUSE_UPLOADS_DIR": uploads},
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

    # 11. Git LFS uploads through Workhorse's pre-authorization (contract
    # other-callers.md §4.3, research git_http.md §5). This driver plays
    # Workhorse itself, straight to Gatehouse: PUT …/<oid>/<size>/authorize
    # with no body, then the body stored in a file under TempPath, then the
    # PUT re-sent with the form fields and signed tokens Workhorse's body
    # uploader sends (upload/body_uploader.go, destination.GitLabFinalizeFields).
    wh_key = read_workhorse_secret(workhorse_secret)
    lfs_media = "application/vnd.git-lfs+json"
    temp_path = os.path.join(uploads, "lfs-objects", "tmp", "uploads")
    help_url = EXTERNAL_URL + "/help"

    def psql(sql):
        return run(["psql", "-X", "-qtA", "-F", "|", "-d", stack.db_url, "-c", sql],
                   check_rc=False).stdout.strip()

    def lfs_path(oid, size, authorize=False, project="widgets"):
        return "/acme/%s.git/gitlab-lfs/objects/%s/%d%s" % (
            project, oid, size, "/authorize" if authorize else "")

    def workhorse_headers(cred):
        """What Workhorse forwards of git-lfs's PUT, plus its own headers."""
        h = {"User-Agent": "git-lfs/3.6.1 (GitHub; linux amd64; go 1.23.4)",
             "Gitlab-Workhorse": "v18.6.0-standin",
             "Gitlab-Workhorse-Api-Request": hs256_jwt(
                 wh_key, {"iss": "gitlab-workhorse", "iat": int(time.time())})}
        h.update(cred or {})
        return h

    def lfs_authorize(oid, size, cred, project="widgets"):
        trace.mark()
        return urllib_request(gatehouse_port, "PUT", lfs_path(oid, size, True, project),
                              workhorse_headers(cred), b"")

    def stored_body(content):
        """The body as Workhorse stores it: a fresh file under TempPath
        (os.CreateTemp(TempPath, "upload")), mode 0600."""
        fd, path = tempfile.mkstemp(prefix="upload", dir=temp_path)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        return path

    def finalize_form(path, content, upload_key=wh_key, signed=True, fields_path=None):
        """(form body, Gitlab-Workhorse-Multipart-Fields) as Workhorse sends
        them for the stored file at `path`: every value as a string, the
        signed copy in file.gitlab-workhorse-upload."""
        upload = {"name": "upload", "path": path, "remote_url": "", "remote_id": "",
                  "size": str(len(content)), "upload_duration": "0.001",
                  "md5": hashlib.md5(content).hexdigest(),
                  "sha1": hashlib.sha1(content).hexdigest(),
                  "sha256": hashlib.sha256(content).hexdigest(),
                  "sha512": hashlib.sha512(content).hexdigest()}
        form = {"file." + k: v for k, v in upload.items()}
        if signed:
            form["file.gitlab-workhorse-upload"] = hs256_jwt(
                upload_key, {"upload": dict(sorted(upload.items())),
                             "iss": "gitlab-workhorse"})
        fields = hs256_jwt(wh_key, {"rewritten_fields": {"file": fields_path or path},
                                    "iss": "gitlab-workhorse"})
        # Go's url.Values.Encode sorts by key.
        return urllib.parse.urlencode(sorted(form.items())).encode(), fields

    def lfs_finalize(oid, size, cred, form, fields, project="widgets"):
        h = workhorse_headers(cred)
        h["Content-Type"] = "application/x-www-form-urlencoded"
        if fields is not None:
            h["Gitlab-Workhorse-Multipart-Fields"] = fields
        trace.mark()
        return urllib_request(gatehouse_port, "PUT", lfs_path(oid, size, False, project), h,
                              form)

    def lfs_json(a):
        try:
            return json.loads(a.body) if a.body else None
        except ValueError:
            return None

    def kept_path(oid):
        return os.path.join(uploads, "lfs-objects", oid[0:2], oid[2:4], oid[4:])

    def rows(oid):
        return (psql("SELECT oid, size, file_path FROM lfs_objects WHERE oid = '%s'" % oid),
                psql("SELECT oid, project_id, repository_type FROM lfs_objects_projects "
                     "WHERE oid = '%s' ORDER BY project_id" % oid))

    def lfs_detail(what, a, extra=""):
        return Lazy(lambda: "%s\n%s%s\n%s" % (what, a, extra and "\n" + extra, trace.since()))

    check("seed: acme/widgets has lfs_enabled true",
          psql("SELECT lfs_enabled FROM projects WHERE id = %d" % WIDGETS) == "t",
          "projects.lfs_enabled = %r" % psql("SELECT lfs_enabled FROM projects WHERE id = %d"
                                             % WIDGETS))

    # 11a. A developer uploads an object.
    content = b"LFS object of this run " + secrets.token_hex(16).encode() + b"\n"
    oid, size = hashlib.sha256(content).hexdigest(), len(content)
    dev_cred = basic("dev", tokens["dev-write"])
    a = lfs_authorize(oid, size, dev_cred)
    doc = lfs_json(a) if a.media() == WORKHORSE_MEDIA else None
    want = {"TempPath": temp_path, "LfsOid": oid, "LfsSize": size, "MaximumSize": size}
    check("LFS authorize by a developer: 200 %s" % WORKHORSE_MEDIA,
          a.status == 200 and a.media() == WORKHORSE_MEDIA,
          lfs_detail("PUT %s (Basic dev, no body)" % lfs_path(oid, size, True), a))
    check("LFS authorize answer is {TempPath, LfsOid, LfsSize, MaximumSize}",
          doc == want, lfs_detail("expected %s" % json.dumps(want), a))
    check("LFS authorize's TempPath exists (Workhorse stores the body there)",
          os.path.isdir(temp_path), "no directory " + temp_path)
    os.makedirs(temp_path, exist_ok=True)  # the checks below need it either way
    tmp = stored_body(content)
    form, fields = finalize_form(tmp, content)
    a = lfs_finalize(oid, size, dev_cred, form, fields)
    check("LFS finalize by a developer: 200, empty body, %s" % lfs_media,
          a.status == 200 and a.body == b"" and a.media() == lfs_media,
          lfs_detail("PUT %s (form-encoded, file.path=%s)" % (lfs_path(oid, size), tmp), a,
                     "form: " + form.decode()[:600]))
    kept = kept_path(oid)
    on_disk = open(kept, "rb").read() if os.path.isfile(kept) else None
    check("the object moved to lfs-objects/<oid[0:2]>/<oid[2:4]>/<oid[4:]>",
          on_disk == content and not os.path.exists(tmp),
          "kept file %s: %r; temp file %s still there: %s"
          % (kept, on_disk, tmp, os.path.exists(tmp)))
    objects, links = rows(oid)
    check("lfs_objects has the object (oid, size, file path)",
          objects == "%s|%d|%s" % (oid, size, kept), "lfs_objects: %r" % objects)
    check("lfs_objects_projects links it to acme/widgets",
          links == "%s|%d|project" % (oid, WIDGETS), "lfs_objects_projects: %r" % links)

    # 11b. Finalize refusals (GitLab's Multipart middleware and
    # Lfs::FinalizeUploadService). Each uses a fresh oid: no rows may appear.
    def refused_finalize(name, status, text, oid, size, form, fields, what):
        a = lfs_finalize(oid, size, dev_cred, form, fields)
        check("LFS finalize %s: %d text/plain `%s`" % (name, status, text),
              a.status == status and a.media() == "text/plain" and a.text() == text,
              lfs_detail("PUT %s (%s)" % (lfs_path(oid, size), what), a,
                         "form: " + form.decode()[:600]))
        objects, links = rows(oid)
        check("LFS finalize %s: no lfs_objects rows, nothing kept" % name,
              objects == "" and links == "" and not os.path.exists(kept_path(oid)),
              "lfs_objects %r, lfs_objects_projects %r, kept file %s"
              % (objects, links, os.path.exists(kept_path(oid))))

    # The URL names an object never uploaded; the body has its size but
    # other bytes (Workhorse signs the sha256 of what it got).
    claimed = b"claimed object " + secrets.token_hex(16).encode()
    other = bytes(b ^ 0x20 for b in claimed)
    tmp = stored_body(other)
    form, fields = finalize_form(tmp, other)
    refused_finalize("with the wrong sha256", 400, "SHA256 or size mismatch",
                     hashlib.sha256(claimed).hexdigest(), len(claimed), form, fields,
                     "body of the URL's size, other sha256")
    # A shorter body than the URL's size, its own sha256 as the oid.
    short = content[:-5]
    short_oid = hashlib.sha256(short).hexdigest()
    tmp = stored_body(short)
    form, fields = finalize_form(tmp, short)
    refused_finalize("with the wrong size", 400, "SHA256 or size mismatch", short_oid,
                     len(content), form, fields, "URL size %d, body %d bytes"
                     % (len(content), len(short)))
    # A path outside TempPath, signed by Workhorse's secret all the same.
    passwd = open("/etc/passwd", "rb").read()
    passwd_oid = hashlib.sha256(passwd).hexdigest()
    form, fields = finalize_form("/etc/passwd", passwd)
    refused_finalize("of /etc/passwd", 400, "insecure path used '/etc/passwd'", passwd_oid,
                     len(passwd), form, fields, "file.path=/etc/passwd, signed")
    # No file.gitlab-workhorse-upload, or one signed with another secret:
    # GitLab finds no uploaded file.
    fresh = b"unsigned upload " + secrets.token_hex(16).encode()
    fresh_oid = hashlib.sha256(fresh).hexdigest()
    tmp = stored_body(fresh)
    form, fields = finalize_form(tmp, fresh, signed=False)
    refused_finalize("without the upload token", 422, "Unprocessable entity", fresh_oid,
                     len(fresh), form, fields, "no file.gitlab-workhorse-upload")
    form, fields = finalize_form(tmp, fresh, upload_key=secrets.token_bytes(32))
    refused_finalize("with an upload token of another secret", 422, "Unprocessable entity",
                     fresh_oid, len(fresh), form, fields,
                     "file.gitlab-workhorse-upload signed with a wrong secret")
    form, _ = finalize_form(tmp, fresh)
    refused_finalize("without Gitlab-Workhorse-Multipart-Fields", 422,
                     "Unprocessable entity", fresh_oid, len(fresh), form, None,
                     "no Gitlab-Workhorse-Multipart-Fields header")

    # 11c. Who may upload: GitLab's lfs_check_access! (403 when the user can
    # download, else 404), both as Git LFS JSON.
    forbidden = {"message": "Access forbidden. Check your access level.",
                 "documentation_url": help_url}
    not_found = {"message": "Not found.", "documentation_url": help_url}
    rita_cred = basic("rita", tokens["rita-write"])
    a = lfs_authorize(fresh_oid, len(fresh), rita_cred)
    check("LFS authorize by a reporter: 403 %s, Access forbidden" % lfs_media,
          a.status == 403 and a.media() == lfs_media and lfs_json(a) == forbidden,
          lfs_detail("PUT %s (Basic rita, write_repository)"
                     % lfs_path(fresh_oid, len(fresh), True), a))
    form, fields = finalize_form(tmp, fresh)
    a = lfs_finalize(fresh_oid, len(fresh), rita_cred, form, fields)
    check("LFS finalize by a reporter: 403 %s, nothing kept" % lfs_media,
          a.status == 403 and a.media() == lfs_media and lfs_json(a) == forbidden
          and rows(fresh_oid) == ("", "") and os.path.exists(tmp),
          lfs_detail("PUT %s (Basic rita, signed form)" % lfs_path(fresh_oid, len(fresh)),
                     a, "rows %r" % (rows(fresh_oid),)))
    olga_cred = basic("olga", tokens["olga-read"])
    a = lfs_authorize(fresh_oid, len(fresh), olga_cred)
    check("LFS authorize by a non-member of the private project: 404 %s, Not found."
          % lfs_media,
          a.status == 404 and a.media() == lfs_media and lfs_json(a) == not_found,
          lfs_detail("PUT %s (Basic olga)" % lfs_path(fresh_oid, len(fresh), True), a))
    a = lfs_finalize(fresh_oid, len(fresh), olga_cred, form, fields)
    check("LFS finalize by a non-member of the private project: 404, nothing kept",
          a.status == 404 and a.media() == lfs_media and lfs_json(a) == not_found
          and rows(fresh_oid) == ("", ""),
          lfs_detail("PUT %s (Basic olga, signed form)" % lfs_path(fresh_oid, len(fresh)), a))
    a = lfs_authorize(fresh_oid, len(fresh), None)
    check("LFS authorize without credentials: 401, WWW-Authenticate: Basic realm=\"GitLab\"",
          a.status == 401 and 'Basic realm="GitLab"' in a.header("WWW-Authenticate")
          and a.text().startswith(BASIC_DENIED),
          lfs_detail("PUT %s (no Authorization)" % lfs_path(fresh_oid, len(fresh), True), a))
    a = lfs_finalize(fresh_oid, len(fresh), None, form, fields)
    check("LFS finalize without credentials: 401 with the Basic challenge, nothing kept",
          a.status == 401 and 'Basic realm="GitLab"' in a.header("WWW-Authenticate")
          and rows(fresh_oid) == ("", ""),
          lfs_detail("PUT %s (no Authorization)" % lfs_path(fresh_oid, len(fresh)), a))

    # 11d. The LFS token gitlab-shell gets from /lfs_authenticate (git-lfs
    # over SSH), used as the Basic password with the answer's username.
    trace.mark()
    a = urllib_request(gatehouse_port, "POST", "/api/v4/internal/lfs_authenticate",
                       {"Gitlab-Shell-Api-Request": shell_jwt(shell_secret),
                        "Content-Type": "application/json", "User-Agent": "GitLab-Shell"},
                       json.dumps({"user_id": 3, "project": "acme/widgets.git",
                                   "operation": "upload"}).encode())
    auth = lfs_json(a) if a.status == 200 else None
    check("lfs_authenticate (Shell JWT, user_id, operation upload): 200 with username dev "
          "and an lfs_token",
          isinstance(auth, dict) and auth.get("username") == "dev"
          and isinstance(auth.get("lfs_token"), str) and auth.get("lfs_token"),
          lfs_detail("POST /api/v4/internal/lfs_authenticate", a))
    lfs_token = (auth or {}).get("lfs_token") or "none"
    token_cred = basic((auth or {}).get("username") or "dev", lfs_token)
    a = lfs_authorize(fresh_oid, len(fresh), token_cred)
    check("LFS authorize with the LFS token: 200 %s" % WORKHORSE_MEDIA,
          a.status == 200 and a.media() == WORKHORSE_MEDIA and lfs_json(a) == {
              "TempPath": temp_path, "LfsOid": fresh_oid, "LfsSize": len(fresh),
              "MaximumSize": len(fresh)},
          lfs_detail("PUT %s (Basic dev:<lfs_token>)" % lfs_path(fresh_oid, len(fresh), True),
                     a))
    a = lfs_finalize(fresh_oid, len(fresh), token_cred, form, fields)
    kept = kept_path(fresh_oid)
    check("LFS finalize with the LFS token: 200, empty body, %s" % lfs_media,
          a.status == 200 and a.body == b"" and a.media() == lfs_media,
          lfs_detail("PUT %s (Basic dev:<lfs_token>)" % lfs_path(fresh_oid, len(fresh)), a))
    objects, links = rows(fresh_oid)
    check("the LFS token's upload is kept and linked to acme/widgets",
          os.path.isfile(kept) and open(kept, "rb").read() == fresh
          and objects == "%s|%d|%s" % (fresh_oid, len(fresh), kept)
          and links == "%s|%d|project" % (fresh_oid, WIDGETS),
          "kept file %s exists: %s\nlfs_objects %r\nlfs_objects_projects %r"
          % (kept, os.path.isfile(kept), objects, links))
    a = lfs_authorize(fresh_oid, len(fresh), basic("rita", lfs_token))
    check("dev's LFS token with another login: 401",
          a.status == 401 and 'Basic realm="GitLab"' in a.header("WWW-Authenticate"),
          lfs_detail("PUT %s (Basic rita:<dev's lfs_token>)"
                     % lfs_path(fresh_oid, len(fresh), True), a))
    check("lfs_objects holds only the two accepted uploads",
          psql("SELECT count(*) FROM lfs_objects") == "2"
          and psql("SELECT count(*) FROM lfs_objects_projects") == "2",
          "lfs_objects:\n%s\nlfs_objects_projects:\n%s"
          % (psql("SELECT * FROM lfs_objects"), psql("SELECT * FROM lfs_objects_projects")))

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
