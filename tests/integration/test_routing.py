"""Which backend a request reaches: hosts, path types, precedence, classes.

Every request goes through curl to the real binary; the echo backends answer with
their own name, so each assertion is "this URL reached that Service"."""

import pytest

from k8s import Config, path, rule


def reached(p, host, url_path):
    """The name of the backend that answered, or the status Portico answered with."""
    r = p.get(url_path, host=host)
    if r.status == 200:
        return r.json()["backend"]
    return r.status


@pytest.fixture
def three(echo):
    """A config with Services a, b and c on the shared echo backends."""
    cfg = Config()
    cfg.backend("a", [echo.a])
    cfg.backend("b", [echo.b])
    cfg.backend("c", [echo.c])
    return cfg


def test_host_exact_wildcard_and_catch_all(portico, three):
    """Exact host first, then a single-label wildcard, then rules without a host."""
    three.ingress(
        "hosts",
        rules=[
            rule("app.example.com", path("/", "a")),
            rule("*.example.com", path("/", "b")),
            rule(None, path("/", "c")),
        ],
    )
    p = portico(three)
    assert reached(p, "app.example.com", "/") == "a"
    assert reached(p, "api.example.com", "/") == "b"
    # A wildcard matches exactly one extra label.
    assert reached(p, "a.b.example.com", "/") == "c"
    assert reached(p, "example.com", "/") == "c"
    assert reached(p, "elsewhere.test", "/") == "c"


def test_host_is_case_insensitive_and_port_is_ignored(portico, three):
    """`Host: APP.Example.COM:8443` is the same host as app.example.com."""
    three.ingress("hosts", rules=[rule("app.example.com", path("/", "a")), rule("*.example.com", path("/", "b"))])
    p = portico(three)
    assert reached(p, "APP.Example.COM", "/") == "a"
    assert reached(p, "app.example.com:8443", "/") == "a"
    assert reached(p, "App.Example.Com:1", "/x") == "a"
    assert reached(p, "WWW.EXAMPLE.COM:8080", "/") == "b"


def test_unknown_host_is_404(portico, three):
    """With no rule for the host and no catch-all, Portico answers 404 itself."""
    three.ingress("hosts", rules=[rule("app.example.com", path("/", "a"))])
    p = portico(three)
    r = p.get("/", host="other.example.com")
    assert r.status == 404
    assert b"404" in r.body
    assert reached(p, "app.example.com", "/") == "a"


def test_path_exact_is_byte_exact(portico, three):
    three.ingress("paths", rules=[rule("paths.example.com", path("/exact", "a", kind="Exact"))])
    p = portico(three)
    assert reached(p, "paths.example.com", "/exact") == "a"
    # The query string is not part of the path.
    assert reached(p, "paths.example.com", "/exact?x=1") == "a"
    assert reached(p, "paths.example.com", "/exact/") == 404
    assert reached(p, "paths.example.com", "/exactly") == 404
    assert reached(p, "paths.example.com", "/Exact") == 404


def test_path_prefix_matches_whole_segments(portico, three):
    """Prefix `/foo` matches /foo, /foo/ and /foo/bar, never /foobar."""
    three.ingress("paths", rules=[rule("paths.example.com", path("/foo", "b", kind="Prefix"))])
    p = portico(three)
    for ok in ["/foo", "/foo/", "/foo/bar", "/foo/bar/baz?q=1"]:
        assert reached(p, "paths.example.com", ok) == "b", ok
    for miss in ["/foobar", "/fo", "/", "/bar/foo"]:
        assert reached(p, "paths.example.com", miss) == 404, miss


def test_path_prefix_trailing_slash_in_rule_is_ignored(portico, three):
    three.ingress("paths", rules=[rule("paths.example.com", path("/foo/", "b", kind="Prefix"))])
    p = portico(three)
    assert reached(p, "paths.example.com", "/foo") == "b"
    assert reached(p, "paths.example.com", "/foo/x") == "b"
    assert reached(p, "paths.example.com", "/foox") == 404


def test_path_implementation_specific_is_a_string_prefix(portico, three):
    """ImplementationSpecific does what ingress-nginx does: `/impl` also matches /implx."""
    three.ingress("paths", rules=[rule("paths.example.com", path("/impl", "c", kind="ImplementationSpecific"))])
    p = portico(three)
    for ok in ["/impl", "/implx", "/impl/y", "/impl-ementation"]:
        assert reached(p, "paths.example.com", ok) == "c", ok
    assert reached(p, "paths.example.com", "/imp") == 404


def test_precedence_longest_path_then_exact_before_prefix(portico, three):
    three.ingress(
        "prec",
        rules=[
            rule(
                "prec.example.com",
                path("/", "a"),
                path("/api", "b"),
                path("/api", "c", kind="Exact"),
                path("/api/v2", "c"),
            )
        ],
    )
    p = portico(three)
    assert reached(p, "prec.example.com", "/api") == "c"  # Exact beats Prefix at equal length
    assert reached(p, "prec.example.com", "/api/") == "b"
    assert reached(p, "prec.example.com", "/api/users") == "b"
    assert reached(p, "prec.example.com", "/api/v2/users") == "c"  # longest path wins
    assert reached(p, "prec.example.com", "/api/v2") == "c"
    assert reached(p, "prec.example.com", "/apiv2") == "a"
    assert reached(p, "prec.example.com", "/") == "a"


def test_rules_of_several_ingresses_for_one_host_merge(portico, three):
    three.ingress("front", rules=[rule("shop.example.com", path("/", "a"))])
    three.ingress("cart", rules=[rule("shop.example.com", path("/cart", "b"))])
    three.ingress("pay", rules=[rule("shop.example.com", path("/pay", "c", kind="Exact"))])
    p = portico(three)
    assert reached(p, "shop.example.com", "/") == "a"
    assert reached(p, "shop.example.com", "/cart/items") == "b"
    assert reached(p, "shop.example.com", "/pay") == "c"
    assert reached(p, "shop.example.com", "/pay/x") == "a"


def test_backend_service_port_by_name(portico, echo):
    cfg = Config()
    cfg.backend("named", [echo.b], port=8080, port_name="web")
    cfg.ingress("n", rules=[rule("named.example.com", path("/", "named", port="web"))])
    p = portico(cfg)
    assert reached(p, "named.example.com", "/") == "b"


def test_ingress_of_another_class_is_ignored(portico, three):
    """An Ingress for another controller's class must not be served by Portico."""
    three.ingress("mine", rules=[rule("mine.example.com", path("/", "a"))])
    three.ingress("theirs", rules=[rule("theirs.example.com", path("/", "b"))], class_name="nginx")
    p = portico(three)
    assert reached(p, "mine.example.com", "/") == "a"
    assert reached(p, "theirs.example.com", "/") == 404


def test_legacy_class_annotation(portico, three):
    three.ingress(
        "legacy",
        rules=[rule("legacy.example.com", path("/", "c"))],
        class_name=None,
        annotations={"kubernetes.io/ingress.class": "portico"},
    )
    p = portico(three)
    assert reached(p, "legacy.example.com", "/") == "c"


def test_default_backend_serves_unmatched_requests(portico, three):
    """`spec.defaultBackend` answers what no rule matches."""
    from k8s import service_backend

    three.ingress(
        "site",
        rules=[rule("site.example.com", path("/app", "a"))],
        default_backend=service_backend("c"),
    )
    p = portico(three)
    assert reached(p, "site.example.com", "/app/x") == "a"
    assert reached(p, "site.example.com", "/other") == "c"
