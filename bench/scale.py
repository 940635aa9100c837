#!/usr/bin/env python3
"""Scale of the control side: N Ingress rules through the real `portico` binary.

    scale.py gen --out DIR                 write the generated files (compile bench input)
    scale.py run --bin PORTICO --dir DIR   start `portico --from-file` on each, measure,
                 --criterion DIR           read the criterion results, write the report
    scale.py render --json FILE            write the report again from a scale.json

One *rule* is one host + path of an Ingress (one `spec.rules[].http.paths[]` entry),
which becomes one route of the table. N rules are N/10 sites: a site is one host (every
tenth a wildcard `*.site-I.example.com`) with ten paths (six Prefix, one
ImplementationSpecific, three Exact) to one Service with an EndpointSlice of two ready
endpoints. Two shapes hold the same rules and compile to the same table:

    10-per-ingress   one Ingress per site: N/10 Ingresses of ten rules
    1-per-ingress    one Ingress per rule: N Ingresses (the controller's worst case)

dataplane/benches/lookup.rs builds the same rules straight into a table; keep the two
in step. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SIZES = (1_000, 10_000, 100_000)
SHAPES = ("10-per-ingress", "1-per-ingress")
RULES_PER_SITE = 10
WILDCARD_EVERY = 10
NAMESPACES = 50
CONTROLLER = "portico.dev/ingress-controller"
LOOKUP_CASES = {
    "exact_host_deep_prefix": "exact host, deep Prefix (`/api/v1/orders/items/42/details`)",
    "exact_host_deep_prefix_same_request": "the same, one request repeated (cache-hot)",
    "wildcard_host": "wildcard host (`www.site-I.example.com`)",
    "miss_404": "miss: unknown host, 404",
}
README_BEGIN = "<!-- scale:begin -->"
README_END = "<!-- scale:end -->"

def site_host(site: int) -> str:
    if site % WILDCARD_EVERY == WILDCARD_EVERY - 1:
        return f"*.site-{site}.example.com"
    return f"site-{site}.example.com"


def site_paths(site: int) -> list[tuple[str, str]]:
    return [
        ("/", "Prefix"),
        ("/api", "Prefix"),
        ("/api/v1", "Prefix"),
        ("/api/v1/users", "Prefix"),
        ("/api/v1/orders/items", "Prefix"),
        (f"/static/site-{site}", "Prefix"),
        ("/docs", "ImplementationSpecific"),
        ("/healthz", "Exact"),
        ("/login", "Exact"),
        ("/api/v1/status", "Exact"),
    ]


def obj(api_version: str, kind: str, name: str, namespace: str | None = None, **rest) -> dict:
    meta = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **rest}


def site_objects(site: int, shape: str) -> list[dict]:
    """One site: its Service, the Service's EndpointSlice and the Ingresses of its rules."""
    ns, svc, host = f"ns-{site % NAMESPACES}", f"svc-{site}", site_host(site)
    addr = f"127.{site // 256 % 256}.{site % 256}"
    service = obj("v1", "Service", svc, ns, spec={"ports": [{"name": "http", "port": 80, "targetPort": 8080}]})
    endpoints = [{"addresses": [f"{addr}.{i}"], "conditions": {"ready": True}} for i in (1, 2)]
    slice_ = obj("discovery.k8s.io/v1", "EndpointSlice", f"{svc}-1", ns, addressType="IPv4", endpoints=endpoints)
    slice_["metadata"]["labels"] = {"kubernetes.io/service-name": svc}
    slice_["ports"] = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    backend = {"service": {"name": svc, "port": {"name": "http"}}}
    paths = [{"path": p, "pathType": k, "backend": backend} for p, k in site_paths(site)]

    def ingress(name: str, paths: list[dict]) -> dict:
        rules = [{"host": host, "http": {"paths": paths}}]
        return obj("networking.k8s.io/v1", "Ingress", name, ns, spec={"ingressClassName": "portico", "rules": rules})

    if shape == "10-per-ingress":
        return [service, slice_, ingress(f"site-{site}", paths)]
    return [service, slice_] + [ingress(f"site-{site}-r{i}", [p]) for i, p in enumerate(paths)]


PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9/._-]*")


def yaml_lines(value, indent: str = ""):
    """Block-style YAML, as `kubectl get -o yaml` writes it."""
    if isinstance(value, dict):
        for key, v in value.items():
            if isinstance(v, (dict, list)):
                yield f"{indent}{key}:"
                yield from yaml_lines(v, indent if isinstance(v, list) else indent + "  ")
            else:
                yield f"{indent}{key}: {scalar(v)}"
    elif isinstance(value, list):
        for item in value:
            first, *rest = yaml_lines(item, indent + "  ")
            yield f"{indent}- {first.lstrip()}"
            yield from rest
    else:
        yield indent + scalar(value)


def scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) or (PLAIN.fullmatch(v) and v not in ("true", "false", "null")):
        return str(v)
    return json.dumps(v)


def generate(rules: int, shape: str) -> str:
    """The file's text: the IngressClass, then each site's objects."""
    objects = [obj("networking.k8s.io/v1", "IngressClass", "portico", spec={"controller": CONTROLLER})]
    for site in range(rules // RULES_PER_SITE):
        objects += site_objects(site, shape)
    docs = ("---\n" + "\n".join(yaml_lines(o)) + "\n" for o in objects)
    return f"# Generated by bench/scale.py: {rules} rules in the {shape} shape.\n" + "".join(docs)


def file_name(rules: int, shape: str) -> str:
    return "empty.yaml" if rules == 0 else f"rules-{rules}-{shape}.yaml"


def cmd_gen(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(0, SHAPES[0])] + [(n, s) for n in args.sizes for s in SHAPES]
    for rules, shape in jobs:
        text = generate(rules, shape)
        path = out / file_name(rules, shape)
        # Deterministic content: an unchanged file is left alone (keeps its mtime).
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    print(f"scale: generated {len(jobs)} files in {out}", file=sys.stderr)


# ---------------------------------------------------------------- the binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return 0, ""


def log_time(line: dict) -> dt.datetime:
    # tracing-subscriber writes RFC 3339 with up to nine fraction digits.
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", line["timestamp"])
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def measure_once(binary: str, path: Path, expect_routes: int, timeout: float) -> dict:
    """Starts portico on `path`, waits for the table to be live, reads its memory, stops it."""
    admin = free_port()
    argv = [
        binary,
        "--from-file", str(path),
        "--bind-address", "127.0.0.1",
        "--http-port", str(free_port()),
        "--https-port", "0",
        "--admin-port", str(admin),
        "--access-log", "false",
        "--log-format", "json",
        "--drain-timeout", "1s",
    ]
    with tempfile.TemporaryFile(mode="w+") as log:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        try:
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"scale: portico exited ({proc.returncode}) on {path}:\n{log.read()[-2000:]}")
                if time.monotonic() - start > timeout:
                    raise SystemExit(f"scale: portico not ready within {timeout} s on {path}")
                if get(f"http://127.0.0.1:{admin}/readyz")[0] == 200:
                    break
                time.sleep(0.005)
            ready_ms = (time.monotonic() - start) * 1000
            _, metrics = get(f"http://127.0.0.1:{admin}/metrics")
            found = re.search(r"^portico_table_routes (\d+)", metrics, re.M)
            routes = int(found.group(1)) if found else -1
            if routes != expect_routes:
                raise SystemExit(f"scale: {path} gave {routes} routes, expected {expect_routes}")
            # Let the start-up work (parse buffers, the first table's swap) settle.
            time.sleep(0.5)
            mem = proc_status(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.seek(0)
        lines = [json.loads(l) for l in log if l.startswith("{")]
    marks = {l.get("message"): log_time(l) for l in lines if "timestamp" in l}
    listening, loaded = marks.get("listening"), marks.get("routing table loaded from the file")
    load_ms = (loaded - listening).total_seconds() * 1000 if listening and loaded else None
    warnings = sum(1 for l in lines if l.get("level") in ("WARN", "ERROR"))
    return {
        "ready_ms": ready_ms,
        "load_ms": load_ms,
        "rss_kib": mem["VmRSS"],
        "hwm_kib": mem["VmHWM"],
        "routes": routes,
        "warnings": warnings,
    }


def measure(binary: str, path: Path, expect_routes: int, repeat: int, timeout: float) -> dict:
    runs = [measure_once(binary, path, expect_routes, timeout) for _ in range(repeat)]
    med = lambda key: statistics.median(r[key] for r in runs if r[key] is not None)  # noqa: E731
    return {
        "file_mib": path.stat().st_size / 2**20,
        "routes": runs[0]["routes"],
        "warnings": runs[0]["warnings"],
        "load_ms": med("load_ms"),
        "ready_ms": med("ready_ms"),
        "rss_mib": med("rss_kib") / 1024,
        "peak_rss_mib": med("hwm_kib") / 1024,
        "runs": runs,
    }


# ---------------------------------------------------------------- criterion


def criterion_results(root: Path, since: float) -> dict[str, float]:
    """`group/function/value` -> median ns, for results written after `since`."""
    out = {}
    for bench in root.glob("*/*/*/new/benchmark.json"):
        estimates = bench.with_name("estimates.json")
        if not estimates.exists() or estimates.stat().st_mtime < since:
            continue
        full_id = json.loads(bench.read_text())["full_id"]
        out[full_id] = json.loads(estimates.read_text())["median"]["point_estimate"]
    return out


# ---------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def size_label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def render(res: dict) -> str:
    sizes = res["sizes"]
    lines = [
        f"Date {res['date']}, {res['cores']} cores ({res['cpu']}), commit {res['commit']}, {res['rustc']}.",
        "",
        "Route lookup, median ns per lookup (criterion, `dataplane/benches/lookup.rs`):",
        "",
        "| case | " + " | ".join(f"{size_label(n)} rules" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for case, label in LOOKUP_CASES.items():
        cells = [fmt(res["lookup_ns"].get(case, {}).get(str(n))) for n in sizes]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    empty = res["binary"].get("empty")
    lines += [
        "",
        "Compile and memory: compile is `compile()` on the parsed objects (criterion, "
        "`controller/benches/compile.rs`); load is the binary's own log, from `listening` to "
        "`routing table loaded` (read + parse + compile); ready is start to `/readyz` 200; "
        "RSS is VmRSS once the table is live, peak is VmHWM"
        + (f"; the empty table's process holds {fmt(empty['rss_mib'])} MiB." if empty else "."),
        "",
        "| rules | shape | Ingresses | file MiB | compile ms | load ms | ready ms | RSS MiB | RSS − empty | peak MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        for shape in SHAPES:
            b = res["binary"].get(shape, {}).get(str(n))
            if not b:
                continue
            ingresses = n // RULES_PER_SITE if shape == "10-per-ingress" else n
            compile_ms = res["compile_ms"].get(shape, {}).get(str(n))
            extra = b["rss_mib"] - empty["rss_mib"] if empty else None
            lines.append(
                f"| {n:,} | {shape} | {ingresses:,} | {fmt(b['file_mib'])} | {fmt(compile_ms)} | "
                f"{fmt(b['load_ms'], 0)} | {fmt(b['ready_ms'], 0)} | {fmt(b['rss_mib'])} | "
                f"{fmt(extra)} | {fmt(b['peak_rss_mib'])} |"
            )
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"scale: {readme} has no {README_BEGIN} ... {README_END} block")
    readme.write_text(text[: begin + len(README_BEGIN)] + "\n" + table + text[end:])


def machine() -> tuple[str, str, str]:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break

    def run(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
            return done.stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    commit = run(["git", "rev-parse", "--short", "HEAD"])
    if run(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += " (with local changes)"
    return cpu, commit, run(["rustc", "--version"])


def cmd_run(args: argparse.Namespace) -> None:
    data = Path(args.dir)
    cpu, commit, rustc = machine()
    res: dict = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "commit": commit,
        "rustc": rustc,
        "sizes": args.sizes,
        "rule": "one host + path of an Ingress (one route); N rules = N/10 hosts of 10 paths",
        "shapes": {"10-per-ingress": "N/10 Ingresses of 10 rules", "1-per-ingress": "N Ingresses of 1 rule"},
        "lookup_ns": {},
        "compile_ms": {},
        "binary": {},
    }
    found = criterion_results(Path(args.criterion), args.since) if args.criterion else {}
    for full_id, ns in found.items():
        group, function, value = full_id.split("/")
        if group == "lookup":
            res["lookup_ns"].setdefault(function, {})[value] = ns
        elif group == "compile":
            res["compile_ms"].setdefault(function, {})[value] = ns / 1e6
    if args.bin:
        print("scale: empty table", file=sys.stderr)
        res["binary"]["empty"] = measure(args.bin, data / file_name(0, ""), 0, args.repeat, args.timeout)
        for n in args.sizes:
            for shape in SHAPES:
                print(f"scale: {n} rules, {shape}", file=sys.stderr)
                b = measure(args.bin, data / file_name(n, shape), n, args.repeat, args.timeout)
                res["binary"].setdefault(shape, {})[str(n)] = b
    write(res, Path(args.out), args.update_readme)


def write(res: dict, out: Path, readme: str | None) -> None:
    table = render(res)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "scale.md").write_text("# Control side: scale\n\n" + table)
    if readme:
        update_readme(Path(readme), table)
    print(table)


def cmd_render(args: argparse.Namespace) -> None:
    res = json.loads(Path(args.json).read_text())
    if args.commit:
        res["commit"] = args.commit
    write(res, Path(args.out or Path(args.json).parent), args.update_readme)


def main() -> None:
    sizes = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen", help="write the generated files")
    g.add_argument("--out", required=True)
    g.add_argument("--sizes", type=sizes, default=list(SIZES))
    g.set_defaults(func=cmd_gen)
    r = sub.add_parser("run", help="measure the binary, collect criterion results, write the report")
    r.add_argument("--dir", required=True, help="the files `gen` wrote")
    r.add_argument("--bin", help="the portico binary (no binary: criterion results only)")
    r.add_argument("--criterion", help="criterion's output directory (TARGET/criterion)")
    r.add_argument("--since", type=float, default=0, help="ignore criterion results older than this Unix time")
    r.add_argument("--sizes", type=sizes, default=list(SIZES))
    r.add_argument("--repeat", type=int, default=3, help="starts per file; the report shows medians")
    r.add_argument("--timeout", type=float, default=300, help="seconds a start may take to be ready")
    r.add_argument("--out", required=True, help="directory for scale.md and scale.json")
    r.add_argument("--update-readme", metavar="README", help=f"replace the {README_BEGIN} block of this file")
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("render", help="write scale.md (and the README table) again from a scale.json")
    d.add_argument("--json", required=True)
    d.add_argument("--out", help="directory for scale.md and scale.json (default: the json's)")
    d.add_argument("--commit", help="the commit measured, when run outside a git checkout")
    d.add_argument("--update-readme", metavar="README", help=f"replace the {README_BEGIN} block of this file")
    d.set_defaults(func=cmd_render)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
