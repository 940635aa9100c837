#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one GET on each and reads the
whole response, then keeps every connection open and idle.

    idle_conns.py HOST PORT N PATH HOSTHEADER

Prints one JSON line on stdout once all connections have been tried:
    {"open": <connections holding a complete 200 response>, "failed": <count>,
     "first_error": "..." | null, "seconds": <time to open them all>}
then waits for a line (or end of file) on stdin and closes them all.
Stdlib only; the caller raises the open-file limit (`ulimit -n`) beforehand.
"""

import asyncio
import json
import sys
import time

CONCURRENCY = 200  # connects in flight at once: well under any listen backlog


async def open_one(host, port, request, sem, conns, errors):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await asyncio.wait_for(reader.readexactly(length), 30)
            if not 200 <= status < 300:
                raise RuntimeError("status %d" % status)
            conns.append(writer)
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            errors.append("%s: %s" % (type(e).__name__, e))


async def main():
    host, port, n, path, host_header = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    request = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: portico-bench-idle\r\n\r\n" % (path, host_header)).encode()
    sem = asyncio.Semaphore(CONCURRENCY)
    conns, errors = [], []
    t0 = time.monotonic()
    await asyncio.gather(*(open_one(host, port, request, sem, conns, errors) for _ in range(n)))
    report = {
        "open": len(conns),
        "failed": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(time.monotonic() - t0, 3),
    }
    print(json.dumps(report), flush=True)
    # Hold the connections until the caller has measured.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in conns:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
