#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""tools/dev bench --sendfile: a large file served over loopback, aioring against asyncio.

Each server sends the whole file (1 GiB by default, in the page cache) to one client, which
reads it to EOF as fast as it can: aioring's loop.sendfile (splice), its read-and-write
fallback (what TLS uses), a read/write loop in user code (pread + StreamWriter.write + drain),
and Python asyncio's loop.sendfile (os.sendfile). Server and client are pinned to different
cores, the servers interleaved, each transfer repeated (median). Prints one markdown table:
MB/s, and the server's CPU time per MiB (utime + stime of all its threads, io_uring's workers
included, from /proc/PID/stat), with ratios to aioring's sendfile. A benchmark, not a test: the
machine is shared and the figures are noisy.
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def make_file(path, size):
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)
        f.write(block[: size & ((1 << 20) - 1)])
    with open(path, "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass


class Server:
    def __init__(self, cmd, cpu):
        preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  preexec_fn=preexec)
        line = self.p.stdout.readline()
        if not line.startswith("Serving on"):
            err = self.p.stderr.read() if self.p.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"{cmd[0]} did not start: {line.strip() or err.strip()}")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def fetch(port, expect):
    """Reads one whole transfer; returns (bytes, seconds)."""
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    got = 0
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.perf_counter()
    while True:
        n = s.recv_into(view)
        if n == 0:
            break
        got += n
    dt = time.perf_counter() - t0
    s.close()
    if got != expect:
        raise RuntimeError(f"received {got} bytes, expected {expect}")
    return got, dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="256 MiB, 1 repetition")
    ap.add_argument("--only", default="", help="comma-separated substrings of server names")
    args = ap.parse_args()
    size = (256 if args.quick else args.size) << 20
    reps = 1 if args.quick else args.reps
    server_bin = os.path.join(args.build, "tools", "sendfile_server")
    if not os.access(server_bin, os.X_OK):
        sys.exit(f"bench: {server_bin} not found: build the release preset first (tools/dev bench)")
    ncpu = os.cpu_count() or 1
    server_cpu, client_cpu = (0, 1) if ncpu >= 2 else (None, None)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})

    tmp = tempfile.mkdtemp(prefix="aioring-sendfile-bench-")
    try:
        path = os.path.join(tmp, "file")
        make_file(path, size)
        servers = [
            ("aioring sendfile (splice)", [server_bin, "--mode", "splice", "--file", path]),
            ("aioring sendfile fallback (read+send)", [server_bin, "--mode", "fallback", "--file", path]),
            ("aioring read/write loop (streams)", [server_bin, "--mode", "loop", "--file", path]),
            ("asyncio loop.sendfile", [sys.executable, os.path.join(HERE, "py_sendfile_server.py"),
                                       "--file", path]),
        ]
        if args.only:
            keys = [k.strip() for k in args.only.split(",") if k.strip()]
            servers = [s for s in servers if any(k in s[0] for k in keys)]
        print(f"bench --sendfile: {size >> 20} MiB file over 127.0.0.1, {len(servers)} servers, "
              f"{reps} repetitions; server on cpu {server_cpu}, client on cpu {client_cpu}",
              file=sys.stderr)
        results = {name: [] for name, _ in servers}
        for rep in range(reps):
            order = servers[rep % len(servers):] + servers[:rep % len(servers)]
            for name, cmd in order:
                srv = Server(cmd, server_cpu)
                try:
                    c0 = cpu_seconds(srv.p.pid)
                    got, dt = fetch(srv.port, size)
                    time.sleep(0.05)  # the server's last completions
                    cpu = cpu_seconds(srv.p.pid) - c0
                finally:
                    srv.stop()
                mib = got / (1 << 20)
                results[name].append((got / dt / 1e6, cpu / mib * 1e6))
                print(f"  {name}: {got / dt / 1e6:.0f} MB/s, {cpu / mib * 1e6:.0f} us CPU/MiB",
                      file=sys.stderr)
        base = servers[0][0]
        med = {n: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
               for n, v in results.items() if v}
        print(f"\n{size >> 20} MiB file, loopback, median of {reps}\n")
        print("| server | MB/s | x | server CPU us/MiB | x |")
        print("|---|---:|---:|---:|---:|")
        for name, _ in servers:
            mbs, cpu = med[name]
            bm, bc = med.get(base, (mbs, cpu))
            print(f"| {name} | {mbs:.0f} | {mbs / bm:.2f} | {cpu:.0f} | {cpu / bc:.2f} |")
    finally:
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    main()
