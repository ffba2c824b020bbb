"""The agent's configuration file: typed, validated at load, strict about unknown keys.

A typo in a ConfigMap must not silently fall back to a default, so every key
is known, every value type-checked and range-checked, and any problem raises
:class:`ConfigError` naming the file and the key path (``events.enabled``).
This module reads one YAML (or JSON) file and nothing else; it does not look
at the paths it is given — the node view does, and reports what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["AgentConfig", "EventsConfig", "StaticTarget", "ConfigError", "load_config",
           "parse_config"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class EventsConfig:
    enabled: bool = True
    min_interval_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class StaticTarget:
    """An image or registry probed on every node whether or not a pod uses it."""

    image: str | None = None
    registry: str | None = None
    docker_config: Path | None = None

    @property
    def reference(self) -> str:
        return self.image or self.registry or ""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    # per registry and node: one image (token + manifest) this often, in turn through the
    # node's images of that registry; see docs/scale.md for why these defaults
    interval_seconds: float = 3600.0
    # per registry and node: the cheap endpoint check (dns, tcp, proxy, tls, GET /v2/)
    endpoint_interval_seconds: float = 900.0
    # targets known at start-up get a random phase within this many seconds
    startup_spread_seconds: float = 30.0
    jitter: float = 0.2
    probe_timeout_seconds: float = 10.0
    concurrency: int = 4
    max_registries: int = 200
    listen_address: str = "0.0.0.0:9797"
    events: EventsConfig = field(default_factory=EventsConfig)
    host_root: Path = Path("/host")
    resolv_conf: Path = Path("/host/etc/resolv.conf")
    hosts_file: Path = Path("/host/etc/hosts")
    certs_dirs: tuple[Path, ...] = (Path("/host/etc/containerd/certs.d"),
                                    Path("/host/etc/docker/certs.d"))
    ca_bundles: tuple[Path, ...] = (Path("/host/etc/ssl/certs/ca-certificates.crt"),
                                    Path("/host/etc/pki/tls/certs/ca-bundle.crt"))
    crio_registries_conf: Path = Path("/host/etc/containers/registries.conf")
    crio_registries_dir: Path = Path("/host/etc/containers/registries.conf.d")
    proxy_dropin_dirs: tuple[Path, ...] = (
        Path("/host/etc/systemd/system/containerd.service.d"),
        Path("/host/etc/systemd/system/crio.service.d"))
    node_docker_configs: tuple[Path, ...] = (
        Path("/host/var/lib/kubelet/config.json"), Path("/host/root/.docker/config.json"),
        Path("/host/.docker/config.json"))
    credential_provider_config: Path | None = Path(
        "/host/etc/kubernetes/credential-provider-config.yaml")
    static_targets: tuple[StaticTarget, ...] = ()
    failure_probe_min_interval_seconds: float = 30.0
    secret_cache_seconds: float = 600.0
    dns_server: str | None = None

    @property
    def listen(self) -> tuple[str, int]:
        host, _, port = self.listen_address.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


# key -> (kind, extra) ; kinds: float, int, bool, str, path, paths, optional_path
_SCALARS: dict[str, tuple[str, float | None, float | None]] = {
    "interval_seconds": ("float", 1.0, 86400.0),
    "endpoint_interval_seconds": ("float", 1.0, 86400.0),
    "startup_spread_seconds": ("float", 0.0, 3600.0),
    "jitter": ("float", 0.0, 0.9),
    "probe_timeout_seconds": ("float", 0.5, 120.0),
    "concurrency": ("int", 1, 64),
    "max_registries": ("int", 1, 10000),
    "failure_probe_min_interval_seconds": ("float", 0.0, 86400.0),
    "secret_cache_seconds": ("float", 0.0, 3600.0),
}
_PATHS = {"host_root", "resolv_conf", "hosts_file", "crio_registries_conf",
          "crio_registries_dir"}
_PATH_LISTS = {"certs_dirs", "ca_bundles", "proxy_dropin_dirs", "node_docker_configs"}
_STRINGS = {"listen_address", "dns_server"}


def _where(source: str, key: str) -> str:
    return f"{source}: {key}"


def _number(value: Any, kind: str, where: str, low: float | None, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind == "int" and not isinstance(value, int)):
        raise ConfigError(f"{where} must be {'an integer' if kind == 'int' else 'a number'}, "
                          f"got {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{where} must be between {low:g} and {high:g}, got {value}")
    return value


def _path_list(value: Any, where: str) -> tuple[Path, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of paths")
    return tuple(Path(v) for v in value)


def _events(value: Any, source: str) -> EventsConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(source, 'events')} must be a mapping")
    unknown = set(value) - {"enabled", "min_interval_seconds"}
    if unknown:
        raise ConfigError(f"{_where(source, 'events.' + sorted(unknown)[0])} is not a known key")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{_where(source, 'events.enabled')} must be true or false")
    interval = _number(value.get("min_interval_seconds", 600.0), "float",
                       _where(source, "events.min_interval_seconds"), 0.0, 86400.0)
    return EventsConfig(enabled, float(interval))


def _static_targets(value: Any, source: str) -> tuple[StaticTarget, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{_where(source, 'static_targets')} must be a list")
    out = []
    for index, item in enumerate(value):
        where = _where(source, f"static_targets[{index}]")
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a mapping with 'image' or 'registry'")
        unknown = set(item) - {"image", "registry", "docker_config"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]} is not a known key")
        image, registry, config = item.get("image"), item.get("registry"), item.get("docker_config")
        if (image is None) == (registry is None) or not isinstance(image or registry, str):
            raise ConfigError(f"{where} needs exactly one of 'image' or 'registry' (a string)")
        if config is not None and not isinstance(config, str):
            raise ConfigError(f"{where}.docker_config must be a path")
        _check_reference(str(image or registry), f"{where}.{'image' if image else 'registry'}")
        out.append(StaticTarget(image, registry, Path(config) if config else None))
    return tuple(out)


def _check_reference(text: str, where: str) -> None:
    from probes.reference import ReferenceError, parse_reference

    try:
        parse_reference(text)
    except ReferenceError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_config(data: Any, source: str) -> AgentConfig:
    """Validate a loaded document (a mapping) into an :class:`AgentConfig`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping of keys")
    known = {f.name for f in fields(AgentConfig)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        where = _where(source, str(key))
        if key not in known:
            raise ConfigError(f"{where} is not a known key")
        if key in _SCALARS:
            kind, low, high = _SCALARS[key]
            number = _number(value, kind, where, low, high)
            values[key] = int(number) if kind == "int" else float(number)
        elif key in _PATHS:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where} must be a path")
            values[key] = Path(value)
        elif key == "credential_provider_config":
            if value is not None and not (isinstance(value, str) and value):
                raise ConfigError(f"{where} must be a path or null")
            values[key] = Path(value) if value else None
        elif key in _PATH_LISTS:
            values[key] = _path_list(value, where)
        elif key in _STRINGS:
            if not isinstance(value, str) and not (key == "dns_server" and value is None):
                raise ConfigError(f"{where} must be a string")
            values[key] = value
        elif key == "events":
            values[key] = _events(value, source)
        elif key == "static_targets":
            values[key] = _static_targets(value, source)
    config = AgentConfig(**values)
    _check_listen(config, source)
    return config


def _check_listen(config: AgentConfig, source: str) -> None:
    try:
        _, port = config.listen
    except ValueError:
        raise ConfigError(f"{_where(source, 'listen_address')} must be HOST:PORT") from None
    if not 0 <= port < 65536:
        raise ConfigError(f"{_where(source, 'listen_address')} port out of range")


def load_config(path: Path | None) -> AgentConfig:
    """Read and validate the configuration file (defaults when ``path`` is None)."""
    if path is None:
        return AgentConfig()
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}") from None
    return parse_config(data, str(path))
