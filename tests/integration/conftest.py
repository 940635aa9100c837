"""Fixtures: backend processes, the portico binary, and clean-up of both.

    def test_x(portico, echo):
        cfg = Config()
        cfg.backend("web", [echo.a])
        cfg.ingress("site", rules=[rule("app.example.com", path("/", "web"))])
        p = portico(cfg)                  # started, /readyz answered 200
        r = p.get("/", host="app.example.com")
"""

import pytest

from harness import Backend, Portico, free_port
from k8s import Config


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


class Backends:
    """Starts backend processes for one test (or the session) and stops them after."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.procs = []

    def start(self, kind, name, ip="127.0.0.1", port=None, args=()):
        port = port or free_port((ip,))
        b = Backend(kind, name, ip, port, self.log_dir, args)
        self.procs.append(b)
        return b

    def echo(self, name, ip="127.0.0.1", port=None, idle_timeout=None):
        """An HTTP/1.1 echo backend (backends/echo.py)."""
        args = ("--idle-timeout", str(idle_timeout)) if idle_timeout else ()
        return self.start("echo", name, ip, port, args)

    def ws(self, name, ip="127.0.0.1", port=None):
        """A WebSocket echo backend (backends/ws_echo.py)."""
        return self.start("ws", name, ip, port)

    def grpc(self, name, ip="127.0.0.1", port=None, tls=None):
        """A gRPC backend (backends/grpc_echo.py): h2c, or over TLS with `tls`, a pair
        of paths (certificate PEM, key PEM)."""
        args = ("--tls-cert", str(tls[0]), "--tls-key", str(tls[1])) if tls else ()
        return self.start("grpc", name, ip, port, args)

    def stop_all(self):
        for b in self.procs:
            b.stop()


@pytest.fixture
def backends(tmp_path):
    """Factory for this test's own backends (for counters no other test touches)."""
    bs = Backends(tmp_path)
    yield bs
    bs.stop_all()


class SharedEcho:
    """Three echo backends shared by the whole session: a, b and c."""

    def __init__(self, bs):
        self.a = bs.echo("a")
        self.b = bs.echo("b")
        self.c = bs.echo("c")


@pytest.fixture(scope="session")
def echo(tmp_path_factory):
    bs = Backends(tmp_path_factory.mktemp("shared-backends"))
    yield SharedEcho(bs)
    bs.stop_all()


@pytest.fixture
def portico(tmp_path, request):
    """Factory: `portico(cfg_or_yaml, *args)` starts the binary on `cfg` and waits for
    /readyz. Every instance is stopped with SIGTERM at teardown and must exit 0; when
    the test failed, the tail of its log is printed."""
    started = []

    def start(cfg, *args, wait_ready=True):
        text = cfg.yaml() if isinstance(cfg, Config) else cfg
        p = Portico(text, tmp_path, args=args, wait_ready=wait_ready)
        started.append(p)
        return p

    yield start
    bad_exits = []
    for p in started:
        code = p.stop()
        if code != 0:
            bad_exits.append("portico (log %s) exited with %s on SIGTERM" % (p.log_path, code))
        if _failed(request) or code != 0:
            print("---- portico log %s (last 6000 chars) ----" % p.log_path)
            print(p.log()[-6000:])
    # A crash or a hang on shutdown is a failure whatever the test asserted.
    assert not bad_exits, bad_exits
