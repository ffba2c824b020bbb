"""The node's own view of registries: its DNS, CA store, runtime proxy, mirrors and credentials.

The agent runs in a container, but must see registries as the node's
container runtime does. This module reads the node's files (mounted read-only
under the host root): resolv.conf and hosts, the host CA bundle, containerd
``certs.d``/``hosts.toml`` or CRI-O ``registries.conf``, the runtime's proxy
from its systemd drop-ins (falling back to the agent's own environment), the
kubelet's node-wide docker configs and its credential-provider config. A file
that is missing is simply absent; a file that is broken is reported as a
problem and skipped, never fatal. It refuses to contact anything: it only
turns configuration into probe options and endpoint plans.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import AgentConfig
from probes._net import DnsSettings
from probes.credentials import DockerConfigError, Keyring, parse_docker_config
from probes.hostsconfig import HostsConfigError, load_hosts_config
from probes.proxyenv import ProxyConfig, proxy_from_env, proxy_from_systemd
from probes.reference import Reference, ReferenceError, parse_reference
from probes.state import ProbeOptions, Target
from probes.targets import target_from_endpoint

__all__ = ["NodeView", "EndpointPlan", "PlannedEndpoint", "PLAN_TTL"]

#: Seconds an endpoint plan is reused before the node's registry files are read again.
PLAN_TTL = 30.0


@dataclass(frozen=True, slots=True)
class PlannedEndpoint:
    """One endpoint the runtime tries for an image, and the reference as it asks for it."""

    target: Target
    reference: Reference


@dataclass(frozen=True, slots=True)
class EndpointPlan:
    """How the node's runtime pulls one image: endpoints in order, or why it will not."""

    reference: Reference
    endpoints: tuple[PlannedEndpoint, ...]
    runtime: str  # "containerd" | "cri-o"
    source: str | None  # the config file that shaped the plan
    blocked: bool = False
    problems: tuple[str, ...] = ()


@dataclass
class NodeView:
    """Everything the agent knows about the node's registry configuration."""

    config: AgentConfig
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dns = DnsSettings(resolv_conf=self.config.resolv_conf,
                               hosts_file=self.config.hosts_file, server=self.config.dns_server)
        bundles = [p for p in self.config.ca_bundles if p.is_file()]
        self.ca_files: tuple[Path, ...] = tuple(bundles[:1])
        self.proxy = self._proxy()
        self.node_keyring = self._node_keyring()
        self.runtime = self._runtime()
        self.crio = self._crio() if self.runtime == "cri-o" else None
        self.providers = self._providers()
        self._plans: dict[str, tuple[float, EndpointPlan]] = {}

    def _providers(self) -> object | None:
        """The kubelet's exec credential providers, when its config is mounted."""
        from agent.credprovider import CredentialProviderConfigError, \
            load_credential_provider_config

        path = self.config.credential_provider_config
        if path is None or not path.is_file():
            return None
        try:
            return load_credential_provider_config(path)
        except CredentialProviderConfigError as exc:
            self.problems.append(str(exc))
            return None

    def _proxy(self) -> ProxyConfig:
        files = [d for d in self.config.proxy_dropin_dirs if d.exists()]
        found = proxy_from_systemd(files) if files else None
        if found is not None and (found.https_proxy or found.http_proxy):
            return found
        return proxy_from_env(self.environ, source="the agent's environment")

    def _node_keyring(self) -> Keyring:
        """The kubelet's node credentials: the first readable, valid config in search order."""
        for path in self.config.node_docker_configs:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.problems.append(f"node docker config {path}: {exc.strerror or exc}")
                continue
            try:
                return parse_docker_config(data, source=f"node {path}")
            except DockerConfigError as exc:
                self.problems.append(f"{exc} (the kubelet skips it)")
        return Keyring()

    def _runtime(self) -> str:
        containerd = any(d.exists() for d in self.config.certs_dirs)
        crio = self.config.crio_registries_conf.exists() or self.config.crio_registries_dir.exists()
        return "cri-o" if crio and not containerd else "containerd"

    def _crio(self) -> object | None:
        from agent.crio import RegistriesConf, RegistriesConfError

        try:
            return RegistriesConf.load(self.config.crio_registries_conf,
                                       [self.config.crio_registries_dir])
        except RegistriesConfError as exc:
            self.problems.append(str(exc))
            return None

    def options(self, keyring: Keyring | None, *, credential_source: str | None = None
                ) -> ProbeOptions:
        """Probe options that see the registry as this node's runtime does."""
        return ProbeOptions(
            keyring=keyring, ca_files=self.ca_files, certs_dirs=self.config.certs_dirs,
            proxy_for=self.proxy.proxy_for, proxy_source=self.proxy.source, dns=self.dns,
            timeout=self.config.probe_timeout_seconds, credential_source=credential_source,
            system_ca=not self.ca_files,
        )

    def plan(self, reference: Reference) -> EndpointPlan:
        """The endpoints the runtime tries for ``reference``, in its order (re-read from the
        node's files at most every :data:`PLAN_TTL` seconds)."""
        key = str(reference)
        now = time.monotonic()
        cached = self._plans.get(key)
        if cached is not None and now - cached[0] < PLAN_TTL:
            return cached[1]
        plan = self._plan(reference)
        if len(self._plans) > 10_000:
            self._plans.clear()
        self._plans[key] = (now, plan)
        return plan

    def _plan(self, reference: Reference) -> EndpointPlan:
        if self.runtime == "cri-o" and self.crio is not None:
            return self._crio_plan(reference)
        try:
            hosts = load_hosts_config(reference.registry, self.config.certs_dirs)
        except HostsConfigError as exc:
            fallback = load_hosts_config(reference.registry, ())
            endpoint = fallback.endpoints[-1]
            return EndpointPlan(reference, (PlannedEndpoint(
                target_from_endpoint(endpoint, fallback, False), reference),), "containerd",
                None, problems=(str(exc),))
        planned = _unique(PlannedEndpoint(target_from_endpoint(e, hosts, False), reference)
                          for e in hosts.endpoints if not e.is_mirror or e.can("pull"))
        return EndpointPlan(reference, planned, "containerd",
                            str(hosts.source) if hosts.source else None,
                            problems=tuple(hosts.warnings))

    def _crio_plan(self, reference: Reference) -> EndpointPlan:
        from agent.crio import RegistriesConf

        assert isinstance(self.crio, RegistriesConf)
        view = self.crio.view(str(reference))
        if view is None:
            hosts = load_hosts_config(reference.registry, ())
            planned = tuple(PlannedEndpoint(target_from_endpoint(e, hosts, False), reference)
                            for e in hosts.endpoints)
            return EndpointPlan(reference, planned, "cri-o", None)
        source = str(view.entry.source) if view.entry.source else None
        endpoints = []
        for pull_source in view.sources:
            try:
                ref = parse_reference(pull_source.reference)
            except ReferenceError:
                continue
            endpoints.append(PlannedEndpoint(
                _crio_target(pull_source.endpoint), ref))
        return EndpointPlan(reference, tuple(endpoints), "cri-o", source, blocked=view.blocked,
                            problems=tuple(view.warnings))


def _unique(endpoints: Iterable[PlannedEndpoint]) -> tuple[PlannedEndpoint, ...]:
    """Drop repeats: a hosts.toml often lists its own server as a [host] table too."""
    seen: set[tuple[str, str, int, str]] = set()
    out = []
    for planned in endpoints:
        t = planned.target
        if (t.scheme, t.host, t.port, t.path) not in seen:
            seen.add((t.scheme, t.host, t.port, t.path))
            out.append(planned)
    return tuple(out)


def _crio_target(endpoint: object) -> Target:
    from probes.hostsconfig import Endpoint, HostsConfig

    assert isinstance(endpoint, Endpoint)
    return target_from_endpoint(endpoint, HostsConfig(endpoint.host, (endpoint,), None), False)
