"""Which kubelet exec credential provider (if any) supplies credentials for an image.

On EKS, AKS and GKE nodes the pull credential usually comes from a binary the
kubelet runs (``--image-credential-provider-config`` and
``--image-credential-provider-bin-dir``; kubernetes
``pkg/credentialprovider/plugin``), not from a pull secret. A diagnosis that
finds "no credentials" must first ask whether a provider covers the image.
This module parses ``CredentialProviderConfig`` (YAML or JSON,
``kubelet.config.k8s.io/v1``, ``v1beta1`` or ``v1alpha1``; a file or a
directory of ``*.json``/``*.yaml``/``*.yml`` merged in lexical order, as
recent kubelets allow) with the kubelet's validation, and matches images
with the kubelet's own rules (:func:`probes.credentials.urls_match`: one DNS
label per ``*``, equal ports, path prefix).

It rejects unknown fields (the kubelet decodes strictly) with a message naming
the file and the field. It never runs a provider, and never prints ``env``
values, which often hold secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from probes.credentials import go_url_parse, urls_match
from probes.hostsconfig import parse_go_duration

__all__ = [
    "CONFIG_API_VERSIONS",
    "PROVIDER_API_VERSIONS",
    "CredentialProvider",
    "CredentialProviderConfig",
    "CredentialProviderConfigError",
    "KubeletProviderFlags",
    "kubelet_provider_flags",
    "load_credential_provider_config",
    "parse_credential_provider_config",
    "split_cmdline",
]

CONFIG_API_VERSIONS = frozenset({"kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1",
                                 "kubelet.config.k8s.io/v1alpha1"})
PROVIDER_API_VERSIONS = frozenset({"credentialprovider.kubelet.k8s.io/v1",
                                   "credentialprovider.kubelet.k8s.io/v1beta1",
                                   "credentialprovider.kubelet.k8s.io/v1alpha1"})
_TOP_KEYS = frozenset({"apiVersion", "kind", "providers"})
_PROVIDER_KEYS = frozenset({"name", "matchImages", "defaultCacheDuration", "apiVersion",
                            "args", "env", "tokenAttributes"})
_ENV_KEYS = frozenset({"name", "value"})
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FLAG_CONFIG = "image-credential-provider-config"
_FLAG_BIN_DIR = "image-credential-provider-bin-dir"


class CredentialProviderConfigError(ValueError):
    """The provider config is invalid; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class CredentialProvider:
    """One ``providers[]`` entry; ``env`` values are hidden from repr."""

    name: str
    match_images: tuple[str, ...]
    default_cache_duration: float
    api_version: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)
    source: Path | None = None

    def matches(self, image_name: str) -> bool:
        """Whether the kubelet would run this provider for ``image_name``."""
        return any(urls_match(pattern, image_name) for pattern in self.match_images)


@dataclass(frozen=True, slots=True)
class CredentialProviderConfig:
    """All providers, in the kubelet's order."""

    providers: tuple[CredentialProvider, ...]

    def matching_providers(self, image_name: str) -> tuple[CredentialProvider, ...]:
        """Every provider the kubelet runs for ``image_name``, in config order."""
        return tuple(p for p in self.providers if p.matches(image_name))

    def matching_provider(self, image_name: str) -> str | None:
        """The name of the first provider that matches ``image_name``, or None."""
        found = self.matching_providers(image_name)
        return found[0].name if found else None


# --------------------------------------------------------------------------- parsing


class _Where:
    """The file being parsed, for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, fld: str, problem: str) -> CredentialProviderConfigError:
        return CredentialProviderConfigError(f"{self.source}: {fld}: {problem}")


def _reject_unknown(obj: Mapping[str, Any], allowed: frozenset[str], path: str,
                    where: _Where) -> None:
    for key in obj:
        if key not in allowed:
            raise where.error(f"{path}{key}", "unknown field (the kubelet decodes strictly)")


def _str_list(value: Any, fld: str, where: _Where) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise where.error(fld, "must be a list of strings")
    return tuple(value)


def _parse_env(value: Any, fld: str, where: _Where) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise where.error(fld, "must be a list of {name, value}")
    env: dict[str, str] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise where.error(f"{fld}[{i}]", "must be an object with name and value")
        _reject_unknown(item, _ENV_KEYS, f"{fld}[{i}].", where)
        name, val = item.get("name"), item.get("value", "")
        if not isinstance(name, str) or not name or not isinstance(val, str):
            # the value may be a secret: name the field, never the value
            raise where.error(f"{fld}[{i}]", "name and value must be strings, name non-empty")
        env[name] = val
    return env


def _parse_cache_duration(value: Any, fld: str, where: _Where) -> float:
    if value is None:
        raise where.error(fld, "required")
    if not isinstance(value, str):
        raise where.error(fld, "must be a duration string such as \"12h\"")
    try:
        seconds = parse_go_duration(value)
    except ValueError:
        raise where.error(fld, f"{value!r} is not a duration") from None
    if seconds < 0:
        raise where.error(fld, "must be greater than or equal to 0")
    return seconds


def _check_name(name: Any, fld: str, where: _Where) -> str:
    if not isinstance(name, str) or not name:
        raise where.error(fld, "required")
    if "/" in name or " " in name or name in (".", ".."):
        raise where.error(fld, f"invalid provider name {name!r} (no '/', no spaces, "
                          "not '.' or '..')")
    return name


def _check_match_images(value: Any, fld: str, where: _Where) -> tuple[str, ...]:
    patterns = _str_list(value, fld, where)
    if not patterns:
        raise where.error(fld, "at least 1 item in matchImages is required")
    for pattern in patterns:
        try:
            go_url_parse("https://" + pattern)
        except ValueError as exc:
            raise where.error(fld, f"match image {pattern!r} is invalid: {exc}") from None
    return patterns


def _parse_provider(item: Any, i: int, where: _Where, source: Path | None) -> CredentialProvider:
    fld = f"providers[{i}]"
    if not isinstance(item, dict):
        raise where.error(fld, "must be an object")
    _reject_unknown(item, _PROVIDER_KEYS, f"{fld}.", where)
    api_version = item.get("apiVersion")
    if not isinstance(api_version, str) or not api_version:
        raise where.error(f"{fld}.apiVersion", "required")
    if api_version not in PROVIDER_API_VERSIONS:
        raise where.error(f"{fld}.apiVersion", f"unsupported value {api_version!r}; "
                          f"supported: {', '.join(sorted(PROVIDER_API_VERSIONS))}")
    if item.get("tokenAttributes") is not None and not api_version.endswith("/v1"):
        raise where.error(f"{fld}.tokenAttributes", "only supported with the v1 apiVersion")
    return CredentialProvider(
        name=_check_name(item.get("name"), f"{fld}.name", where),
        match_images=_check_match_images(item.get("matchImages"), f"{fld}.matchImages", where),
        default_cache_duration=_parse_cache_duration(item.get("defaultCacheDuration"),
                                                     f"{fld}.defaultCacheDuration", where),
        api_version=api_version,
        args=_str_list(item.get("args"), f"{fld}.args", where),
        env=_parse_env(item.get("env"), f"{fld}.env", where),
        source=source,
    )


def _decode(data: bytes | str, where: _Where) -> dict[str, Any]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        # JSON is YAML: one decoder, like sigs.k8s.io/yaml; libyaml when present
        obj = yaml.load(text, Loader=_LOADER)  # a safe loader: plain data only
    except (yaml.YAMLError, RecursionError, ValueError):
        raise where.error("file", "not valid YAML or JSON") from None
    if not isinstance(obj, dict):
        raise where.error("file", "must be an object")
    return obj


def _providers_of(obj: Mapping[str, Any], where: _Where, source: Path | None,
                  ) -> list[CredentialProvider]:
    _reject_unknown(obj, _TOP_KEYS, "", where)
    if obj.get("kind") != "CredentialProviderConfig":
        raise where.error("kind", "must be CredentialProviderConfig")
    if obj.get("apiVersion") not in CONFIG_API_VERSIONS:
        raise where.error("apiVersion", f"must be one of {', '.join(sorted(CONFIG_API_VERSIONS))}")
    raw = obj.get("providers")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise where.error("providers", "must be a list")
    return [_parse_provider(item, i, where, source) for i, item in enumerate(raw)]


def _finish(providers: Sequence[CredentialProvider], where: _Where) -> CredentialProviderConfig:
    if not providers:
        raise where.error("providers", "at least 1 item in plugins is required")
    seen: set[str] = set()
    for provider in providers:
        if provider.name in seen:
            raise where.error("providers.name", f"duplicate provider name {provider.name!r}")
        seen.add(provider.name)
    return CredentialProviderConfig(providers=tuple(providers))


def parse_credential_provider_config(data: bytes | str, source: str) -> CredentialProviderConfig:
    """Parse and validate one ``CredentialProviderConfig`` document."""
    where = _Where(source)
    return _finish(_providers_of(_decode(data, where), where, None), where)


def load_credential_provider_config(path: Path) -> CredentialProviderConfig:
    """Read the kubelet's provider config from a file, or a directory of them (merged)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix in (".json", ".yaml", ".yml") and not p.is_dir())
        if not files:
            raise CredentialProviderConfigError(f"{path}: no configuration files in directory")
    else:
        files = [path]
    providers: list[CredentialProvider] = []
    for file in files:
        where = _Where(str(file))
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise where.error("file", f"cannot read ({exc.strerror})") from None
        providers += _providers_of(_decode(data, where), where, file)
    return _finish(providers, _Where(str(path)))


# --------------------------------------------------------------------------- kubelet flags


@dataclass(frozen=True, slots=True)
class KubeletProviderFlags:
    """Where the kubelet looks for providers, from its command line."""

    config_path: Path | None
    bin_dir: Path | None


def _flag_name(arg: str) -> tuple[str, str | None] | None:
    """``--a_b=c`` -> (``a-b``, ``c``); pflag normalises ``_`` to ``-`` for the kubelet."""
    if not arg.startswith("--") or arg == "--":
        return None
    name, eq, value = arg[2:].partition("=")
    return name.replace("_", "-"), (value if eq else None)


def kubelet_provider_flags(argv: Sequence[str]) -> KubeletProviderFlags:
    """Provider config path and bin dir from a kubelet command line (e.g. /proc/PID/cmdline)."""
    found: dict[str, str] = {}
    i = 0
    while i < len(argv):
        parsed = _flag_name(argv[i])
        if parsed is None:
            if argv[i] == "--":
                break
            i += 1
            continue
        name, value = parsed
        if name in (_FLAG_CONFIG, _FLAG_BIN_DIR):
            if value is None and i + 1 < len(argv):
                value, i = argv[i + 1], i + 1
            if value is not None:
                found[name] = value  # the last occurrence wins, as with pflag
        i += 1
    config, bin_dir = found.get(_FLAG_CONFIG), found.get(_FLAG_BIN_DIR)
    return KubeletProviderFlags(config_path=Path(config) if config else None,
                                bin_dir=Path(bin_dir) if bin_dir else None)


def split_cmdline(raw: bytes) -> list[str]:
    """Split ``/proc/PID/cmdline`` content into arguments."""
    return [a for a in raw.decode("utf-8", "replace").split("\x00") if a]
