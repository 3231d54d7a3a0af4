#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""UDP echo server on uvloop, the bench's peer for aioring's udp_echo_server.

usage: udp_echo_uvloop.py [--host 127.0.0.1] [--port 9999]
The same server as udp_echo_asyncio.py, on uvloop's event loop (Debian: python3-uvloop).
Prints "Serving on HOST:PORT", echoes every datagram, exits 0 on SIGINT/SIGTERM.
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from udp_echo_asyncio import parse, serve  # noqa: E402

import uvloop  # noqa: E402

if __name__ == "__main__":
    args = parse(__doc__.splitlines()[0])
    uvloop.install()
    asyncio.run(serve(args.host, args.port))
