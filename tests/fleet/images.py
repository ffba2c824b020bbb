"""Test images, pushed once into the fleet's shared registry storage with a small httpx uploader.

``fleet.images`` maps a short key to a :class:`PushedImage`:

==============  ====================  ====================================================
key             reference             content
==============  ====================  ====================================================
``hello``       ``test/hello:v1``     OCI image manifest, linux + this machine's arch
``multi``       ``test/multi:v1``     OCI index: linux/amd64, linux/arm64, linux/arm/v7
``otherarch``   ``test/otherarch:v1`` OCI index listing only platforms this machine is not
``public``      ``public/hello:v1``   same content as ``hello`` (anonymous pull via token)
``dockerlist``  ``test/dockerlist:v1`` Docker manifest list + Docker v2 manifest for this arch
==============  ====================  ====================================================

Layers are tiny deterministic tar.gz blobs; configs are valid JSON with
architecture, os and matching ``diff_ids``, so containerd can unpack them.
The uploader uses only the plain Distribution API (monolithic blob upload:
POST then PUT ``?digest=``; manifest PUT) and refuses anything but a 201.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from dataclasses import dataclass, field

import httpx

__all__ = [
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "PushedImage",
    "host_platform",
    "push_images",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_MACHINE_TO_PLATFORM = {
    "x86_64": "linux/amd64",
    "amd64": "linux/amd64",
    "aarch64": "linux/arm64",
    "arm64": "linux/arm64",
    "armv7l": "linux/arm/v7",
    "armv6l": "linux/arm/v6",
    "s390x": "linux/s390x",
    "ppc64le": "linux/ppc64le",
    "riscv64": "linux/riscv64",
    "i686": "linux/386",
    "i386": "linux/386",
}
_FOREIGN_CANDIDATES = ("linux/s390x", "linux/ppc64le", "linux/riscv64")


@dataclass(frozen=True)
class PushedImage:
    """An image in the fleet's storage; ``platforms`` maps ``os/arch[/variant]`` to its manifest."""

    repository: str
    tag: str
    digest: str
    media_type: str
    size: int
    platforms: dict[str, str] = field(default_factory=dict)
    blobs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``repository:tag`` (no registry)."""
        return f"{self.repository}:{self.tag}"

    def ref(self, host: str, *, by_digest: bool = False) -> str:
        """The full reference on registry ``host`` (``HOST/REPO:TAG`` or ``HOST/REPO@DIGEST``)."""
        return f"{host}/{self.repository}@{self.digest}" if by_digest else f"{host}/{self.name}"


def host_platform() -> str:
    """This machine's platform as ``linux/ARCH[/VARIANT]`` (e.g. ``linux/amd64``)."""
    machine = platform.machine().lower()
    if machine not in _MACHINE_TO_PLATFORM:
        raise RuntimeError(f"fleet images: unknown machine architecture {machine!r}")
    return _MACHINE_TO_PLATFORM[machine]


def _split(plat: str) -> dict[str, str]:
    parts = plat.split("/")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(text: str) -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip of it), both byte-for-byte deterministic."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return plain, gzip.compress(plain, mtime=0)


class _Uploader:
    def __init__(self, client: httpx.Client, repository: str) -> None:
        self.client, self.repository = client, repository
        self.blobs: list[str] = []

    def blob(self, data: bytes) -> str:
        digest = _sha(data)
        start = self.client.post(f"/v2/{self.repository}/blobs/uploads/")
        if start.status_code != 202:
            raise RuntimeError(f"blob upload start: {start.status_code} {start.text[:200]}")
        location = start.headers["Location"]
        sep = "&" if "?" in location else "?"
        done = self.client.put(
            f"{location}{sep}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status_code != 201:
            raise RuntimeError(f"blob upload: {done.status_code} {done.text[:200]}")
        self.blobs.append(digest)
        return digest

    def manifest(self, ref: str, obj: dict[str, object], media_type: str) -> tuple[str, int]:
        body = json.dumps(obj, separators=(",", ":")).encode()
        r = self.client.put(
            f"/v2/{self.repository}/manifests/{ref}",
            content=body,
            headers={"Content-Type": media_type},
        )
        if r.status_code != 201:
            raise RuntimeError(f"manifest {self.repository}:{ref}: {r.status_code} {r.text[:200]}")
        return _sha(body), len(body)

    def image(self, plat: str, *, docker: bool = False) -> tuple[str, int, dict[str, object]]:
        """Push config, layer and manifest (by digest) for ``plat``; return them."""
        tar, gz = _layer(f"hello from {self.repository} for {plat}\n")
        config = json.dumps(
            {
                **_split(plat),
                "config": {"Cmd": ["/hello"]},
                "rootfs": {"type": "layers", "diff_ids": [_sha(tar)]},
            }
        ).encode()
        media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        manifest: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                "digest": self.blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": DOCKER_LAYER if docker else OCI_LAYER,
                    "digest": self.blob(gz),
                    "size": len(gz),
                }
            ],
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        digest, size = self.manifest(_sha(body), manifest, media_type)
        return digest, size, manifest

    def index(self, tag: str, platforms: list[str], *, docker: bool = False) -> PushedImage:
        """Push one manifest per platform, then the index (or Docker list) under ``tag``."""
        child_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        entries, children = [], {}
        for plat in platforms:
            digest, size, _ = self.image(plat, docker=docker)
            children[plat] = digest
            entries.append(
                {"mediaType": child_type, "digest": digest, "size": size, "platform": _split(plat)}
            )
        media_type = DOCKER_LIST if docker else OCI_INDEX
        digest, size = self.manifest(
            tag, {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}, media_type
        )
        return PushedImage(
            self.repository, tag, digest, media_type, size, children, tuple(self.blobs)
        )

    def single(self, tag: str, plat: str) -> PushedImage:
        """Push one image manifest and tag it."""
        _, _, manifest = self.image(plat)
        digest, size = self.manifest(tag, manifest, OCI_MANIFEST)
        return PushedImage(
            self.repository, tag, digest, OCI_MANIFEST, size, {plat: digest}, tuple(self.blobs)
        )


def foreign_platforms(own: str) -> list[str]:
    """Two platforms that are not ``own``."""
    return [p for p in _FOREIGN_CANDIDATES if p != own][:2]


def push_images(registry_url: str) -> dict[str, PushedImage]:
    """Push every test image through the (plain, anonymous) registry at ``registry_url``."""
    own = host_platform()
    with httpx.Client(base_url=registry_url, timeout=10, trust_env=False) as client:
        return {
            "hello": _Uploader(client, "test/hello").single("v1", own),
            "multi": _Uploader(client, "test/multi").index(
                "v1", ["linux/amd64", "linux/arm64", "linux/arm/v7"]
            ),
            "otherarch": _Uploader(client, "test/otherarch").index("v1", foreign_platforms(own)),
            "public": _Uploader(client, "public/hello").single("v1", own),
            "dockerlist": _Uploader(client, "test/dockerlist").index("v1", [own], docker=True),
        }
