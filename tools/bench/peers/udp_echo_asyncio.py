#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""UDP echo server on Python asyncio, the bench's peer for aioring's udp_echo_server.

usage: udp_echo_asyncio.py [--host 127.0.0.1] [--port 9999]
Prints "Serving on HOST:PORT" (the port actually bound, so --port 0 works), then echoes every
datagram to its sender, printing nothing per datagram, until SIGINT/SIGTERM (exit 0).
"""
import argparse
import asyncio
import signal


class EchoDatagramProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)

    def error_received(self, exc):
        pass  # an ICMP error from a client that went away: keep serving


async def serve(host, port):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(EchoDatagramProtocol, local_addr=(host, port))
    sockname = transport.get_extra_info("sockname")
    shown = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
    print(f"Serving on {shown}:{sockname[1]}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    transport.close()


def parse(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9999)
    return p.parse_args()


if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    asyncio.run(serve(args.host, args.port))
