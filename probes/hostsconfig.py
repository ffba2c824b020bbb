"""Which endpoints the node's runtime really contacts for a registry, and with what TLS.

containerd does not pull from the registry named in the image: it looks up a
host directory (``config_path``, usually ``/etc/containerd/certs.d``) and
follows its ``hosts.toml`` (containerd ``docs/hosts.md``,
``core/remotes/docker/config/hosts.go``): ``[host."…"]`` mirrors in file order,
then ``server`` last; a directory without ``hosts.toml`` holds docker-style
certificates (``*.crt`` CAs, ``*.cert``/``*.key`` client pairs, also the
``/etc/docker/certs.d`` layout). A probe that ignores this tests the wrong
server. This module turns that configuration into :class:`Endpoint` values.

Decisions, documented where containerd versions differ:

* Lookup per certs dir, in order: ``host_port_``, ``host:port``, ``_default``;
  the first *directory* that exists wins, even without a ``hosts.toml``.
* A ``hosts.toml`` without any ``[host."…"]`` table is honoured (containerd
  1.7.x with the fix and 2.x). containerd 1.6 ignores such a file and falls
  back to the directory's certificate files; ``legacy=True`` models 1.6 and
  :attr:`HostsConfig.warnings` always points the difference out.
* Hosts count in the order of their ``[host."…"]`` table headers (what 2.x
  does); a host defined only by an inline table is ignored, with a warning.
* localhost registries get containerd 2.x's defaults (HTTPS without
  verification, HTTP fallback) unless ``legacy=True``; an ``http://`` host
  with TLS settings is tried over HTTPS first with HTTP fallback.

It refuses to guess: invalid TOML or a wrongly typed field is a
:class:`HostsConfigError` naming the file and the key (containerd would log it
and silently fall back to certificate files, the usual cause of "my mirror is
ignored"). Unknown keys are reported as warnings, as containerd ignores them.
Header values may hold credentials, so :class:`Endpoint`'s repr shows header
names only. It does no network access and reads no certificate contents.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from probes.credentials import go_split_host_port, go_url_parse

__all__ = [
    "CAPABILITIES",
    "Endpoint",
    "HostsConfig",
    "HostsConfigError",
    "docker_cert_files",
    "go_path_clean",
    "host_dir_candidates",
    "load_hosts_config",
    "parse_go_duration",
]

#: containerd's capabilities, in canonical order.
CAPABILITIES: tuple[str, ...] = ("pull", "resolve", "push")
_HOST_KEYS = frozenset({"capabilities", "ca", "client", "skip_verify", "header",
                        "override_path", "dial_timeout", "proxy"})
_ROOT_KEYS = _HOST_KEYS | {"server", "host"}


def _no_headers() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({})


class HostsConfigError(ValueError):
    """A hosts.toml or certs directory is unusable; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place the runtime may pull from, with the TLS settings it would use."""

    url: str
    host: str
    scheme: str
    path: str
    capabilities: tuple[str, ...]
    ca_files: tuple[Path, ...] = ()
    client_certs: tuple[tuple[Path, Path | None], ...] = ()
    skip_verify: bool = False
    override_path: bool = False
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=_no_headers, hash=False,
                                                  repr=False)
    is_mirror: bool = False
    dial_timeout: float | None = None
    http_fallback: bool = False
    proxy: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        extras = [f"capabilities={self.capabilities}", f"path={self.path!r}"]
        if self.is_mirror:
            extras.append("mirror")
        if self.skip_verify:
            extras.append("skip_verify")
        if self.http_fallback:
            extras.append("http_fallback")
        if self.headers:
            extras.append(f"headers={sorted(self.headers)}")
        return f"Endpoint({self.url!r}, {', '.join(extras)})"

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True, slots=True)
class HostsConfig:
    """The endpoints for one registry in containerd's order, and the file that set them."""

    registry: str
    endpoints: tuple[Endpoint, ...]
    source: Path | None
    warnings: tuple[str, ...] = ()

    def pull_endpoints(self) -> tuple[Endpoint, ...]:
        """Endpoints containerd may fetch content from (``pull`` capability)."""
        return tuple(e for e in self.endpoints if e.can("pull"))


# --------------------------------------------------------------------------- small Go helpers

_DURATION_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                 "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` in seconds (``"1m30s"`` → 90.0); ValueError if invalid."""
    rest = text
    sign = -1.0 if rest.startswith("-") else 1.0
    rest = rest[1:] if rest[:1] in "+-" else rest
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    while rest:
        match = _DURATION_RE.match(rest)
        if not match or match.group(1) in ("", "."):
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        rest = rest[match.end():]
    return sign * total


def go_path_clean(path: str) -> str:
    """Go's ``path.Clean``: lexical, ``//`` collapses, never empty."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _is_localhost(host: str) -> bool:
    try:
        host, _ = go_split_host_port(host)
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port_of(host: str) -> str:
    try:
        return go_split_host_port(host)[1]
    except ValueError:
        return ""


# --------------------------------------------------------------------------- directory lookup


def host_dir_candidates(root: Path, registry: str) -> list[Path]:
    """Directories containerd tries under one certs dir for ``registry``, in order."""
    candidates = []
    colon = registry.rfind(":")
    if colon > 0:
        candidates.append(root / f"{registry[:colon]}_{registry[colon + 1:]}_")
    candidates += [root / registry, root / "_default"]
    return candidates


def _find_host_dir(registry: str, certs_dirs: Sequence[Path]) -> Path | None:
    for root in certs_dirs:
        for candidate in host_dir_candidates(Path(root), registry):
            try:
                os.stat(candidate)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise HostsConfigError(f"{candidate}: cannot inspect ({exc.strerror})") from None
            return candidate
    return None


def docker_cert_files(directory: Path) -> tuple[tuple[Path, ...], tuple[tuple[Path, Path | None], ...]]:
    """Docker's layout: ``*.crt`` are CAs, ``X.cert`` pairs with ``X.key`` when present."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return (), ()
    except OSError as exc:
        raise HostsConfigError(f"{directory}: cannot list ({exc.strerror})") from None
    cas: list[Path] = []
    pairs: list[tuple[Path, Path | None]] = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.endswith(".crt"):
            cas.append(directory / entry.name)
        if entry.name.endswith(".cert"):
            key = directory / (entry.name[:-5] + ".key")
            pairs.append((directory / entry.name, key if key.exists() else None))
    return tuple(cas), tuple(pairs)


# --------------------------------------------------------------------------- hosts.toml parsing


@dataclass(slots=True)
class _HostSpec:
    """One parsed host entry before containerd's defaults are applied."""

    scheme: str = ""
    host: str = ""
    path: str = ""
    capabilities: tuple[str, ...] = CAPABILITIES
    ca: tuple[Path, ...] | None = None
    client: tuple[tuple[Path, Path | None], ...] | None = None
    skip_verify: bool | None = None
    headers: dict[str, tuple[str, ...]] | None = None
    override_path: bool = False
    dial_timeout: float | None = None
    proxy: str | None = None
    is_mirror: bool = True


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _header_key_parts(line: str) -> list[str] | None:
    """Dotted key parts of a ``[table]`` header line, or None for other lines."""
    text = line.strip()
    if not text.startswith("[") or text.startswith("[["):
        return None
    parts: list[str] = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch in " \t.":
            i += 1
        elif ch == "]":
            return parts
        elif ch in "\"'":
            end = i + 1
            while end < len(text) and text[end] != ch:
                end += 2 if (ch == '"' and text[end] == "\\") else 1
            raw = text[i:end + 1]
            parts.append(tomllib.loads(f"k = {raw}")["k"] if ch == '"' else raw[1:-1])
            i = end + 1
        else:
            match = _BARE_KEY.match(text, i)
            if not match:
                return None
            parts.append(match.group())
            i = match.end()
    return None


def _table_header_hosts(text: str) -> list[str]:
    """Hosts in the order of their ``[host."…"]`` headers, as containerd 2.x reads them."""
    order: list[str] = []
    last = None
    for line in text.splitlines():
        try:
            parts = _header_key_parts(line)
        except (tomllib.TOMLDecodeError, KeyError):
            parts = None
        if parts and len(parts) >= 2 and parts[0] == "host" and parts[1] != last:
            last = parts[1]
            order.append(last)
    return order


class _Ctx:
    """Where we are while parsing: the file, its directory, and collected warnings."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.base = file.parent
        self.warnings: list[str] = []

    def error(self, key: str, problem: str, *, fallback: bool = True) -> HostsConfigError:
        note = (" (containerd would ignore this file and fall back to certificate files)"
                if fallback else "")
        return HostsConfigError(f"{self.file}: {key}: {problem}{note}")

    def path(self, value: str) -> Path:
        return Path(value) if os.path.isabs(value) else Path(os.path.normpath(self.base / value))


def _string_list(value: Any, key: str, ctx: _Ctx) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.error(key, "must be a string or a list of strings")
    return value


def _parse_ca(value: Any, key: str, ctx: _Ctx) -> tuple[Path, ...]:
    items = [value] if isinstance(value, str) else _string_list(value, key, ctx)
    return tuple(ctx.path(v) for v in items)


def _parse_client(value: Any, key: str, ctx: _Ctx) -> tuple[tuple[Path, Path | None], ...]:
    if isinstance(value, str):
        return ((ctx.path(value), None),)
    if not isinstance(value, list):
        raise ctx.error(key, "must be a string, a list of strings or a list of pairs")
    pairs: list[tuple[Path, Path | None]] = []
    for item in value:
        if isinstance(item, str):
            pairs.append((ctx.path(item), None))
            continue
        pair = _string_list(item, key, ctx)
        if len(pair) != 2:
            raise ctx.error(key, "a client pair must have exactly two paths")
        pairs.append((ctx.path(pair[0]), ctx.path(pair[1]) if pair[1] else None))
    return tuple(pairs)


def _parse_headers(value: Any, key: str, ctx: _Ctx) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ctx.error(key, "must be a table")
    headers: dict[str, tuple[str, ...]] = {}
    for name, item in value.items():
        # the value may be a credential: the message names the header, never its value
        items = [item] if isinstance(item, str) else _string_list(item, f"{key}.{name}", ctx)
        headers[name] = tuple(items)
    return headers


def _parse_capabilities(value: Any, key: str, ctx: _Ctx) -> tuple[str, ...]:
    names = {c.lower() for c in _string_list(value, key, ctx)}
    unknown = sorted(names - set(CAPABILITIES))
    if unknown:
        raise ctx.error(key, f"unknown capability {unknown[0]!r}")
    return tuple(c for c in CAPABILITIES if c in names) if names else CAPABILITIES


def _parse_bool(value: Any, key: str, ctx: _Ctx) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(key, "must be true or false")
    return value


def _parse_location(server: str, spec: _HostSpec, key: str, ctx: _Ctx) -> None:
    """containerd's handling of ``server`` and host keys: scheme, host and API path."""
    url = server if server.startswith("http") else "https://" + server
    try:
        parsed = go_url_parse(url)
    except ValueError as exc:
        raise ctx.error(key, f"{server!r} is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise ctx.error(key, f"{server!r} has scheme {parsed.scheme!r}; only http and https work "
                        "(containerd adds https:// only when the value does not start with "
                        "'http')", fallback=False)
    if not parsed.host:
        if key == "server":
            ctx.warnings.append(f"{ctx.file}: server {server!r} has no host; containerd uses "
                                "the default server")
            return
        raise ctx.error(key, f"{server!r} has no host", fallback=False)
    spec.scheme, spec.host = parsed.scheme, parsed.host
    if parsed.path:
        path = go_path_clean(parsed.path)
        spec.path = path if path.endswith("/v2") or spec.override_path else path + "/v2"
    else:
        spec.path = "" if spec.override_path else "/v2"


def _parse_fields(table: Mapping[str, Any], prefix: str, ctx: _Ctx, spec: _HostSpec) -> None:
    for name, value in table.items():
        key = f"{prefix}{name}"
        if name == "capabilities":
            spec.capabilities = _parse_capabilities(value, key, ctx)
        elif name == "ca":
            spec.ca = _parse_ca(value, key, ctx)
        elif name == "client":
            spec.client = _parse_client(value, key, ctx)
        elif name == "skip_verify":
            spec.skip_verify = _parse_bool(value, key, ctx)
        elif name == "override_path":
            spec.override_path = _parse_bool(value, key, ctx)
        elif name == "header":
            spec.headers = _parse_headers(value, key, ctx)
        elif name == "dial_timeout":
            spec.dial_timeout = _parse_dial_timeout(value, key, ctx)
        elif name == "proxy":
            if not isinstance(value, str):
                raise ctx.error(key, "must be a string")
            spec.proxy = value or None


def _parse_dial_timeout(value: Any, key: str, ctx: _Ctx) -> float | None:
    if not isinstance(value, str):
        raise ctx.error(key, "must be a duration string such as \"1s\"")
    if not value:
        return None
    try:
        return parse_go_duration(value)
    except ValueError:
        raise ctx.error(key, f"{value!r} is not a Go duration") from None


def _warn_unknown(table: Mapping[str, Any], allowed: frozenset[str], prefix: str,
                  ctx: _Ctx) -> None:
    for name in table:
        if name not in allowed:
            ctx.warnings.append(f"{ctx.file}: unknown key {prefix}{name!r} is ignored by "
                                "containerd")


def _parse_host_entry(name: str, table: Any, ctx: _Ctx) -> _HostSpec:
    key = f'host."{name}"'
    if not isinstance(table, dict):
        raise ctx.error(key, "must be a table")
    _warn_unknown(table, _HOST_KEYS, f"{key}.", ctx)
    spec = _HostSpec()
    _parse_fields(table, f"{key}.", ctx, spec)
    _parse_location(name, spec, key, ctx)
    return spec


def _host_order(doc: Mapping[str, Any], text: str, ctx: _Ctx, legacy: bool) -> list[str]:
    hosts = doc.get("host", {})
    if not isinstance(hosts, dict):
        raise ctx.error("host", "must be a table of host tables")
    if legacy:
        return list(hosts)
    order = [h for h in _table_header_hosts(text) if h in hosts]
    for name in hosts:
        if name not in order:
            ctx.warnings.append(f"{ctx.file}: host {name!r} has no [host.\"…\"] table header; "
                                "containerd 2.x ignores it")
    return order


def _parse_hosts_file(file: Path, text: str, legacy: bool) -> tuple[list[_HostSpec] | None, list[str]]:
    """Parse one hosts.toml; None means "fall back to the directory's certificates"."""
    ctx = _Ctx(file)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HostsConfigError(f"{file}: invalid TOML: {exc} (containerd would ignore this file "
                               "and fall back to certificate files)") from None
    _warn_unknown(doc, _ROOT_KEYS, "", ctx)
    order = _host_order(doc, text, ctx, legacy)
    if "host" not in doc:
        note = (f"{file}: no [host.\"…\"] table; containerd 1.6 (and 1.7 before the fix) ignores "
                "this file and uses only the directory's certificate files")
        ctx.warnings.append(note)
        if legacy:
            return None, ctx.warnings
    specs = [_parse_host_entry(name, doc["host"][name], ctx) for name in order]
    root = _HostSpec(is_mirror=False)
    _parse_fields(doc, "", ctx, root)
    server = doc.get("server", "")
    if not isinstance(server, str):
        raise ctx.error("server", "must be a string")
    if server:
        _parse_location(server, root, "server", ctx)
    specs.append(root)
    return specs, ctx.warnings


# --------------------------------------------------------------------------- defaults and output


def _default_server(registry: str, spec: _HostSpec, legacy: bool) -> None:
    """containerd's default for an entry without host: the registry itself."""
    spec.path, spec.capabilities = "/v2", CAPABILITIES
    if registry == "docker.io":
        spec.scheme, spec.host = "https", "registry-1.docker.io"
        return
    spec.scheme, spec.host = "https", registry
    if legacy or not _is_localhost(registry):
        return
    port = _port_of(registry)
    if port not in ("", "443"):
        spec.scheme = "http"
    if port != "80":
        spec.skip_verify = True


def _to_endpoint(spec: _HostSpec, legacy: bool) -> Endpoint:
    explicit_tls = spec.ca is not None or spec.client is not None or spec.skip_verify is not None
    scheme, fallback = spec.scheme, False
    if not legacy and scheme == "http" and explicit_tls and _port_of(spec.host) != "80":
        scheme, fallback = "https", True
    return Endpoint(
        url=f"{scheme}://{spec.host}", host=spec.host, scheme=scheme, path=spec.path,
        capabilities=spec.capabilities, ca_files=spec.ca or (), client_certs=spec.client or (),
        skip_verify=bool(spec.skip_verify), override_path=spec.override_path,
        headers=MappingProxyType(dict(spec.headers or {})), is_mirror=spec.is_mirror,
        dial_timeout=spec.dial_timeout, http_fallback=fallback, proxy=spec.proxy,
    )


def _read_hosts_toml(file: Path) -> str:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise HostsConfigError(f"{file}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise HostsConfigError(f"{file}: not valid UTF-8") from None


def _load_dir(directory: Path, legacy: bool) -> tuple[list[_HostSpec], Path, list[str]]:
    file = directory / "hosts.toml"
    if not directory.is_dir():
        raise HostsConfigError(f"{directory}: is not a directory (containerd fails the pull)")
    text = _read_hosts_toml(file)
    specs: list[_HostSpec] | None = None
    warnings: list[str] = []
    if text:
        specs, warnings = _parse_hosts_file(file, text, legacy)
    if specs is not None:
        return specs, file, warnings
    cas, pairs = docker_cert_files(directory)
    spec = _HostSpec(is_mirror=False, ca=cas or None, client=pairs or None)
    return [spec], directory, warnings


def load_hosts_config(registry: str, certs_dirs: Sequence[Path], *,
                      legacy: bool = False) -> HostsConfig:
    """The endpoints containerd uses for ``registry`` (``host[:port]``), mirrors first.

    ``certs_dirs`` are containerd's ``config_path`` entries in order; ``legacy``
    models containerd 1.6 (see the module docstring).
    """
    directory = _find_host_dir(registry, certs_dirs)
    specs: list[_HostSpec] = [_HostSpec(is_mirror=False)]
    source: Path | None = None
    warnings: list[str] = []
    if directory is not None:
        specs, source, warnings = _load_dir(directory, legacy)
    last = specs[-1]
    if not last.host:
        _default_server(registry, last, legacy)
        specs[-1] = replace(last, is_mirror=False)
    endpoints = tuple(_to_endpoint(s, legacy) for s in specs)
    return HostsConfig(registry=registry, endpoints=endpoints, source=source,
                       warnings=tuple(warnings))
