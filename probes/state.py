"""What a probe knows while it walks the layers: the options it was given, the target
endpoint, the deadline, and what earlier layers found out.

Layers read from and write to one :class:`ProbeState`; they never share globals.
The state owns every socket and the HTTP client of the probe and closes them
when the probe ends. It refuses to invent timeouts: the layer's deadline is set
by the engine, and :meth:`ProbeState.time_left` is the only clock layers use.
"""

from __future__ import annotations

import functools
import platform as _platform
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes._net import DnsSettings, NodeResolver, SocketSet
from probes.codes import Code
from probes.credentials import Credential, Keyring

if TYPE_CHECKING:
    import httpx

    from probes.cache import ProbeCache
from probes.reference import Reference
from probes.result import LayerResult, Status
from probes.wwwauth import Challenge

__all__ = [
    "Platform", "ProbeOptions", "Target", "ProbeState", "ok", "failed", "skipped",
    "DEFAULT_CERTS_DIRS", "USER_AGENT",
]

DEFAULT_CERTS_DIRS = (Path("/etc/containerd/certs.d"), Path("/etc/docker/certs.d"))
USER_AGENT = "pulldoctor/0.1 (+registry pull diagnostics)"
ProxyChooser = Callable[[str, str, int | None], str | None]

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
         "i386": "386", "i686": "386", "riscv64": "riscv64"}


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform: ``os/architecture[/variant]``."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform must be OS/ARCH[/VARIANT], got {text!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine().lower()
        arch = _ARCH.get(machine, machine)
        variant = "v8" if arch == "arm64" else ("v7" if machine == "armv7l" else None)
        return cls(_platform.system().lower() or "linux", arch, variant)

    def matches(self, entry: dict[str, Any]) -> bool:
        """Whether an index entry's ``platform`` object serves this platform."""
        if entry.get("os") != self.os or entry.get("architecture") != self.architecture:
            return False
        variant = entry.get("variant")
        if self.variant is None or variant is None:
            return True
        # arm64 images without a variant or with v8 serve every arm64 node
        return bool(variant == self.variant)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Target:
    """The endpoint a probe talks to: the registry itself or one of its mirrors."""

    scheme: str  # "https" or "http"
    host: str  # host without port or brackets
    port: int
    path: str = "/v2"
    ca_files: tuple[Path, ...] = ()
    client_cert: tuple[Path, Path | None] | None = None
    skip_verify: bool = False
    is_mirror: bool = False
    source: str | None = None  # the hosts.toml or certs dir that configured it
    http_fallback: bool = False  # containerd retries plain HTTP when TLS meets an HTTP server

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}"


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """Everything a probe may use, fixed before it starts."""

    keyring: Keyring | None = None
    ca_files: tuple[Path, ...] = ()
    certs_dirs: tuple[Path, ...] = DEFAULT_CERTS_DIRS
    proxy_for: ProxyChooser | None = None
    proxy_source: str | None = None
    dns: DnsSettings = field(default_factory=DnsSettings)
    plain_http: bool = False
    platform: Platform = field(default_factory=Platform.host)
    timeout: float = 10.0
    user_agent: str = USER_AGENT
    credential_source: str | None = None  # e.g. "secret default/regcred" for reports
    stop_after: str | None = None  # a layer name: an endpoint check stops after "challenge"
    system_ca: bool = True


@functools.lru_cache(maxsize=1)
def _plain_target_context() -> ssl.SSLContext:
    """The TLS context of a plain-HTTP target's client, built once per process.

    Such a client speaks TLS only to an HTTPS token realm or redirect, with the system
    store; loading that store costs tens of milliseconds of CPU, too much to pay on every
    probe of a plain-HTTP endpoint. A configured SSLContext is safe to share between threads.
    """
    return ssl.create_default_context()


def ok(detail: str, **evidence: Any) -> LayerResult:
    return LayerResult("", Status.OK, detail=detail, code=None, evidence=evidence)


def failed(code: Code, detail: str, **evidence: Any) -> LayerResult:
    return LayerResult("", Status.FAILED, detail=detail, code=code, evidence=evidence)


def skipped(detail: str, **evidence: Any) -> LayerResult:
    return LayerResult("", Status.SKIPPED, detail=detail, evidence=evidence)


class ProbeState:
    """Mutable state of one probe run; created and closed by the engine."""

    def __init__(self, reference: Reference, target: Target, options: ProbeOptions,
                 resolver: NodeResolver | None = None, cache: ProbeCache | None = None) -> None:
        self.reference = reference
        self.cache = cache
        self.target = target
        self.options = options
        self.started = time.monotonic()
        self.deadline = self.started + options.timeout
        self.layer_deadline = self.deadline
        self.sockets = SocketSet()
        self.resolver = resolver or NodeResolver(options.dns)
        self.proxy_url: str | None = (
            options.proxy_for(target.scheme, target.host, target.port) if options.proxy_for
            else None)
        self.addresses: tuple[str, ...] = ()
        self.connected_address: str | None = None
        self.stream: Any = None  # the raw socket of the tcp/proxy layers, consumed by tls
        self.ssl_context: ssl.SSLContext | None = None
        self.challenges: list[Challenge] = []
        self.credentials: list[Credential] = []
        self.credential: Credential | None = None
        self.authorization: str | None = None
        self.token_grants_pull: bool | None = None
        self.redirects: list[str] = []
        self._client: httpx.Client | None = None

    def time_left(self) -> float:
        """Seconds until the current layer's deadline (never negative)."""
        return max(0.0, self.layer_deadline - time.monotonic())

    def base_url(self) -> str:
        return f"{self.target.url}{self.target.path}"

    def client(self) -> httpx.Client:
        """The probe's HTTP client: node resolver, node proxy, the verified TLS context."""
        if self._client is None:
            from probes._transport import NodeBackend, build_client  # the HTTP stack

            context = self.ssl_context or _plain_target_context()
            backend = NodeBackend(self.resolver, self.sockets, self.time_left)
            self._client = build_client(context, backend, self.options.proxy_for,
                                        self.options.timeout, self.options.user_agent)
        return self._client

    def http_timeout(self) -> httpx.Timeout:
        import httpx  # loaded by client() already

        return httpx.Timeout(max(self.time_left(), 0.001))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.stream is not None:
            try:
                self.stream.close()
            except OSError:
                pass
        self.sockets.close_all()
