#!/usr/bin/env python3
"""Writes a one-layer OCI image as an OCI image-layout tar, without a container
engine or a base image, for `ctr images import`.

    oci.py --name localhost/portico:dev --out portico.tar \
        --file /path/to/portico:/usr/local/bin/portico:0755 \
        --dir /tmp:1777 --user 65532:65532 --entrypoint /usr/local/bin/portico

The layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md):
oci-layout, index.json naming the image (org.opencontainers.image.ref.name and
containerd's io.containerd.image.name), blobs/sha256/ holding the manifest, the
config and one uncompressed tar layer. Files are added in sorted order with fixed
times and owners, so the same inputs give the same digests.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = 0  # mtime of every entry: digests depend on contents only


def die(msg):
    print(f"oci.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_mode(text, what):
    try:
        return int(text, 8)
    except ValueError:
        die(f"bad mode {text!r} in {what}")


class Layer:
    def __init__(self):
        self.entries = {}  # path in image -> (kind, data or target, mode, uid, gid)

    def parents(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            self.entries.setdefault(p, ("dir", None, 0o755, 0, 0))

    def add_dir(self, path, mode, uid=0, gid=0):
        path = path.strip("/")
        self.parents(path)
        self.entries[path] = ("dir", None, mode, uid, gid)

    def add_file(self, path, data, mode):
        path = path.strip("/")
        self.parents(path)
        self.entries[path] = ("file", data, mode, 0, 0)

    def add_symlink(self, path, target):
        path = path.strip("/")
        self.parents(path)
        self.entries[path] = ("symlink", target, 0o777, 0, 0)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for path in sorted(self.entries):
                kind, data, mode, uid, gid = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime = EPOCH
                info.mode = mode
                info.uid, info.gid = uid, gid
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    t.addfile(info)
                elif kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = data
                    t.addfile(info)
                else:
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return f"sha256:{digest}", len(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="image reference, e.g. localhost/portico:dev")
    ap.add_argument("--also-name", action="append", default=[], metavar="REF",
                    help="another reference to the same image (ctr import creates each)")
    ap.add_argument("--out", required=True, help="the tar to write")
    ap.add_argument("--file", action="append", default=[], metavar="SRC:DST[:MODE]",
                    help="copy file SRC to DST (symlinks followed); MODE in octal, default: SRC's")
    ap.add_argument("--symlink", action="append", default=[], metavar="DST:TARGET")
    ap.add_argument("--dir", action="append", default=[], metavar="DST:MODE[:UID:GID]")
    ap.add_argument("--text", action="append", default=[], metavar="DST:CONTENT",
                    help="a file with this content (\\n for newlines), mode 0644")
    ap.add_argument("--user", default="", help="uid:gid the container runs as")
    ap.add_argument("--entrypoint", action="append", default=[])
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--label", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--expose", action="append", default=[], metavar="PORT/tcp")
    args = ap.parse_args()

    for ref in [args.name] + args.also_name:
        if ":" not in ref.rsplit("/", 1)[-1]:
            die(f"image reference {ref!r} needs a tag (images tagged latest are always pulled)")

    layer = Layer()
    for spec in args.dir:
        parts = spec.split(":")
        if len(parts) not in (2, 4):
            die(f"--dir {spec!r}: expected DST:MODE or DST:MODE:UID:GID")
        uid, gid = (int(parts[2]), int(parts[3])) if len(parts) == 4 else (0, 0)
        layer.add_dir(parts[0], parse_mode(parts[1], spec), uid, gid)
    for spec in args.file:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            die(f"--file {spec!r}: expected SRC:DST[:MODE]")
        src, dst = parts[0], parts[1]
        try:
            with open(src, "rb") as f:
                data = f.read()
            mode = parse_mode(parts[2], spec) if len(parts) == 3 else os.stat(src).st_mode & 0o7777
        except OSError as e:
            die(f"--file {spec!r}: {e}")
        layer.add_file(dst, data, mode)
    for spec in args.symlink:
        dst, sep, target = spec.partition(":")
        if not sep:
            die(f"--symlink {spec!r}: expected DST:TARGET")
        layer.add_symlink(dst, target)
    for spec in args.text:
        dst, sep, content = spec.partition(":")
        if not sep:
            die(f"--text {spec!r}: expected DST:CONTENT")
        layer.add_file(dst, content.replace("\\n", "\n").encode(), 0o644)

    blobs = {}
    layer_tar = layer.tar()
    layer_digest, layer_size = blob(blobs, layer_tar)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": args.user,
            "Entrypoint": args.entrypoint,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + args.env,
            "Labels": dict(kv.split("=", 1) for kv in args.label),
            "ExposedPorts": {p: {} for p in args.expose},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "e2e/images/oci.py"}],
    }
    config_digest, config_size = blob(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": ref,
                "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
            },
        } for ref in [args.name] + args.also_name],
    }

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as t:
        def put(name, data):
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            info.mode = 0o644
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        put("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        put("index.json", json.dumps(index, sort_keys=True).encode())
        for digest in sorted(blobs):
            put(f"blobs/sha256/{digest}", blobs[digest])
    os.replace(tmp, args.out)
    print(f"{args.name} {manifest_digest} ({len(layer_tar)} bytes) -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
