"""Helpers to probe the loopback fleet in-process with the node-like options tests need."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from probes import ProbeOptions, ProbeReport, probe
from probes._net import DnsSettings
from probes.credentials import Keyring, parse_docker_config
from tests.fleet import Fleet

ProbeFn = Callable[..., ProbeReport]


def options_for(fleet: Fleet, *, creds: dict[str, tuple[str, str]] | None = None,
                **overrides: Any) -> ProbeOptions:
    """Options that see the fleet as a node would: its DNS, its certs.d, no ambient proxy."""
    keyring: Keyring | None = None
    if creds is not None:
        path = fleet.docker_config(creds, shape=overrides.pop("shape", "auths"))
        keyring = parse_docker_config(Path(path).read_bytes(), source=str(path))
    settings: dict[str, Any] = {
        "keyring": keyring,
        "certs_dirs": (fleet.certs_dir,),
        "dns": DnsSettings(resolv_conf=fleet.resolv_conf, hosts_file=fleet.hosts_file,
                           server=f"{fleet.dns.address}:{fleet.dns.port}"),
        "timeout": 5.0,
        "proxy_for": None,
    }
    settings.update(overrides)
    return ProbeOptions(**settings)


@pytest.fixture
def run_probe(fleet: Fleet) -> ProbeFn:
    """Probe a reference against the fleet; keyword arguments override ProbeOptions."""
    def run(reference: str, **kwargs: Any) -> ProbeReport:
        return probe(reference, options_for(fleet, **kwargs))
    return run
