#!/usr/bin/env python3
"""An external-auth service for the integration tests, in the manner of httpbin's
`/basic-auth/<user>/<password>` that ingress-nginx's e2e tests ask.

    auth_service.py --port 9000 --name auth

Paths:
    /basic-auth/<user>/<password>   200 with `X-User: <user>` when the request carries
                                    those Basic credentials, else 401 with a challenge
    /status/<code>                  that status
    /method/<METHOD>                200 when asked with that method, else 405

Every answer carries `X-Got-<name>` for each X-Original-URL, X-Original-Method,
X-Sent-From, X-Auth-Request-Redirect and X-Original-URI it received, so that a test
can have them copied onto the proxied request (`auth-response-headers`) and read them
from the echo backend.
"""

import argparse
import base64
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN = ["X-Original-URL", "X-Original-Method", "X-Sent-From", "X-Auth-Request-Redirect", "X-Original-URI"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, headers=()):
        self.send_response(status)
        for name in SEEN:
            if self.headers.get(name) is not None:
                self.send_header("X-Got-" + name[2:], self.headers[name])
        for k, v in headers:
            self.send_header(k, v)
        body = b"auth says %d\n" % status
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "basic-auth" and len(parts) == 3:
            want = "Basic " + base64.b64encode(("%s:%s" % (parts[1], parts[2])).encode()).decode()
            if self.headers.get("Authorization") == want:
                return self.answer(200, [("X-User", parts[1])])
            return self.answer(401, [("WWW-Authenticate", 'Basic realm="Fake Realm"')])
        if parts[0] == "status" and len(parts) == 2 and parts[1].isdigit():
            return self.answer(int(parts[1]))
        if parts[0] == "method" and len(parts) == 2:
            return self.answer(200 if self.command == parts[1] else 405)
        return self.answer(404)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any

    def log_message(self, fmt, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="auth")
    a = ap.parse_args()
    ThreadingHTTPServer((a.host, a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
