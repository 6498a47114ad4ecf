#!/usr/bin/env python3
"""Builds grayguard's OCI images without a container daemon, reproducibly, and pins the filter.

  build.py filter  --wasm W --version V --out DIR          the Wasm plugin image
  build.py sidecar --binary B --onnxruntime L --model M --debs D --version V --out DIR
  build.py report  --binary B --debs D --version V --out DIR   the report server's image
  build.py digest  DIR                                     the manifest digest of an image layout
  build.py pin-filter DIR FILE...                          write DIR's digest into FILE's WasmPlugin

Each image is written as an OCI image layout (oci-layout, index.json, blobs/sha256/) that
`skopeo copy oci:DIR:TAG docker://...` pushes as is. What goes in is described in
images.toml beside this script.

Reproducible by construction: tar entries sorted, owned by uid/gid 0 unless stated, with
mtime 0 and no user names; gzip streams with mtime 0, no file name and a fixed level;
JSON with sorted keys and no whitespace; no creation time anywhere. The same inputs give
the same digests on any machine with the same zlib (Debian 12's here and in CI).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass, field

HERE = pathlib.Path(__file__).resolve().parent
SPEC = HERE / "images.toml"

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# zlib's default trade-off; any fixed level is reproducible.
GZIP_LEVEL = 6
# What the OCI image spec requires a tag to look like.
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class BuildError(Exception):
    """An input is missing or unusable; the message names it."""


# ---------------------------------------------------------------- layers

@dataclass
class Entry:
    """One file system entry of a layer."""

    path: str  # relative, no leading "/" or "./"
    kind: bytes  # tarfile.REGTYPE, DIRTYPE or SYMTYPE
    mode: int
    data: bytes = b""
    target: str = ""  # symlink target
    uid: int = 0
    gid: int = 0


@dataclass
class Layer:
    """A set of entries, parents added on demand; the first entry given for a path wins."""

    comment: str
    entries: dict[str, Entry] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        entry.path = norm(entry.path)
        if not entry.path:
            return
        parts = entry.path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            self.entries.setdefault(parent, Entry(parent, tarfile.DIRTYPE, 0o755))
        self.entries.setdefault(entry.path, entry)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.add(Entry(path, tarfile.REGTYPE, mode, data))

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.add(Entry(path, tarfile.DIRTYPE, mode, uid=uid, gid=gid))

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for path in sorted(self.entries):
                e = self.entries[path]
                info = tarfile.TarInfo(path)
                info.type, info.mode, info.uid, info.gid = e.kind, e.mode, e.uid, e.gid
                info.mtime, info.uname, info.gname = 0, "", ""
                if e.kind == tarfile.SYMTYPE:
                    info.linkname = e.target
                    tar.addfile(info)
                elif e.kind == tarfile.REGTYPE:
                    info.size = len(e.data)
                    tar.addfile(info, io.BytesIO(e.data))
                else:
                    tar.addfile(info)
        return buf.getvalue()


def norm(path: str) -> str:
    path = path.strip("/")
    while path.startswith("./"):
        path = path[2:]
    return "" if path == "." else path


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=buf, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def read_file(path: pathlib.Path, what: str) -> bytes:
    try:
        return path.resolve(strict=True).read_bytes()
    except OSError as err:
        raise BuildError(f"{what}: cannot read {path}: {err.strerror}") from err


# ---------------------------------------------------------------- OCI image layout

def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ImageLayout:
    """Blobs collected in memory, written out as an OCI image layout at the end."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def blob(self, media_type: str, data: bytes, annotations: dict | None = None) -> dict:
        digest = sha256(data)
        self.blobs[digest] = data
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if annotations:
            desc["annotations"] = annotations
        return desc

    def image(self, layers: list[Layer], platform: dict, container: dict, labels: dict,
              tag: str) -> str:
        """Adds the image; returns its manifest digest."""
        layer_descs, diff_ids, history = [], [], []
        for layer in layers:
            raw = layer.tar()
            diff_ids.append(sha256(raw))
            layer_descs.append(self.blob(MEDIA_LAYER, gzip_bytes(raw)))
            history.append({"created": "1970-01-01T00:00:00Z", "created_by": "mesh-config/images/build.py",
                            "comment": layer.comment})
        config = {
            **platform,
            "created": "1970-01-01T00:00:00Z",
            "config": {**container, "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": self.blob(MEDIA_CONFIG, canonical_json(config)),
            "layers": layer_descs,
            "annotations": labels,
        }
        desc = self.blob(MEDIA_MANIFEST, canonical_json(manifest),
                         {"org.opencontainers.image.ref.name": tag})
        self.index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [desc]}
        return desc["digest"]

    def write(self, out: pathlib.Path) -> None:
        """Replaces `out` with the layout (written aside first, so a failure leaves no half)."""
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "blobs" / "sha256").mkdir(parents=True)
        (tmp / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        (tmp / "index.json").write_bytes(canonical_json(self.index))
        for digest, data in self.blobs.items():
            (tmp / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)


def manifest_digest(layout: pathlib.Path) -> str:
    """The digest of the one image manifest in an OCI image layout."""
    try:
        index = json.loads((layout / "index.json").read_bytes())
    except (OSError, ValueError) as err:
        raise BuildError(f"{layout}: not an OCI image layout ({err}); run `make images`") from err
    manifests = [m for m in index.get("manifests", []) if m.get("mediaType") == MEDIA_MANIFEST]
    if len(manifests) != 1:
        raise BuildError(f"{layout}: expected one image manifest, found {len(manifests)}")
    return manifests[0]["digest"]


# ---------------------------------------------------------------- images

def spec() -> dict:
    with SPEC.open("rb") as f:
        return tomllib.load(f)


def check_tag(version: str) -> None:
    if not TAG_RE.match(version):
        raise BuildError(f"--version {version!r} is not a valid image tag")


def build_filter(args: argparse.Namespace) -> str:
    s = spec()["filter"]
    check_tag(args.version)
    wasm = read_file(args.wasm, "--wasm")
    if wasm[:4] != b"\0asm":
        raise BuildError(f"--wasm: {args.wasm} is not a WebAssembly module (no \\0asm magic)")
    layer = Layer(f"{s['file']}: {args.wasm.name}")
    layer.file(s["file"], wasm)
    labels = {**s["labels"], "org.opencontainers.image.version": args.version}
    layout = ImageLayout()
    digest = layout.image([layer], {"os": s["os"], "architecture": s["architecture"]}, {}, labels,
                          args.version)
    layout.write(args.out)
    return digest


def deb_file(debs: pathlib.Path, package: str) -> pathlib.Path:
    found = sorted(debs.glob(f"{package}_*.deb"))
    if len(found) != 1:
        raise BuildError(f"--debs: expected one {package}_*.deb in {debs}, found {len(found)} "
                         "(make images downloads them)")
    return found[0]


def keep_from_deb(path: str) -> bool:
    """Shared libraries, the loader's configuration and copyright files; no programs."""
    if re.fullmatch(r"usr/share/doc/[^/]+/copyright", path):
        return True
    return path.startswith(("lib/", "lib64/", "usr/lib/", "usr/lib64/", "etc/ld.so.conf"))


def add_deb(layer: Layer, deb: pathlib.Path, only: list[str] | None) -> dict:
    """Adds the files of a .deb to `layer`; returns its control fields."""
    try:
        control = subprocess.run(["dpkg-deb", "--field", str(deb)], check=True,
                                 capture_output=True, text=True).stdout
        payload = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                                 capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise BuildError(f"{deb.name}: dpkg-deb cannot read it: {err}") from err
    members: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        for info in tar:
            members[norm(info.name)] = info
        for path in sorted(members):
            info = members[path]
            # Folders come with what they hold (Layer.add creates parents).
            if info.isdir() or not (path in only if only is not None else keep_from_deb(path)):
                continue
            if info.issym():
                layer.add(Entry(path, tarfile.SYMTYPE, 0o777, target=info.linkname))
            elif info.islnk() or info.isreg():
                # A hard link becomes a copy: the layer need not hold its target.
                source = members.get(norm(info.linkname)) if info.islnk() else info
                data = tar.extractfile(source).read() if source is not None else None
                if data is None:
                    raise BuildError(f"{deb.name}: {path} links to missing {info.linkname}")
                layer.add(Entry(path, tarfile.REGTYPE, info.mode, data))
    return dict(line.split(": ", 1) for line in control.splitlines() if ": " in line and not line.startswith(" "))


def wheel_record_check(lib: pathlib.Path) -> str:
    """Checks a library file installed from a wheel against the wheel's RECORD (so the image
    carries exactly the pinned PyPI file); returns 'name==version' of the wheel."""
    real = lib.resolve(strict=True)
    for parent in real.parents:
        for record in parent.glob("*.dist-info/RECORD"):
            rel = real.relative_to(parent).as_posix()
            for line in record.read_text(encoding="utf-8").splitlines():
                name, _, rest = line.partition(",")
                if name != rel:
                    continue
                algo, _, expected = rest.split(",")[0].partition("=")
                actual = base64.urlsafe_b64encode(hashlib.new(algo, real.read_bytes()).digest()).rstrip(b"=").decode()
                if actual != expected:
                    raise BuildError(f"--onnxruntime: {real} differs from its wheel's RECORD")
                return record.parent.name.removesuffix(".dist-info").replace("-", "==", 1)
    raise BuildError(f"--onnxruntime: {real} is not a file installed from a wheel (no RECORD lists it)")


def runtime_layer(s: dict, debs: pathlib.Path, comment: str) -> tuple[Layer, list[str]]:
    """The base layer of a Linux image `s` (its table in images.toml): the Debian packages
    its `debs` names, of the file's [[debs]], its user and group, /tmp; with the packages'
    `name=version`s, in order."""
    known = {d["package"]: d for d in spec()["debs"]}
    uid, gid = int(s["user"]), int(s["group"])
    base = Layer(comment)
    packages = []
    for package in s["debs"]:
        if package not in known:
            raise BuildError(f"{SPEC.name}: {s['name']} takes Debian package {package!r}, "
                             "which [[debs]] does not list (make images downloads only those)")
        path = deb_file(debs, package)
        fields = add_deb(base, path, known[package].get("only"))
        packages.append(f"{fields['Package']}={fields['Version']}")
        # For image scanners: the packages the libraries came from, as distroless records them.
        status = "".join(f"{k}: {v}\n" for k, v in fields.items() if k in
                         ("Package", "Version", "Architecture", "Source", "Maintainer", "Description"))
        base.file(f"var/lib/dpkg/status.d/{fields['Package']}", (status + "Status: install ok installed\n").encode())
    name = s["user_name"]
    base.file("etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\n{name}:x:{uid}:{gid}:{name}:/home/{name}:/sbin/nologin\n".encode())
    base.file("etc/group", f"root:x:0:\n{name}:x:{gid}:\n".encode())
    base.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    base.dir("tmp", 0o1777)
    base.dir("root", 0o700)
    base.dir(f"home/{name}", 0o700, uid, gid)
    return base, packages


def process_config(s: dict, env: dict) -> dict:
    """What a Linux image `s` runs and how: its entrypoint as its user, in its home, with
    `env`, its port exposed."""
    return {
        "User": f"{s['user']}:{s['group']}",
        "ExposedPorts": {f"{s['port']}/tcp": {}},
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Entrypoint": s["entrypoint"],
        "WorkingDir": f"/home/{s['user_name']}",
    }


def build_sidecar(args: argparse.Namespace) -> str:
    s = spec()["sidecar"]
    check_tag(args.version)
    base, packages = runtime_layer(s, args.debs, "C/C++ runtime from Debian packages, users, /tmp")

    ort_data = read_file(args.onnxruntime, "--onnxruntime")
    ort_name = args.onnxruntime.resolve().name
    wheel = wheel_record_check(args.onnxruntime)
    ort = Layer(f"ONNX Runtime from the {wheel} wheel")
    ort_path = f"{s['onnxruntime_dir']}/{ort_name}"
    ort.file(ort_path, ort_data, 0o755)

    model = Layer(f"default model {args.model.name}")
    model.file(s["model"], read_file(args.model, "--model"))

    app = Layer("grayguard-sidecar")
    app.file(s["binary"], read_file(args.binary, "--binary"), 0o755)

    container = process_config(s, {**s["env"], "ORT_DYLIB_PATH": "/" + norm(ort_path)})
    labels = {
        **s["labels"],
        "org.opencontainers.image.version": args.version,
        "dev.grayguard.onnxruntime": wheel,
        "dev.grayguard.debian-packages": " ".join(packages),
    }
    layout = ImageLayout()
    digest = layout.image([base, ort, model, app], {"os": s["os"], "architecture": s["architecture"]},
                          container, labels, args.version)
    layout.write(args.out)
    return digest


def check_cmd(s: dict) -> None:
    """The report image's default flags serve on its exposed port and keep the reports in
    its reports directory (images.toml says each twice: as fields and in `cmd`)."""
    flags = dict(a.split("=", 1) for a in s["cmd"] if a.startswith("--") and "=" in a)
    expected = {"--serve": f"0.0.0.0:{s['port']}", "--reports-dir": s["reports_dir"]}
    for flag, value in expected.items():
        if flags.get(flag) != value:
            raise BuildError(f"{SPEC.name}: [report] cmd must pass {flag}={value} "
                             f"(port, reports_dir), has {flags.get(flag)!r}")


def build_report(args: argparse.Namespace) -> str:
    s = spec()["report"]
    check_tag(args.version)
    check_cmd(s)
    base, packages = runtime_layer(s, args.debs, "C runtime from Debian packages, users, /tmp")

    app = Layer("grayguard-report, its reports directory")
    app.file(s["binary"], read_file(args.binary, "--binary"), 0o755)
    # The user's, so that the image keeps reports without a volume too (a runtime copies it
    # into the anonymous volume it makes; a Kubernetes volume takes its owner from fsGroup).
    app.dir(s["reports_dir"], 0o755, int(s["user"]), int(s["group"]))

    container = {**process_config(s, s["env"]), "Cmd": s["cmd"], "Volumes": {s["reports_dir"]: {}}}
    labels = {
        **s["labels"],
        "org.opencontainers.image.version": args.version,
        "dev.grayguard.debian-packages": " ".join(packages),
    }
    layout = ImageLayout()
    digest = layout.image([base, app], {"os": s["os"], "architecture": s["architecture"]},
                          container, labels, args.version)
    layout.write(args.out)
    return digest


# ---------------------------------------------------------------- pinning

# `sha256: "<hex>"`, quoted: an all-digit digest would otherwise be a YAML number.
SHA256_LINE = re.compile(r'^(?P<key>\s*sha256:\s*)(?P<value>"?[0-9a-f]*"?)(?P<rest>\s*(#.*)?)$', re.M)


def pin_filter(layout: pathlib.Path, files: list[pathlib.Path]) -> list[str]:
    """Writes the filter image's manifest digest (hex, as WasmPlugin `sha256` takes it) into
    the `sha256:` line of each file; returns what changed."""
    digest = manifest_digest(layout).split(":", 1)[1]
    changed = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        lines = SHA256_LINE.findall(text)
        if len(lines) != 1:
            raise BuildError(f"{path}: expected one `sha256:` line to pin, found {len(lines)}")
        new = SHA256_LINE.sub(lambda m: f'{m["key"]}"{digest}"{m["rest"]}', text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(str(path))
    return changed


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("filter", help="the Wasm plugin image")
    f.add_argument("--wasm", type=pathlib.Path, required=True)
    s = sub.add_parser("sidecar", help="the runnable sidecar image")
    s.add_argument("--binary", type=pathlib.Path, required=True)
    s.add_argument("--onnxruntime", type=pathlib.Path, required=True,
                   help="libonnxruntime.so installed from the pinned onnxruntime wheel")
    s.add_argument("--model", type=pathlib.Path, required=True)
    r = sub.add_parser("report", help="the runnable report server image")
    r.add_argument("--binary", type=pathlib.Path, required=True)
    for p in (s, r):
        p.add_argument("--debs", type=pathlib.Path, required=True,
                       help="folder with the .deb files named in images.toml")
    for p in (f, s, r):
        p.add_argument("--version", required=True, help="image tag")
        p.add_argument("--out", type=pathlib.Path, required=True, help="OCI image layout to write")
    d = sub.add_parser("digest", help="print the manifest digest of an image layout")
    d.add_argument("layout", type=pathlib.Path)
    p = sub.add_parser("pin-filter", help="write the filter image's digest into WasmPlugin files")
    p.add_argument("layout", type=pathlib.Path)
    p.add_argument("files", type=pathlib.Path, nargs="+")
    args = parser.parse_args()
    try:
        if args.command == "filter":
            print(f"{args.out}: {build_filter(args)}")
        elif args.command == "sidecar":
            print(f"{args.out}: {build_sidecar(args)}")
        elif args.command == "report":
            print(f"{args.out}: {build_report(args)}")
        elif args.command == "digest":
            print(manifest_digest(args.layout))
        else:
            for path in pin_filter(args.layout, args.files):
                print(f"pinned {path}")
    except (BuildError, OSError, tomllib.TOMLDecodeError, KeyError) as err:
        print(f"build.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
