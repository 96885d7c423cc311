#!/usr/bin/env python3
"""How long a revoked agent token takes to be refused on every replica.

  agent_revocation.py seed --agents N --keys K --out DIR
      writes DIR/seed.json: N cluster agents, each on its own private
      project with one token, plus the bulk around them (users, K SSH keys
      made as bench/scale_seed.py makes them, namespaces, memberships), and
      DIR/bulk.part, the same document up to (not including) its
      `cluster_agents`, which `run` completes into each trial's variant.

  agent_revocation.py run --bin GATEHOUSE --data DIR --agents N
      [--trials R] [--mode remove|revoke] [--document full|agents]
      [--limit S] [--timeout S] BASE...
      R times: picks an agent, confirms every replica (BASE: its URL)
      answers agent_info 200 with its token, then runs
      `gatehouse seed --prune` of the document without that token (remove)
      or with it marked `"revoked": true` (revoke) -- the whole document
      (full) or only its cluster_agents (agents) -- polling each replica
      every 5 ms from just before the seed command starts until each
      answers 401; checks that another agent's token still answers 200;
      then seeds the full document again and times the same until each
      answers 200. Prints one line per trial and summary lines, the last
      `revocation max=<s> p50=<s> limit=<S> PASS|FAIL`. Exit status 1 on
      FAIL (a revocation slower than --limit, or any answer other than 200
      and 401, or a check that did not hold), 2 on bad usage.

The KAS JWT comes from `gatehouse jwt kas` (the GATEHOUSE_KAS_SECRET_FILE of
the environment), minted anew every 10 s while polling (it lives 30 s); a
401 that refuses the JWT rather than the agent token is not counted as a
refusal of the token.
"""

import argparse
import hashlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale_seed import ssh_ed25519  # noqa: E402  (keys made the same way)

AGENT_INFO = "/api/v4/internal/agents/agentk/agent_info"


def token_of(agent):
    return "glagent-" + hashlib.sha256(b"gatehouse-bench-agent-%d" % agent).hexdigest()[:48]


# -- the seed ------------------------------------------------------------------

def sizes(agents, keys):
    users = max(10, keys // 2)
    projects = agents
    namespaces = max(1, (projects + 9) // 10)
    return users, projects, namespaces


def write_bulk(path, agents, keys):
    """Everything but cluster_agents, as a document left open after its last
    array (no trailing comma, no closing brace)."""
    users, projects, namespaces = sizes(agents, keys)
    dump = lambda o: json.dumps(o, separators=(",", ":"))  # noqa: E731
    with open(path, "w", buffering=1 << 20) as out:
        out.write('{\n"settings": {"external_url": "http://127.0.0.1:8080", '
                  '"gitlab_version": "18.6.0", "gitlab_shell_operation_limit": 0},\n')
        out.write('"storages": [{"name": "default", "gitaly_address": '
                  '"unix:/var/opt/gitlab/gitaly/gitaly.socket", "gitaly_token": ""}],\n')

        def array(name, items):
            out.write('"%s": [\n' % name)
            first = True
            for item in items:
                out.write(("" if first else ",\n") + dump(item))
                first = False
            out.write("\n]")

        array("users", ({"id": u, "username": "user%d" % u, "name": "User %d" % u,
                         "email": "user%d@example.com" % u, "state": "active"}
                        for u in range(1, users + 1)))
        out.write(",\n")
        array("keys", ({"id": k, "user_id": 1 + (k - 1) % users, "title": "key %d" % k,
                        "key": "ssh-ed25519 %s user%d@bench" % (ssh_ed25519(k),
                                                                1 + (k - 1) % users),
                        "usage_type": "auth_and_signing", "expires_at": None}
                       for k in range(1, keys + 1)))
        out.write(",\n")
        array("namespaces", ({"id": n, "path": "group%d" % n, "name": "Group %d" % n,
                              "kind": "group", "parent_id": None}
                             for n in range(1, namespaces + 1)))
        out.write(",\n")
        array("projects", ({"id": p, "namespace_id": 1 + (p - 1) // 10,
                            "path": "cluster%d" % p, "name": "Cluster %d" % p,
                            "visibility": "private", "default_branch": "main",
                            "disk_path": "@hashed/%s" % hashlib.sha256(str(p).encode()).hexdigest()}
                           for p in range(1, projects + 1)))
        out.write(",\n")
        array("members", ({"user_id": 1 + (p - 1) % users, "project_id": p, "access_level": 40}
                          for p in range(1, projects + 1)))


def write_document(bulk, path, agents, revoked=None, mode="remove"):
    """bulk + cluster_agents (only cluster_agents when bulk is None): agent
    a on project a with token a; agent `revoked` without its token (remove)
    or with it revoked (revoke)."""
    with open(path, "w", buffering=1 << 20) as out:
        if bulk is None:
            out.write('{\n"cluster_agents": [\n')
        else:
            with open(bulk) as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
            out.write(',\n"cluster_agents": [\n')
        for a in range(1, agents + 1):
            tokens = [{"id": a, "token": token_of(a)}]
            if a == revoked:
                if mode == "remove":
                    tokens = []
                else:
                    tokens[0]["revoked"] = True
            out.write(("" if a == 1 else ",\n") + json.dumps(
                {"id": a, "project_id": a, "name": "agent%d" % a, "tokens": tokens},
                separators=(",", ":")))
        out.write("\n]\n}\n")


def cmd_seed(a):
    os.makedirs(a.out, exist_ok=True)
    bulk = os.path.join(a.out, "bulk.part")
    write_bulk(bulk, a.agents, a.keys)
    write_document(bulk, os.path.join(a.out, "seed.json"), a.agents)
    users, projects, namespaces = sizes(a.agents, a.keys)
    size = os.path.getsize(os.path.join(a.out, "seed.json"))
    print("seed.json: %.1f MB; %d agents and tokens, %d users, %d keys, %d projects, "
          "%d namespaces" % (size / 1e6, a.agents, users, a.keys, projects, namespaces))


# -- the trials ------------------------------------------------------------------

class Replica:
    """One keep-alive connection to a replica, reopened after an error."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.base, self.host, self.port = base, u.hostname, u.port
        self.conn = None

    def agent_info(self, jwt, token, body=None):
        """The status of agent_info with `token`, or an error text; the
        parsed body goes into `body` (a dict) when one is given."""
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                self.conn.request("GET", AGENT_INFO, headers={
                    "Gitlab-Kas-Api-Request": jwt, "Gitlab-Agentk-Api-Request": token})
                r = self.conn.getresponse()
                text = r.read()
                if r.status == 401 and b"KAS JWT" in text:
                    # Our JWT was refused, not the agent token: no answer
                    # about the token at all.
                    return "401 KAS JWT refused"
                if body is not None:
                    try:
                        body.update(json.loads(text))
                    except (ValueError, TypeError):
                        body["unparsed"] = text[:200]
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status
            except (OSError, http.client.HTTPException) as e:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                # A kept-alive connection the server closed: retry once.
                if attempt == 2:
                    return "error: %s" % e
        return "error"


def kas_jwt(binary):
    return subprocess.run([binary, "jwt", "kas"], check=True, capture_output=True,
                          text=True).stdout.strip()


class JwtSource:
    """A KAS JWT (which lives 30 s) minted anew every 10 s on a thread of
    its own, so that polls past a slow seed command still carry a valid one."""

    def __init__(self, binary):
        self.binary, self.jwt = binary, kas_jwt(binary)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(10):
            try:
                self.jwt = kas_jwt(self.binary)
            except (OSError, subprocess.CalledProcessError):
                pass  # the one in hand lives 20 s more; polls show a refusal

    def close(self):
        self.stop.set()
        self.thread.join()


def timed_seed(binary, document, replicas, token, want, timeout):
    """Runs `gatehouse seed --prune document` and polls every replica every
    5 ms from just before it starts until each answers `want`, giving up
    `timeout` seconds after the seed command ended (however long it took).
    Returns (seed seconds, {base: seconds}, {base: [odd answers]})."""
    jwts = JwtSource(binary)
    took, odd = {}, {r.base: [] for r in replicas}
    ended = []  # the seed command's end, once it ended
    start = time.monotonic()
    proc = subprocess.Popen([binary, "seed", "--prune", document],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def poll(r):
        while not ended or time.monotonic() - ended[0] < timeout:
            status = r.agent_info(jwts.jwt, token)
            if status == want:
                took[r.base] = time.monotonic() - start
                return
            if status not in (200, 401):
                odd[r.base].append(status)
            time.sleep(0.005)

    threads = [threading.Thread(target=poll, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    out, _ = proc.communicate()
    ended.append(time.monotonic())
    seed_s = ended[0] - start
    for t in threads:
        t.join()
    jwts.close()
    if proc.returncode != 0:
        raise SystemExit("gatehouse seed --prune %s failed (%d):\n%s"
                         % (document, proc.returncode, out))
    return seed_s, took, odd


def granted_to(replicas, binary, agent):
    """[status per replica], where a 200 whose body does not name `agent`
    on its project (agent_revocation.py seed: agent a on project a) counts
    as "wrong body"."""
    jwt = kas_jwt(binary)
    out = []
    for r in replicas:
        body = {}
        status = r.agent_info(jwt, token_of(agent), body)
        if status == 200 and (body.get("agent_id") != agent or body.get("project_id") != agent
                              or body.get("agent_name") != "agent%d" % agent):
            status = "wrong body %s" % json.dumps(body)[:200]
        out.append(status)
    return out


def fmt(s):
    return "%.3f" % s


def cmd_run(a):
    replicas = [Replica(b) for b in a.bases]
    bulk = os.path.join(a.data, "bulk.part")
    full = os.path.join(a.data, "seed.json")
    if a.document == "agents":
        # Only the agents: --prune leaves every other kind alone.
        bulk, full = None, os.path.join(a.data, "agents.json")
        write_document(None, full, a.agents)
    failed = []

    # The replicas loaded the model at start; wait (bounded) until the
    # first trial's token is granted everywhere.
    first = 1 + (a.agents // 2) % a.agents
    deadline = time.monotonic() + a.timeout
    while granted_to(replicas, a.bin, first) != [200] * len(replicas):
        if time.monotonic() > deadline:
            raise SystemExit("agent %d's token is not granted on every replica: %s"
                             % (first, granted_to(replicas, a.bin, first)))
        time.sleep(0.05)

    revoke_s, restore_s, seeds = [], [], []
    for i in range(a.trials):
        agent = 1 + (a.agents // 2 + i * 7919) % a.agents
        control = 1 + agent % a.agents
        token = token_of(agent)
        before = granted_to(replicas, a.bin, agent)
        if before != [200] * len(replicas):
            failed.append("trial %d: agent %d's token answered %s before the revocation"
                          % (i + 1, agent, before))
        variant = os.path.join(a.data, "revoked-%d.json" % agent)
        write_document(bulk, variant, a.agents, revoked=agent, mode=a.mode)

        seed1, took1, odd1 = timed_seed(a.bin, variant, replicas, token, 401, a.timeout)
        still = granted_to(replicas, a.bin, control)
        # The restore is timed from a token every replica refuses; when one
        # never did, its figure would mean nothing.
        timed = len(took1) == len(replicas)
        seed2, took2, odd2 = timed_seed(a.bin, full, replicas, token, 200,
                                        a.timeout if timed else 0)
        os.unlink(variant)

        def phase(name, seed_s, took, odd, want):
            parts = []
            for n, r in enumerate(replicas, 1):
                parts.append("r%d %s" % (n, fmt(took[r.base]) if r.base in took else "never"))
                if odd[r.base]:
                    kinds = sorted(set(str(x) for x in odd[r.base]))
                    parts[-1] += " (%d other answers: %s)" % (len(odd[r.base]), ", ".join(kinds))
                    failed.append("trial %d %s: replica %s answered %s while polling"
                                  % (i + 1, name, r.base, ", ".join(kinds)))
            if len(took) < len(replicas):
                failed.append("trial %d %s: not every replica answered %d within %s s "
                              "after the seed command ended" % (i + 1, name, want, a.timeout))
                worst = float("inf")
                tail = "inf"
            else:
                worst = max(took.values())
                tail = "%s s (%+.3f s after the seed command ended)" % (
                    fmt(worst), worst - seed_s)
            return worst, "%s: seed %s s, %s -> %s" % (
                name, fmt(seed_s), ", ".join(parts), tail)

        w1, text1 = phase("revoke", seed1, took1, odd1, 401)
        revoke_s.append(w1)
        if timed:
            w2, text2 = phase("restore", seed2, took2, odd2, 200)
            restore_s.append(w2)
        else:
            text2 = "restore: seed %s s, not timed (the revocation was not seen)" % fmt(seed2)
        seeds += [seed1, seed2]
        if still != [200] * len(replicas):
            failed.append("trial %d: agent %d's token (not revoked) answered %s after the "
                          "revocation" % (i + 1, control, still))
        print("trial %d agent %d (%s, %s document): %s; %s; control agent %d %s"
              % (i + 1, agent, a.mode, a.document, text1, text2, control,
                 "/".join(str(s) for s in still)), flush=True)

    def summary(values):
        if not values:
            return "max=- p50=-"
        return "max=%s p50=%s" % (fmt(max(values)), fmt(statistics.median(values)))

    for f in failed:
        print("problem: " + f)
    print("seed command (revoke and restore) " + summary(seeds))
    print("reacceptance " + summary(restore_s))
    ok = not failed and max(revoke_s) <= a.limit
    print("revocation %s limit=%s %s" % (summary(revoke_s), a.limit, "PASS" if ok else "FAIL"))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--agents", type=int, default=1000)
    s.add_argument("--keys", type=int, default=1000)
    s.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("--bin", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--agents", type=int, default=1000)
    r.add_argument("--trials", type=int, default=5)
    r.add_argument("--mode", choices=("remove", "revoke"), default="remove")
    r.add_argument("--document", choices=("full", "agents"), default="full")
    r.add_argument("--limit", type=float, default=1.0)
    r.add_argument("--timeout", type=float, default=10.0)
    r.add_argument("bases", nargs="+")
    a = ap.parse_args()
    if a.cmd == "seed":
        if a.agents < 2 or a.keys < 0:
            ap.error("--agents must be at least 2 (one is revoked, one checked), --keys >= 0")
        return cmd_seed(a)
    if a.trials < 1 or a.agents < 2:
        ap.error("--trials must be at least 1 and --agents at least 2")
    return cmd_run(a)


if __name__ == "__main__":
    sys.exit(main())
