#!/usr/bin/env python3
"""A WebSocket backend for the integration tests (the `websockets` package).

    ws_echo.py --port 8080 --name ws

On connect it sends one JSON text message describing the handshake it received
(backend name, path, request headers); after that it echoes every message back,
text as text and binary as binary.
"""

import argparse
import asyncio
import json
import signal

from websockets.asyncio.server import serve


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="ws")
    args = ap.parse_args()

    async def handler(ws):
        req = ws.request
        await ws.send(
            json.dumps(
                {
                    "backend": args.name,
                    "path": req.path,
                    "headers": {k.lower(): v for k, v in req.headers.raw_items()},
                }
            )
        )
        async for message in ws:
            await ws.send(message)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(handler, args.host, args.port, max_size=None):
        print("listening on %s:%d as %s" % (args.host, args.port, args.name), flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
