#!/usr/bin/env python3
"""A small HTTP/1.1 backend for the integration tests.

It answers with what it was sent, so a test can assert what reached the backend
through Portico. Plain asyncio with its own HTTP/1.1 parsing: keep-alive, chunked
request bodies and Expect: 100-continue, and fast enough (tens of thousands of
requests a second) for the connection-reuse test.

    echo.py --port 8080 --name a

Paths (the command may follow any prefix: /app/status/500 is /status/500):
    /                 (any other path too) JSON: backend name, method, target,
                      version, headers, body length and SHA-256
    /ping             "pong", the cheapest answer (for load)
    /status/<code>    the echo JSON with that status code
    /sleep/<secs>     the echo JSON after a delay
    /bytes/<n>        n bytes with a Content-Length
    /stream?chunks=N&size=S&delay=D
                      N chunks of S bytes, chunked, D seconds apart
    /hop              a response carrying hop-by-hop headers
    /cookies          a response with two Set-Cookie headers
    /close            reads the request, then drops the connection unanswered
    /stats            JSON: connections accepted, requests, requests in flight

The request body is read in pieces and hashed, never held whole.
"""

import argparse
import asyncio
import hashlib
import json
import signal
import sys
from urllib.parse import parse_qs, urlsplit

REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    400: "Bad Request",
    404: "Not Found",
    418: "I'm a teapot",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

PONG = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\npong\n"
ZEROS = bytes(64 * 1024)


class BadRequest(Exception):
    pass


class Backend:
    def __init__(self, name, idle_timeout=None):
        self.name = name
        self.idle_timeout = idle_timeout
        self.connections = 0
        self.requests = 0
        self.in_flight = 0

    async def serve(self, reader, writer):
        self.connections += 1
        try:
            while await self.one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, BadRequest, asyncio.LimitOverrunError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def one_request(self, reader, writer):
        """Serves one request; returns whether the connection stays open."""
        try:
            # A keep-alive connection idle past --idle-timeout is closed, as most
            # servers do; the proxy must not fail the next request over it.
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_timeout)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError):
            return False
        lines = head[:-4].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            raise BadRequest(lines[0])
        self.requests += 1
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(line)
            headers.append((name.strip().lower(), value.strip()))
        hmap = {}
        for k, v in headers:
            hmap[k] = v if k not in hmap else hmap[k] + ", " + v
        keep_alive = version == "HTTP/1.1" and "close" not in hmap.get("connection", "").lower()

        # The cheapest path first: the load test sends nothing but this.
        if target == "/ping" and "content-length" not in hmap and "transfer-encoding" not in hmap:
            writer.write(PONG)
            await writer.drain()
            return keep_alive

        self.in_flight += 1
        try:
            if hmap.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            length, digest, chunked = await read_body(reader, hmap)
            url = urlsplit(target)
            path = url.path
            query = parse_qs(url.query)
            echo = {
                "backend": self.name,
                "method": method,
                "target": target,
                "path": path,
                "version": version,
                "headers": hmap,
                "header_names": [k for k, _ in headers],
                "body_length": length,
                "body_sha256": digest,
                "chunked": chunked,
            }
            # Commands are the path's last segments, so they work behind any route
            # prefix: /app/status/500 is /status/500.
            cmd, arg = command(path)
            if cmd == "close":
                return False
            if cmd == "stats":
                await respond_json(writer, 200, self.stats(), keep_alive)
            elif cmd == "status":
                await respond_json(writer, int(arg), echo, keep_alive)
            elif cmd == "sleep":
                await asyncio.sleep(float(arg))
                await respond_json(writer, 200, echo, keep_alive)
            elif cmd == "bytes":
                # A response to HEAD has the length a GET would get and no body.
                await respond_bytes(writer, int(arg), keep_alive, send_body=method != "HEAD")
            elif cmd == "stream":
                await respond_stream(
                    writer,
                    chunks=int(query.get("chunks", ["10"])[0]),
                    size=int(query.get("size", ["1024"])[0]),
                    delay=float(query.get("delay", ["0.05"])[0]),
                    keep_alive=keep_alive,
                )
            elif cmd == "cookies":
                await respond_json(
                    writer,
                    200,
                    echo,
                    keep_alive,
                    extra=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/; HttpOnly")],
                )
            elif cmd == "hop":
                await respond_json(
                    writer,
                    200,
                    echo,
                    keep_alive,
                    extra=[
                        ("Connection", "X-Resp-Hop"),
                        ("X-Resp-Hop", "should not reach the client"),
                        ("Keep-Alive", "timeout=5"),
                        ("X-Resp-End", "kept"),
                    ],
                )
            else:
                await respond_json(writer, 200, echo, keep_alive)
        finally:
            self.in_flight -= 1
        return keep_alive

    def stats(self):
        return {
            "backend": self.name,
            "connections": self.connections,
            "requests": self.requests,
            # Not counting the /stats request asking.
            "in_flight": self.in_flight - 1,
        }


def command(path):
    """(command, argument) from the path's last segments, or (None, None)."""
    parts = path.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-2] in ("status", "sleep", "bytes"):
        return parts[-2], parts[-1]
    if parts[-1] in ("stream", "hop", "close", "stats", "cookies"):
        return parts[-1], None
    return None, None


async def read_body(reader, hmap):
    """Reads (and hashes) the request body; returns (length, sha256, chunked)."""
    sha = hashlib.sha256()
    total = 0
    if "chunked" in hmap.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest("chunk size")
            if size == 0:
                # Trailers, then the blank line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return total, sha.hexdigest(), True
            left = size
            while left:
                data = await reader.read(min(left, 256 * 1024))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                sha.update(data)
                left -= len(data)
                total += len(data)
            await reader.readexactly(2)
    left = int(hmap.get("content-length", "0") or 0)
    while left:
        data = await reader.read(min(left, 256 * 1024))
        if not data:
            raise asyncio.IncompleteReadError(b"", left)
        sha.update(data)
        left -= len(data)
        total += len(data)
    return total, sha.hexdigest(), False


def head(status, headers, keep_alive):
    lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
    lines += ["%s: %s" % kv for kv in headers]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def respond_json(writer, status, obj, keep_alive, extra=()):
    if status in (204, 304):
        # These never carry a body.
        writer.write(head(status, list(extra), keep_alive))
        await writer.drain()
        return
    body = (json.dumps(obj) + "\n").encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    headers += list(extra)
    writer.write(head(status, headers, keep_alive) + body)
    await writer.drain()


async def respond_bytes(writer, n, keep_alive, send_body=True):
    writer.write(head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))], keep_alive))
    while n and send_body:
        block = ZEROS[: min(n, len(ZEROS))]
        writer.write(block)
        n -= len(block)
        await writer.drain()


async def respond_stream(writer, chunks, size, delay, keep_alive):
    writer.write(head(200, [("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")], keep_alive))
    piece = b"x" * size
    for i in range(chunks):
        if i and delay:
            await asyncio.sleep(delay)
        writer.write(b"%x\r\n%s\r\n" % (size, piece))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="echo")
    ap.add_argument("--idle-timeout", type=float, default=None, help="close keep-alive connections idle this long")
    args = ap.parse_args()
    backend = Backend(args.name, args.idle_timeout)
    server = await asyncio.start_server(backend.serve, args.host, args.port, limit=1 << 20, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("listening on %s:%d as %s" % (args.host, args.port, args.name), flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
