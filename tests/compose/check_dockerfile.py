#!/usr/bin/python3
"""Checks that the Dockerfile's runtime stage installs every shared library
the gatehouse binary needs, without Docker: each library `ldd BINARY` resolves
must belong to a Debian package that the runtime stage's `apt-get install`
list pulls in (the packages named, plus their Depends/Pre-Depends, as this
machine's dpkg database records them).

    check_dockerfile.py DOCKERFILE BINARY
    check_dockerfile.py --offline DOCKERFILE   what an offline build needs:
                                               no parser directive that
                                               fetches a frontend image
    check_dockerfile.py --self-test
"""

import os
import re
import subprocess
import sys


def runtime_packages(dockerfile_text):
    """Packages named by `apt-get install` in the last stage."""
    text = re.sub(r"\\\n", " ", dockerfile_text)
    stages = re.split(r"(?im)^\s*FROM\s", text)
    last = stages[-1]
    packages = []
    for line in last.splitlines():
        if not re.match(r"\s*RUN\s", line, re.I):
            continue
        for cmd in re.split(r"&&|;|\|\|", line):
            words = cmd.split()
            if "install" in words and any(w.startswith("apt") for w in words):
                for w in words[words.index("install") + 1:]:
                    if not w.startswith("-"):
                        packages.append(w.split("=")[0])
    return packages


def installed_closure(roots):
    """roots plus everything they (pre-)depend on, among installed packages."""
    seen, todo, missing = set(), list(roots), []
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}\t${Depends}, ${Pre-Depends}", pkg],
            capture_output=True, text=True)
        if r.returncode != 0 or "ok installed" not in r.stdout.split("\t")[0]:
            if pkg in roots:
                missing.append(pkg)
            continue
        deps = r.stdout.split("\t", 1)[1]
        for alt in re.split(r"[,|]", deps):
            name = alt.strip().split(" ")[0].split(":")[0]
            if name:
                todo.append(name)
    return seen, missing


def owner(path):
    """The package that ships `path` (tries the /usr-merged spellings)."""
    real = os.path.realpath(path)
    cands = []
    for p in (path, real):
        cands.append(p)
        cands.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
    for p in cands:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            for line in r.stdout.splitlines():
                pkgs, _, shipped = line.partition(": ")
                if shipped.strip() == p and "diversion" not in pkgs:
                    return pkgs.split(",")[0].strip().split(":")[0]
    return None


# A parser directive is a comment line before anything else; `syntax` makes
# BuildKit pull the named frontend image before it reads the file.
DIRECTIVE_RE = re.compile(r"^#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$")


def offline_problems(text):
    """What keeps `text` from building without a registry."""
    problems = []
    for line in text.splitlines():
        m = DIRECTIVE_RE.match(line)
        if not m:
            break  # directives end at the first line that is not one
        if m.group(1).lower() == "syntax":
            problems.append("parser directive '%s' makes BuildKit fetch the frontend "
                            "image %s from a registry; the built-in frontend needs none"
                            % (line.strip(), m.group(2)))
    return problems


def self_test():
    cases = [
        ("# syntax=docker/dockerfile:1\nFROM debian:bookworm\n", True),
        ("#syntax = docker/dockerfile:1.4\n# escape=`\nFROM x:1\n", True),
        ("# escape=\\\n# SYNTAX=docker/dockerfile:1\nFROM x:1\n", True),
        ("# Gatehouse image\n# syntax=docker/dockerfile:1\nFROM x:1\n", False),
        ("FROM debian:bookworm\n# syntax=docker/dockerfile:1\n", False),
        ("# escape=`\nFROM debian:bookworm\n", False),
    ]
    failures = [text for text, bad in cases if bool(offline_problems(text)) != bad]
    for text in failures:
        print("check_dockerfile self-test FAILED for %r" % text)
    if failures:
        return 1
    print("check_dockerfile self-test OK: %d Dockerfile heads judged" % len(cases))
    return 0


def offline_main(path):
    with open(path, encoding="utf-8") as f:
        problems = offline_problems(f.read())
    for p in problems:
        print("check_dockerfile: %s: %s" % (path, p))
    if problems:
        return 1
    print("check_dockerfile OK: %s builds without fetching a frontend" % path)
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        return self_test()
    if len(argv) == 3 and argv[1] == "--offline":
        return offline_main(argv[2])
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    dockerfile, binary = argv[1], argv[2]
    with open(dockerfile, encoding="utf-8") as f:
        packages = runtime_packages(f.read())
    if not packages:
        print("check_dockerfile: no apt-get install in the runtime stage of " + dockerfile)
        return 1
    closure, missing = installed_closure(packages)
    errors = []
    if missing:
        # The closure would be incomplete; say so rather than guess.
        errors.append("runtime packages not installed on this machine, cannot check: "
                      + " ".join(missing))
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if r.returncode != 0:
        print("check_dockerfile: ldd %s failed: %s" % (binary, r.stderr.strip()))
        return 1
    libs = 0
    for line in r.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            errors.append("ldd: " + line)
            continue
        m = re.match(r"(\S+) => (/\S+)", line) or re.match(r"(/\S+) \(0x", line)
        if not m:
            continue  # linux-vdso
        path = m.group(m.lastindex)
        libs += 1
        pkg = owner(path)
        if pkg is None:
            errors.append("%s: no Debian package ships it" % path)
        elif pkg not in closure:
            errors.append("%s comes from %s, which the runtime stage does not install "
                          "(add it, or a package that depends on it)" % (path, pkg))
    for e in errors:
        print("check_dockerfile: " + e)
    if errors:
        print("check_dockerfile: FAILED (runtime packages: %s)" % " ".join(packages))
        return 1
    print("check_dockerfile OK: %d shared libraries, all from the runtime stage's %d "
          "packages or their dependencies" % (libs, len(packages)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
