#!/usr/bin/env python3
"""How long one change takes to reach every replica's answers.

For each kind of change (a new key, a blocked user, a removed membership,
a renamed project) it commits the change with psql, then asks every
replica the question the change answers differently, every 5 ms, until
each gives the new answer; then it undoes the change the same way. Prints
one line per kind: `kind seconds`, the slowest replica over the change and
its undo, timed from before psql starts (so psql's own start counts).

Usage: change_latency.py --database-url URL --token JWT --data DIR BASE_URL...
DIR is bench/scale.sh's data directory (allowed-pull.jsonl). Exit status 1
when a replica did not answer as expected within --timeout seconds.
"""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def psql(url, sql):
    out = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                          url, "-c", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def ask(base, token, method, path, body=None):
    """(status, parsed JSON or None) of one request."""
    req = urllib.request.Request(base + path, method=method,
                                 data=body.encode() if body else None)
    req.add_header("Gitlab-Shell-Api-Request", token)
    if body:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, None


def reach(bases, token, request, expect, sql, url, timeout):
    """Seconds until every replica answers `expect` after `sql` commits."""
    start = time.monotonic()
    psql(url, sql)
    took = {}

    def poll(base):
        while time.monotonic() - start < timeout:
            if expect(*ask(base, token, *request)):
                took[base] = time.monotonic() - start
                return
            time.sleep(0.005)

    threads = [threading.Thread(target=poll, args=(b,)) for b in bases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(took) != len(bases):
        missing = [b for b in bases if b not in took]
        raise SystemExit(f"no expected answer from {missing} within {timeout} s")
    return max(took.values())


def allowed(project, key_id):
    body = json.dumps({"action": "git-upload-pack", "project": project,
                       "changes": "_any", "protocol": "ssh",
                       "key_id": str(key_id), "check_ip": "127.0.0.1"})
    return ("POST", "/api/v4/internal/allowed", body)


def granted(status, body):
    return status == 200 and body is not None and body.get("status") is True


def refused(status, body):
    return status != 200 and status < 500


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("bases", nargs="+")
    a = ap.parse_args()
    url, bases, token = a.database_url, a.bases, a.token

    # Pulls that the seed grants through a project membership, far apart.
    pulls = [json.loads(l) for l in open(os.path.join(a.data, "allowed-pull.jsonl"))]
    picks = []
    for body in pulls[len(pulls) // 2:]:
        project = body["project"][:-len(".git")]
        row = psql(url, "SELECT k.user_id, p.id FROM keys k, projects p, members m "
                        f"WHERE k.id = {int(body['key_id'])} AND lower(p.full_path) = "
                        f"lower('{project}') AND m.user_id = k.user_id AND "
                        "m.project_id = p.id")
        if row and all(p["user"] != row.split("|")[0] for p in picks):
            user, pid = row.split("|")
            picks.append({"project": project, "key": body["key_id"],
                          "user": user, "project_id": pid})
        if len(picks) == 4:
            break
    if len(picks) < 4:
        raise SystemExit("no four pulls granted through a project membership")
    for p in picks:
        if not granted(*ask(bases[0], token, *allowed(p["project"], p["key"]))):
            raise SystemExit(f"pull {p} is not granted before the changes")
    results = {}

    # A new key: authorized_keys finds it, then not after it is deleted.
    p = picks[0]
    blob = base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + os.urandom(32)).decode()
    fingerprint = "SHA256:" + base64.b64encode(
        hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")
    key_id = int(psql(url, "SELECT max(id) + 1 FROM keys"))
    query = ("GET", "/api/v4/internal/authorized_keys?key="
             + urllib.request.quote(blob, safe=""))
    results["key"] = max(
        reach(bases, token, query,
              lambda s, b: s == 200 and b is not None and b.get("id") == key_id,
              "INSERT INTO keys (id, kind, user_id, title, key, key_type, key_blob, "
              f"fingerprint_sha256) VALUES ({key_id}, 'personal', {p['user']}, "
              f"'bench', 'ssh-ed25519 {blob}', 'ssh-ed25519', '{blob}', '{fingerprint}')",
              url, a.timeout),
        reach(bases, token, query, lambda s, b: s == 404,
              f"DELETE FROM keys WHERE id = {key_id}", url, a.timeout))

    # A blocked user is refused, then granted again.
    p = picks[1]
    pull = allowed(p["project"], p["key"])
    results["user"] = max(
        reach(bases, token, pull, refused,
              f"UPDATE users SET state = 'blocked' WHERE id = {p['user']}", url, a.timeout),
        reach(bases, token, pull, granted,
              f"UPDATE users SET state = 'active' WHERE id = {p['user']}", url, a.timeout))

    # A removed membership hides the private project, then shows it again.
    p = picks[2]
    pull = allowed(p["project"], p["key"])
    level = psql(url, f"SELECT access_level FROM members WHERE user_id = {p['user']} "
                      f"AND project_id = {p['project_id']}")
    results["membership"] = max(
        reach(bases, token, pull, refused,
              f"DELETE FROM members WHERE user_id = {p['user']} AND project_id = "
              f"{p['project_id']}", url, a.timeout),
        reach(bases, token, pull, granted,
              f"INSERT INTO members (user_id, project_id, access_level) VALUES "
              f"({p['user']}, {p['project_id']}, {level})", url, a.timeout))

    # A renamed project answers at its new path, then at its old one again.
    p = picks[3]
    renamed = p["project"] + "-renamed"
    results["project"] = max(
        reach(bases, token, allowed(renamed, p["key"]), granted,
              f"UPDATE projects SET path = path || '-renamed', full_path = "
              f"full_path || '-renamed' WHERE id = {p['project_id']}", url, a.timeout),
        reach(bases, token, allowed(p["project"], p["key"]), granted,
              f"UPDATE projects SET path = left(path, -8), full_path = "
              f"left(full_path, -8) WHERE id = {p['project_id']}", url, a.timeout))

    for kind, seconds in results.items():
        print(f"{kind} {seconds:.3f}")


if __name__ == "__main__":
    sys.exit(main())
