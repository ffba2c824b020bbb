"""Docker credentials as the kubelet reads and matches them.

The kubelet, not the runtime, picks the credential sent with a pull: it parses
pod pull secrets (``.dockerconfigjson`` / ``.dockercfg``) and the node's docker
config files, indexes every entry under a normalised key, and tries all
matching entries most specific first (kubernetes ``pkg/credentialprovider``,
``keyring.go`` and ``config.go``). This module reproduces that matching
exactly, including its quirks, so a diagnosis can say which credential the
kubelet sends and which it ignores:

* a key gets ``https://`` when it has no ``http(s)://`` prefix and is parsed
  like Go's ``net/url``; a leading ``/v1/`` or ``/v2/`` path is dropped; keys
  that Go cannot parse are ignored (and reported in :attr:`Keyring.warnings`);
* a key matches an image when both hosts have the same number of labels, each
  label matches as a ``path/filepath.Match`` glob, the ports are equal and the
  key's path is a string prefix of the image path;
* the index is reverse-sorted, so longer (more specific) keys come first;
* only when nothing matches, credentials stored under ``index.docker.io``
  apply to Docker Hub images. ``registry-1.docker.io`` keys never do: the
  kubelet ignores them, and :meth:`Keyring.near_misses` says so.

Pod secrets are merged into one index and unioned with the node's index
(:meth:`Keyring.merge`, :meth:`Keyring.union`). The module also holds the
small Go ``net/url`` / ``net.SplitHostPort`` emulation the other node-config
parsers share.

It refuses to leak: :class:`Credential` shows only its key and source, and
every :class:`DockerConfigError` names the source and the entry key, never a
value. It neither reads files nor runs credential helpers (``credsStore`` /
``credHelpers``), which the kubelet ignores too.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Credential",
    "DockerConfigError",
    "GoURL",
    "Keyring",
    "go_split_host_port",
    "go_url_parse",
    "is_default_registry_match",
    "normalize_key",
    "parse_docker_config",
    "urls_match",
]

ConfigFormat = Literal["auto", "dockerconfigjson", "dockercfg"]

#: The key the kubelet falls back to for Docker Hub images.
DEFAULT_REGISTRY_KEY = "index.docker.io"
#: Hosts people use for Docker Hub credentials; only the first two work with the kubelet.
DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "docker.io", "registry-1.docker.io"})
#: Top-level keys of a docker CLI config.json (besides "auths"): not registries.
_CONFIG_JSON_KEYS = frozenset(k.lower() for k in (
    "credsStore", "credHelpers", "HttpHeaders", "psFormat", "imagesFormat", "detachKeys",
    "experimental", "stackOrchestrator", "currentContext", "plugins", "proxies", "aliases",
    "features", "pluginsFormat", "serviceInspectFormat", "statsFormat", "cliPluginsExtraDirs",
))


class DockerConfigError(ValueError):
    """A docker config could not be read; the message names the source and key, never a value."""


@dataclass(frozen=True, slots=True)
class Credential:
    """One registry credential and where it came from; its repr shows key and source only."""

    key: str
    source: str
    username: str = field(repr=False)
    password: str = field(repr=False)
    identity_token: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"credential {self.key!r} from {self.source}"

    @property
    def is_empty(self) -> bool:
        """True when the entry carries no username, password or token at all."""
        return not (self.username or self.password or self.identity_token)


# --------------------------------------------------------------------------- Go net/url


@dataclass(frozen=True, slots=True)
class GoURL:
    """The parts of a URL as Go's ``url.Parse`` returns them (path unescaped)."""

    scheme: str
    host: str
    path: str
    has_userinfo: bool = False
    opaque: str = ""


_SCHEME_CHARS = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_HOST_ALLOWED = frozenset("!$&'()*+,;=:[]<>\"-_.~")
_USERINFO_ALLOWED = frozenset("-._:~!$&'()*+,;=%@")
_HEX = "0123456789abcdefABCDEF"


def _has_ctl(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def _unescape(text: str, mode: Literal["host", "path", "userinfo"]) -> str:
    """Go's ``url.unescape``: decode %XX, reject what Go rejects (ValueError)."""
    out = bytearray()
    i = 0
    raw = text.encode("utf-8", "surrogatepass")
    while i < len(raw):
        c = raw[i]
        if c == 0x25:  # '%'
            pair = raw[i + 1:i + 3].decode("ascii", "replace")
            if len(pair) < 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise ValueError("invalid URL escape")
            if mode == "host" and int(pair[0], 16) < 8 and pair != "25":
                raise ValueError("invalid URL escape in host")
            out.append(int(pair, 16))
            i += 3
            continue
        if mode == "host" and c < 0x80 and not (chr(c).isalnum() or chr(c) in _HOST_ALLOWED):
            raise ValueError("invalid character in host name")
        out.append(c)
        i += 1
    return out.decode("utf-8", "replace")


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port.startswith(":") and all(ch in "0123456789" for ch in port[1:]))


def _parse_host(host: str) -> str:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise ValueError("missing ']' in host")
        if not _valid_optional_port(host[end + 1:]):
            raise ValueError("invalid port after host")
    else:
        colon = host.rfind(":")
        if colon != -1 and not _valid_optional_port(host[colon:]):
            raise ValueError("invalid port after host")
    return _unescape(host, "host")


def _parse_authority(authority: str) -> tuple[str, bool]:
    at = authority.rfind("@")
    if at < 0:
        return _parse_host(authority), False
    userinfo = authority[:at]
    if any(not (ch.isascii() and ch.isalnum()) and ch not in _USERINFO_ALLOWED
           for ch in userinfo):
        raise ValueError("invalid userinfo")
    _unescape(userinfo, "userinfo")
    return _parse_host(authority[at + 1:]), True


def go_url_parse(raw: str) -> GoURL:
    """Parse ``raw`` as Go's ``url.Parse`` does; raise ValueError where Go errors."""
    raw, _, _fragment = raw.partition("#")
    if _has_ctl(raw):
        raise ValueError("invalid control character in URL")
    scheme, rest = "", raw
    match = _SCHEME_CHARS.match(raw)
    if match and raw[match.end():match.end() + 1] == ":":
        scheme, rest = raw[:match.end()].lower(), raw[match.end() + 1:]
    elif raw.startswith(":"):
        raise ValueError("missing protocol scheme")
    rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return GoURL(scheme=scheme, host="", path="", opaque=rest)
        if ":" in rest.partition("/")[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    host, has_user = "", False
    if rest.startswith("//") and (scheme or not rest.startswith("///")):
        authority, slash, tail = rest[2:].partition("/")
        host, has_user = _parse_authority(authority)
        rest = slash + tail
    return GoURL(scheme=scheme, host=host, path=_unescape(rest, "path"), has_userinfo=has_user)


def go_split_host_port(hostport: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``; raise ValueError where Go returns an error."""
    colon = hostport.rfind(":")
    if colon < 0:
        raise ValueError("missing port in address")
    start_scan, end_scan = 0, 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("missing ']' in address")
        if end + 1 == len(hostport):
            raise ValueError("missing port in address")
        if end + 1 != colon:
            raise ValueError("too many colons in address" if hostport[end + 1] == ":"
                             else "missing port in address")
        host = hostport[1:end]
        start_scan, end_scan = 1, end + 1
    else:
        host = hostport[:colon]
        if ":" in host:
            raise ValueError("too many colons in address")
    if "[" in hostport[start_scan:]:
        raise ValueError("unexpected '[' in address")
    if "]" in hostport[end_scan:]:
        raise ValueError("unexpected ']' in address")
    return host, hostport[colon + 1:]


# --------------------------------------------------------------------------- glob matching


def _class_token(pattern: str, i: int) -> tuple[tuple[bool, tuple[tuple[str, str], ...]], int]:
    """Parse a ``[...]`` class starting after '['; return ((negated, ranges), next index)."""
    negated = i < len(pattern) and pattern[i] == "^"
    i += 1 if negated else 0
    ranges: list[tuple[str, str]] = []
    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges:
            return (negated, tuple(ranges)), i + 1
        lo, i = _class_char(pattern, i)
        hi = lo
        if i < len(pattern) and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
        ranges.append((lo, hi))


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError("bad pattern")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError("bad pattern")
    return pattern[i], i + 1


_Token = tuple[str, Any]


def _tokenize(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            tokens.append(("star", None))
        elif ch == "?":
            tokens.append(("any", None))
        elif ch == "[":
            cls, i = _class_token(pattern, i + 1)
            tokens.append(("class", cls))
            continue
        elif ch == "\\":
            if i + 1 >= len(pattern):
                raise ValueError("bad pattern")
            i += 1
            tokens.append(("lit", pattern[i]))
        else:
            tokens.append(("lit", ch))
        i += 1
    return tokens


def _token_matches(token: _Token, ch: str) -> bool:
    kind, value = token
    if kind == "any":
        return ch != "/"
    if kind == "lit":
        return bool(ch == value)
    negated, ranges = value
    inside = any(lo <= ch <= hi for lo, hi in ranges)
    return bool(inside != negated)


def go_path_match(pattern: str, name: str) -> bool:
    """``path/filepath.Match`` on Unix; a malformed pattern matches nothing."""
    try:
        tokens = _tokenize(pattern)
    except ValueError:
        return False
    # states[j]: tokens[:k] can match name[:j]; walk tokens one at a time
    states = [True] + [False] * len(name)
    for token in tokens:
        if token[0] == "star":
            nxt = states[:]
            for j in range(1, len(name) + 1):
                nxt[j] = nxt[j] or (nxt[j - 1] and name[j - 1] != "/")
        else:
            nxt = [False] * (len(name) + 1)
            for j in range(1, len(name) + 1):
                nxt[j] = states[j - 1] and _token_matches(token, name[j - 1])
        states = nxt
    return states[len(name)]


# --------------------------------------------------------------------------- kubelet matching


def normalize_key(key: str) -> str:
    """The kubelet's index key for a docker config key; ValueError if Go cannot parse it."""
    value = key if key.startswith(("https://", "http://")) else "https://" + key
    parsed = go_url_parse(value)
    path = parsed.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return parsed.host + path if path and path != "/" else parsed.host


def _split_url(host: str) -> tuple[list[str], str]:
    try:
        name, port = go_split_host_port(host)
    except ValueError:
        name, port = host, ""
    return name.split("."), port


def urls_match(glob: str, target: str) -> bool:
    """The kubelet's ``URLsMatchStr``: glob host labels, equal ports, path prefix."""
    try:
        glob_url = go_url_parse("https://" + glob)
        target_url = go_url_parse("https://" + target)
    except ValueError:
        return False
    glob_parts, glob_port = _split_url(glob_url.host)
    target_parts, target_port = _split_url(target_url.host)
    if glob_port != target_port or len(glob_parts) != len(target_parts):
        return False
    if not target_url.path.startswith(glob_url.path):
        return False
    return all(go_path_match(g, t) for g, t in zip(glob_parts, target_parts))


def is_default_registry_match(image: str) -> bool:
    """The kubelet's ``isDefaultRegistryMatch``: does ``image`` pull from Docker Hub?"""
    first, sep, _ = image.partition("/")
    if not first:
        return False
    if not sep or first in ("docker.io", "index.docker.io"):
        return True
    return "." not in first and ":" not in first


@dataclass(frozen=True, slots=True)
class _Index:
    """One ``BasicDockerKeyring``: reverse-sorted unique keys and their credentials."""

    keys: tuple[str, ...]
    creds: Mapping[str, tuple[Credential, ...]]

    @classmethod
    def build(cls, entries: Iterable[tuple[str, Credential]]) -> _Index:
        creds: dict[str, list[Credential]] = {}
        for key, cred in entries:
            creds.setdefault(key, []).append(cred)
        keys = tuple(sorted(creds, reverse=True))
        return cls(keys, {k: tuple(v) for k, v in creds.items()})

    def lookup(self, image: str) -> list[Credential]:
        found = [c for key in self.keys if urls_match(key, image) for c in self.creds[key]]
        if not found and is_default_registry_match(image):
            found = list(self.creds.get(DEFAULT_REGISTRY_KEY, ()))
        return found


class Keyring:
    """Credentials indexed the way the kubelet does; :meth:`lookup` answers like the kubelet.

    A keyring is a union of one or more indexes. A keyring built from entries
    (or by :func:`parse_docker_config`) is one index; :meth:`merge` folds several
    into one index (how the kubelet combines all of a pod's pull secrets, or
    all node config files); :meth:`union` chains them (pod secrets, then node).
    """

    __slots__ = ("_entries", "_groups", "_warnings")

    def __init__(self, entries: Iterable[Credential] = (), *,
                 warnings: Iterable[str] = ()) -> None:
        kept: list[Credential] = []
        pairs: list[tuple[str, Credential]] = []
        notes = list(warnings)
        for cred in entries:
            try:
                pairs.append((normalize_key(cred.key), cred))
            except ValueError as exc:
                notes.append(f"{cred.source}: key {cred.key!r} is not a valid URL ({exc}); "
                             "the kubelet ignores it")
                continue
            kept.append(cred)
        self._entries: tuple[Credential, ...] = tuple(kept)
        self._groups: tuple[_Index, ...] = (_Index.build(pairs),)
        self._warnings: tuple[str, ...] = tuple(notes)

    @classmethod
    def _from_groups(cls, groups: Iterable[_Index], entries: Iterable[Credential],
                     warnings: Iterable[str]) -> Keyring:
        ring = cls()
        ring._groups = tuple(groups)
        ring._entries = tuple(entries)
        ring._warnings = tuple(warnings)
        return ring

    @staticmethod
    def union(*keyrings: Keyring) -> Keyring:
        """Chain keyrings: lookups return each keyring's matches in order (``UnionDockerKeyring``)."""
        return Keyring._from_groups(
            (g for k in keyrings for g in k._groups),
            (e for k in keyrings for e in k._entries),
            (w for k in keyrings for w in k._warnings),
        )

    @staticmethod
    def merge(*keyrings: Keyring) -> Keyring:
        """Fold keyrings into one index, as the kubelet adds all pod secrets to one keyring."""
        entries = [e for k in keyrings for e in k._entries]
        merged = Keyring(entries)
        merged._warnings = tuple(w for k in keyrings for w in k._warnings)
        return merged

    @property
    def entries(self) -> tuple[Credential, ...]:
        """Every usable credential, in the order it was added."""
        return self._entries

    @property
    def warnings(self) -> tuple[str, ...]:
        """Secret-free notes about entries or settings the kubelet ignores."""
        return self._warnings

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Keyring({len(self._entries)} credentials, {len(self._groups)} index(es))"

    def lookup(self, image_name: str) -> list[Credential]:
        """Credentials the kubelet tries for ``image_name`` (e.g. ``docker.io/library/nginx``), in order."""
        return [c for group in self._groups for c in group.lookup(image_name)]

    def near_misses(self, image_name: str) -> list[Credential]:
        """Credentials a human would expect to apply that the kubelet will not send.

        Same host but another port or a glob/label-count mismatch, and Docker Hub
        credentials stored under ``registry-1.docker.io`` (which the kubelet ignores).
        """
        used = {id(c) for c in self.lookup(image_name)}
        host = _host_of(image_name)
        hub = is_default_registry_match(image_name)
        misses = []
        for cred in self._entries:
            if id(cred) in used:
                continue
            key_host = _host_of(normalize_key(cred.key))
            if key_host == host or (hub and key_host in DOCKER_HUB_ALIASES):
                misses.append(cred)
        return misses


def _host_of(name: str) -> str:
    """Lower-case host without port of a schemeless ``host[:port][/path]``."""
    hostport = name.partition("/")[0]
    try:
        host, _ = go_split_host_port(hostport)
    except ValueError:
        host = hostport
    return host.strip("[]").lower()


# --------------------------------------------------------------------------- docker config parsing


def _decode_auth(field_value: str, where: str) -> tuple[str, str]:
    """Split the base64 ``auth`` field into user and password as the kubelet does."""
    cleaned = field_value.replace("\r", "").replace("\n", "")
    try:
        if field_value.strip().endswith("="):
            decoded = base64.b64decode(cleaned, validate=True)
        else:
            if "=" in cleaned or len(cleaned) % 4 == 1:
                raise binascii.Error("bad length or padding")
            decoded = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DockerConfigError(f"{where}: field 'auth' is not valid base64") from None
    text = decoded.decode("utf-8", "surrogateescape")
    user, sep, password = text.partition(":")
    if not sep:
        raise DockerConfigError(f"{where}: field 'auth' must decode to 'username:password'")
    return user, password


def _fold(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Go's encoding/json matches field names case-insensitively; the last one wins."""
    return {str(k).lower(): v for k, v in obj.items()}


def _string_field(fields: Mapping[str, Any], name: str, where: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DockerConfigError(f"{where}: field {name!r} must be a string, "
                                f"not {type(value).__name__}")
    return value


def _parse_entry(key: str, value: Any, source: str) -> Credential:
    where = f"{source}: entry {key!r}"
    if value is None:
        return Credential(key=key, source=source, username="", password="")
    if not isinstance(value, dict):
        raise DockerConfigError(f"{where} must be an object, not {type(value).__name__}")
    fields = _fold(value)
    user = _string_field(fields, "username", where)
    password = _string_field(fields, "password", where)
    _string_field(fields, "email", where)
    token = _string_field(fields, "identitytoken", where) or None
    auth = _string_field(fields, "auth", where)
    if auth:
        user, password = _decode_auth(auth, where)
    return Credential(key=key, source=source, username=user, password=password,
                      identity_token=token)


def _load_json(data: bytes | str, source: str) -> dict[str, Any]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise DockerConfigError(f"{source}: not valid JSON") from None
    if not isinstance(obj, dict):
        raise DockerConfigError(f"{source}: must be a JSON object, not {type(obj).__name__}")
    return obj


def _auths_section(obj: dict[str, Any], source: str, fmt: ConfigFormat,
                   warnings: list[str]) -> dict[str, Any]:
    folded = _fold(obj)
    if fmt == "dockercfg" or (fmt == "auto" and "auths" not in folded
                              and not _CONFIG_JSON_KEYS.intersection(folded)):
        return obj
    helpers = [k for k in ("credsstore", "credhelpers") if folded.get(k)]
    if helpers:
        warnings.append(f"{source}: {', '.join(helpers)} is set; the kubelet does not run "
                        "credential helpers")
    headers = folded.get("httpheaders")
    if headers is not None and not (isinstance(headers, dict)
                                    and all(isinstance(v, str) for v in headers.values())):
        raise DockerConfigError(f"{source}: field 'HttpHeaders' must map names to strings")
    auths = folded.get("auths")
    if auths is None:
        warnings.append(f"{source}: no 'auths' object; the kubelet finds no credentials here")
        return {}
    if not isinstance(auths, dict):
        raise DockerConfigError(f"{source}: field 'auths' must be an object, "
                                f"not {type(auths).__name__}")
    return auths


def parse_docker_config(data: bytes | str, source: str, *,
                        format: ConfigFormat = "auto") -> Keyring:
    """Parse a ``.dockerconfigjson`` / ``config.json`` / ``.dockercfg`` into a :class:`Keyring`.

    ``format="auto"`` takes an object with ``auths`` (or other config.json keys)
    as config.json and anything else as a legacy ``.dockercfg``; pass the format
    when the file name or secret type tells it, as the kubelet does.
    """
    obj = _load_json(data, source)
    warnings: list[str] = []
    auths = _auths_section(obj, source, format, warnings)
    creds = [_parse_entry(str(key), value, source) for key, value in auths.items()]
    return Keyring(creds, warnings=warnings)
