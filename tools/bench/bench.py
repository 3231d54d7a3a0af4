#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""tools/dev bench: aioring's echo servers against their peers under aioring-load.

Runs every server (aioring's echo_server per API, Python asyncio and uvloop with Protocol and
streams, a raw liburing echo; for UDP udp_echo_server against asyncio and uvloop datagram
servers; for TLS echo_server --cert/--key against asyncio and uvloop TLS servers) under the
same workloads, server and load pinned to different
cores, servers interleaved, each workload repeated (median of the repetitions). Prints one
markdown table: msgs/s, MB/s, p99 latency, and the server's CPU time per message (from
/proc/PID/stat, utime + stime over the measured window), with each server's ratio to aioring's
Protocol echo. Then aioring-load against a minimal epoll client, driving the same server, and
wrk against aioring-load --protocol http, driving examples/http_server (--workloads http: only that).
"""
import argparse
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")

WORKLOADS = [
    # name, aioring-load arguments, the family of servers it runs against
    ("64 B ping-pong, 50 conns", ["--mode", "echo", "--size", "64", "--connections", "50"], "tcp"),
    ("1 KiB ping-pong, 50 conns", ["--mode", "echo", "--size", "1024", "--connections", "50"], "tcp"),
    ("64 KiB stream, 10 conns", ["--mode", "stream", "--size", "65536", "--connections", "10"], "tcp"),
    ("UDP 64 B, 50 sockets", ["--mode", "udp", "--size", "64", "--connections", "50"], "udp"),
    ("TLS 1 KiB ping-pong, 50 conns", ["--tls", "--mode", "echo", "--size", "1024", "--connections", "50"], "tls"),
    ("TLS 64 KiB stream, 10 conns", ["--tls", "--mode", "stream", "--size", "65536", "--connections", "10"], "tls"),
]
# Each family's ratios are against aioring's own server of that family.
BASELINES = {"tcp": "aioring protocol", "udp": "aioring udp", "tls": "aioring tls protocol"}
BASELINE = BASELINES["tcp"]


def python_with_uvloop():
    """The Python to run the peers with: one that has uvloop (Debian's python3-uvloop belongs to
    /usr/bin/python3, which may not be the python3 first on PATH), else this one."""
    for exe in (sys.executable, "/usr/bin/python3"):
        if exe and os.access(exe, os.X_OK) and subprocess.run(
                [exe, "-c", "import uvloop"], capture_output=True).returncode == 0:
            return exe, True
    return sys.executable, False


def make_certificate(directory):
    """A self-signed EC certificate for the TLS workloads (aioring-load --tls does not verify)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


def servers(build, cert, key):
    """(name, command, family) for every server the bench knows."""
    echo = os.path.join(build, "examples", "echo_server")
    exe, has_uvloop = python_with_uvloop()
    py = [exe, os.path.join(HERE, "py_echo_server.py")]
    tls = ["--cert", cert, "--key", key]
    out = [
        ("aioring protocol", [echo, "--api", "protocol"], "tcp"),
        ("aioring buffered", [echo, "--api", "buffered"], "tcp"),
        ("aioring streams", [echo, "--api", "streams"], "tcp"),
        # The same server on the epoll backend (io_uring emulated on a readiness loop).
        ("aioring epoll protocol", [shutil.which("env") or "/usr/bin/env", "AIORING_BACKEND=epoll",
                                    echo, "--api", "protocol"], "tcp"),
        ("raw liburing", [os.path.join(build, "tools", "raw_uring_echo")], "tcp"),
        ("asyncio protocol", py + ["--loop", "asyncio", "--api", "protocol"], "tcp"),
        ("asyncio streams", py + ["--loop", "asyncio", "--api", "streams"], "tcp"),
        ("aioring udp", [os.path.join(build, "examples", "udp_echo_server"), "--quiet"], "udp"),
        ("asyncio udp", [exe, os.path.join(HERE, "peers", "udp_echo_asyncio.py")], "udp"),
        ("aioring tls protocol", [echo, "--api", "protocol"] + tls, "tls"),
        ("aioring tls streams", [echo, "--api", "streams"] + tls, "tls"),
        ("asyncio tls protocol", py + ["--loop", "asyncio", "--api", "protocol"] + tls, "tls"),
    ]
    if has_uvloop:
        out += [("uvloop protocol", py + ["--loop", "uvloop", "--api", "protocol"], "tcp"),
                ("uvloop streams", py + ["--loop", "uvloop", "--api", "streams"], "tcp"),
                ("uvloop udp", [exe, os.path.join(HERE, "peers", "udp_echo_uvloop.py")], "udp"),
                ("uvloop tls protocol", py + ["--loop", "uvloop", "--api", "protocol"] + tls, "tls")]
    else:
        print("note: python3-uvloop is not installed; uvloop servers skipped", file=sys.stderr)
    return out


def pin(cpu, cmd):
    if cpu is None or not shutil.which("taskset"):
        return cmd
    return ["taskset", "-c", str(cpu)] + cmd


class Server:
    """A server process on an ephemeral port; port is None when it would not start."""

    def __init__(self, cmd, cpu):
        self.proc = subprocess.Popen(pin(cpu, cmd + ["--port", "0"]), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.port = None
        self.error = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.error = self.proc.stderr.read().strip().splitlines()[:1]
                self.error = self.error[0] if self.error else "exited with %s" % self.proc.wait()
                return
            if line.startswith("Serving on"):
                self.port = int(line.rsplit(":", 1)[1])
                return
        self.error = "did not print 'Serving on' within 10 s"

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_load(args, load_bin, port, extra, warmup, duration, cpu, server=None):
    """Runs aioring-load; returns its JSON and the server's CPU seconds over the window."""
    cmd = pin(cpu, [load_bin, "--port", str(port), "--json", "--no-progress",
                    "--warmup", str(warmup), "--duration", str(duration)] + extra)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu_s = None
    if server is not None:
        # aioring-load spends a moment connecting before its warm-up starts; the window is
        # sampled from just after the warm-up to just before the end.
        time.sleep(warmup + 0.1)
        c0, t0 = server.cpu_seconds(), time.monotonic()
        time.sleep(max(0.1, duration - 0.2))
        c1, t1 = server.cpu_seconds(), time.monotonic()
        cpu_s = (c1 - c0, t1 - t0)
    out, err = p.communicate(timeout=duration + warmup + 60)
    if p.returncode != 0:
        raise RuntimeError(err.strip().splitlines()[0] if err.strip() else "exit %d" % p.returncode)
    return json.loads(out), cpu_s


WRK_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def run_wrk(port, connections, duration, cpu):
    """wrk -t1 against http://127.0.0.1:PORT/: (requests/s, client CPU us/request, {pct: us})."""
    cmd = pin(cpu, ["wrk", "-t1", "-c", str(connections), "-d", "%gs" % duration, "--latency",
                    "http://127.0.0.1:%d/" % port])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = status
    rate, requests, pct = None, None, {}
    in_dist = False
    for line in out.splitlines():
        f = line.split()
        if line.startswith("Requests/sec:"):
            rate = float(f[1])
        elif len(f) >= 2 and f[1] == "requests" and f[0].isdigit():
            requests = int(f[0])
        elif line.strip().startswith("Latency Distribution"):
            in_dist = True
        elif in_dist and len(f) == 2 and f[0].endswith("%"):
            value = f[1]
            unit = next(u for u in ("us", "ms", "s") if value.endswith(u))
            pct[float(f[0][:-1])] = float(value[: -len(unit)]) * WRK_UNITS[unit]
        elif in_dist:
            in_dist = False
    if rate is None or not requests:
        raise RuntimeError("wrk printed no result: " + out.strip()[:200])
    if any(k in out for k in ("Non-2xx", "Socket errors")):
        print("wrk: " + " ".join(l.strip() for l in out.splitlines() if "errors" in l or "Non-2xx" in l),
              file=sys.stderr)
    return rate, (usage.ru_utime + usage.ru_stime) / requests * 1e6, pct


def run_load_http(load_bin, port, connections, duration, cpu):
    """aioring-load --protocol http, one thread, no warm-up (as wrk): the same three figures."""
    cmd = pin(cpu, [load_bin, "--protocol", "http", "--port", str(port), "--connections", str(connections),
                    "--threads", "1", "--warmup", "0", "--duration", str(duration), "--json", "--no-progress"])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = status
    if not out.strip():
        raise RuntimeError(err.strip().splitlines()[0] if err.strip() else "no output")
    r = json.loads(out)
    if not r["messages"]:
        raise RuntimeError("no replies")
    lat = r["latency_us"]
    return (r["msgs_per_s"], (usage.ru_utime + usage.ru_stime) / r["messages"] * 1e6,
            {50.0: lat["p50"], 90.0: lat["p90"], 99.0: lat["p99"]})


def http_comparison(build, load_bin, reps, duration, server_cpu, load_cpu):
    """wrk and aioring-load --protocol http side by side against examples/http_server: one
    thread each, 50 keep-alive connections, alternated; prints a table of medians."""
    server_bin = os.path.join(build, "examples", "http_server")
    if not shutil.which("wrk") or not os.access(server_bin, os.X_OK):
        print("skip the HTTP comparison: wrk or http_server missing", file=sys.stderr)
        return
    runs = {"wrk": [], "aioring-load": []}
    for i in range(max(3, reps)):
        for tool in (("wrk", "aioring-load") if i % 2 == 0 else ("aioring-load", "wrk")):
            s = Server([server_bin], server_cpu)
            try:
                if s.port is None:
                    raise RuntimeError(s.error)
                if tool == "wrk":
                    row = run_wrk(s.port, 50, duration, load_cpu)
                else:
                    row = run_load_http(load_bin, s.port, 50, duration, load_cpu)
                runs[tool].append(row)
                print(f"http check: {tool:14} {row[0]:>12,.0f} req/s, client cpu {row[1]:.2f} us/req, "
                      f"p50 {row[2].get(50.0, 0):.0f} us p99 {row[2].get(99.0, 0):.0f} us", file=sys.stderr)
            except Exception as e:
                print(f"http check: {tool} failed: {e}", file=sys.stderr)
            finally:
                s.stop()
    if not runs["wrk"] or not runs["aioring-load"]:
        return
    med = {t: (median([r[0] for r in rows]), median([r[1] for r in rows]),
               {p: median([r[2].get(p) for r in rows]) for p in (50.0, 90.0, 99.0)})
           for t, rows in runs.items()}
    print()
    print("HTTP: wrk against aioring-load --protocol http, one thread each, 50 keep-alive "
          f"connections to examples/http_server (median of {len(runs['wrk'])} alternated runs of "
          f"{duration:g} s):")
    print()
    print("| client | req/s | ratio | client CPU us/req | CPU ratio | p50 us | p90 us | p99 us |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    w = med["wrk"]
    for t in ("aioring-load", "wrk"):
        rate, cpu, pct = med[t]
        print(f"| {t} | {fmt(rate)} | {rate / w[0]:.2f}x | {cpu:.2f} | {cpu / w[1]:.2f}x | "
              f"{fmt(pct[50.0])} | {fmt(pct[90.0])} | {fmt(pct[99.0])} |")
    print()
    print("Both are closed loop (a new request as each reply comes back). wrk's percentiles come "
          "from its own histogram, aioring-load's from its --json; aioring-load also parses "
          "and counts every reply's status.")


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=0):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--quick", action="store_true", help="1 repetition of 2 s each")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--only", default="", help="comma-separated substrings of server names")
    ap.add_argument("--workloads", default="", help="comma-separated substrings of workload names")
    ap.add_argument("--baseline", default="",
                    help="another build tree (e.g. of an earlier commit): its echo_server APIs "
                         "run beside this build's, as 'baseline <api>'")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    duration = args.duration or (2.0 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)

    load_bin = os.path.join(args.build, "tools", "aioring-load")
    if not os.access(load_bin, os.X_OK):
        sys.exit(f"bench: {load_bin} not found: build the release preset first (tools/dev bench)")
    ncpu = os.cpu_count() or 1
    server_cpu, load_cpu = (0, 1) if ncpu >= 2 else (None, None)

    certdir = tempfile.mkdtemp(prefix="aioring-bench-")
    atexit.register(shutil.rmtree, certdir, True)
    cert, key = make_certificate(certdir)
    candidates = servers(args.build, cert, key)
    if args.baseline:
        base_echo = os.path.join(args.baseline, "examples", "echo_server")
        candidates += [(f"baseline {api}", [base_echo, "--api", api], "tcp")
                       for api in ("protocol", "buffered", "streams")]
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        candidates = [s for s in candidates if any(k in s[0] for k in keys)]
    families = {c[2] for c in candidates}
    workloads = [w for w in WORKLOADS if w[2] in families]
    if args.workloads:
        keys = [k.strip() for k in args.workloads.split(",") if k.strip()]
        workloads = [w for w in workloads if any(k in w[0] for k in keys)]
    # Drop the servers that cannot start here (a missing binary, an --api not built yet).
    available = []
    for name, cmd, family in candidates:
        if not os.access(cmd[0], os.X_OK):
            print(f"skip {name}: {cmd[0]} not built", file=sys.stderr)
            continue
        s = Server(cmd, server_cpu)
        s.stop()
        if s.port is None:
            print(f"skip {name}: {s.error}", file=sys.stderr)
            continue
        available.append((name, cmd, family))
    if not available:
        sys.exit("bench: no server could start")

    total = reps * sum(1 for w in workloads for a in available if a[2] == w[2])
    print(f"bench: {len(available)} servers, {len(workloads)} workloads, {reps} repetitions, "
          f"{warmup:g} s warm-up + {duration:g} s each (about {total * (warmup + duration + 1.5) / 60:.0f} min); "
          f"server on cpu {server_cpu}, load on cpu {load_cpu}", file=sys.stderr)

    results = {}  # (workload, server) -> list of (msgs/s, MB/s, p99, cpu us/msg, errors)
    epoll = {"aioring-load": [], "epoll_client": []}
    epoll_bin = os.path.join(args.build, "tools", "epoll_client")
    done = 0
    for rep in range(reps):
        for wname, wargs, wfamily in workloads:
            # Interleave: each repetition visits the servers in a rotated order.
            mine = [a for a in available if a[2] == wfamily]
            if not mine:
                continue
            order = mine[rep % len(mine):] + mine[:rep % len(mine)]
            for name, cmd, _ in order:
                done += 1
                s = Server(cmd, server_cpu)
                try:
                    if s.port is None:
                        raise RuntimeError(s.error)
                    r, (cpu_s, window) = run_load(args, load_bin, s.port, wargs, warmup, duration,
                                                  load_cpu, s)
                    msgs_in_window = r["msgs_per_s"] * window
                    cpu_us = cpu_s / msgs_in_window * 1e6 if msgs_in_window else None
                    row = (r["msgs_per_s"], r["mb_per_s"], r["latency_us"]["p99"], cpu_us, r["errors"])
                    print(f"[{done}/{total}] {wname:26} {name:18} {r['msgs_per_s']:>12,.0f} msg/s "
                          f"cpu {fmt(cpu_us, 2)} us/msg errors {r['errors']}", file=sys.stderr)
                except Exception as e:  # one failed run must not lose the rest of the bench
                    print(f"[{done}/{total}] {wname:26} {name:18} failed: {e}", file=sys.stderr)
                    row = None
                finally:
                    s.stop()
                if row:
                    results.setdefault((wname, name), []).append(row)
        # The load tool against a minimal epoll client, one thread each, same server, same core;
        # alternated and repeated at least 3 times even with --quick, since the pair is a ratio.
        if os.access(epoll_bin, os.X_OK):
            target = next((c for n, c, _ in available if n == BASELINE), available[0][1])
            pairs = 1 if reps >= 3 else (3 if rep == reps - 1 else 0)
            for i in range(pairs):
                tools = ("aioring-load", "epoll_client") if (rep + i) % 2 == 0 else ("epoll_client", "aioring-load")
                for tool in tools:
                    s = Server(target, server_cpu)
                    try:
                        base = ["--port", str(s.port), "--connections", "50", "--size", "64",
                                "--warmup", str(warmup), "--duration", str(duration)]
                        if tool == "aioring-load":
                            cmd = [load_bin, "--json", "--no-progress", "--threads", "1"] + base
                        else:
                            cmd = [epoll_bin] + base
                        p = subprocess.Popen(pin(load_cpu, cmd), stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, text=True)
                        stdout = p.stdout.read()
                        _, _, usage = os.wait4(p.pid, 0)
                        p.returncode = 0
                        rate = json.loads(stdout)["msgs_per_s"]
                        # The client's own CPU per message (warm-up included on both sides):
                        # what matters when the server, not the client, sets the pace.
                        cpu_us = (usage.ru_utime + usage.ru_stime) / (rate * (warmup + duration)) * 1e6
                        epoll[tool].append((rate, cpu_us))
                        print(f"load tool check: {tool:14} {rate:>12,.0f} msg/s, "
                              f"client cpu {cpu_us:.2f} us/msg", file=sys.stderr)
                    except Exception as e:
                        print(f"{tool} vs epoll: failed: {e}", file=sys.stderr)
                    finally:
                        s.stop()

    # The table.
    print()
    print(f"Echo servers under aioring-load ({reps} repetition{'s' if reps > 1 else ''}, "
          f"median; {duration:g} s measured after {warmup:g} s warm-up; {ncpu} cores, "
          f"server on cpu {server_cpu}, load on cpu {load_cpu})")
    print()
    print("| workload | server | msgs/s | MB/s | p99 us | server CPU us/msg | msgs/s vs aioring | CPU/msg vs aioring |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for wname, _, wfamily in workloads:
        base = results.get((wname, BASELINES[wfamily]))
        base_rate = median([r[0] for r in base]) if base else None
        base_cpu = median([r[3] for r in base]) if base else None
        for name, _, family in available:
            if family != wfamily:
                continue
            rows = results.get((wname, name))
            if not rows:
                print(f"| {wname} | {name} | failed | | | | | |")
                continue
            rate, mb, p99, cpu = (median([r[i] for r in rows]) for i in range(4))
            errors = sum(r[4] for r in rows)
            ratio_rate = f"{rate / base_rate:.2f}x" if base_rate and rate else "n/a"
            ratio_cpu = f"{cpu / base_cpu:.2f}x" if base_cpu and cpu else "n/a"
            flag = f" ({errors} errors)" if errors else ""
            print(f"| {wname} | {name}{flag} | {fmt(rate)} | {fmt(mb, 1)} | {fmt(p99)} | "
                  f"{fmt(cpu, 2)} | {ratio_rate} | {ratio_cpu} |")
    print()
    if ncpu <= 2:
        print("How to read it: on a 2-core machine the load core saturates before a fast server "
              "does, so msgs/s is capped by the load generator for every fast server; the "
              "server's CPU time per message is the figure that ranks fast servers (lower is "
              "better; a ratio above 1.00x costs more CPU than aioring's own server of that kind: "
              "the Protocol echo for TCP and TLS, udp_echo_server for UDP).")
    else:
        print("How to read it: msgs/s and p99 compare servers while the load core keeps up; "
              "the server's CPU time per message compares their cost (lower is better).")
    if epoll["aioring-load"] and epoll["epoll_client"]:
        a, e = (median([r[0] for r in epoll[t]]) for t in ("aioring-load", "epoll_client"))
        ac, ec = (median([r[1] for r in epoll[t]]) for t in ("aioring-load", "epoll_client"))
        print()
        print("Is aioring-load the bottleneck? One thread of each against the same server "
              f"(64 B ping-pong, 50 connections; median of {len(epoll['epoll_client'])} alternated runs):")
        print()
        print("| client | msgs/s | ratio | client CPU us/msg |")
        print("|---|---:|---:|---:|")
        print(f"| aioring-load --threads 1 | {fmt(a)} | {a / e:.2f}x | {ac:.2f} |")
        print(f"| minimal epoll client | {fmt(e)} | 1.00x | {ec:.2f} |")
        print()
        print("aioring-load checks every echoed byte and records every latency; the epoll client "
              "does neither. A msgs/s ratio of 1.00x or more means the tool is not the bottleneck; "
              "when neither client uses its whole core (the server sets the pace), compare their "
              "CPU per message instead.")
    if not args.workloads or "http" in args.workloads:
        http_comparison(args.build, load_bin, reps, duration, server_cpu, load_cpu)


if __name__ == "__main__":
    main()
