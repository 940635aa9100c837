#!/usr/bin/env python3
"""A gRPC backend for the integration tests: grpcio over cleartext HTTP/2 (h2c), or
over TLS with --tls-cert and --tls-key (PEM files).

    grpc_echo.py --port 50051 --name g [--tls-cert crt.pem --tls-key key.pem]

Service `portico.test.Echo`, with raw-bytes messages (generic handlers, so no
generated code):
    Unary(bytes) -> JSON {backend, message, metadata}
    Stream(bytes "N") -> N messages b"<i>:<backend>", i = 0..N-1
    Fail(bytes) -> status NOT_FOUND with the request as its details
"""

import argparse
import json
import signal
import threading
from concurrent import futures

import grpc

SERVICE = "portico.test.Echo"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="grpc")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()

    def unary(request, context):
        return json.dumps(
            {
                "backend": args.name,
                "message": request.decode(),
                "metadata": {k: v for k, v in context.invocation_metadata() if isinstance(v, str)},
            }
        ).encode()

    def stream(request, context):
        for i in range(int(request.decode())):
            yield b"%d:%s" % (i, args.name.encode())

    def fail(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, request.decode())

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    if args.tls_cert:
        with open(args.tls_key, "rb") as k, open(args.tls_cert, "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port("%s:%d" % (args.host, args.port), creds)
    else:
        server.add_insecure_port("%s:%d" % (args.host, args.port))
    server.start()
    print("listening on %s:%d as %s" % (args.host, args.port, args.name), flush=True)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
