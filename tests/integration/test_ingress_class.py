"""Taking ingress-nginx's class over in place: which Ingresses Portico serves when told
to answer to more class names and controller values, with the Ingresses unchanged.

The rules are ingress-nginx's (its docs/user-guide/k8s-122-migration.md, "I have more
than one controller running in my cluster", and docs/user-guide/multiple-ingress.md):
an Ingress is served when its IngressClass's `spec.controller` is one the controller
was given (`--controller-class`), when its legacy `kubernetes.io/ingress.class`
annotation is one of its `--ingress-class` values, or, with
`--watch-ingress-without-class`, when it names no class at all. Every request goes
through curl to the real binary and reaches a real echo backend."""

import pytest

from harness import wait_until
from k8s import Config, path, rule

NGINX_CONTROLLER = "k8s.io/ingress-nginx"
TAKE_OVER = (
    "--ingress-class=portico,nginx",
    "--controller-name=portico.dev/ingress-controller,k8s.io/ingress-nginx",
)


def reached(p, host):
    """The name of the backend that answered, or the status Portico answered with."""
    r = p.get("/", host=host)
    return r.json()["backend"] if r.status == 200 else r.status


def ingress_class(cfg, name, controller):
    return cfg.add(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": name},
            "spec": {"controller": controller},
        }
    )


@pytest.fixture
def cluster(echo):
    """What a cluster running ingress-nginx beside Portico holds: ingress-nginx's
    IngressClass `nginx`, an Ingress of it, one with only the legacy annotation,
    Portico's own, one of a third controller, and one that names no class."""
    cfg = Config()
    cfg.backend("a", [echo.a])
    cfg.backend("b", [echo.b])
    cfg.backend("c", [echo.c])
    ingress_class(cfg, "nginx", NGINX_CONTROLLER)
    ingress_class(cfg, "alb", "ingress.k8s.aws/alb")
    cfg.ingress("shop", rules=[rule("shop.example.com", path("/", "a"))], class_name="nginx")
    cfg.ingress(
        "legacy",
        rules=[rule("legacy.example.com", path("/", "b"))],
        class_name=None,
        annotations={"kubernetes.io/ingress.class": "nginx"},
    )
    cfg.ingress("own", rules=[rule("own.example.com", path("/", "c"))])
    cfg.ingress("aws", rules=[rule("aws.example.com", path("/", "a"))], class_name="alb")
    cfg.ingress("bare", rules=[rule("bare.example.com", path("/", "b"))], class_name=None)
    return cfg


def test_nginx_class_is_served_only_when_taken_over(portico, cluster):
    """Without the take-over flags, ingress-nginx's Ingresses are left alone; with
    them, the Ingress of class `nginx` (IngressClass with `spec.controller:
    k8s.io/ingress-nginx`) and the one annotated `kubernetes.io/ingress.class: nginx`
    are served as they are, Portico's own still is, and another controller's class and
    an Ingress without a class are not."""
    alone = portico(cluster)
    assert reached(alone, "own.example.com") == "c"
    assert reached(alone, "shop.example.com") == 404
    assert reached(alone, "legacy.example.com") == 404

    taking_over = portico(cluster, *TAKE_OVER)
    assert reached(taking_over, "shop.example.com") == "a"
    assert reached(taking_over, "legacy.example.com") == "b"
    assert reached(taking_over, "own.example.com") == "c"
    assert reached(taking_over, "aws.example.com") == 404
    assert reached(taking_over, "bare.example.com") == 404


def test_repeated_flags_and_controller_class_spelling(portico, cluster):
    """Each value may be given as its own flag, and ingress-nginx's `--controller-class`
    spelling is accepted, so an ingress-nginx argument list carries over."""
    p = portico(
        cluster,
        "--ingress-class",
        "portico",
        "--ingress-class",
        "nginx",
        "--controller-name",
        "portico.dev/ingress-controller",
        "--controller-class",
        NGINX_CONTROLLER,
    )
    assert reached(p, "shop.example.com") == "a"
    assert reached(p, "legacy.example.com") == "b"
    assert reached(p, "own.example.com") == "c"


def test_watch_ingress_without_class(portico, cluster):
    """`--watch-ingress-without-class` adds the Ingresses that name no class, and only
    those (ingress-nginx's k8s-122-migration.md: "Ingresses without any
    ingressClassName set")."""
    p = portico(cluster, "--watch-ingress-without-class")
    assert reached(p, "bare.example.com") == "b"
    assert reached(p, "own.example.com") == "c"
    assert reached(p, "shop.example.com") == 404
    assert reached(p, "legacy.example.com") == 404


def test_taken_over_class_outlives_its_ingress_class(portico, cluster):
    """Uninstalling ingress-nginx's chart deletes its IngressClass `nginx`; the
    Ingresses that name it stay served, because `nginx` is one of Portico's class
    names. Live: the IngressClass leaves the file while Portico runs (a marker Ingress
    added in the same edit shows when the edit is compiled)."""
    p = portico(cluster, *TAKE_OVER)
    assert reached(p, "shop.example.com") == "a"
    cluster.objects = [
        o for o in cluster.objects if not (o["kind"] == "IngressClass" and o["metadata"]["name"] == "nginx")
    ]
    cluster.ingress("marker", rules=[rule("marker.example.com", path("/", "c"))])
    p.replace_config(cluster.yaml())
    wait_until(lambda: reached(p, "marker.example.com") == "c", 10, what="the edited file to be served")
    assert reached(p, "shop.example.com") == "a"
    assert reached(p, "legacy.example.com") == "b"
