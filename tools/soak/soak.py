#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Soak benchmark (not a test): churns connections against echo_server with each API
(protocol, buffered, streams) and with TLS, and samples the server's RSS and open fds over time.

--connections client tasks run at once, each in a loop: connect, send a message, read its echo
back, close (every other task closes with an RST instead of a FIN). Every --interval seconds a
line gives the server's RSS, its open fds and the connections made so far; at the end a summary
per server: connections, failures by kind, RSS at the start / peak / end, fds at the start /
peak and once the clients are gone (they must be back at the baseline), and the server's exit
status. RLIMIT_NOFILE is raised for this process and the servers as far as the connections
need; a hard limit too low for them is reported and nothing runs.

  soak.py --build build/release [--seconds 120] [--connections 10000] [--interval 5]
          [--servers protocol,buffered,streams,tls]
"""
import argparse
import asyncio
import collections
import os
import random
import re
import resource
import signal
import socket
import ssl
import multiprocessing
import struct
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def failure_kind(e):
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, asyncio.IncompleteReadError):
        return "short read"
    if isinstance(e, ssl.SSLError):
        return "tls"
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno)
    return type(e).__name__


class EchoOnce(asyncio.Protocol):
    """One connection's life: send the message, wait for it back, close (or reset)."""

    def __init__(self, msg, rst, done):
        self.msg, self.rst, self.done, self.got = msg, rst, done, bytearray()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.msg)

    def data_received(self, data):
        self.got += data
        if len(self.got) >= len(self.msg):
            if not self.done.done():
                self.done.set_result(bytes(self.got))
            if self.rst:
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.transport.abort()
            else:
                self.transport.close()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(exc or asyncio.IncompleteReadError(bytes(self.got), len(self.msg)))


async def client(port, ctx, deadline, ramp, stats, rst):
    loop = asyncio.get_running_loop()
    await asyncio.sleep(random.uniform(0, ramp))  # not every SYN at once: the backlog is finite
    msg = os.urandom(64)
    while time.monotonic() < deadline:
        done = loop.create_future()
        try:
            await asyncio.wait_for(loop.create_connection(
                lambda: EchoOnce(msg, rst and not ctx, done), "127.0.0.1", port, ssl=ctx,
                server_hostname="localhost" if ctx else None), 60)
            got = await asyncio.wait_for(done, 60)
            if got != msg:
                stats["mismatch"] += 1
            stats["ok"] += 1
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            stats["failures"][failure_kind(e)] += 1
            await asyncio.sleep(0.05)


def worker(port, tls, cert, connections, first, seconds, ramp, shared, results):
    """A client process: `connections` tasks on one asyncio loop; counts go to `shared`."""
    ctx = None
    if tls:
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
    stats = {"ok": 0, "mismatch": 0, "failures": collections.Counter()}

    async def run():
        # Errors the client's own asyncio reports after a connection is done (its TLS shutdown,
        # say) are counted, not printed.
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: stats["failures"].update(
                ["client-side after the echo: " + str(context.get("exception", context["message"]))[:80]]))
        deadline = time.monotonic() + seconds
        tasks = [asyncio.create_task(client(port, ctx, deadline, ramp, stats, (first + i) % 2 == 1))
                 for i in range(connections)]
        while any(not t.done() for t in tasks):
            shared[0], shared[1], shared[2] = stats["ok"], stats["mismatch"], sum(stats["failures"].values())
            await asyncio.sleep(0.5)
        await asyncio.gather(*tasks)

    asyncio.run(run())
    shared[0], shared[1], shared[2] = stats["ok"], stats["mismatch"], sum(stats["failures"].values())
    results.put(dict(stats["failures"]))


def churn(name, port, tls, cert, a, pid):
    workers = max(1, min(a.workers, a.connections))
    results = multiprocessing.Queue()
    shared = [multiprocessing.Array("q", 3, lock=False) for _ in range(workers)]
    procs = []
    for w in range(workers):
        n = a.connections // workers + (1 if w < a.connections % workers else 0)
        first = w * (a.connections // workers) + min(w, a.connections % workers)
        procs.append(multiprocessing.Process(
            target=worker, args=(port, tls, cert, n, first, a.seconds, a.ramp, shared[w], results)))
    for p in procs:
        p.start()
    samples = []
    start = time.monotonic()
    last_ok, last_t = 0, 0.0
    while any(p.is_alive() for p in procs):
        time.sleep(a.interval)
        t = time.monotonic() - start
        if not os.path.exists(f"/proc/{pid}"):
            break
        ok = sum(s[0] for s in shared)
        s = (t, rss_kib(pid), fds(pid), ok)
        samples.append(s)
        rate = (ok - last_ok) / max(t - last_t, 1e-9)
        last_ok, last_t = ok, t
        print(f"  {name:9s} t={t:6.1f}s  RSS {s[1] / 1024:7.1f} MiB  fds {s[2]:6d}  "
              f"connections {ok:8d} ({rate:5.0f}/s)  failed {sum(x[2] for x in shared)}",
              flush=True)
    failures = collections.Counter()
    for _ in procs:
        failures.update(results.get(timeout=60))
    for p in procs:
        p.join()
    stats = {"ok": sum(s[0] for s in shared), "mismatch": sum(s[1] for s in shared),
             "failures": failures}
    return stats, samples


def start_server(binary, args):
    p = subprocess.Popen([binary, "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r":(\d+)$", line.strip())
    if not m:
        p.kill()
        sys.exit(f"soak: {binary} did not start: {line!r}")
    return p, int(m.group(1))


def raise_fd_limit(connections):
    # This process holds one fd per client connection, the server one per accepted one.
    need = connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f"soak: {connections} connections need {need} file descriptors per process, "
                 f"but the hard RLIMIT_NOFILE is {hard}: raise it (ulimit -Hn, limits.conf) "
                 f"or pass a smaller --connections")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_for_baseline(pid, base_fds, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end and fds(pid) > base_fds:
        time.sleep(0.1)
    return fds(pid)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--seconds", type=float, default=120, help="per server (default 120)")
    ap.add_argument("--connections", type=int, default=10000,
                    help="client connections churning at once (default 10000)")
    ap.add_argument("--interval", type=float, default=5, help="seconds between samples")
    ap.add_argument("--workers", type=int, default=2,
                    help="client processes sharing the connections (default 2)")
    ap.add_argument("--ramp", type=float, default=5,
                    help="the clients start spread over this many seconds (default 5)")
    ap.add_argument("--servers", default="protocol,buffered,streams,tls",
                    help="which of protocol,buffered,streams,tls (default all)")
    a = ap.parse_args()
    if a.connections < 1 or a.seconds <= 0 or a.interval <= 0:
        sys.exit("soak: --connections, --seconds and --interval must be positive")
    nofile = raise_fd_limit(a.connections)
    binary = os.path.join(a.build, "examples", "echo_server")
    tmp = tempfile.mkdtemp(prefix="aioring-soak-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    all_runs = {"protocol": (["--api", "protocol"], False),
                "buffered": (["--api", "buffered"], False),
                "streams": (["--api", "streams"], False),
                "tls": (["--api", "protocol", "--cert", cert, "--key", key], True)}
    names = [n for n in a.servers.split(",") if n]
    for n in names:
        if n not in all_runs:
            sys.exit(f"soak: unknown server {n[:64]!r} (protocol, buffered, streams, tls)")
    print(f"soak: {a.seconds:g} s per server, {a.connections} client connections at once, "
          f"RLIMIT_NOFILE {nofile}; each connects, echoes 64 B, closes (every other one with "
          f"an RST) and starts again", flush=True)
    summary, failed = [], False
    for name in names:
        args, tls = all_runs[name]
        p, port = start_server(binary, args)
        time.sleep(0.2)
        base_rss, base_fds = rss_kib(p.pid), fds(p.pid)
        stats, samples = churn(name, port, tls, cert, a, p.pid)
        alive = p.poll() is None
        end_fds = wait_for_baseline(p.pid, base_fds, 10) if alive else -1
        end_rss = rss_kib(p.pid) if alive else 0
        if alive:
            p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
        peak_rss = max([base_rss] + [s[1] for s in samples])
        peak_fds = max([base_fds] + [s[2] for s in samples])
        fails = ", ".join(f"{k} {v}" for k, v in stats["failures"].most_common()) or "none"
        line = (f"{name:9s} {stats['ok']:8d} connections ({stats['ok'] / a.seconds:5.0f}/s), "
                f"mismatched {stats['mismatch']}, failed: {fails} | RSS MiB start "
                f"{base_rss / 1024:.1f} peak {peak_rss / 1024:.1f} end {end_rss / 1024:.1f} | "
                f"fds start {base_fds} peak {peak_fds} end {end_fds} | exit {rc}")
        print(f"soak: {line}", flush=True)
        summary.append(line)
        if not alive or end_fds != base_fds or stats["mismatch"] or rc != 0:
            failed = True
    subprocess.run(["rm", "-rf", tmp])
    print("soak summary:")
    for line in summary:
        print(f"  {line}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
