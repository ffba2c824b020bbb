"""Instances of the real Distribution registry (Debian ``docker-registry``), one per behaviour.

All instances share one storage root, so an image pushed once through ``plain``
is served by every instance. Each instance gets its own JSON config (JSON is
valid YAML), its own kernel-chosen port and its own log file.

=========  ======  ===========================================================
name       scheme  behaviour
=========  ======  ===========================================================
plain      http    anonymous
tls        https   anonymous; leaf from the fleet CA for every good name
basic      https   htpasswd (bcrypt); user alice/secret
token      https   token auth; realm is the fleet token server
expired    https   leaf expired yesterday
notyet     https   leaf valid from tomorrow
mismatch   https   leaf only for ``wrong.example``
untrusted  https   leaf from the *other* CA
=========  ======  ===========================================================

It refuses to listen anywhere but 127.0.0.1, and to retry forever: a port
taken between allocation and bind is retried on a fresh port a few times.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.fleet.accounts import ALICE, TOKEN_ISSUER, TOKEN_SERVICE
from tests.fleet.certs import FleetCerts
from tests.fleet.process import FleetError, ManagedProcess, Stoppable, log_tail, spawn
from tests.fleet.sockets import LOOPBACK, allocate_ports

__all__ = ["REGISTRY_BINARY", "SPECS", "Registry", "RegistrySpec", "start_registries"]

REGISTRY_BINARY = "/usr/bin/docker-registry"
_PORT_RETRIES = 3


@dataclass(frozen=True)
class RegistrySpec:
    """How one instance differs: its TLS leaf flavour (None = plain HTTP) and its auth."""

    name: str
    leaf: str | None
    auth: str | None = None  # None | "htpasswd" | "token"


SPECS: tuple[RegistrySpec, ...] = (
    RegistrySpec("plain", None),
    RegistrySpec("tls", "good"),
    RegistrySpec("basic", "good", "htpasswd"),
    RegistrySpec("token", "good", "token"),
    RegistrySpec("expired", "expired"),
    RegistrySpec("notyet", "notyet"),
    RegistrySpec("mismatch", "mismatch"),
    RegistrySpec("untrusted", "untrusted"),
)


@dataclass
class Registry:
    """One running registry instance."""

    name: str
    port: int
    scheme: str
    log: Path
    config: Path
    process: ManagedProcess | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass(frozen=True)
class _Shared:
    storage: Path
    certs: FleetCerts
    htpasswd: Path
    token_realm: str


def _write_htpasswd(path: Path) -> None:
    user, password = ALICE
    done = subprocess.run(
        ["htpasswd", "-Bin", user], input=password.encode(), capture_output=True, check=False
    )
    if done.returncode != 0:
        raise FleetError(f"htpasswd failed: {done.stderr.decode(errors='replace').strip()}")
    path.write_bytes(done.stdout)


def _config(spec: RegistrySpec, port: int, shared: _Shared) -> dict[str, object]:
    http: dict[str, object] = {"addr": f"{LOOPBACK}:{port}", "secret": "fleet-not-a-secret"}
    if spec.leaf is not None:
        leaf = shared.certs.leaves[spec.leaf]
        http["tls"] = {"certificate": str(leaf.cert), "key": str(leaf.key)}
    cfg: dict[str, object] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(shared.storage)},
            "delete": {"enabled": True},
        },
        "health": {"storagedriver": {"enabled": False}},
        "http": http,
    }
    if spec.auth == "htpasswd":
        cfg["auth"] = {"htpasswd": {"realm": "basic-realm", "path": str(shared.htpasswd)}}
    elif spec.auth == "token":
        cfg["auth"] = {
            "token": {
                "realm": shared.token_realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(shared.certs.token_signing_cert),
            }
        }
    return cfg


def _launch(spec: RegistrySpec, port: int, shared: _Shared, workdir: Path) -> Registry:
    config = workdir / "registry" / f"{spec.name}.json"
    config.write_text(json.dumps(_config(spec, port, shared), indent=1))
    log = workdir / "logs" / f"registry-{spec.name}.log"
    proc = spawn(f"registry {spec.name!r}", [REGISTRY_BINARY, "serve", str(config)], log)
    scheme = "https" if spec.leaf is not None else "http"
    return Registry(spec.name, port, scheme, log, config, proc)


def _answers(client: httpx.Client, reg: Registry) -> bool:
    try:
        status = client.get(f"{reg.url}/v2/").status_code
    except httpx.TransportError:
        return False
    return status in (200, 401)


def _port_taken(reg: Registry) -> bool:
    return "address already in use" in log_tail(reg.log, 20)


def _wait_all(
    pending: dict[str, Registry],
    specs: dict[str, RegistrySpec],
    started: list[Stoppable],
    shared: _Shared,
    workdir: Path,
    timeout: float,
) -> None:
    respawns = dict.fromkeys(specs, 0)
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=unverified, timeout=0.5, trust_env=False) as client:
        while pending:
            for name, reg in list(pending.items()):
                assert reg.process is not None
                if not reg.process.alive():
                    if _port_taken(reg) and respawns[name] < _PORT_RETRIES:
                        respawns[name] += 1
                        pending[name] = _launch(specs[name], allocate_ports(1)[0], shared, workdir)
                        started.append(pending[name])
                        continue
                    reg.process.check_alive()
                if _answers(client, reg):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                reg = next(iter(pending.values()))
                raise FleetError(
                    f"registry {reg.name!r} did not answer /v2/ on {reg.url} "
                    f"after {timeout:.0f} s; "
                    f"see {reg.log}:\n{log_tail(reg.log)}"
                )
            if pending:
                time.sleep(0.01)


def start_registries(
    workdir: Path,
    certs: FleetCerts,
    token_realm: str,
    started: list[Stoppable],
    *,
    specs: tuple[RegistrySpec, ...] = SPECS,
    timeout: float = 15.0,
) -> dict[str, Registry]:
    """Start every instance in parallel and wait until each answers ``GET /v2/``.

    Each registry is appended to ``started`` as soon as it is spawned (a retry on
    a fresh port appends the new one), so the caller can stop every process even
    when a later one fails.
    """
    (workdir / "registry").mkdir(parents=True, exist_ok=True)
    shared = _Shared(
        workdir / "registry" / "storage", certs, workdir / "registry" / "htpasswd", token_realm
    )
    _write_htpasswd(shared.htpasswd)
    pending: dict[str, Registry] = {}
    for spec, port in zip(specs, allocate_ports(len(specs))):
        pending[spec.name] = _launch(spec, port, shared, workdir)
        started.append(pending[spec.name])
    _wait_all(pending, {s.name: s for s in specs}, started, shared, workdir, timeout)
    latest = {r.name: r for r in started if isinstance(r, Registry)}  # retries come later
    return {spec.name: latest[spec.name] for spec in specs}
