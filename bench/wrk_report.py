#!/usr/bin/env python3
"""Parses wrk --latency output, checks a run against the server's JSON access
log, and prints the summary table. Standard library only. Used by bench/http.sh.

  wrk_report.py parse WRK_OUTPUT                   the parsed numbers as JSON
  wrk_report.py overflows                          TcpExt ListenOverflows now
  wrk_report.py check --label L --wrk FILE --wrk-rc RC --log FILE --offset BYTES
                --path PATH --status CODE --connections N --out RESULT.json
                [--overflows-before N]
                                                   exit 1 when the run is not valid
  wrk_report.py table RESULT.json...               route table + ratios to /-/liveness
  wrk_report.py --self-test
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time

LIVENESS = "/-/liveness"
TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
NUM = r"(\d+(?:\.\d+)?)"
TIME = NUM + r"(us|ms|s|m|h)\b"


def to_ms(value, unit):
    return float(value) * TIME_UNITS_MS[unit]


# -- wrk output ----------------------------------------------------------------

def parse_wrk(text):
    """The numbers of one wrk --latency run. Raises ValueError when the text is
    not a finished wrk run (usage message, crash, missing --latency)."""
    out = {"percentiles_ms": {}, "non2xx": 0,
           "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    m = re.search(r"^\s*(\d+) threads and (\d+) connections", text, re.M)
    if not m:
        raise ValueError("no 'N threads and M connections' line (did wrk start?)")
    out["threads"], out["connections"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"^\s*(\d+) requests in " + TIME, text, re.M)
    if not m:
        raise ValueError("no 'N requests in T' line")
    out["requests"] = int(m.group(1))
    out["duration_s"] = to_ms(m.group(2), m.group(3)) / 1000.0
    m = re.search(r"^Requests/sec:\s+" + NUM, text, re.M)
    if not m:
        raise ValueError("no 'Requests/sec:' line")
    out["rps"] = float(m.group(1))
    m = re.search(r"^\s*Latency\s+" + TIME + r"\s+" + TIME + r"\s+" + TIME, text, re.M)
    if m:
        out["avg_ms"] = to_ms(m.group(1), m.group(2))
        out["max_ms"] = to_ms(m.group(5), m.group(6))
    if not re.search(r"^\s*Latency Distribution", text, re.M):
        raise ValueError("no 'Latency Distribution' (run wrk with --latency)")
    for pm in re.finditer(r"^\s*(\d+(?:\.\d+)?)%\s+" + TIME, text, re.M):
        out["percentiles_ms"][str(int(float(pm.group(1))))] = to_ms(pm.group(2), pm.group(3))
    for need in ("50", "99"):
        if need not in out["percentiles_ms"]:
            raise ValueError("no %s%% latency line" % need)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
    return out


# -- server access log ---------------------------------------------------------

def read_settled(path, offset, settle_s=0.3, limit_s=5.0):
    """The log from `offset`, once it stops growing (the server may still be
    writing the last responses' lines when wrk exits)."""
    deadline = time.time() + limit_s
    size = -1
    while True:
        now = os.path.getsize(path)
        if now == size or time.time() > deadline:
            break
        size = now
        time.sleep(settle_s)
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    # A last line without its newline is still being written: leave it out.
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    return data.decode("utf-8", errors="replace")


def access_lines(text):
    """The msg=="request" JSON objects; other lines (text, other msgs) skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("msg") == "request":
            out.append(obj)
    return out


def judge(wrk_text, wrk_rc, log_text, path, status, connections):
    """(result dict, list of problems) for one run."""
    problems = []
    result = {"path": path, "expected_status": status, "connections": connections}
    try:
        w = parse_wrk(wrk_text)
    except ValueError as e:
        problems.append("wrk output not understood: %s (exit code %s)" % (e, wrk_rc))
        return result, problems
    result.update(w)
    if wrk_rc != 0:
        problems.append("wrk exited with %s" % wrk_rc)
    if w["requests"] == 0:
        problems.append("wrk completed no request")
    if status < 400 and w["non2xx"]:
        problems.append("wrk saw %d non-2xx/3xx responses" % w["non2xx"])
    elif status >= 400 and w["non2xx"] < w["requests"]:
        problems.append("wrk saw %d 2xx/3xx responses, expected only %d"
                        % (w["requests"] - w["non2xx"], status))
    errs = {k: v for k, v in w["socket_errors"].items() if v}
    if errs:
        problems.append("wrk socket errors: " + ", ".join("%s %d" % kv for kv in
                                                         sorted(errs.items())))

    lines = access_lines(log_text)
    want_path = path.split("?", 1)[0]
    statuses, conns, others = {}, set(), {}
    for obj in lines:
        p = str(obj.get("path", "")).split("?", 1)[0]
        if p != want_path:
            others[p] = others.get(p, 0) + 1
            continue
        st = obj.get("status")
        statuses[str(st)] = statuses.get(str(st), 0) + 1
        conns.add((obj.get("remote_addr"), obj.get("remote_port")))
    logged = sum(statuses.values())
    result.update(logged=logged, statuses=statuses, served_connections=len(conns))
    if not lines:
        problems.append("the access log has no msg=\"request\" line for this run "
                        "(GATEHOUSE_LOG_FORMAT=json? stdout flushed per line?)")
    else:
        bad = {k: v for k, v in statuses.items() if k != str(status)}
        if bad:
            problems.append("server logged statuses other than %s: %s" % (status, ", ".join(
                "%s x%d" % kv for kv in sorted(bad.items()))))
        if others:
            problems.append("server logged requests for other paths during the run: %s"
                            % ", ".join("%s x%d" % kv for kv in sorted(others.items())))
        if len(conns) < connections:
            problems.append("server served only %d distinct connections, wrk opened %d: "
                            "the rest starved (GATEHOUSE_HTTP_THREADS too small?); wrk's "
                            "numbers cover served connections only"
                            % (len(conns), connections))
        if logged < w["requests"]:
            problems.append("server logged %d requests but wrk completed %d (is each "
                            "access log line flushed when written?)"
                            % (logged, w["requests"]))
    return result, problems


def listen_overflows():
    """Machine-wide TcpExt ListenOverflows (accept queue full), or None."""
    try:
        with open("/proc/net/netstat") as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    for names, values in zip(rows[::2], rows[1::2]):
        if names and names[0] == "TcpExt:" and "ListenOverflows" in names:
            return int(values[names.index("ListenOverflows")])
    return None


# -- table -----------------------------------------------------------------------

def fmt_ms(v):
    if v is None:
        return "-"
    return "%.3f ms" % v if v < 10 else "%.1f ms" % v


def ratio(a, b):
    return "%.2f" % (a / b) if a is not None and b else "-"


def table(results):
    rows = [("route", "req/s", "p50", "p99", "non-2xx", "conns served", "listen ovf", "ok")]
    for r in results:
        pc = r.get("percentiles_ms", {})
        rows.append((r["label"], "%.0f" % r["rps"] if "rps" in r else "-",
                     fmt_ms(pc.get("50")), fmt_ms(pc.get("99")),
                     str(r.get("non2xx", "-")),
                     "%s/%s" % (r.get("served_connections", "-"), r["connections"]),
                     str(r.get("listen_overflows", "-")),
                     "ok" if r["ok"] else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                               for i, c in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    base = next((r for r in results if r["path"] == LIVENESS and "rps" in r), None)
    others = [r for r in results if r is not base and "rps" in r]
    if base and others:
        lines.append("")
        lines.append("relative to %s (throughput: route/liveness, lower = more work per "
                     "request; latency: route/liveness, higher = slower)" % LIVENESS)
        for r in others:
            lines.append("  %s: throughput x%s, p50 x%s, p99 x%s" % (
                r["label"], ratio(r["rps"], base["rps"]),
                ratio(r["percentiles_ms"]["50"], base["percentiles_ms"]["50"]),
                ratio(r["percentiles_ms"]["99"], base["percentiles_ms"]["99"])))
    return "\n".join(lines)


# -- commands --------------------------------------------------------------------

def cmd_check(a):
    with open(a.wrk, encoding="utf-8", errors="replace") as f:
        wrk_text = f.read()
    log_text = read_settled(a.log, a.offset)
    result, problems = judge(wrk_text, a.wrk_rc, log_text, a.path, a.status, a.connections)
    after = listen_overflows()
    if a.overflows_before is not None and after is not None:
        result["listen_overflows"] = after - a.overflows_before
    result.update(label=a.label, ok=not problems, problems=problems)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    for p in problems:
        print("FAIL %s: %s" % (a.label, p))
    if not problems:
        print("ok   %s: %.0f req/s, p50 %s, p99 %s, %d/%d connections served"
              % (a.label, result["rps"], fmt_ms(result["percentiles_ms"]["50"]),
                 fmt_ms(result["percentiles_ms"]["99"]), result["served_connections"],
                 a.connections))
    return 1 if problems else 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parse")
    p.add_argument("wrk")
    sub.add_parser("overflows")
    c = sub.add_parser("check")
    c.add_argument("--label", required=True)
    c.add_argument("--wrk", required=True)
    c.add_argument("--wrk-rc", type=int, default=0)
    c.add_argument("--log", required=True)
    c.add_argument("--offset", type=int, default=0)
    c.add_argument("--path", required=True)
    c.add_argument("--status", type=int, default=200)
    c.add_argument("--connections", type=int, required=True)
    c.add_argument("--overflows-before", type=int)
    c.add_argument("--out")
    t = sub.add_parser("table")
    t.add_argument("results", nargs="+")
    a = ap.parse_args(argv[1:])
    if a.cmd == "parse":
        with open(a.wrk, encoding="utf-8", errors="replace") as f:
            try:
                print(json.dumps(parse_wrk(f.read()), indent=1))
            except ValueError as e:
                print("wrk output not understood: %s" % e, file=sys.stderr)
                return 1
        return 0
    if a.cmd == "overflows":
        v = listen_overflows()
        print("" if v is None else v)
        return 0
    if a.cmd == "check":
        return cmd_check(a)
    results = []
    for path in a.results:
        with open(path) as f:
            results.append(json.load(f))
    print(table(results))
    return 0 if all(r["ok"] for r in results) else 1


# -- self test -------------------------------------------------------------------
# WRK_OK and WRK_404 were recorded with wrk 4.1.0 (Debian) against
# `python3 -m http.server`, WRK_TIMEOUT against a handler that sleeps 1.5 s with
# --timeout 1s, WRK_REFUSED after the server was killed. WRK_FAST is WRK_OK with
# the units wrk prints for a fast server (us, k) and slow tails (s).

WRK_OK = """Running 2s test @ http://127.0.0.1:59141/
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.23ms    1.75ms  15.93ms   88.45%
    Req/Sec     0.98k   162.24     1.45k    80.00%
  Latency Distribution
     50%    1.81ms
     75%    2.52ms
     90%    4.13ms
     99%    9.49ms
  3916 requests in 2.00s, 715.13KB read
Requests/sec:   1955.61
Transfer/sec:    357.13KB
"""

WRK_404 = """Running 2s test @ http://127.0.0.1:59141/nope
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.23ms    2.24ms  15.85ms   84.42%
    Req/Sec     1.14k   232.89     2.43k    97.56%
  Latency Distribution
     50%    1.12ms
     75%    3.05ms
     90%    5.40ms
     99%    9.79ms
  4628 requests in 2.10s, 2.30MB read
  Non-2xx or 3xx responses: 4628
Requests/sec:   2205.32
Transfer/sec:      1.09MB
"""

WRK_TIMEOUT = """Running 3s test @ http://127.0.0.1:50531/slow
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     1.00      0.00     1.00    100.00%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  4 requests in 3.01s, 0.88KB read
  Socket errors: connect 0, read 0, write 0, timeout 4
Requests/sec:      1.33
Transfer/sec:     298.01B
"""

WRK_REFUSED = """Running 1s test @ http://127.0.0.1:59141/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 1.01s, 0.00B read
  Socket errors: connect 0, read 0, write 547, timeout 0
Requests/sec:      0.00
Transfer/sec:       0.00B
"""

WRK_FAST = """Running 1s test @ http://127.0.0.1:18090/-/liveness
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.00us    1.20ms   1.02s    97.10%
    Req/Sec    14.50k     1.10k   16.80k    71.00%
  Latency Distribution
     50%  450.00us
     75%  600.00us
     90%  800.00us
     99%    1.50s
  2880 requests in 1.00s, 301.00KB read
Requests/sec:   2880.00
Transfer/sec:      3.01MB
"""

WRK_USAGE = """Usage: wrk <options> <url>
  Options:
    -c, --connections <N>  Connections to keep open
"""


def log_for(n, conns, status=200, path="/-/liveness", extra=""):
    lines = ['{"ts":"t","level":"info","msg":"listening","addr":"127.0.0.1:1"}',
             "plain text line from a library"]
    for i in range(n):
        lines.append(json.dumps({"ts": "t", "level": "info", "msg": "request",
                                 "correlation_id": "c%d" % i, "method": "GET",
                                 "route": path, "path": path, "status": status,
                                 "duration_ms": 0.2, "remote_addr": "127.0.0.1",
                                 "remote_port": 40000 + i % conns}))
    return "\n".join(lines) + "\n" + extra


def self_test():
    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)

    w = parse_wrk(WRK_OK)
    expect(w["requests"] == 3916 and w["connections"] == 4 and w["threads"] == 2,
           "WRK_OK counts: %s" % w)
    expect(abs(w["rps"] - 1955.61) < 1e-9, "WRK_OK rps")
    expect(abs(w["percentiles_ms"]["50"] - 1.81) < 1e-9
           and abs(w["percentiles_ms"]["99"] - 9.49) < 1e-9, "WRK_OK percentiles")
    expect(w["non2xx"] == 0 and not any(w["socket_errors"].values()), "WRK_OK errors")
    w = parse_wrk(WRK_FAST)
    expect(abs(w["percentiles_ms"]["50"] - 0.45) < 1e-9, "us unit: %s" % w["percentiles_ms"])
    expect(abs(w["percentiles_ms"]["99"] - 1500.0) < 1e-9, "s unit")
    expect(abs(w["max_ms"] - 1020.0) < 1e-9 and abs(w["avg_ms"] - 0.612) < 1e-9,
           "Latency line units")
    expect(parse_wrk(WRK_404)["non2xx"] == 4628, "non-2xx count")
    expect(parse_wrk(WRK_TIMEOUT)["socket_errors"]["timeout"] == 4, "timeouts")
    for label, text in (("usage", WRK_USAGE), ("empty", ""),
                        ("no --latency", re.sub(r"(?s)  Latency Distribution.*?99%[^\n]*\n",
                                                "", WRK_OK))):
        try:
            parse_wrk(text)
            failures.append("%s: parsed, should have been rejected" % label)
        except ValueError:
            pass

    def problems(wrk=WRK_FAST, rc=0, log=None, path="/-/liveness", status=200, conns=16):
        log = log_for(2880, 16) if log is None else log
        return judge(wrk, rc, log, path, status, conns)[1]

    expect(problems() == [], "good run rejected: %s" % problems())
    cases = [
        ("starved connections", "only 8 distinct connections",
         dict(log=log_for(2880, 8))),
        ("other status logged", "statuses other than 200: 401 x",
         dict(log=log_for(2880, 16, status=401))),
        ("other path logged", "requests for other paths",
         dict(log=log_for(2880, 16) + log_for(3, 1, path="/metrics"))),
        ("no access log", "no msg=\"request\" line", dict(log="")),
        ("fewer logged than completed", "server logged 1000 requests but wrk completed",
         dict(log=log_for(1000, 16))),
        ("wrk non-2xx", "non-2xx/3xx", dict(wrk=WRK_404, path="/nope", conns=4,
                                             log=log_for(4628, 4, path="/nope"))),
        ("expected 404 and wrk saw only errors", None,
         dict(wrk=WRK_404, path="/nope", conns=4, status=404,
              log=log_for(4628, 4, path="/nope", status=404))),
        ("expected 404 but wrk saw successes", "2xx/3xx responses, expected only 404",
         dict(wrk=WRK_OK, path="/nope", conns=4, status=404,
              log=log_for(3916, 4, path="/nope", status=404))),
        ("wrk timeouts", "socket errors: timeout 4",
         dict(wrk=WRK_TIMEOUT, conns=4, log=log_for(4, 4))),
        ("wrk refused", "completed no request", dict(wrk=WRK_REFUSED, conns=2)),
        ("wrk did not run", "wrk output not understood", dict(wrk=WRK_USAGE, rc=1)),
        ("wrk exit code", "wrk exited with 1", dict(rc=1)),
    ]
    for label, want, kw in cases:
        got = problems(**kw)
        if want is None:
            expect(got == [], "%s: %s" % (label, got))
        else:
            expect(any(want in p for p in got), "%s: want %r, got %s" % (label, want, got))

    # Unfinished last line and settled reading from an offset.
    with tempfile.NamedTemporaryFile("w+", delete=False) as f:
        f.write("old line\n" + log_for(2, 2) + '{"msg":"request","status":2')
        name = f.name
    try:
        got = access_lines(read_settled(name, len("old line\n"), settle_s=0.01))
        expect(len(got) == 2, "settled read: %d lines" % len(got))
    finally:
        os.unlink(name)

    r_live = dict(judge(WRK_FAST, 0, log_for(2880, 16), "/-/liveness", 200, 16)[0],
                  label="GET /-/liveness", ok=True)
    r_check = dict(parse_wrk(WRK_OK), path="/api/v4/internal/check", connections=4,
                   label="GET /api/v4/internal/check", ok=True, served_connections=4)
    out = table([r_check, r_live])
    expect("throughput x0.68" in out and "p50 x4.02" in out, "ratios:\n" + out)
    expect(listen_overflows() is None or listen_overflows() >= 0, "ListenOverflows")

    for f in failures:
        print("wrk_report self-test FAILED: " + f)
    if failures:
        return 1
    print("wrk_report self-test OK: %d parser and %d run checks" % (9, len(cases) + 2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
