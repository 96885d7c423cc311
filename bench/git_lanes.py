#!/usr/bin/env python3
"""The load of bench/git_lanes.sh against a running `gatehouse serve`.

For each scenario: an ordinary push check (alice, a developer, pushing an
unprotected branch: one git question) is timed every 50 ms, first alone for
a baseline, then while --heavy threads send the heaviest /allowed calls back
to back (root, an admin, updating one protected branch per commit pair of
--commits; "unknown" with object ids the repository lacks). Prints the
latencies and the heavy calls' answers; exit status 1 when an ordinary check
took more than 0.5 s or was not a 200, or a heavy call got an answer other
than GitLab's.
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
LIMIT_S = 0.5
TIMED_OUT = "Push operation timed out\n\nTiming information for debugging purposes:\n"


def token(binary):
    return subprocess.run([binary, "jwt", "shell"], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()


def post_allowed(port, jwt, body, timeout=60):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        start = time.monotonic()
        conn.request("POST", "/api/v4/internal/allowed", body=json.dumps(body),
                     headers={"Content-Type": "application/json",
                              "Gitlab-Shell-Api-Request": jwt})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, time.monotonic() - start
    finally:
        conn.close()


def push_body(key_id, changes):
    return {"action": "git-receive-pack", "gl_repository": "project-10",
            "project": "/repositories/acme/widgets.git", "protocol": "ssh",
            "key_id": str(key_id), "changes": changes}


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ordinary_checks(port, jwt, body, seconds):
    """Times ordinary checks every 50 ms for `seconds`; (latencies, bad)."""
    latencies, bad = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status, data, took = post_allowed(port, jwt, body, timeout=10)
        latencies.append(took)
        if status != 200:
            bad.append((status, data[:200]))
        time.sleep(0.05)
    return latencies, bad


def fmt(xs):
    return (f"n={len(xs):4d}  p50 {statistics.median(xs) * 1000:7.1f} ms  "
            f"p99 {percentile(xs, 99) * 1000:7.1f} ms  max {max(xs) * 1000:7.1f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--commits", required=True)
    ap.add_argument("--heavy", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=20)
    args = ap.parse_args()

    commits = open(args.commits).read().split()
    n = len(commits) - 1
    ordinary = push_body(2, f"{commits[0]} {commits[1]} refs/heads/feature\n")
    scenarios = {
        "unknown": "".join(f"{i:040x} {n + i:040x} refs/heads/b{i}\n"
                           for i in range(1, n + 1)),
        "known": "".join(f"{commits[i]} {commits[i + 1]} refs/heads/b{i}\n"
                         for i in range(n)),
    }
    ok = True
    print(f"{args.heavy} heavy /allowed at once, each {n} protected-branch "
          f"updates ({len(scenarios['known']) // 1024} KiB); ordinary check: "
          f"a developer's push to an unprotected branch, every 50 ms")
    for name, changes in scenarios.items():
        jwt = token(args.binary)
        base, bad = ordinary_checks(args.port, jwt, ordinary, 3)
        ok &= not bad
        heavy_results = []
        stop = threading.Event()

        def heavy_loop():
            body = push_body(1, changes)
            while not stop.is_set():
                try:
                    heavy_results.append(post_allowed(args.port, jwt, body))
                except OSError as e:
                    heavy_results.append((0, str(e).encode(), 0.0))

        threads = [threading.Thread(target=heavy_loop) for _ in range(args.heavy)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # every heavy call under way
        loaded, bad_loaded = ordinary_checks(args.port, jwt, ordinary, args.seconds)
        stop.set()
        for t in threads:
            t.join()
        statuses = {}
        wrong = []
        for status, data, took in heavy_results:
            statuses.setdefault(status, []).append(took)
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data[:80].decode(errors="replace")
            if name == "unknown" and status != 401:
                wrong.append((status, message[:120]))
            if name == "known" and not (status == 200 or (status == 503 and message.startswith(TIMED_OUT))):
                wrong.append((status, message[:120]))
        print(f"\n[{name}]")
        print(f"  ordinary alone        {fmt(base)}")
        print(f"  ordinary under heavy  {fmt(loaded)}"
              + ("" if max(loaded) <= LIMIT_S and not bad_loaded else "   <-- FAIL"))
        for status, times in sorted(statuses.items()):
            print(f"  heavy answered {status}: {len(times)} calls, "
                  f"{statistics.median(times):.2f} s median, {max(times):.2f} s max")
        sample = next((d for s, d, _ in heavy_results if s != 200), b"")
        if sample:
            print("  heavy answer: " + sample[:300].decode(errors="replace"))
        for status, message in wrong[:3]:
            print(f"  unexpected heavy answer {status}: {message}   <-- FAIL")
        for status, data in (bad + bad_loaded)[:3]:
            print(f"  ordinary answered {status}: {data!r}   <-- FAIL")
        ok &= max(loaded) <= LIMIT_S and not bad_loaded and not wrong and bool(heavy_results)
    print("\nPASS" if ok else "\nFAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
