#!/usr/bin/env python3
"""Writes a large seed and the request bodies that rotate over it.

  bench/scale_seed.py --users 500000 --keys 1000000 --projects 100000 \\
      --memberships 1000000 --out DIR

DIR gets:
  seed.json             the seed document (shared/seed-format.md), streamed
                        to disk, never held in memory
  allowed-pull.jsonl    /allowed bodies, one per line: a key of a member
                        pulls that member's project (200)
  allowed-push.jsonl    /allowed bodies: a maintainer creates the protected
                        branch `main` with a real change line (200)
  allowed-deny.jsonl    /allowed bodies: a key of a user who is no member of
                        that private project pulls it (404)
  authorized-keys.txt   /authorized_keys query strings (?key=<blob>), one per
                        line (200)
  post-receive.jsonl    /post_receive bodies: a member's one-branch push of a
                        real change line (200, one push event each)
  pairs.txt             the figures: rows of each kind, (key, project) pairs

Every body file holds --pairs lines (default 10,000), each a different
(key, project) pair, so no cache of one answer makes a figure.

The layout is deterministic (no randomness): user u (1..U) owns keys
u, u+U, u+2U, ... (keys/users per user); project p (1..P) lives in
namespace 1 + (p-1) // 10 and is private; membership m (0..M-1) makes
user 1 + m % U a member of project 1 + (m * 7919 + m // U) % P, a maintainer (40)
for every fourth, else a developer (30). Keys are well-formed ed25519
public keys whose 32 key bytes are a SHA-256 of the key id (no private key
exists for them). Each project protects `main` (push: maintainers).
"""

import argparse
import base64
import hashlib
import json
import os
import struct
import sys

ZERO = "0" * 40
CHANGE_SHA = "1" * 40  # any new revision: creation needs no git objects


def ssh_ed25519(key_id):
    raw = hashlib.sha256(b"gatehouse-scale-key-%d" % key_id).digest()

    def field(b):
        return struct.pack(">I", len(b)) + b

    blob = field(b"ssh-ed25519") + field(raw)
    return base64.b64encode(blob).decode()


def member_of(m, users, projects):
    """The (user, project, access level) of membership m."""
    # m and m + users share a user; the m // users term moves them to
    # another project, so every membership is a different pair.
    return (1 + m % users, 1 + (m * 7919 + m // users) % projects,
            40 if m % 4 == 0 else 30)


class JsonArrayWriter:
    """Writes `"name": [ ... ]` one element at a time."""

    def __init__(self, out, name, first):
        self.out = out
        self.first = True
        out.write(("" if first else ",\n") + json.dumps(name) + ": [\n")

    def add(self, obj):
        self.out.write(("" if self.first else ",\n") + json.dumps(obj, separators=(",", ":")))
        self.first = False

    def close(self):
        self.out.write("\n]")


def write_seed(path, a):
    with open(path, "w", buffering=1 << 20) as out:
        out.write("{\n")
        out.write('"settings": {"external_url": "http://127.0.0.1:8080", '
                  '"ssh_clone_url_root": "git@127.0.0.1:", '
                  '"gitlab_version": "18.6.0"},\n')
        # No local path: push events carry no commit list (no git work), as
        # the post_receive figure asks.
        out.write('"storages": [{"name": "default", "gitaly_address": '
                  '"unix:/var/opt/gitlab/gitaly/gitaly.socket", "gitaly_token": ""}]')
        w = JsonArrayWriter(out, "users", False)
        for u in range(1, a.users + 1):
            w.add({"id": u, "username": "user%d" % u, "name": "User %d" % u,
                   "email": "user%d@example.com" % u, "public_email": "",
                   "state": "active", "admin": False, "external": False,
                   "can_create_project": True, "two_factor_enabled": False})
        w.close()
        w = JsonArrayWriter(out, "keys", False)
        for k in range(1, a.keys + 1):
            u = 1 + (k - 1) % a.users
            w.add({"id": k, "user_id": u, "title": "key %d" % k,
                   "key": "ssh-ed25519 %s user%d@scale" % (ssh_ed25519(k), u),
                   "usage_type": "auth_and_signing", "expires_at": None})
        w.close()
        namespaces = (a.projects + 9) // 10
        w = JsonArrayWriter(out, "namespaces", False)
        for n in range(1, namespaces + 1):
            w.add({"id": n, "path": "group%d" % n, "name": "Group %d" % n,
                   "kind": "group", "parent_id": None})
        w.close()
        w = JsonArrayWriter(out, "projects", False)
        for p in range(1, a.projects + 1):
            w.add({"id": p, "namespace_id": 1 + (p - 1) // 10,
                   "path": "project%d" % p, "name": "Project %d" % p,
                   "description": "", "visibility": "private",
                   "archived": False, "default_branch": "main",
                   "storage": "default",
                   "disk_path": "@hashed/%s" % hashlib.sha256(str(p).encode()).hexdigest(),
                   "repository_access_level": "enabled",
                   "merge_requests_enabled": True, "lfs_enabled": True,
                   "repository_exists": True})
        w.close()
        w = JsonArrayWriter(out, "members", False)
        seen = set()
        for m in range(a.memberships):
            u, p, level = member_of(m, a.users, a.projects)
            if (u, p) in seen:
                continue
            seen.add((u, p))
            w.add({"user_id": u, "project_id": p, "access_level": level})
        w.close()
        w = JsonArrayWriter(out, "protected_branches", False)
        for p in range(1, a.projects + 1):
            w.add({"id": p, "project_id": p, "name": "main",
                   "push_access_level": 40, "merge_access_level": 40,
                   "allow_force_push": False})
        w.close()
        out.write("\n}\n")
    return seen


def project_path(p):
    return "group%d/project%d" % (1 + (p - 1) // 10, p)


def write_bodies(d, a, members):
    n = min(a.pairs, a.memberships)
    # Spread the chosen memberships over the whole list.
    step = max(1, a.memberships // n)
    chosen = [member_of(i * step, a.users, a.projects) for i in range(n)]
    keys_per_user = max(1, a.keys // a.users)

    def key_of(u, i):
        # One of u's keys, varied with i so pairs differ in key too.
        return u + (i % keys_per_user) * a.users

    with open(os.path.join(d, "allowed-pull.jsonl"), "w") as f:
        for i, (u, p, _) in enumerate(chosen):
            f.write(json.dumps({"action": "git-upload-pack", "project": project_path(p) + ".git",
                                "changes": "_any", "protocol": "ssh",
                                "key_id": str(key_of(u, i)), "check_ip": "127.0.0.1"}) + "\n")
    maintainers = [c for c in chosen if c[2] == 40]
    with open(os.path.join(d, "allowed-push.jsonl"), "w") as f:
        for i in range(n):
            u, p, _ = maintainers[i % len(maintainers)]
            f.write(json.dumps({"action": "git-receive-pack", "project": project_path(p) + ".git",
                                "changes": "%s %s refs/heads/main" % (ZERO, CHANGE_SHA),
                                "protocol": "ssh", "key_id": str(key_of(u, i)),
                                "check_ip": "127.0.0.1"}) + "\n")
    with open(os.path.join(d, "allowed-deny.jsonl"), "w") as f:
        for i, (u, p, _) in enumerate(chosen):
            # The next project u is no member of.
            q = 1 + p % a.projects
            while (u, q) in members:
                q = 1 + q % a.projects
            f.write(json.dumps({"action": "git-upload-pack", "project": project_path(q) + ".git",
                                "changes": "_any", "protocol": "ssh",
                                "key_id": str(key_of(u, i)), "check_ip": "127.0.0.1"}) + "\n")
    with open(os.path.join(d, "authorized-keys.txt"), "w") as f:
        for i, (u, _, _) in enumerate(chosen):
            f.write("?key=%s\n" % ssh_ed25519(key_of(u, i)).replace("+", "%2B")
                    .replace("/", "%2F").replace("=", "%3D"))
    with open(os.path.join(d, "post-receive.jsonl"), "w") as f:
        for i, (u, p, _) in enumerate(chosen):
            f.write(json.dumps({"gl_repository": "project-%d" % p,
                                "identifier": "key-%d" % key_of(u, i),
                                "changes": "%s %s refs/heads/topic%d" % (ZERO, CHANGE_SHA, i),
                                "push_options": []}) + "\n")
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--users", type=int, default=500_000)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--projects", type=int, default=100_000)
    ap.add_argument("--memberships", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    for name in ("users", "keys", "projects", "memberships", "pairs"):
        if getattr(a, name) < 1:
            sys.exit("--%s must be at least 1" % name)
    os.makedirs(a.out, exist_ok=True)
    members = write_seed(os.path.join(a.out, "seed.json"), a)
    n = write_bodies(a.out, a, members)
    with open(os.path.join(a.out, "pairs.txt"), "w") as f:
        f.write("users %d keys %d projects %d memberships %d pairs %d\n"
                % (a.users, a.keys, a.projects, a.memberships, n))
    size = os.path.getsize(os.path.join(a.out, "seed.json"))
    print("seed.json: %.1f MB; %d (key, project) pairs per body file" % (size / 1e6, n))


if __name__ == "__main__":
    main()
