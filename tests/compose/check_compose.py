#!/usr/bin/python3
"""Checks that compose.yaml, README.md and the C++ source agree.

    check_compose.py ROOT         check the tree at ROOT; exit 1 on drift
    check_compose.py --self-test  feed broken texts in memory; exit 1 if any
                                  breakage goes unnoticed

Needs PyYAML (Debian: python3-yaml), so run it with /usr/bin/python3.
"""

import copy
import os
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write("check_compose: PyYAML missing (apt-get install python3-yaml; "
                     "run with /usr/bin/python3)\n")
    sys.exit(2)

REQUIRED_SERVICES = ("gatehouse", "postgres", "nats")
# Where the server's configuration is read. GATEHOUSE_TEST_* may instead be
# read by tests/, and CMake options (option(GATEHOUSE_...)) are allowed too.
SOURCE_DIRS = ("app", "common", "edges", "storage", "actors", "messages")
SOURCE_EXTS = (".cpp", ".hpp", ".cc", ".h", ".hh", ".cxx", ".ipp")
# A whole name; "GATEHOUSE_TEST_*" or "GATEHOUSE_*_FILE" are patterns, not names.
VAR_RE = re.compile(r"(?<![A-Za-z0-9_])GATEHOUSE_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_*])")
TABLE_ROW_RE = re.compile(r"^\s*\|\s*`(GATEHOUSE_[A-Z0-9_]+)`\s*\|", re.M)
BULLET_RE = re.compile(r"^\s*[-*]\s+`([A-Za-z0-9][A-Za-z0-9_.-]*)`\s*:", re.M)
SECRETS_DIR = "/run/secrets/"
# Compose-time variables (${NAME} or ${NAME:-default} in compose.yaml) are
# read by Compose, not by Gatehouse: documented in the compose section.
INTERPOLATION_RE = re.compile(r"\$\{(GATEHOUSE_[A-Z0-9_]+)")
RESTART_POLICIES = ("always", "unless-stopped", "on-failure")
HEARTBEAT_VAR = "GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE"


# -- helpers -------------------------------------------------------------------

def env_of(service):
    """A service's environment as a dict (mapping or list form)."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): ("" if v is None else str(v)) for k, v in env.items()}
    out = {}
    for item in env:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def as_text(value):
    """entrypoint/command/test as one string (list or string form)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def image_problem(image):
    """None when `image` is pinned, else what is wrong with it."""
    ref = str(image)
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (means latest)"
    tag = last.rsplit(":", 1)[1]
    if tag == "" or tag == "latest":
        return "uses the tag 'latest'"
    if "$" in tag:
        return "takes its tag from a variable"
    return None


def secret_targets(service):
    """Maps in-container path -> secret name for a service's secrets."""
    out = {}
    for entry in service.get("secrets") or []:
        if isinstance(entry, str):
            out[SECRETS_DIR + entry] = entry
        elif isinstance(entry, dict) and "source" in entry:
            target = str(entry.get("target") or entry["source"])
            if not target.startswith("/"):
                target = SECRETS_DIR + target
            out[target] = str(entry["source"])
    return out


def readme_section(readme, title):
    """Text of the '## title' section up to the next '## ' heading, or None."""
    m = re.search(r"^##\s+" + re.escape(title) + r"\s*$", readme, re.M)
    if not m:
        return None
    rest = readme[m.end():]
    nxt = re.search(r"^##\s", rest, re.M)
    return rest[: nxt.start()] if nxt else rest


# -- the checks ----------------------------------------------------------------

def check(doc, compose_text, readme, known):
    """Returns a list of error strings (empty when everything agrees).

    known: dict with sets 'source' (string literals in the server source),
    'tests' (string literals in tests/) and 'options' (CMake option names).
    """
    errors = []
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        return ["compose.yaml: no 'services' mapping"]
    services = doc["services"]
    declared_secrets = doc.get("secrets") or {}
    declared_volumes = doc.get("volumes") or {}

    # Services and pinned images.
    for name in REQUIRED_SERVICES:
        if name not in services:
            errors.append("compose.yaml: service '%s' is missing" % name)
    for name, svc in services.items():
        svc = svc or {}
        if "image" in svc:
            problem = image_problem(svc["image"])
            if problem and not ("build" in svc and name == "gatehouse"):
                errors.append("compose.yaml: service '%s' image '%s' %s; pin a version"
                              % (name, svc["image"], problem))
        elif "build" not in svc:
            errors.append("compose.yaml: service '%s' has neither image nor build" % name)

    # Every GATEHOUSE_* variable in compose.yaml is in README's table.
    table = set(TABLE_ROW_RE.findall(readme))
    if not table:
        errors.append("README.md: no configuration table rows like "
                      "'| `GATEHOUSE_DATABASE_URL` | ... |'")
    interpolated = set(INTERPOLATION_RE.findall(compose_text))
    used = set(VAR_RE.findall(compose_text)) - interpolated
    for name, svc in services.items():
        used.update(k for k in env_of(svc or {}) if k.startswith("GATEHOUSE_"))
    for var in sorted(used - table):
        errors.append("compose.yaml uses %s but README.md's configuration table has no "
                      "row for it" % var)

    # Every GATEHOUSE_* name in README is something the code reads.
    for var in sorted(set(VAR_RE.findall(readme))):
        if var in known["source"] or var in known["options"] or var in interpolated:
            continue
        if var.startswith("GATEHOUSE_TEST_") and var in known["tests"]:
            continue
        errors.append("README.md mentions %s but no source file in %s has the string "
                      "literal \"%s\" (nor is it a CMake option)"
                      % (var, "/, ".join(SOURCE_DIRS) + "/", var))

    # Secret file variables point at mounted secrets.
    for name, svc in services.items():
        svc = svc or {}
        targets = secret_targets(svc)
        for src in targets.values():
            if src not in declared_secrets:
                errors.append("compose.yaml: service '%s' uses secret '%s', which the "
                              "top-level 'secrets:' does not declare" % (name, src))
        for key, value in sorted(env_of(svc).items()):
            if not key.endswith("_FILE") or key == HEARTBEAT_VAR:
                continue
            if not value.startswith(SECRETS_DIR):
                errors.append("compose.yaml: %s.%s=%s is not under %s"
                              % (name, key, value, SECRETS_DIR))
            elif value not in targets:
                errors.append("compose.yaml: %s.%s=%s but service '%s' mounts no secret "
                              "there (mounted: %s)" % (name, key, value, name,
                                                       ", ".join(sorted(targets)) or "none"))

    # Named volumes are declared.
    for name, svc in services.items():
        for vol in (svc or {}).get("volumes") or []:
            if isinstance(vol, dict):
                src = vol.get("source") if vol.get("type", "volume") == "volume" else None
            else:
                parts = str(vol).split(":")
                src = parts[0] if len(parts) > 1 else None
            if src and not src.startswith((".", "/", "~", "$")) \
                    and src not in declared_volumes:
                errors.append("compose.yaml: service '%s' uses volume '%s', which the "
                              "top-level 'volumes:' does not declare" % (name, src))

    # A start in any order, or a crash, must not leave a service down: a
    # dependency that was not ready yet only costs a restart.
    for name, svc in services.items():
        policy = str((svc or {}).get("restart", "no"))
        if policy.split(":")[0] not in RESTART_POLICIES:
            errors.append("compose.yaml: service '%s' has restart policy '%s'; use "
                          "'unless-stopped' so that it comes back after a failed start"
                          % (name, policy))

    # migrate must wait for PostgreSQL (podman-compose ignores depends_on's
    # conditions): a wait of 0 would fail at once while it still starts.
    for name, svc in services.items():
        wait = env_of(svc or {}).get("GATEHOUSE_DATABASE_WAIT_SECONDS")
        if wait is not None and wait.strip() == "0":
            errors.append("compose.yaml: %s.GATEHOUSE_DATABASE_WAIT_SECONDS=0 makes "
                          "migrate fail while PostgreSQL is still starting" % name)

    # The webhook consumer's health check must be able to fail: one that
    # looks for running processes is satisfied by the check's own processes.
    wh = services.get("webhooks")
    if wh is not None:
        wh = wh or {}
        beat = env_of(wh).get(HEARTBEAT_VAR, "")
        test = as_text((wh.get("healthcheck") or {}).get("test"))
        if not beat:
            errors.append("compose.yaml: webhooks sets no %s, so its health check has "
                          "no signal from the consumer" % HEARTBEAT_VAR)
        elif beat not in test or not re.search(r"-mmin\s+-\d+|-newermt", test):
            errors.append("compose.yaml: webhooks' health check must test the age of "
                          "its heartbeat file %s (e.g. find FILE -mmin -1); got %r"
                          % (beat, test))
        if "/proc" in test:
            errors.append("compose.yaml: webhooks' health check looks at /proc, which "
                          "the check's own processes satisfy")

    # Health checks everywhere.
    for name in REQUIRED_SERVICES:
        svc = services.get(name) or {}
        hc = svc.get("healthcheck") or {}
        test = hc.get("test")
        if name in services and (not test or hc.get("disable") or as_text(test) == "NONE"):
            errors.append("compose.yaml: service '%s' has no healthcheck" % name)

    gh = services.get("gatehouse") or {}
    if "gatehouse" in services:
        # Started only when its dependencies are healthy.
        deps = gh.get("depends_on") or {}
        for dep in ("postgres", "nats"):
            cond = deps.get(dep, {}).get("condition") if isinstance(deps, dict) else None
            if cond != "service_healthy":
                errors.append("compose.yaml: gatehouse must depend on %s with "
                              "'condition: service_healthy'" % dep)

        # migrate, then serve, and a failed migrate stops the start.
        run = as_text(gh.get("entrypoint")) + " " + as_text(gh.get("command"))
        mig = re.search(r"\bmigrate\b", run)
        srv = re.search(r"\bserve\b", run)
        if not mig or not srv:
            errors.append("compose.yaml: gatehouse's entrypoint/command must run "
                          "'gatehouse migrate' and then 'gatehouse serve' (found: %r)"
                          % run.strip())
        elif mig.start() > srv.start():
            errors.append("compose.yaml: gatehouse runs 'serve' before 'migrate'")
        else:
            between = run[mig.end():srv.start()]
            if "&&" not in between and not re.search(r"(^|\s)(-[a-z]*e[a-z]*|set -e)\b",
                                                     run[:mig.start()]):
                errors.append("compose.yaml: gatehouse would serve even when migrate "
                              "fails; use 'sh -ec' or '&&'")

        # In a container the default 127.0.0.1 listener is unreachable.
        listen = env_of(gh).get("GATEHOUSE_HTTP_LISTEN", "")
        if not listen or listen.startswith(("127.", "localhost", "[::1]")):
            errors.append("compose.yaml: gatehouse needs GATEHOUSE_HTTP_LISTEN=0.0.0.0:PORT "
                          "(got %r); loopback is unreachable from outside the container"
                          % listen)

    # README's service list matches compose.yaml both ways.
    section = readme_section(readme, "Docker Compose")
    if section is None:
        errors.append("README.md: no '## Docker Compose' section")
    else:
        listed = set(BULLET_RE.findall(section))
        if not listed:
            errors.append("README.md: '## Docker Compose' lists no services as "
                          "'- `name`: what it does'")
        for name in sorted(set(services) - listed):
            errors.append("README.md: '## Docker Compose' does not list compose service "
                          "'%s'" % name)
        for name in sorted(listed - set(services)):
            errors.append("README.md: '## Docker Compose' lists '%s', which compose.yaml "
                          "does not define" % name)
        for var in sorted(interpolated):
            if var not in section:
                errors.append("README.md: '## Docker Compose' does not explain %s, which "
                              "compose.yaml reads" % var)
    return errors


# -- reading the tree ----------------------------------------------------------

LITERAL_RE = re.compile(r'"(GATEHOUSE_[A-Z0-9_]+)"')
OPTION_RE = re.compile(r"\boption\s*\(\s*(GATEHOUSE_[A-Z0-9_]+)")


def literals_under(root, dirs, skip=()):
    found = set()
    for d in dirs:
        base = os.path.join(root, d)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [n for n in dirnames
                           if os.path.join(dirpath, n) not in skip]
            for fn in filenames:
                if fn.endswith(SOURCE_EXTS):
                    with open(os.path.join(dirpath, fn), encoding="utf-8",
                              errors="replace") as f:
                        found.update(LITERAL_RE.findall(f.read()))
    return found


def cmake_options(root):
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [n for n in dirnames if not n.startswith((".", "build"))]
        for fn in filenames:
            if fn == "CMakeLists.txt" or fn.endswith(".cmake"):
                with open(os.path.join(dirpath, fn), encoding="utf-8",
                          errors="replace") as f:
                    found.update(OPTION_RE.findall(f.read()))
    return found


def check_tree(root):
    errors = []
    texts = {}
    for fn in ("compose.yaml", "README.md"):
        try:
            with open(os.path.join(root, fn), encoding="utf-8") as f:
                texts[fn] = f.read()
        except OSError as e:
            errors.append("%s: cannot read (%s)" % (fn, e.strerror))
    if errors:
        return errors
    try:
        doc = yaml.safe_load(texts["compose.yaml"])
    except yaml.YAMLError as e:
        return ["compose.yaml: not valid YAML: %s" % e]
    known = {
        "source": literals_under(root, SOURCE_DIRS),
        "tests": literals_under(root, ("tests",),
                                skip=(os.path.join(root, "tests", "compose"),)),
        "options": cmake_options(root),
    }
    return check(doc, texts["compose.yaml"], texts["README.md"], known)


# -- self test -----------------------------------------------------------------

GOOD_COMPOSE = """
services:
  gatehouse:
    build: {context: .}
    image: gatehouse:local
    entrypoint: ["/bin/sh", "-ec"]
    command: ["gatehouse migrate\\nexec gatehouse serve\\n"]
    environment:
      GATEHOUSE_DATABASE_URL: postgresql://gatehouse@postgres/gatehouse
      GATEHOUSE_HTTP_LISTEN: 0.0.0.0:8080
      GATEHOUSE_SHELL_SECRET_FILE: /run/secrets/gitlab_shell_secret
    secrets: [gitlab_shell_secret]
    restart: unless-stopped
    depends_on:
      postgres: {condition: service_healthy}
      nats: {condition: service_healthy}
    healthcheck: {test: ["CMD", "curl", "-f", "http://127.0.0.1:8080/-/readiness"]}
  webhooks:
    image: gatehouse:local
    command: ["webhooks"]
    restart: always
    environment:
      GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE: /tmp/beat
    healthcheck: {test: ["CMD-SHELL", 'test -n "$$(find /tmp/beat -mmin -1)"']}
  postgres:
    image: postgres:15
    restart: unless-stopped
    environment: [POSTGRES_PASSWORD_FILE=/run/secrets/pg]
    secrets: [{source: pg_password, target: pg}]
    volumes: ["pgdata:/var/lib/postgresql/data"]
    healthcheck: {test: ["CMD", "pg_isready"]}
  nats:
    image: nats:2.9-alpine
    restart: on-failure
    command: ["nats-server", "-js", "-sd", "/data"]
    healthcheck: {test: ["CMD", "wget", "-q", "http://127.0.0.1:8222/healthz"]}
secrets:
  gitlab_shell_secret: {file: ./secrets/gitlab_shell_secret}
  pg_password: {file: ./secrets/postgres_password}
volumes:
  pgdata:
"""

GOOD_README = """# Gatehouse

## Configuration

| Variable | Meaning |
|---|---|
| `GATEHOUSE_DATABASE_URL` | libpq URL |
| `GATEHOUSE_HTTP_LISTEN` | host:port |
| `GATEHOUSE_SHELL_SECRET_FILE` | Shell secret |
| `GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE` | heartbeat |

Tests read `GATEHOUSE_TEST_PG_DSN` (all `GATEHOUSE_TEST_*`, like the
`GATEHOUSE_*_SECRET_FILE` files, are optional); build with `-DGATEHOUSE_BUILD_TESTS=OFF`.

## Docker Compose

- `gatehouse`: the server
- `webhooks`: the webhook consumer
- `postgres`: PostgreSQL 15
- `nats`: NATS with JetStream

## Next
- `notaservice`: outside the section, ignored
"""

GOOD_KNOWN = {
    "source": {"GATEHOUSE_DATABASE_URL", "GATEHOUSE_HTTP_LISTEN",
               "GATEHOUSE_SHELL_SECRET_FILE", "GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE"},
    "tests": {"GATEHOUSE_TEST_PG_DSN"},
    "options": {"GATEHOUSE_BUILD_TESTS"},
}


def self_test():
    base = yaml.safe_load(GOOD_COMPOSE)

    def run(doc=None, readme=GOOD_README, known=GOOD_KNOWN, text=None):
        doc = base if doc is None else doc
        return check(doc, yaml.safe_dump(doc) if text is None else text, readme, known)

    def mutate(fn):
        doc = copy.deepcopy(base)
        fn(doc)
        return doc

    def svc(doc, name):
        return doc["services"][name]

    cases = [
        ("image tag latest", "uses the tag 'latest'",
         dict(doc=mutate(lambda d: svc(d, "postgres").update(image="postgres:latest")))),
        ("untagged image", "has no tag",
         dict(doc=mutate(lambda d: svc(d, "nats").update(image="nats")))),
        ("registry port is not a tag", "has no tag",
         dict(doc=mutate(lambda d: svc(d, "nats").update(image="reg:5000/nats")))),
        ("service missing", "service 'nats' is missing",
         dict(doc=mutate(lambda d: d["services"].pop("nats")))),
        ("compose var not in README table", "GATEHOUSE_HTTP_THREADS but README.md",
         dict(doc=mutate(lambda d: svc(d, "gatehouse")["environment"].update(
             GATEHOUSE_HTTP_THREADS="64")))),
        ("var only in a compose comment", "GATEHOUSE_NATS_CREDS_FILE but README.md",
         dict(text=GOOD_COMPOSE + "# see GATEHOUSE_NATS_CREDS_FILE\n")),
        ("README drift: var the code does not read", "mentions GATEHOUSE_HTTP_PORT",
         dict(readme=GOOD_README.replace("GATEHOUSE_HTTP_LISTEN` | host:port",
                                         "GATEHOUSE_HTTP_PORT` | port"))),
        ("test var only allowed when tests read it", "mentions GATEHOUSE_TEST_NATS_URL",
         dict(readme=GOOD_README + "\nAlso `GATEHOUSE_TEST_NATS_URL`.\n")),
        ("no configuration table", "no configuration table rows",
         dict(readme=re.sub(r"(?m)^\|.*\n", "", GOOD_README))),
        ("secret var without a mounted secret", "mounts no secret there",
         dict(doc=mutate(lambda d: svc(d, "gatehouse").update(secrets=[])))),
        ("secret var outside /run/secrets", "is not under /run/secrets/",
         dict(doc=mutate(lambda d: svc(d, "gatehouse")["environment"].update(
             GATEHOUSE_SHELL_SECRET_FILE="/etc/gitlab_shell_secret")))),
        ("undeclared top-level secret", "does not declare",
         dict(doc=mutate(lambda d: d["secrets"].pop("gitlab_shell_secret")))),
        ("long-syntax target mismatch", "POSTGRES_PASSWORD_FILE=/run/secrets/pg but",
         dict(doc=mutate(lambda d: svc(d, "postgres").update(
             secrets=[{"source": "pg_password"}])))),
        ("undeclared named volume", "uses volume 'pgdata'",
         dict(doc=mutate(lambda d: d.pop("volumes")))),
        ("short depends_on", "depend on postgres with 'condition: service_healthy'",
         dict(doc=mutate(lambda d: svc(d, "gatehouse").update(
             depends_on=["postgres", "nats"])))),
        ("depends_on started only", "depend on nats with",
         dict(doc=mutate(lambda d: svc(d, "gatehouse")["depends_on"].update(
             nats={"condition": "service_started"})))),
        ("missing healthcheck", "service 'nats' has no healthcheck",
         dict(doc=mutate(lambda d: svc(d, "nats").pop("healthcheck")))),
        ("disabled healthcheck", "service 'postgres' has no healthcheck",
         dict(doc=mutate(lambda d: svc(d, "postgres").update(
             healthcheck={"test": ["NONE"]})))),
        ("serve before migrate", "runs 'serve' before 'migrate'",
         dict(doc=mutate(lambda d: svc(d, "gatehouse").update(
             command=["gatehouse serve; gatehouse migrate"])))),
        ("no migrate", "must run 'gatehouse migrate'",
         dict(doc=mutate(lambda d: svc(d, "gatehouse").update(
             entrypoint=["gatehouse"], command=["serve"])))),
        ("migrate failure ignored", "serve even when migrate fails",
         dict(doc=mutate(lambda d: svc(d, "gatehouse").update(
             entrypoint=["/bin/sh", "-c"],
             command=["gatehouse migrate; exec gatehouse serve"])))),
        ("loopback listener", "GATEHOUSE_HTTP_LISTEN=0.0.0.0:PORT",
         dict(doc=mutate(lambda d: svc(d, "gatehouse")["environment"].update(
             GATEHOUSE_HTTP_LISTEN="127.0.0.1:8080")))),
        ("README lacks a compose service", "does not list compose service 'nats'",
         dict(readme=GOOD_README.replace("- `nats`: NATS with JetStream\n", ""))),
        ("README lists an extra service", "lists 'pages', which compose.yaml",
         dict(readme=GOOD_README.replace("## Next", "- `pages`: Pages\n\n## Next"))),
        ("no restart policy", "service 'postgres' has restart policy 'no'",
         dict(doc=mutate(lambda d: svc(d, "postgres").pop("restart")))),
        ("restart never", "service 'gatehouse' has restart policy 'no'",
         dict(doc=mutate(lambda d: svc(d, "gatehouse").update(restart="no")))),
        ("migrate does not wait", "GATEHOUSE_DATABASE_WAIT_SECONDS=0",
         dict(doc=mutate(lambda d: svc(d, "gatehouse")["environment"].update(
             GATEHOUSE_DATABASE_WAIT_SECONDS="0")),
              readme=GOOD_README.replace("| `GATEHOUSE_HTTP_LISTEN`",
                                         "| `GATEHOUSE_DATABASE_WAIT_SECONDS` | s |\n"
                                         "| `GATEHOUSE_HTTP_LISTEN`"),
              known=dict(GOOD_KNOWN, source=GOOD_KNOWN["source"]
                         | {"GATEHOUSE_DATABASE_WAIT_SECONDS"}))),
        ("webhooks checks only for processes", "looks at /proc",
         dict(doc=mutate(lambda d: svc(d, "webhooks").update(healthcheck={"test": [
             "CMD-SHELL", "test -n \"$(ls /proc | grep -vx 1)\" # /tmp/beat -mmin -1"]})))),
        ("webhooks health check ignores the heartbeat", "must test the age",
         dict(doc=mutate(lambda d: svc(d, "webhooks").update(healthcheck={"test": [
             "CMD", "true"]})))),
        ("webhooks without heartbeat", "sets no GATEHOUSE_WEBHOOKS_HEARTBEAT_FILE",
         dict(doc=mutate(lambda d: svc(d, "webhooks").pop("environment")))),
        ("compose-time variable unexplained", "does not explain GATEHOUSE_COMPOSE_HTTP_PORT",
         dict(text=GOOD_COMPOSE + "# ports: ${GATEHOUSE_COMPOSE_HTTP_PORT:-8080}\n")),
        ("README has no compose section", "no '## Docker Compose' section",
         dict(readme=GOOD_README.replace("## Docker Compose", "## Compose"))),
        ("not a compose document", "no 'services' mapping",
         dict(doc={"version": "3"})),
    ]

    failures = []
    baseline = run()
    if baseline:
        failures.append("the good example fails: %s" % baseline)
    ok_variants = [
        ("list-form env and &&", mutate(lambda d: svc(d, "gatehouse").update(
            entrypoint=None, command="sh -c 'gatehouse migrate && exec gatehouse serve'",
            environment=["GATEHOUSE_DATABASE_URL=x", "GATEHOUSE_HTTP_LISTEN=0.0.0.0:1",
                         "GATEHOUSE_SHELL_SECRET_FILE=/run/secrets/gitlab_shell_secret"]))),
        ("digest-pinned image", mutate(lambda d: svc(d, "nats").update(
            image="nats@sha256:" + "0" * 64))),
        ("on-failure with a count", mutate(lambda d: svc(d, "nats").update(
            restart="on-failure:5"))),
    ]
    for label, doc in ok_variants:
        errs = run(doc=doc)
        if errs:
            failures.append("%s: wrongly rejected: %s" % (label, errs))
    for label, expect, kwargs in cases:
        errs = run(**kwargs)
        if not any(expect in e for e in errs):
            failures.append("%s: expected an error containing %r, got %s"
                            % (label, expect, errs or "none"))
    for f in failures:
        print("check_compose self-test FAILED: " + f)
    if failures:
        return 1
    print("check_compose self-test OK: %d broken inputs caught, %d good ones accepted"
          % (len(cases), len(ok_variants) + 1))
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        return self_test()
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write(__doc__)
        return 2
    root = os.path.abspath(argv[1])
    errors = check_tree(root)
    for e in errors:
        print("check_compose: " + e)
    if errors:
        print("check_compose: FAILED, %d problem(s) in %s" % (len(errors), root))
        return 1
    print("check_compose OK: compose.yaml, README.md and the source agree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
