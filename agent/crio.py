"""Where CRI-O pulls an image from: containers-image ``registries.conf`` resolved for one image.

CRI-O does not read containerd's ``hosts.toml``. It uses containers-image
(``sysregistriesv2``): ``/etc/containers/registries.conf`` plus
``registries.conf.d/*.conf`` drop-ins (lexical order, a later drop-in replaces
an entry with the same ``prefix``); the ``[[registry]]`` with the longest
matching ``prefix`` (``*.example.com`` matches any subdomain depth) decides
``location`` rewriting, ``insecure``, ``blocked`` and ``[[registry.mirror]]``
(tried in order, filtered by ``pull-from-mirror`` / ``mirror-by-digest-only``,
the primary location last). TLS material comes from the first existing
``<root>/<host[:port]>`` of ``/etc/containers/certs.d`` then
``/etc/docker/certs.d`` (the port must match).

This module turns that into :class:`RegistryView` with
:class:`probes.hostsconfig.Endpoint` values so the agent probes CRI-O's
endpoints exactly like containerd's. It validates what containers-image
validates and raises :class:`RegistriesConfError` naming the file and key
(CRI-O would refuse to pull at all). It refuses to evaluate short-name
aliases or unqualified-search registries: the kubelet always hands CRI-O a
fully qualified, normalised name. No network access.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probes.hostsconfig import Endpoint, docker_cert_files

__all__ = [
    "DEFAULT_CERTS_DIRS",
    "DEFAULT_CONF",
    "DEFAULT_DROPIN_DIRS",
    "MirrorEntry",
    "PullSource",
    "RegistriesConf",
    "RegistriesConfError",
    "RegistryEntry",
    "RegistryView",
    "crio_view",
    "ref_matching_prefix",
]

DEFAULT_CONF = Path("/etc/containers/registries.conf")
DEFAULT_DROPIN_DIRS: tuple[Path, ...] = (Path("/etc/containers/registries.conf.d"),)
DEFAULT_CERTS_DIRS: tuple[Path, ...] = (Path("/etc/containers/certs.d"),
                                        Path("/etc/docker/certs.d"))
_PULL_FROM_MIRROR = ("", "all", "digest-only", "tag-only")
_REGISTRY_KEYS = frozenset({"prefix", "location", "insecure", "blocked", "mirror",
                            "mirror-by-digest-only", "proxy", "pull-from-mirror"})
_MIRROR_KEYS = frozenset({"location", "insecure", "pull-from-mirror", "proxy"})
_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_V2_TOP_KEYS = ("registry", "unqualified-search-registries", "credential-helpers",
                "short-name-mode", "aliases", "additional-layer-store-auth-helper")


class RegistriesConfError(ValueError):
    """registries.conf is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class MirrorEntry:
    """One ``[[registry.mirror]]``."""

    location: str
    insecure: bool = False
    pull_from_mirror: str = ""
    proxy: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One ``[[registry]]`` after containers-image's normalisation."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[MirrorEntry, ...] = ()
    mirror_by_digest_only: bool = False
    proxy: str | None = field(default=None, repr=False)
    source: Path | None = None


@dataclass(frozen=True, slots=True)
class PullSource:
    """One place CRI-O tries: the endpoint and the reference as rewritten for it."""

    endpoint: Endpoint
    reference: str


@dataclass(frozen=True, slots=True)
class RegistryView:
    """What CRI-O does for one image: the entry that matched and the sources it tries."""

    image: str
    entry: RegistryEntry
    sources: tuple[PullSource, ...]
    ca_dir: Path
    warnings: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        return self.entry.prefix

    @property
    def location(self) -> str:
        return self.entry.location

    @property
    def insecure(self) -> bool:
        return self.entry.insecure

    @property
    def blocked(self) -> bool:
        return self.entry.blocked

    @property
    def mirrors(self) -> tuple[MirrorEntry, ...]:
        return self.entry.mirrors

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Endpoints in the order CRI-O tries them, the primary location last."""
        return tuple(s.endpoint for s in self.sources)


# --------------------------------------------------------------------------- prefix matching


def _subdomain_match(ref: str, prefix: str) -> int:
    suffix = prefix[1:]
    index = ref.find(suffix)
    if index == -1 or "/" in ref[:index]:
        return -1
    index += len(suffix)
    if index == len(ref) or ref[index] in ":/@":
        return index
    return -1


def ref_matching_prefix(ref: str, prefix: str) -> int:
    """containers-image ``refMatchingPrefix``: length of ``ref`` consumed by ``prefix``, or -1."""
    if prefix.startswith("*."):
        return _subdomain_match(ref, prefix)
    if len(ref) < len(prefix) or not ref.startswith(prefix):
        return -1
    if len(ref) == len(prefix):
        return len(prefix)
    # "example.com:5000" matching "example.com" is a known containers-image quirk
    return len(prefix) if ref[len(prefix)] in ":/@" else -1


# --------------------------------------------------------------------------- parsing


class _File:
    """Context for one file: its path, for error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str) -> RegistriesConfError:
        return RegistriesConfError(f"{self.path}: {key}: {problem}")


def _get_str(table: Mapping[str, Any], name: str, key: str, f: _File) -> str:
    value = table.get(name, "")
    if not isinstance(value, str):
        raise f.error(f"{key}.{name}", "must be a string")
    return value


def _get_bool(table: Mapping[str, Any], name: str, key: str, f: _File) -> bool:
    value = table.get(name, False)
    if not isinstance(value, bool):
        raise f.error(f"{key}.{name}", "must be true or false")
    return value


def _location(value: str, key: str, f: _File) -> str:
    trimmed = value.rstrip("/")
    if trimmed.startswith(("http://", "https://")):
        raise f.error(key, f"{value!r}: URI schemes are not supported")
    return trimmed


def _proxy(table: Mapping[str, Any], key: str, f: _File) -> str | None:
    value = _get_str(table, "proxy", key, f)
    if not value:
        return None
    scheme = value.partition("://")[0].lower() if "://" in value else ""
    if scheme not in _PROXY_SCHEMES:
        raise f.error(f"{key}.proxy", f"scheme {scheme!r} is not supported "
                      "(http, https, socks5, socks5h)")
    return value


def _parse_mirror(table: Any, key: str, f: _File, by_digest_only: bool) -> MirrorEntry:
    if not isinstance(table, dict):
        raise f.error(key, "must be a table")
    location = _location(_get_str(table, "location", key, f), f"{key}.location", f)
    if not location:
        raise f.error(f"{key}.location", "mirror location is unset")
    pull_from = _get_str(table, "pull-from-mirror", key, f)
    if pull_from not in _PULL_FROM_MIRROR:
        raise f.error(f"{key}.pull-from-mirror", f"unsupported value {pull_from!r} "
                      "(all, digest-only, tag-only)")
    if by_digest_only and pull_from:
        raise f.error(f"{key}.pull-from-mirror", "cannot be combined with the registry's "
                      "mirror-by-digest-only")
    return MirrorEntry(location=location, insecure=_get_bool(table, "insecure", key, f),
                       pull_from_mirror=pull_from, proxy=_proxy(table, key, f))


def _parse_registry(table: Any, key: str, f: _File) -> RegistryEntry:
    if not isinstance(table, dict):
        raise f.error(key, "must be a table")
    location = _location(_get_str(table, "location", key, f), f"{key}.location", f)
    prefix = _get_str(table, "prefix", key, f)
    if not prefix:
        if not location:
            raise f.error(key, "both location and prefix are unset")
        prefix = location
    else:
        prefix = _location(prefix, f"{key}.prefix", f)
        if not prefix.startswith("*.") and not location:
            raise f.error(f"{key}.location", "unset, and prefix is not of the form *.example.com")
    if prefix.startswith("*.") and any(c in prefix for c in "/@:"):
        raise f.error(f"{key}.prefix", f"wildcard prefix {prefix!r} must be of the form "
                      "*.example.com")
    if _get_str(table, "pull-from-mirror", key, f):
        raise f.error(f"{key}.pull-from-mirror", "only allowed on a [[registry.mirror]]")
    by_digest = _get_bool(table, "mirror-by-digest-only", key, f)
    mirrors_raw = table.get("mirror", [])
    if not isinstance(mirrors_raw, list):
        raise f.error(f"{key}.mirror", "must be an array of tables ([[registry.mirror]])")
    mirrors = tuple(_parse_mirror(m, f"{key}.mirror[{i}]", f, by_digest)
                    for i, m in enumerate(mirrors_raw))
    return RegistryEntry(prefix=prefix, location=location,
                         insecure=_get_bool(table, "insecure", key, f),
                         blocked=_get_bool(table, "blocked", key, f), mirrors=mirrors,
                         mirror_by_digest_only=by_digest, proxy=_proxy(table, key, f),
                         source=f.path)


def _v1_registries(doc: Mapping[str, Any], f: _File) -> list[RegistryEntry]:
    """Convert the deprecated v1 ``[registries.*]`` lists as containers-image does."""
    section = doc.get("registries", {})
    if not isinstance(section, dict):
        raise f.error("registries", "must be a table")
    order: list[str] = []
    flags: dict[str, dict[str, bool]] = {}
    for kind in ("search", "block", "insecure"):
        table = section.get(kind, {})
        names = table.get("registries", []) if isinstance(table, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise f.error(f"registries.{kind}.registries", "must be a list of strings")
        for name in names:
            loc = _location(name, f"registries.{kind}.registries", f)
            if loc not in flags:
                order.append(loc)
                flags[loc] = {"blocked": False, "insecure": False}
            if kind != "search":
                flags[loc]["blocked" if kind == "block" else "insecure"] = True
    return [RegistryEntry(prefix=loc, location=loc, source=f.path,
                          insecure=flags[loc]["insecure"], blocked=flags[loc]["blocked"])
            for loc in order]


def _check_conflicts(entries: Sequence[RegistryEntry], f: _File) -> None:
    seen: dict[str, RegistryEntry] = {}
    for entry in entries:
        where = entry.location or entry.prefix
        other = seen.setdefault(where, entry)
        for attr in ("insecure", "blocked", "proxy"):
            if getattr(other, attr) != getattr(entry, attr):
                raise f.error("registry", f"{where!r} is defined multiple times with "
                              f"conflicting {attr!r}")


def _first_per_prefix(entries: Iterable[RegistryEntry]) -> dict[str, RegistryEntry]:
    unique: dict[str, RegistryEntry] = {}
    for entry in entries:
        unique.setdefault(entry.prefix, entry)
    return unique


def _parse_file(path: Path, *, drop_in: bool) -> tuple[dict[str, RegistryEntry], list[str]]:
    f = _File(path)
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise f.error("file", "not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise f.error("file", f"invalid TOML: {exc}") from None
    warnings: list[str] = []
    has_v1 = "registries" in doc
    has_v2 = any(k in doc for k in _V2_TOP_KEYS)
    if has_v1 and (drop_in or has_v2):
        raise f.error("registries", "v1 format is not allowed here" if drop_in
                      else "mixing the v1 and v2 formats is not supported")
    if has_v1:
        entries = _v1_registries(doc, f)
    else:
        raw = doc.get("registry", [])
        if not isinstance(raw, list):
            raise f.error("registry", "must be an array of tables ([[registry]])")
        entries = [_parse_registry(t, f"registry[{i}]", f) for i, t in enumerate(raw)]
        for i, t in enumerate(raw):
            unknown = sorted(set(t) - _REGISTRY_KEYS)
            if unknown:
                warnings.append(f"{path}: registry[{i}]: unknown key {unknown[0]!r} is ignored")
    _check_conflicts(entries, f)
    return _first_per_prefix(entries), warnings


def _dropin_files(dirs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for directory in dirs:
        directory = Path(directory)
        if directory.is_dir():
            files += sorted(p for p in directory.iterdir() if p.name.endswith(".conf")
                            and not p.is_dir())
    return files


# --------------------------------------------------------------------------- the view


def _split_reference(image: str) -> tuple[str, bool]:
    """The name part of ``image`` (what prefixes match) and whether it is pinned by digest."""
    name, at, _ = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last and "/" in name:
        name = name[: len(name) - len(last)] + last.partition(":")[0]
    return name, bool(at)


def _cert_dir(host: str, roots: Sequence[Path]) -> Path:
    """containers-image ``dockerCertDir``: the first existing ``<root>/<host[:port]>``."""
    candidate = Path(roots[-1]) / host if roots else Path(host)
    for root in roots:
        candidate = Path(root) / host
        if candidate.exists():
            break
    return candidate


def _cert_warnings(directory: Path, cas: Sequence[Path],
                   pairs: Sequence[tuple[Path, Path | None]]) -> list[str]:
    warnings = [f"{cert}: client certificate without {cert.with_suffix('.key').name}; "
                "containers-image fails the pull" for cert, key in pairs if key is None]
    if directory.is_dir():
        for key_file in sorted(directory.glob("*.key")):
            if not key_file.with_suffix(".cert").exists():
                warnings.append(f"{key_file}: key without a .cert file; containers-image "
                                "fails the pull")
    return warnings


def _endpoint(location: str, insecure: bool, proxy: str | None, is_mirror: bool,
              roots: Sequence[Path], warnings: list[str]) -> Endpoint:
    host = location.partition("/")[0]
    directory = _cert_dir(host, roots)
    cas, pairs = docker_cert_files(directory)
    warnings += _cert_warnings(directory, cas, pairs)
    api_host = "registry-1.docker.io" if host == "docker.io" else host
    return Endpoint(url=f"https://{api_host}", host=api_host, scheme="https", path="/v2",
                    capabilities=("pull", "resolve"), ca_files=cas, client_certs=pairs,
                    skip_verify=insecure, is_mirror=is_mirror, http_fallback=insecure,
                    proxy=proxy)


def _applicable_mirrors(entry: RegistryEntry, digested: bool) -> list[MirrorEntry]:
    if entry.mirror_by_digest_only:
        return list(entry.mirrors) if digested else []
    return [m for m in entry.mirrors
            if not (m.pull_from_mirror == "digest-only" and not digested)
            and not (m.pull_from_mirror == "tag-only" and digested)]


def _rewrite(image: str, prefix: str, location: str) -> str:
    if not location:
        return image
    consumed = ref_matching_prefix(image, prefix)
    return location + image[consumed:] if consumed >= 0 else image


class RegistriesConf:
    """registries.conf plus drop-ins, merged as containers-image merges them."""

    def __init__(self, entries: Mapping[str, RegistryEntry], *,
                 certs_dirs: Sequence[Path] = DEFAULT_CERTS_DIRS,
                 warnings: Sequence[str] = ()) -> None:
        self.entries = dict(sorted(entries.items()))
        self.certs_dirs = tuple(certs_dirs)
        self.warnings = tuple(warnings)

    @classmethod
    def load(cls, conf: Path = DEFAULT_CONF,
             dropin_dirs: Sequence[Path] = DEFAULT_DROPIN_DIRS, *,
             certs_dirs: Sequence[Path] = DEFAULT_CERTS_DIRS) -> RegistriesConf:
        """Read ``conf`` (missing means empty) and the ``*.conf`` drop-ins, later ones winning."""
        merged: dict[str, RegistryEntry] = {}
        warnings: list[str] = []
        if Path(conf).exists():
            merged, warnings = _parse_file(Path(conf), drop_in=False)
        for path in _dropin_files(dropin_dirs):
            entries, notes = _parse_file(path, drop_in=True)
            merged.update(entries)
            warnings += notes
        return cls(merged, certs_dirs=certs_dirs, warnings=warnings)

    def find(self, name: str) -> RegistryEntry | None:
        """The entry with the longest matching prefix (``FindRegistry``), or None."""
        best: RegistryEntry | None = None
        for entry in self.entries.values():
            longer = best is None or len(entry.prefix) > len(best.prefix)
            if longer and ref_matching_prefix(name, entry.prefix) != -1:
                best = entry
        return best

    def view(self, image: str, *, digested: bool | None = None) -> RegistryView | None:
        """How CRI-O pulls ``image`` (a normalised name, optionally with tag or digest)."""
        name, has_digest = _split_reference(image)
        entry = self.find(name)
        if entry is None:
            return None
        digested = has_digest if digested is None else digested
        warnings: list[str] = []
        sources = [PullSource(_endpoint(m.location, m.insecure, m.proxy, True, self.certs_dirs,
                                        warnings), _rewrite(image, entry.prefix, m.location))
                   for m in _applicable_mirrors(entry, digested)]
        primary = entry.location or image.partition("/")[0]
        sources.append(PullSource(
            _endpoint(primary, entry.insecure, entry.proxy, False, self.certs_dirs, warnings),
            _rewrite(image, entry.prefix, entry.location)))
        return RegistryView(image=image, entry=entry, sources=tuple(sources),
                            ca_dir=_cert_dir(primary.partition("/")[0], self.certs_dirs),
                            warnings=tuple(warnings))


def crio_view(image_name: str, *, conf: Path = DEFAULT_CONF,
              dropin_dirs: Sequence[Path] = DEFAULT_DROPIN_DIRS,
              certs_dirs: Sequence[Path] = DEFAULT_CERTS_DIRS) -> RegistryView | None:
    """Load the configuration and return CRI-O's view of ``image_name`` (None: no entry matches)."""
    return RegistriesConf.load(conf, dropin_dirs, certs_dirs=certs_dirs).view(image_name)
