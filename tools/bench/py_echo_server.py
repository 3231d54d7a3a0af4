#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Python echo servers for the bench: asyncio or uvloop, Protocol or streams API.

usage: py_echo_server.py [--loop asyncio|uvloop] [--api protocol|streams] [--host H] [--port P]
                         [--cert FILE --key FILE]
Prints "Serving on HOST:PORT" (as aioring's echo_server does) and echoes every byte until
SIGINT/SIGTERM. Like echo_server it stops reading while the peer is not reading (back-pressure).
With --cert/--key it serves TLS, as echo_server --cert/--key does.
"""
import argparse
import asyncio
import signal
import ssl
import sys


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def handle_stream(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(args):
    loop = asyncio.get_running_loop()
    ctx = None
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
    if args.api == "protocol":
        server = await loop.create_server(EchoProtocol, args.host, args.port, ssl=ctx)
    else:
        server = await asyncio.start_server(handle_stream, args.host, args.port, ssl=ctx)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"Serving on {host}:{port}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    p.add_argument("--api", choices=["protocol", "streams"], default="protocol")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--cert", default="")
    p.add_argument("--key", default="")
    args = p.parse_args()
    if args.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(args))
    sys.exit(0)
