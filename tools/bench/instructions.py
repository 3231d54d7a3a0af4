#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""tools/dev bench --instructions: user-space instructions per message and per MiB, server side.

Runs aioring's echo_server (--api protocol|buffered|streams) and the raw liburing echo under
valgrind --tool=callgrind and drives each with aioring-load (running natively) through the
bench's TCP workloads: 64 B ping-pong (instructions per message) and 64 KiB streaming
(instructions per MiB echoed). Instruction counts do not depend on how busy this machine is,
so a change's effect shows where MB/s on a shared machine would be noise.

Method: the server is started under callgrind, warmed up by one load run, its counters are
zeroed (callgrind_control -z), then a short and a long load run follow, each ended by a dump
(callgrind_control -d; it works while the server waits in io_uring_enter). The figure is the
difference of the two windows over the difference of their work, so connection set-up and
teardown, and what is in flight when a run stops, cancel out. glibc's memcpy is kept off
`rep movsb` (GLIBC_TUNABLES=glibc.cpu.hwcaps=-ERMS,-FSRM), which valgrind would count once per
byte. Receive completions per MiB are callgrind's call counts of the receive handler.

Copies per byte echoed come from a second, native run of each server with a preloaded shim
(libaioring_copy_counter.so) that counts the bytes passed to memcpy/memmove, read the same
way (long window minus short window, over the bytes echoed in the difference).

Under callgrind a server runs some 30-50 times slower, so with many connections it finds more
completions per loop iteration than natively: per-iteration costs weigh less than they would on
a fast machine. The ratios between servers are the point.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TUNABLES = "glibc.cpu.hwcaps=-ERMS,-FSRM"
MIB = 1 << 20

WORKLOADS = [
    # key, title, aioring-load arguments, unit
    ("pingpong", "64 B ping-pong, 50 conns", ["--mode", "echo", "--size", "64", "--connections", "50"], "msg"),
    ("stream", "64 KiB stream, 10 conns", ["--mode", "stream", "--size", "65536", "--connections", "10"], "MiB"),
]
RAW = "raw liburing"
# The receive handler whose calls callgrind counts: one call per receive completion.
AIORING_RECV = "StreamTransport::RecvOp::complete("


def servers(build):
    echo = os.path.join(build, "examples", "echo_server")
    return [
        ("aioring protocol", [echo, "--api", "protocol"], AIORING_RECV),
        ("aioring buffered", [echo, "--api", "buffered"], AIORING_RECV),
        ("aioring streams", [echo, "--api", "streams"], AIORING_RECV),
        (RAW, [os.path.join(build, "tools", "raw_uring_echo")], "on_recv("),
    ]


class Server:
    def __init__(self, cmd, prefix, env, workdir):
        self.stderr = open(os.path.join(workdir, "server.stderr"), "w")
        self.proc = subprocess.Popen(prefix + cmd + ["--port", "0"], stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, env=env)
        self.port = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("Serving on"):
                self.port = int(line.rsplit(":", 1)[1])
                return
        self.stop()
        raise RuntimeError(f"{cmd[0]} did not start (see {self.stderr.name})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def load(load_bin, port, wargs, duration):
    cmd = [load_bin, "--port", str(port), "--json", "--no-progress", "--warmup", "0",
           "--duration", str(duration)] + wargs
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if p.returncode != 0:
        raise RuntimeError("aioring-load: " + (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[0])
    r = json.loads(p.stdout)
    if r["errors"]:
        raise RuntimeError(f"aioring-load reported {r['errors']} errors")
    return r


def work(r, unit):
    return r["messages"] if unit == "msg" else r["bytes"] / MIB


def parse_dump(path, call_patterns):
    """Total Ir of a callgrind dump, and the summed call counts of functions matching patterns."""
    total = None
    calls = {p: 0 for p in call_patterns}
    current = None
    with open(path) as f:
        for line in f:
            if line.startswith("cfn="):
                current = line[4:]
            elif line.startswith("calls=") and current is not None:
                n = int(line[6:].split()[0])
                for p in call_patterns:
                    if p in current:
                        calls[p] += n
                current = None
            elif line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
    if total is None:
        raise RuntimeError(f"no totals in {path}")
    return total, calls


def callgrind_dump(pid, outbase, done_before):
    """Asks the server for a dump and returns the new dump file's path."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        files = sorted(set(glob.glob(outbase + ".*")) - done_before)
        if files:
            time.sleep(0.2)  # the dump is written by the time callgrind_control returns; be safe
            return files[-1]
        time.sleep(0.1)
    raise RuntimeError("callgrind dump did not appear")


def measure_instructions(cmd, recv_handler, wargs, unit, args, load_bin, workdir):
    outbase = os.path.join(workdir, "callgrind.out")
    for f in glob.glob(outbase + "*"):
        os.unlink(f)
    prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={outbase}", "--dump-instr=no",
              "--dump-line=no", "--compress-strings=no", "--compress-pos=no"]
    env = dict(os.environ, GLIBC_TUNABLES=TUNABLES)
    s = Server(cmd, prefix, env, workdir)
    try:
        load(load_bin, s.port, wargs, args.warmup)
        subprocess.run(["callgrind_control", "-z", str(s.proc.pid)], check=True, capture_output=True, timeout=120)
        seen = set(glob.glob(outbase + ".*"))
        r1 = load(load_bin, s.port, wargs, args.short)
        d1 = callgrind_dump(s.proc.pid, outbase, seen)
        seen.add(d1)
        r2 = load(load_bin, s.port, wargs, args.long)
        d2 = callgrind_dump(s.proc.pid, outbase, seen)
    finally:
        s.stop()
    (i1, c1), (i2, c2) = parse_dump(d1, [recv_handler]), parse_dump(d2, [recv_handler])
    w = work(r2, unit) - work(r1, unit)
    if w < 0.5 * work(r1, unit):
        # The machine slowed down in the long window: the difference would be mostly noise.
        raise Retry(f"the long run did little more work than the short one ({work(r2, unit):g} vs {work(r1, unit):g})")
    mib = (r2["bytes"] - r1["bytes"]) / MIB
    recv = (c2[recv_handler] - c1[recv_handler]) / mib if mib > 0 else None
    return (i2 - i1) / w, recv


def measure_copies(cmd, wargs, args, load_bin, shim, workdir):
    counter = os.path.join(workdir, "copies")
    with open(counter, "wb") as f:
        f.write(b"\0" * 8)
    env = dict(os.environ, LD_PRELOAD=shim, AIORING_COPY_COUNTER=counter)

    def read():
        with open(counter, "rb") as f:
            return struct.unpack("<Q", f.read(8))[0]

    s = Server(cmd, [], env, workdir)
    try:
        load(load_bin, s.port, wargs, args.warmup)
        time.sleep(0.2)
        c0 = read()
        r1 = load(load_bin, s.port, wargs, args.short)
        time.sleep(0.2)  # what was in flight when the run stopped is echoed (or dropped) by now
        c1 = read()
        r2 = load(load_bin, s.port, wargs, args.long)
        time.sleep(0.2)
        c2 = read()
    finally:
        s.stop()
    echoed = r2["bytes"] - r1["bytes"]
    if echoed < 0.5 * r1["bytes"]:
        raise Retry("the long run echoed little more than the short one")
    return ((c2 - c1) - (c1 - c0)) / echoed


class Retry(RuntimeError):
    """A measurement spoilt by the machine's load; worth another try."""


def attempt(fn, *a, tries=3):
    for i in range(tries):
        try:
            return fn(*a)
        except Retry as e:
            if i == tries - 1:
                raise
            print(f"  retrying: {e}", file=sys.stderr)


def fmt(x, digits=0):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--only", default="", help="comma-separated substrings of server names")
    ap.add_argument("--workloads", default="", help="comma-separated: pingpong, stream")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before counting")
    ap.add_argument("--short", type=float, default=1.0, help="the short window, seconds")
    ap.add_argument("--long", type=float, default=4.0, help="the long window, seconds")
    ap.add_argument("--no-copies", action="store_true", help="skip the copies-per-byte runs")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = ap.parse_args()
    if args.long <= args.short:
        ap.error("--long must be longer than --short")
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            sys.exit(f"bench --instructions: {tool} not found (apt-get install valgrind)")
    load_bin = os.path.join(args.build, "tools", "aioring-load")
    shim = os.path.join(args.build, "tools", "libaioring_copy_counter.so")
    if not os.access(load_bin, os.X_OK):
        sys.exit(f"bench --instructions: {load_bin} not found: build the release preset first")
    if not args.no_copies and not os.path.exists(shim):
        sys.exit(f"bench --instructions: {shim} not found: build the release preset first")

    todo = servers(args.build)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        todo = [s for s in todo if any(k in s[0] for k in keys)]
    workloads = WORKLOADS
    if args.workloads:
        keys = [k.strip() for k in args.workloads.split(",") if k.strip()]
        workloads = [w for w in WORKLOADS if w[0] in keys]
    env_note = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith("AIORING_"))

    results = {}
    workdir = tempfile.mkdtemp(prefix="aioring-instr-")
    try:
        for name, cmd, recv_handler in todo:
            if not os.access(cmd[0], os.X_OK):
                print(f"skip {name}: {cmd[0]} not built", file=sys.stderr)
                continue
            for key, title, wargs, unit in workloads:
                row = {}
                try:
                    row["instructions"], row["recv_per_mib"] = attempt(
                        measure_instructions, cmd, recv_handler, wargs, unit, args, load_bin, workdir)
                    if not args.no_copies:
                        row["copies_per_byte"] = attempt(
                            measure_copies, cmd, wargs, args, load_bin, shim, workdir)
                    print(f"{title:26} {name:18} {fmt(row['instructions'])} instructions/{unit}, "
                          f"{fmt(row.get('recv_per_mib'), 1)} receive completions/MiB, "
                          f"{fmt(row.get('copies_per_byte'), 2)} copies/byte", file=sys.stderr)
                except Exception as e:  # one failed run must not lose the rest
                    print(f"{title:26} {name:18} failed: {e}", file=sys.stderr)
                    row = None
                results[(key, name)] = row
    finally:
        shutil.rmtree(workdir, True)

    print()
    print("Server-side user-space instructions under callgrind (long window minus short window: "
          f"{args.long:g} s - {args.short:g} s of aioring-load){'; ' + env_note if env_note else ''}")
    print()
    print("| workload | server | instructions | vs raw | receive completions/MiB | copies/byte |")
    print("|---|---|---:|---:|---:|---:|")
    for key, title, _, unit in workloads:
        raw = results.get((key, RAW))
        for name, _, _ in todo:
            if (key, name) not in results:
                continue
            row = results[(key, name)]
            if not row:
                print(f"| {title} | {name} | failed | | | |")
                continue
            ratio = f"{row['instructions'] / raw['instructions']:.2f}x" if raw else "n/a"
            print(f"| {title} | {name} | {fmt(row['instructions'])} /{unit} | {ratio} | "
                  f"{fmt(row.get('recv_per_mib'), 1)} | {fmt(row.get('copies_per_byte'), 2)} |")
    if args.json:
        print(json.dumps({f"{k}/{n}": v for (k, n), v in results.items()}))


if __name__ == "__main__":
    main()
