#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Soak benchmark (not a test): churns connections against echo_server with each API
(protocol, buffered, streams) and with TLS, and samples the server's RSS and open fds over time.

Each client task loops: connect, send a message, read its echo back, close (half of them with
an RST instead of a FIN). It reports per server: connections made, failures, and RSS / fd
samples at the start, in the middle and at the end, plus the fd count after the clients are gone
(it must be back at the baseline).

  soak.py --build build/release [--seconds 60] [--concurrency 200]
"""
import argparse
import asyncio
import os
import re
import signal
import socket
import ssl
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


async def client(port, ctx, deadline, stats, rst):
    msg = os.urandom(64)
    while time.monotonic() < deadline:
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                        server_hostname="localhost" if ctx else None), 10)
            w.write(msg)
            got = await asyncio.wait_for(r.readexactly(len(msg)), 10)
            if got != msg:
                stats["mismatch"] += 1
            if rst and not ctx:
                sock = w.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.close()
            try:
                await asyncio.wait_for(w.wait_closed(), 10)
            except (ConnectionError, ssl.SSLError, asyncio.TimeoutError):
                pass
            stats["ok"] += 1
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            stats["failed"] += 1
            await asyncio.sleep(0.01)


async def churn(port, ctx, seconds, concurrency, pid):
    stats = {"ok": 0, "failed": 0, "mismatch": 0}
    samples = []
    deadline = time.monotonic() + seconds
    tasks = [asyncio.create_task(client(port, ctx, deadline, stats, i % 2 == 1))
             for i in range(concurrency)]
    start = time.monotonic()
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - start, rss_kib(pid), fds(pid), stats["ok"]))
        await asyncio.sleep(1)
    await asyncio.gather(*tasks)
    samples.append((time.monotonic() - start, rss_kib(pid), fds(pid), stats["ok"]))
    return stats, samples


def start_server(binary, args):
    p = subprocess.Popen([binary, "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r":(\d+)$", line.strip())
    if not m:
        p.kill()
        sys.exit(f"soak: {binary} did not start: {line!r}")
    return p, int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=200)
    a = ap.parse_args()
    binary = os.path.join(a.build, "examples", "echo_server")
    tmp = tempfile.mkdtemp(prefix="aioring-soak-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    client_ctx = ssl.create_default_context()
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    runs = [("protocol", ["--api", "protocol"], None),
            ("buffered", ["--api", "buffered"], None),
            ("streams", ["--api", "streams"], None),
            ("protocol+TLS", ["--api", "protocol", "--cert", cert, "--key", key], client_ctx)]
    print(f"soak: {a.seconds:g} s per server, {a.concurrency} clients churning connections "
          f"(connect, 64 B echo, close; every other one closes with RST)")
    failed = False
    for name, args, ctx in runs:
        p, port = start_server(binary, args)
        time.sleep(0.2)
        base_rss, base_fds = rss_kib(p.pid), fds(p.pid)
        stats, samples = asyncio.run(churn(port, ctx, a.seconds, a.concurrency, p.pid))
        time.sleep(0.5)  # the last closes reach the server
        end_rss, end_fds = rss_kib(p.pid), fds(p.pid)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
        mid = samples[len(samples) // 2]
        peak_rss = max(s[1] for s in samples)
        peak_fds = max(s[2] for s in samples)
        print(f"{name:13s} connections {stats['ok']:7d} ({stats['ok'] / a.seconds:6.0f}/s) "
              f"failed {stats['failed']} mismatched {stats['mismatch']} | RSS KiB start {base_rss} "
              f"mid {mid[1]} end {samples[-1][1]} peak {peak_rss} idle {end_rss} | fds start "
              f"{base_fds} peak {peak_fds} idle {end_fds} | exit {rc}")
        if end_fds != base_fds or stats["mismatch"] or rc != 0:
            failed = True
    subprocess.run(["rm", "-rf", tmp])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
