#!/usr/bin/env python3
"""Measures the HTTP edge under the hostile clients of issue 9.

  bench/hostile_http.py slow    [--connections 200] [--duration 10]
      Opens N slow connections to one `gatehouse serve` (a third idle, a
      third sending a header byte every 2 s, a third keep-alive connections
      sending a request every 1.5 s), then times normal calls (a fresh
      connection each, GET /-/liveness and a Shell-signed GET /check) and
      prints p50/p99/max.
  bench/hostile_http.py chunked [--bodies 4] [--mb 256]
      Sends chunked bodies to POST /allowed, first with a bad JWT, then with
      a valid one, all at once per round, and prints the server's RSS before,
      at its peak (VmHWM) and after each round, with the answers.

The server is started here on a free loopback port with a throwaway secret,
and without PostgreSQL or NATS (the paths measured do not need them).
Everything is bounded in count and time and stays on 127.0.0.1.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
MAX_CONNECTIONS = 2000
MAX_DURATION = 120
MAX_MB = 1024


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`gatehouse serve` on a free port; stopped on exit."""

    def __init__(self, binary, extra_env=None):
        self.dir = tempfile.mkdtemp(prefix="gatehouse-hostile.")
        self.secret = os.path.join(self.dir, "shell_secret")
        with open(self.secret, "w") as f:
            f.write(os.urandom(16).hex())
        os.chmod(self.secret, 0o600)
        self.binary = binary
        self.port = free_port()
        env = dict(os.environ,
                   GATEHOUSE_SHELL_SECRET_FILE=self.secret,
                   GATEHOUSE_HTTP_LISTEN=f"{HOST}:{self.port}",
                   GATEHOUSE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
                   GATEHOUSE_NATS_URL="nats://127.0.0.1:1")
        env.update(extra_env or {})
        self.log = open(os.path.join(self.dir, "serve.log"), "w")
        self.proc = subprocess.Popen([binary, "serve"], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        sys.exit("gatehouse serve did not start; see " + self.log.name)

    def token(self, valid=True):
        env = dict(os.environ, GATEHOUSE_SHELL_SECRET_FILE=self.secret)
        if not valid:
            return "eyJhbGciOiJIUzI1NiJ9.e30.bm90LXNpZ25lZA"
        return subprocess.check_output([self.binary, "jwt", "shell"],
                                       env=env, text=True).strip()

    def memory(self):
        """(VmRSS, VmHWM) in MB."""
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value
        return (int(fields["VmRSS"].split()[0]) // 1024,
                int(fields["VmHWM"].split()[0]) // 1024)

    def reset_peak(self):
        # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux).
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def read_status(sock, timeout):
    """The status of the first answer on `sock`, or None."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    if data.startswith(b"HTTP/1.1 "):
        return int(data[9:12])
    return None


def timed_get(port, path, headers=""):
    start = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  f"{headers}\r\n".encode())
        status = read_status(s, 10)
    return (time.perf_counter() - start) * 1000, status


# -- slow clients ----------------------------------------------------------------

def slow(args):
    n = min(args.connections, MAX_CONNECTIONS)
    duration = min(args.duration, MAX_DURATION)
    server = Server(args.binary, {"GATEHOUSE_HTTP_THREADS": str(args.threads)})
    stop = threading.Event()
    opened = []
    try:
        token = server.token()
        idle = [socket.create_connection((HOST, server.port)) for _ in range(n // 3)]
        trickle = []
        for _ in range(n // 3):
            s = socket.create_connection((HOST, server.port))
            s.sendall(b"GET /-/liveness HTTP/1.1\r\nX-Slow: ")
            trickle.append(s)
        keepalive = [socket.create_connection((HOST, server.port))
                     for _ in range(n - 2 * (n // 3))]
        opened = idle + trickle + keepalive

        def trickler():
            while not stop.wait(2.0):
                for s in trickle:
                    try:
                        s.send(b"x")
                    except OSError:
                        pass

        def keeper():
            while not stop.wait(1.5):
                for s in keepalive:
                    try:
                        s.send(b"GET /-/liveness HTTP/1.1\r\nHost: x\r\n\r\n")
                        s.setblocking(False)
                        try:
                            s.recv(65536)
                        except OSError:
                            pass
                        s.setblocking(True)
                    except OSError:
                        pass

        workers = [threading.Thread(target=trickler, daemon=True),
                   threading.Thread(target=keeper, daemon=True)]
        for w in workers:
            w.start()
        time.sleep(0.5)  # let every slow connection reach the server

        results = {"/-/liveness": [], "/api/v4/internal/check": []}
        statuses = {}
        end = time.time() + duration
        while time.time() < end:
            for path in results:
                headers = ("" if path == "/-/liveness" else
                           f"Gitlab-Shell-Api-Request: {token}\r\n")
                ms, status = timed_get(server.port, path, headers)
                results[path].append(ms)
                statuses[status] = statuses.get(status, 0) + 1
            time.sleep(0.02)
        print(f"{n} slow connections ({len(idle)} idle, {len(trickle)} sending "
              f"a header byte every 2 s, {len(keepalive)} keep-alive sending a "
              f"request every 1.5 s), GATEHOUSE_HTTP_THREADS={args.threads}, "
              f"{duration} s")
        print(f"{'call':<28}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for path, times in results.items():
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"{path:<28}{len(times):>6}{statistics.median(times):>10.2f}"
                  f"{p99:>10.2f}{times[-1]:>10.2f}")
        print("answers:", statuses)
        still_open = sum(1 for s in opened if s.fileno() >= 0)
        print("server RSS/peak MB:", server.memory(), "slow sockets open:", still_open)
    finally:
        stop.set()
        for s in opened:
            s.close()
        server.stop()


# -- chunked bodies ----------------------------------------------------------------

def send_chunked(port, token, megabytes, out, index):
    """Sends a chunked body of `megabytes` MB; records the answer's status."""
    chunk = b"x" * (1024 * 1024)
    framed = b"100000\r\n" + chunk + b"\r\n"
    status = None
    try:
        with socket.create_connection((HOST, port), timeout=30) as s:
            s.sendall(b"POST /api/v4/internal/allowed HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n"
                      + f"Gitlab-Shell-Api-Request: {token}\r\n\r\n".encode())
            try:
                for _ in range(megabytes):
                    s.sendall(framed)
                s.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server stopped reading: its answer is waiting
            status = read_status(s, 30)
    except OSError as e:
        status = f"error: {e}"
    out[index] = status


def chunked(args):
    mb = min(args.mb, MAX_MB)
    server = Server(args.binary)
    try:
        time.sleep(0.5)
        for label, valid in (("bad JWT", False), ("valid JWT", True)):
            token = server.token(valid)
            server.reset_peak()
            before = server.memory()[0]
            answers = [None] * args.bodies
            start = time.time()
            threads = [threading.Thread(target=send_chunked,
                                        args=(server.port, token, mb, answers, i))
                       for i in range(args.bodies)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            took = time.time() - start
            time.sleep(1)
            after, peak = server.memory()
            print(f"{args.bodies} x {mb} MB chunked, {label}: answers {answers}, "
                  f"{took:.1f} s; RSS before {before} MB, peak {peak} MB, "
                  f"after {after} MB")
        ms, status = timed_get(server.port, "/-/liveness")
        print(f"liveness afterwards: {status} in {ms:.1f} ms")
    finally:
        server.stop()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_binary = os.path.join(os.environ.get("BUILD_DIR",
                                                 os.path.join(here, "..", "build")),
                                  "gatehouse")
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=default_binary)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("slow")
    s.add_argument("--connections", type=int, default=200)
    s.add_argument("--duration", type=int, default=10)
    s.add_argument("--threads", type=int, default=32)
    c = sub.add_parser("chunked")
    c.add_argument("--bodies", type=int, default=4)
    c.add_argument("--mb", type=int, default=256)
    args = p.parse_args()
    {"slow": slow, "chunked": chunked}[args.command](args)


if __name__ == "__main__":
    main()
