"""Builders for the Kubernetes objects Portico reads from `--from-file`, and a tiny
YAML writer, so a test states its routes the way a user writes them.

    cfg = Config()
    cfg.backend("web", [echo_a])                      # Service + EndpointSlice
    cfg.ingress("site", rules=[rule("app.example.com", path("/", "web"))])
    cfg.yaml()                                        # multi-document YAML text
"""

import json

CLASS = "portico"
CONTROLLER = "portico.dev/ingress-controller"


def path(p, service, port=80, kind="Prefix"):
    """One HTTPIngressPath; `port` is a Service port number or name."""
    return {"path": p, "pathType": kind, "backend": service_backend(service, port)}


def service_backend(service, port=80):
    ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": service, "port": ref}}


def rule(host, *paths):
    """One IngressRule; `host=None` for a rule that matches every host."""
    r = {"http": {"paths": list(paths)}}
    if host is not None:
        r = {"host": host, **r}
    return r


class Config:
    """The objects of one `--from-file` file."""

    def __init__(self, namespace="default", with_class=True):
        self.namespace = namespace
        self.objects = []
        if with_class:
            self.objects.append(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "IngressClass",
                    "metadata": {"name": CLASS},
                    "spec": {"controller": CONTROLLER},
                }
            )

    def add(self, obj):
        self.objects.append(obj)
        return obj

    def service(self, name, port=80, port_name="http", app_protocol=None, target_port=None, namespace=None):
        """A ClusterIP Service with one port."""
        sp = {"name": port_name, "port": port, "protocol": "TCP"}
        if target_port is not None:
            sp["targetPort"] = target_port
        if app_protocol:
            sp["appProtocol"] = app_protocol
        return self.add(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace or self.namespace},
                "spec": {"type": "ClusterIP", "selector": {"app": name}, "ports": [sp]},
            }
        )

    def endpoint_slice(self, service, endpoints, port_name="http", ready=True, name=None, namespace=None):
        """One EndpointSlice; `endpoints` are (ip, port) pairs that share one port."""
        ports = {p for _, p in endpoints}
        assert len(ports) <= 1, "one EndpointSlice has one port set; use one slice per port"
        port = ports.pop() if ports else 80
        n = sum(1 for o in self.objects if o["kind"] == "EndpointSlice")
        return self.add(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": name or "%s-%d" % (service, n),
                    "namespace": namespace or self.namespace,
                    "labels": {"kubernetes.io/service-name": service},
                },
                "addressType": "IPv4",
                "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, _ in endpoints],
            }
        )

    def backend(self, name, endpoints, port=80, port_name="http", app_protocol=None, namespace=None):
        """A Service and its EndpointSlices. `endpoints` are backend processes (with
        `.ip` and `.port`) or (ip, port) pairs; one slice per distinct target port."""
        pairs = [(e.ip, e.port) if hasattr(e, "port") else tuple(e) for e in endpoints]
        target = pairs[0][1] if pairs else 8080
        self.service(
            name,
            port=port,
            port_name=port_name,
            app_protocol=app_protocol,
            target_port=port_name if len({p for _, p in pairs}) > 1 else target,
            namespace=namespace,
        )
        by_port = {}
        for ip, p in pairs:
            by_port.setdefault(p, []).append((ip, p))
        for group in by_port.values():
            self.endpoint_slice(name, group, port_name=port_name, namespace=namespace)
        return name

    def ingress(self, name, rules=(), default_backend=None, annotations=None, class_name=CLASS, namespace=None):
        spec = {}
        if class_name is not None:
            spec["ingressClassName"] = class_name
        if default_backend is not None:
            spec["defaultBackend"] = default_backend
        if rules:
            spec["rules"] = list(rules)
        meta = {"name": name, "namespace": namespace or self.namespace}
        if annotations:
            meta["annotations"] = dict(annotations)
        return self.add({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec})

    def yaml(self):
        return "".join("---\n" + to_yaml(o) for o in self.objects)


def to_yaml(obj, indent=0):
    """Block-style YAML for plain dicts, lists and scalars (strings double-quoted)."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                if isinstance(v, list):
                    out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent)))
                else:
                    out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 1)))
            else:
                out.append("%s%s: %s\n" % (pad, k, scalar(v)))
        return "".join(out)
    if isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                inner = to_yaml(item, indent + 1)
                # The first line of the item goes right after the dash.
                out.append("%s- %s" % (pad, inner[len(pad) + 2 :]))
            else:
                out.append("%s- %s\n" % (pad, scalar(item)))
        return "".join(out)
    return pad + scalar(obj) + "\n"


def scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return json.dumps(str(v))
