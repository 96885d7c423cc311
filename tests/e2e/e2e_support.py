"""Plumbing shared by the end-to-end drivers (run_e2e.py over SSH,
run_http_git.py over HTTP): named checks, child processes that die with the
driver, a scratch database, and the Gatehouse stack they all need
(nats-server with JetStream, `gatehouse migrate`, `gatehouse seed`,
`gatehouse serve`, `gatehouse events tail --from-start`).

Standard library only. Everything registered in CLEANUPS is undone, newest
first, by cleanup() (run_main() calls it).
"""

import ctypes
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

VERBOSE = os.environ.get("GATEHOUSE_E2E_VERBOSE") == "1"  # print every detail
PASSED, FAILED = [], []
CLEANUPS = []


# -- plumbing ---------------------------------------------------------------

def log(msg):
    print("[e2e %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def check(name, ok, detail=""):
    (PASSED if ok else FAILED).append(name)
    print("%s: %s" % ("PASS" if ok else "FAIL", name), flush=True)
    if detail and (not ok or VERBOSE):
        print("  " + str(detail).replace("\n", "\n  "), flush=True)
    return ok


class SetupError(Exception):
    pass


def require_env(name):
    value = os.environ.get(name, "")
    if not value:
        raise SetupError("environment variable %s must be set (scripts/test exports it)" % name)
    return value


def run(argv, env=None, check_rc=True, input=None, timeout=60):
    res = subprocess.run(argv, env=env, input=input, capture_output=True, text=True,
                         timeout=timeout)
    if check_rc and res.returncode != 0:
        raise SetupError("%s failed (%d): %s%s" % (" ".join(argv), res.returncode,
                                                   res.stdout, res.stderr))
    return res


def reserved_port():
    """A port on 127.0.0.1 that nobody else gets until the run ends: held by a
    socket bound with SO_REUSEADDR that never listens (as in
    tests/support/ports.hpp), for a server that cannot bind port 0 and tell
    which port it got (sshd). sshd sets SO_REUSEADDR too and listens on it."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    CLEANUPS.append(s.close)
    return s.getsockname()[1]


def serving_port(gatehouse):
    """The HTTP port in `gatehouse serve`'s "gatehouse serving" line (text log
    format); None before it. Gatehouse binds port 0 and logs what it got."""
    for line in gatehouse.out().splitlines():
        if "gatehouse serving" in line:
            m = re.search(r" listen=\S*:(\d+)", line)
            if m:
                return int(m.group(1))
    return None


def nats_ports(nats, ports_dir):
    """(client port, monitoring port) of a nats-server started with -p -1 -m -1
    --ports_file_dir ports_dir, from its ports file; None before it is
    written."""
    path = os.path.join(ports_dir, "%s_%d.ports" % (os.path.basename(nats.p.args[0]),
                                                    nats.p.pid))
    try:
        with open(path) as f:
            ports = json.load(f)
        return (int(ports["nats"][0].rsplit(":", 1)[1]),
                int(ports["monitoring"][0].rsplit(":", 1)[1]))
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _die_with_parent():
    # The children go away even if this driver is killed without cleanup.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Proc:
    """A background child with its output in files; stopped at exit."""

    def __init__(self, name, argv, env, workdir, stop_signal=signal.SIGTERM):
        self.name, self.stop_signal = name, stop_signal
        self.out_path = os.path.join(workdir, name + ".out")
        self.err_path = os.path.join(workdir, name + ".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=err, preexec_fn=_die_with_parent)
        CLEANUPS.append(self.stop)

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.alive():
            self.p.send_signal(self.stop_signal)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def out(self):
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def err(self):
        with open(self.err_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def wait_for(what, predicate, proc=None, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and not proc.alive():
            raise SetupError("%s exited (%s):\n%s" % (proc.name, proc.p.returncode,
                                                     proc.err()[-3000:]))
        time.sleep(0.05)
    raise SetupError("timed out waiting for " + what
                     + ("" if proc is None else ":\n" + proc.err()[-3000:]))


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as res:
            return 200 <= res.status < 300
    except OSError:
        return False


def tcp_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def scratch_database(server_url):
    """A fresh database on the test server, dropped at exit."""
    name = "gatehouse_e2e_%d_%s" % (os.getpid(), secrets.token_hex(4))
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server_url, "-c"]
    run(psql + ['CREATE DATABASE "%s"' % name])
    CLEANUPS.append(lambda: run(psql + ['DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name],
                                check_rc=False))
    if "://" not in server_url:
        return server_url + " dbname=" + name
    parts = urllib.parse.urlsplit(server_url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


# -- the Gatehouse stack ------------------------------------------------------

class Stack:
    """nats-server (JetStream), a migrated and seeded scratch database,
    `gatehouse serve` and `gatehouse events tail --from-start`. nats-server
    and Gatehouse bind port 0 and tell which port they got."""

    def __init__(self, work, seed, env_extra, on_served=None):
        server_url = require_env("GATEHOUSE_TEST_DATABASE_URL")
        self.binary = require_env("GATEHOUSE_TEST_BINARY")
        nats_server = require_env("GATEHOUSE_TEST_NATS_SERVER")
        self.db_url = scratch_database(server_url)
        self.nats = Proc("nats-server", [nats_server, "-a", "127.0.0.1", "-p", "-1", "-m", "-1",
                                         "--ports_file_dir", work, "-js", "-sd",
                                         os.path.join(work, "jetstream")], None, work)
        wait_for("nats-server ports file", lambda: nats_ports(self.nats, work), self.nats)
        nats_port, self.monitor_port = nats_ports(self.nats, work)
        wait_for("nats-server", lambda: http_ok(
            "http://127.0.0.1:%d/healthz?js-enabled-only=true" % self.monitor_port), self.nats)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
        env.update({"GATEHOUSE_DATABASE_URL": self.db_url,
                    "GATEHOUSE_NATS_URL": "nats://127.0.0.1:%d" % nats_port,
                    "GATEHOUSE_HTTP_LISTEN": "127.0.0.1:0",
                    "GATEHOUSE_LOG_FORMAT": "text"})
        env.update(env_extra)
        self.env = env
        seed_path = os.path.join(work, "seed.json")
        with open(seed_path, "w") as f:
            json.dump(seed, f, indent=1)
        run([self.binary, "migrate"], env=env)
        run([self.binary, "seed", seed_path], env=env)
        self.gatehouse = Proc("gatehouse", [self.binary, "serve"], env, work)
        wait_for("gatehouse serving", lambda: serving_port(self.gatehouse), self.gatehouse)
        self.url = "http://127.0.0.1:%d" % serving_port(self.gatehouse)
        if on_served:
            on_served(self.url)
        wait_for("gatehouse liveness", lambda: http_ok(self.url + "/-/liveness"),
                 self.gatehouse)
        self.tail = Proc("events-tail", [self.binary, "events", "tail", "--from-start"], env,
                         work, stop_signal=signal.SIGINT)
        wait_for("events tail", lambda: "tailing stream" in self.tail.err(), self.tail)

    def outbox_drained(self):
        """True once every outbox row is published (Gatehouse marks a row only
        on its PubAck) and the tail has printed the stream's last message."""
        res = run(["psql", "-X", "-qtA", "-d", self.db_url, "-c", "SELECT count(*) FROM "
                   "gatehouse_state.outbox WHERE published_at IS NULL"], check_rc=False)
        if res.stdout.strip() != "0":
            return False
        last = stream_last_seq(self.monitor_port, "GATEHOUSE_EVENTS")
        return bool(last) and any(e.get("sequence") == last for e in events(self.tail))

    def wait_events(self, timeout=30):
        """The events the tail printed, once the outbox is drained (or after
        timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.outbox_drained():
            time.sleep(0.1)
        return events(self.tail)


# -- assertions ---------------------------------------------------------------

def git_env(work):
    """The environment every git client of the end-to-end tests runs with:
    no system or user configuration, no prompts, fixed identities."""
    env = {
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
    os.makedirs(env["HOME"], exist_ok=True)
    return env


def lines_of(text):
    # git pads sideband lines with spaces when stderr is not a terminal.
    return [line.rstrip() for line in text.splitlines()]


def has_block(text, block):
    lines, block = lines_of(text), [b.rstrip() for b in block]
    return any(lines[i:i + len(block)] == block for i in range(len(lines) - len(block) + 1))


def events(tail):
    out = []
    for line in tail.out().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def stream_last_seq(monitor_port, stream):
    """The sequence of the last message in `stream`, from nats-server's
    monitoring endpoint; None when unknown."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/jsz?streams=true" % monitor_port,
                                    timeout=2) as r:
            jsz = json.load(r)
    except (OSError, ValueError):
        return None
    for account in jsz.get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail.get("name") == stream:
                return detail.get("state", {}).get("last_seq")
    return None


def describe(res):
    return "exit %d\nstdout:\n%s\nstderr:\n%s" % (res.returncode, res.stdout, res.stderr)


# -- the run ------------------------------------------------------------------

def cleanup():
    while CLEANUPS:
        try:
            CLEANUPS.pop()()
        except Exception as e:  # keep cleaning
            print("cleanup: %s" % e, file=sys.stderr)


def run_main(main):
    """Runs main() as a driver: set-up errors and hangs count as failed
    checks, everything is cleaned up, the summary line is printed and the
    exit status is non-zero on any failure."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    try:
        main()
    except SetupError as e:
        check("set-up", False, e)
    except subprocess.TimeoutExpired as e:
        check("no command hangs", False, e)
    finally:
        cleanup()
    print("%d passed, %d failed" % (len(PASSED), len(FAILED)), flush=True)
    sys.exit(1 if FAILED else 0)
