#!/usr/bin/env python3
"""The traffic and the verdict of scripts/soak (which starts the services).

Runs mixed traffic at a fixed rate against one `gatehouse serve` for the
given minutes, re-seeds every minute, samples the process and PostgreSQL at
the start, every minute and at the end, checks that every answered push's
event is on the stream exactly once, prints a table and PASS or FAIL.

Traffic, each kind from its own thread on its own keep-alive connection, at
its share of --rate requests a second:
  allowed      HTTP POST /allowed, alice pulls acme/widgets       200
  denied       HTTP POST /allowed, alice pulls an unknown project 404
  push         HTTP pre_receive then post_receive of one new branch of
               acme/remote (a storage without a local path: one event) 200
  nats_allowed /allowed over NATS (gatehouse.internal.v1.allowed,
               Protobuf AllowedRequest)                  Gatehouse-Status 200
  seed         `gatehouse seed` every minute, alternating two documents
               (the second adds a user and a key; the first prunes them)
Any other answer, a timeout or a failed seed is an error.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import http.client

SHARES = {"allowed": 0.45, "denied": 0.15, "push": 0.10, "nats_allowed": 0.30}
ZEROS = "0" * 40


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr,
          flush=True)


class Shared:
    """State every traffic thread reads or updates."""

    def __init__(self):
        self.lock = threading.Lock()
        self.token = ""
        self.running = True
        self.counts = {k: 0 for k in SHARES}
        self.errors = {k: 0 for k in list(SHARES) + ["seed"]}
        self.error_samples = []
        self.answered_pushes = []

    def ok(self, kind):
        with self.lock:
            self.counts[kind] += 1

    def error(self, kind, what):
        with self.lock:
            self.errors[kind] += 1
            if len(self.error_samples) < 20:
                self.error_samples.append("%s: %s" % (kind, what))


def paced(shared, rate, step):
    """Calls step() `rate` times a second (a fixed schedule, no catch-up
    bursts after a slow call) until shared.running is false."""
    interval = 1.0 / rate
    next_at = time.monotonic()
    while shared.running:
        step()
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()


class Http:
    """One keep-alive connection; reconnects after a failure."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def post(self, path, body, token):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                   timeout=10)
        try:
            self.conn.request("POST", path, body=json.dumps(body), headers={
                "Content-Type": "application/json",
                "Gitlab-Shell-Api-Request": token})
            res = self.conn.getresponse()
            return res.status, res.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise


def http_thread(shared, port, kind, rate, make_calls):
    client = Http(port)
    counter = [0]

    def step():
        counter[0] += 1
        calls = make_calls(counter[0])
        try:
            for path, body, expected in calls:
                status, text = client.post(path, body, shared.token)
                if status != expected:
                    shared.error(kind, "%s answered %d, not %d: %s"
                                 % (path, status, expected, text[:200]))
                    return
        except Exception as e:  # noqa: BLE001 - every failure is an error
            shared.error(kind, "%s: %r" % (calls[0][0], e))
            return
        shared.ok(kind)
        if kind == "push":
            with shared.lock:
                shared.answered_pushes.append(counter[0])

    paced(shared, rate, step)


def allowed_calls(project, expected):
    body = {"action": "git-upload-pack", "project": project,
            "changes": "_any", "protocol": "ssh", "key_id": "2",
            "check_ip": "127.0.0.1"}
    return lambda n: [("/api/v4/internal/allowed", body, expected)]


def branch_sha(n):
    return "%040x" % n


def push_calls(n):
    return [("/api/v4/internal/pre_receive",
             {"gl_repository": "project-11"}, 200),
            ("/api/v4/internal/post_receive",
             {"gl_repository": "project-11", "identifier": "key-2",
              "changes": "%s %s refs/heads/soak-%d\n"
                         % (ZEROS, branch_sha(n), n),
              "push_options": None}, 200)]


# -- NATS: the few protocol lines a request/reply client needs -------------

def pb_string(field, text):
    data = text.encode()
    return bytes([field << 3 | 2]) + varint(len(data)) + data


def varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


# AllowedRequest (messages/proto/gatehouse/internal/v1/access.proto):
# action 1, project 2, changes 4, protocol 5, key_id 6 (int64).
ALLOWED_REQUEST = (pb_string(1, "git-upload-pack")
                   + pb_string(2, "acme/widgets.git") + pb_string(4, "_any")
                   + pb_string(5, "ssh") + bytes([6 << 3]) + varint(2))


class Nats:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,'
                          b'"headers":true,"no_responders":true,'
                          b'"protocol":1}\r\nSUB _INBOX.soak.* 1\r\n')
        self.seq = 0

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("nats-server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def take(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("nats-server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def request(self, subject, payload):
        """The reply's Gatehouse-Status (0 when it has none)."""
        self.seq += 1
        inbox = "_INBOX.soak.%d" % self.seq
        self.sock.sendall(b"PUB %s %s %d\r\n%s\r\n"
                          % (subject.encode(), inbox.encode(), len(payload),
                             payload))
        while True:
            parts = self.line().split()
            if not parts:
                continue
            if parts[0] == "PING":
                self.sock.sendall(b"PONG\r\n")
            elif parts[0] in ("MSG", "HMSG"):
                total = int(parts[-1])
                head_len = int(parts[-2]) if parts[0] == "HMSG" else 0
                data = self.take(total)
                if parts[1] != inbox:
                    continue  # a late reply to an earlier request
                status = 0
                for h in data[:head_len].decode().split("\r\n")[1:]:
                    if h.lower().startswith("gatehouse-status:"):
                        status = int(h.split(":", 1)[1])
                    elif h.startswith("NATS/1.0 503"):
                        status = 503
                return status
            elif parts[0] == "-ERR":
                raise OSError(" ".join(parts))


def nats_thread(shared, port, rate):
    state = {"nc": None}

    def step():
        try:
            if state["nc"] is None:
                state["nc"] = Nats(port)
            status = state["nc"].request("gatehouse.internal.v1.allowed",
                                         ALLOWED_REQUEST)
        except Exception as e:  # noqa: BLE001
            state["nc"] = None
            shared.error("nats_allowed", repr(e))
            return
        if status != 200:
            shared.error("nats_allowed", "Gatehouse-Status %d" % status)
        else:
            shared.ok("nats_allowed")

    paced(shared, rate, step)


# -- sampling --------------------------------------------------------------

def proc_sample(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return {"rss_kb": int(fields["VmRSS"].split()[0]),
            "threads": int(fields["Threads"]),
            "fds": len(os.listdir("/proc/%d/fd" % pid))}


def psql(args, sql):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(args.pg_port),
                          "-U", "postgres", "-d", args.database, "-qtAc", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def sample(args, shared, label):
    s = proc_sample(args.pid)
    s["pg_conns"] = int(psql(args, "SELECT count(*) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND "
                                   "pid <> pg_backend_pid()"))
    with shared.lock:
        s["requests"] = sum(shared.counts.values())
        s["errors"] = sum(shared.errors.values())
    s["label"] = label
    return s


def mint_token(args):
    out = subprocess.run([args.binary, "jwt", "shell"], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def reseed(args, shared, n):
    path = args.seeds[n % 2]
    extra = ["--prune"] if n % 2 == 0 else []
    res = subprocess.run([args.binary, "seed"] + extra + [path],
                         capture_output=True, text=True)
    if res.returncode != 0:
        shared.error("seed", res.stderr.strip()[:300])


# -- events ----------------------------------------------------------------

def check_events(args, shared):
    """(problems, events seen): every answered push's event on the stream
    exactly once, nothing else there, ids unique."""
    problems = []
    deadline = time.monotonic() + 120
    while psql(args, "SELECT count(*) FROM gatehouse_state.outbox "
                     "WHERE published_at IS NULL") != "0":
        if time.monotonic() > deadline:
            return ["the outbox did not drain within 120 s"], 0
        time.sleep(0.5)
    rows = int(psql(args, "SELECT count(*) FROM gatehouse_state.outbox"))
    tail = subprocess.Popen([args.binary, "events", "tail", "--from-start"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    lines = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(tail.stdout.readline, "")),
        daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while len(lines) < rows and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # anything beyond the outbox would show up meanwhile
    tail.terminate()
    tail.wait(10)
    reader.join(5)
    ids, afters = {}, {}
    for line in lines:
        m = json.loads(line)
        mid = m["headers"].get("Nats-Msg-Id", "")
        ids[mid] = ids.get(mid, 0) + 1
        after = m["data"].get("after", "")
        afters[after] = afters.get(after, 0) + 1
    dup = [i for i, c in ids.items() if c > 1]
    if dup:
        problems.append("%d Nats-Msg-Ids more than once" % len(dup))
    if len(lines) != rows:
        problems.append("%d events on the stream, %d outbox rows"
                        % (len(lines), rows))
    with shared.lock:
        answered = list(shared.answered_pushes)
    missing = [n for n in answered if afters.get(branch_sha(n), 0) != 1]
    if missing:
        problems.append("%d answered pushes without exactly one event"
                        % len(missing))
    return problems, len(lines)


# -- main ------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--nats-port", type=int, required=True)
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--database", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--binary", required=True)
    p.add_argument("--seeds", nargs=2, required=True)
    args = p.parse_args()

    shared = Shared()
    shared.token = mint_token(args)
    samples = [sample(args, shared, "start")]
    threads = [
        threading.Thread(target=http_thread, args=(
            shared, args.http_port, "allowed", args.rate * SHARES["allowed"],
            allowed_calls("acme/widgets.git", 200))),
        threading.Thread(target=http_thread, args=(
            shared, args.http_port, "denied", args.rate * SHARES["denied"],
            allowed_calls("acme/nothing-here.git", 404))),
        threading.Thread(target=http_thread, args=(
            shared, args.http_port, "push", args.rate * SHARES["push"],
            push_calls)),
        threading.Thread(target=nats_thread, args=(
            shared, args.nats_port, args.rate * SHARES["nats_allowed"])),
    ]
    for t in threads:
        t.start()
    log("traffic: %.0f requests/s for %g minutes" % (args.rate, args.minutes))

    start = time.monotonic()
    end = start + args.minutes * 60
    minute = 0
    next_token = start + 30
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        now = time.monotonic()
        if now >= next_token:  # a Shell JWT lives about a minute
            shared.token = mint_token(args)
            next_token = now + 30
        if now - start >= (minute + 1) * 60 and now < end:
            minute += 1
            reseed(args, shared, minute)
            samples.append(sample(args, shared, "%d min" % minute))
            log("minute %d: %s" % (minute, samples[-1]))
    shared.running = False
    for t in threads:
        t.join()
    samples.append(sample(args, shared, "end"))

    problems, events = check_events(args, shared)

    print("\n%-8s %10s %8s %6s %9s %10s %7s"
          % ("sample", "RSS MiB", "threads", "fds", "pg conns", "requests",
             "errors"))
    for s in samples:
        print("%-8s %10.1f %8d %6d %9d %10d %7d"
              % (s["label"], s["rss_kb"] / 1024, s["threads"], s["fds"],
                 s["pg_conns"], s["requests"], s["errors"]))
    elapsed = time.monotonic() - start
    with shared.lock:
        counts, errors = dict(shared.counts), dict(shared.errors)
    print("\nanswered as expected: " + ", ".join(
        "%s %d" % kv for kv in counts.items())
        + " (%.0f/s)" % (sum(counts.values()) / elapsed))
    print("errors: " + ", ".join("%s %d" % kv for kv in errors.items()))
    for e in shared.error_samples:
        print("  " + e)
    print("events on the stream: %d, pushes answered: %d"
          % (events, len(shared.answered_pushes)))

    # Drift against the sample after the first minute (warm caches, pools
    # filled); the start sample is before any traffic.
    base = samples[1] if len(samples) > 2 else samples[0]
    last = samples[-1]
    drift = (last["rss_kb"] - base["rss_kb"]) / base["rss_kb"] * 100
    verdicts = [
        ("RSS drift %+.1f %% (< 5 %%)" % drift, abs(drift) < 5),
        ("threads %d -> %d (no growth)" % (base["threads"], last["threads"]),
         last["threads"] <= base["threads"]),
        ("open files %d -> %d (no growth)" % (base["fds"], last["fds"]),
         last["fds"] <= base["fds"]),
        ("errors %d (zero)" % sum(errors.values()),
         sum(errors.values()) == 0),
        ("events exactly once" + ("" if not problems
                                  else ": " + "; ".join(problems)),
         not problems),
    ]
    print()
    for text, ok in verdicts:
        print("%s  %s" % ("ok  " if ok else "FAIL", text))
    passed = all(ok for _, ok in verdicts)
    print("\n" + ("PASS" if passed else "FAIL"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
