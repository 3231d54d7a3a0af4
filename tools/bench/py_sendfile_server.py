#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The bench's file server in Python asyncio: loop.sendfile of the whole file to every
connection, then EOF (tools/dev bench --sendfile). Prints `Serving on HOST:PORT`."""
import argparse
import asyncio
import signal


class Sender(asyncio.Protocol):
    def __init__(self, path):
        self.path = path

    def connection_made(self, transport):
        asyncio.get_running_loop().create_task(self.send(transport))

    async def send(self, transport):
        loop = asyncio.get_running_loop()
        with open(self.path, "rb") as f:
            try:
                await loop.sendfile(transport, f)
            except OSError:
                pass
        transport.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Sender(args.file), "127.0.0.1", args.port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"Serving on {host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
