"""The HTTP proxy the node's container runtime uses, decided the way Go decides it.

containerd and CRI-O are Go programs: they reach registries through
``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` from their own environment,
usually set by a systemd drop-in, and Go's ``golang.org/x/net/http/httpproxy``
decides per request (``proxy.go``). A probe that uses Python's proxy rules, or
the agent's own environment, tests a different path than the runtime takes.
This module reproduces Go's rules:

* ``https`` requests use ``HTTPS_PROXY`` only, ``http`` requests ``HTTP_PROXY``
  only; the upper-case variable wins when it is non-empty;
* a proxy value without ``scheme://host`` gets ``http://``; a value Go cannot
  parse at all disables the proxy (:meth:`ProxyConfig.problems` says so);
* ``localhost`` and loopback addresses are never proxied;
* ``NO_PROXY`` is comma-separated: ``*`` disables proxying, CIDRs and IPs
  match addresses, ``example.com`` matches itself and subdomains,
  ``.example.com`` and ``*.example.com`` subdomains only, and ``:port``
  restricts an entry to that port; an IPv6 zone is never read as a domain
  (the CVE-2025-22870 fix).

It also reads ``Environment=`` and ``EnvironmentFile=`` from systemd unit
files and drop-ins with systemd's quoting, escaping and ``%`` specifier rules
(a bare ``%`` in a proxy password makes systemd drop the assignment, which
this module reports). It never prints a proxy password: :func:`redact_url`
is used by every repr and warning. Go's CGI guard (``REQUEST_METHOD``) is not
modelled: runtimes are not CGI programs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from probes.credentials import go_split_host_port, go_url_parse

__all__ = ["ProxyConfig", "proxy_from_env", "proxy_from_systemd", "redact_url"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "socks5": "1080"}
_PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_NET = ipaddress.IPv4Network | ipaddress.IPv6Network


def redact_url(url: str) -> str:
    """``url`` with any userinfo password (or a lone user, which may be a token) masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at < 0:
        return url
    user, colon, _ = rest[:at].partition(":")
    masked = f"{user}:***" if colon else "***"
    return f"{scheme}{sep}{masked}@{rest[at + 1:]}"


# --------------------------------------------------------------------------- Go helpers


def _go_parse_ip(text: str) -> _IP | None:
    """Go's ``net.ParseIP`` (no zones, no leading zeros); IPv4-mapped IPv6 becomes IPv4."""
    if "%" in text or not text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _go_parse_cidr(text: str) -> _NET | None:
    addr, slash, bits = text.partition("/")
    if not slash or not re.fullmatch(r"[0-9]+", bits) or _go_parse_ip(addr) is None:
        return None
    try:
        return ipaddress.ip_network(f"{addr}/{int(bits)}", strict=False)
    except ValueError:
        return None


def _idna_ascii(host: str) -> str:
    """golang.org/x/net/idna Lookup.ToASCII per label; the input unchanged on failure."""
    if host.isascii():
        return host
    try:
        return ".".join(lbl if lbl.isascii() else lbl.encode("idna").decode("ascii")
                        for lbl in host.split("."))
    except UnicodeError:
        return host


def _parse_proxy(value: str) -> str | None:
    """Go's ``parseProxy``: the proxy URL as used, or None when Go rejects it."""
    try:
        parsed = go_url_parse(value)
        if parsed.scheme and parsed.host:
            return f"{parsed.scheme}://{value.partition('://')[2]}"
    except ValueError:
        pass
    try:
        go_url_parse("http://" + value)
    except ValueError:
        return None
    return "http://" + value


@dataclass(frozen=True, slots=True)
class _Matchers:
    everything: bool
    nets: tuple[_NET, ...]
    ips: tuple[tuple[_IP, str], ...]
    domains: tuple[tuple[str, str, bool], ...]  # (".suffix", port, also match the bare name)


def _parse_no_proxy(no_proxy: str) -> _Matchers:
    nets: list[_NET] = []
    ips: list[tuple[_IP, str]] = []
    domains: list[tuple[str, str, bool]] = []
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return _Matchers(True, (), (), ())
        net = _go_parse_cidr(entry)
        if net is not None:
            nets.append(net)
            continue
        try:
            host, port = go_split_host_port(entry)
            if not host:
                continue
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
        except ValueError:
            host, port = entry, ""
        ip = _go_parse_ip(host)
        if ip is not None:
            ips.append((ip, port))
            continue
        if not host:
            continue
        host = host[1:] if host.startswith("*.") else host
        bare = not host.startswith(".")
        domains.append((_idna_ascii("." + host if bare else host), port, bare))
    return _Matchers(False, tuple(nets), tuple(ips), tuple(domains))


def _request_ip(host: str) -> _IP | None:
    """The address of a request host; an IPv6 zone is dropped, never read as a name."""
    if "%" in host:
        return _go_parse_ip(host.partition("%")[0]) if ":" in host else None
    return _go_parse_ip(host)


def _use_proxy(matchers: _Matchers, host: str, port: str, *, loopback_direct: bool = True) -> bool:
    ip = _request_ip(host)
    if loopback_direct and (host == "localhost" or (ip is not None and ip.is_loopback)):
        return False
    if matchers.everything:
        return False
    name = host.strip().lower()
    if ip is not None:
        if any(ip in net for net in matchers.nets):
            return False
        if any(ip == mip and (not mport or mport == port) for mip, mport in matchers.ips):
            return False
        if "%" in host:
            return True
    for suffix, mport, bare in matchers.domains:
        named = name.endswith(suffix) or (bare and name == suffix[1:])
        if named and (not mport or mport == port):
            return False
    return True


# --------------------------------------------------------------------------- the config


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A runtime's proxy settings; :meth:`proxy_for` answers like Go's ``ProxyFromEnvironment``."""

    http_proxy: str | None
    https_proxy: str | None
    no_proxy: str
    source: str
    warnings: tuple[str, ...] = ()
    _matchers: _Matchers = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_matchers", _parse_no_proxy(self.no_proxy))

    def __repr__(self) -> str:
        def show(url: str | None) -> str:
            return "None" if url is None else repr(redact_url(url))
        return (f"ProxyConfig(http_proxy={show(self.http_proxy)}, "
                f"https_proxy={show(self.https_proxy)}, no_proxy={self.no_proxy!r}, "
                f"source={self.source!r})")

    def proxy_for(self, scheme: str, host: str, port: int | None) -> str | None:
        """The proxy URL Go would use for ``scheme://host:port``, or None for a direct connection."""
        return self._choose(scheme, host, port, loopback_direct=True)

    def explicit_proxy_for(self, scheme: str, host: str, port: int | None) -> str | None:
        """Like :meth:`proxy_for`, but loopback targets are proxied too.

        For a proxy the operator named explicitly (``pulldoctor --proxy``): only
        ``NO_PROXY`` exempts a host, so a proxy can be tested against a local
        registry. Runtimes never do this; it is not a model of Go.
        """
        return self._choose(scheme, host, port, loopback_direct=False)

    def _choose(self, scheme: str, host: str, port: int | None, *,
                loopback_direct: bool) -> str | None:
        scheme = scheme.lower()
        raw = {"https": self.https_proxy, "http": self.http_proxy}.get(scheme)
        proxy = _parse_proxy(raw) if raw else None
        if proxy is None:
            return None
        host = _idna_ascii(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
        port_text = str(port) if port is not None else _DEFAULT_PORTS.get(scheme, "")
        use = _use_proxy(self._matchers, host, port_text, loopback_direct=loopback_direct)
        return proxy if use else None

    def problems(self) -> tuple[str, ...]:
        """Proxy values Go cannot parse (it connects directly) or reads with a bogus host."""
        found = []
        for name, value in (("HTTP_PROXY", self.http_proxy), ("HTTPS_PROXY", self.https_proxy)):
            if not value:
                continue
            proxy = _parse_proxy(value)
            if proxy is None:
                found.append(f"{name} {redact_url(value)!r} is not a valid URL; "
                             "Go ignores it and connects directly")
                continue
            host = go_url_parse(proxy).host
            if not host or host.endswith(":"):
                found.append(f"{name} {redact_url(value)!r}: Go reads the proxy host as "
                             f"{host!r}; every proxied request fails")
        return tuple(found)


def _get_any(environ: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = environ.get(name, "")
        if value:
            return value
    return ""


def proxy_from_env(environ: Mapping[str, str], source: str = "environment",
                   warnings: Sequence[str] = ()) -> ProxyConfig:
    """Proxy settings from an environment, upper case first as in Go's ``FromEnvironment``."""
    return ProxyConfig(
        http_proxy=_get_any(environ, "HTTP_PROXY", "http_proxy") or None,
        https_proxy=_get_any(environ, "HTTPS_PROXY", "https_proxy") or None,
        no_proxy=_get_any(environ, "NO_PROXY", "no_proxy"),
        source=source,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- systemd units

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Unit specifiers systemd knows; any other ``%x`` makes it drop the word.
_SPECIFIERS = frozenset("aAbBCdEfgGhHiIjJlLmMnNopPqrRsStTuUvVwWyY")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\", '"': '"', "'": "'", "s": " "}
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


class _SyntaxError(ValueError):
    """A line systemd rejects as a whole ("Invalid syntax, ignoring")."""


def _cunescape_one(text: str, i: int) -> tuple[str, int]:
    """systemd's ``cunescape_one`` for the escape starting at ``text[i]`` (after the backslash)."""
    if i >= len(text):
        raise _SyntaxError("trailing backslash")
    ch = text[i]
    if ch in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[ch], i + 1
    width = {"x": 2, "u": 4, "U": 8}.get(ch)
    if width is not None:
        digits = text[i + 1:i + 1 + width]
        if len(digits) != width or not set(digits) <= _HEXDIGITS or int(digits, 16) == 0:
            raise _SyntaxError("bad hex escape")
        code = int(digits, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _SyntaxError("bad unicode escape")
        return chr(code), i + 1 + width
    digits = text[i:i + 3]
    if len(digits) == 3 and set(digits) <= set("01234567") and 0 < int(digits, 8) < 256:
        return chr(int(digits, 8)), i + 3
    raise _SyntaxError("unknown escape")


def _split_words(value: str) -> Iterator[str]:
    """systemd's ``extract_first_word`` with UNQUOTE and CUNESCAPE, word by word."""
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t\n\r":
            i += 1
        if i >= n:
            return
        word: list[str] = []
        quote = ""
        while i < n and (quote or value[i] not in " \t\n\r"):
            ch = value[i]
            if ch == "\\":
                decoded, i = _cunescape_one(value, i + 1)
                word.append(decoded)
            elif quote and ch == quote:
                quote, i = "", i + 1
            elif not quote and ch in "'\"":
                quote, i = ch, i + 1
            else:
                word.append(ch)
                i += 1
        if quote:
            raise _SyntaxError("unterminated quote")
        yield "".join(word)


def _resolve_specifiers(word: str) -> str | None:
    """``%%`` becomes ``%``; a known specifier is kept as is; anything else drops the word."""
    out: list[str] = []
    i = 0
    while i < len(word):
        if word[i] != "%":
            out.append(word[i])
            i += 1
            continue
        nxt = word[i + 1:i + 2]
        if nxt == "%":
            out.append("%")
        elif nxt and nxt in _SPECIFIERS:
            out.append(word[i:i + 2])
        else:
            return None
        i += 2
    return "".join(out)


@dataclass
class _UnitEnv:
    """The environment systemd builds for a service while reading its files."""

    environment: dict[str, str] = field(default_factory=dict)
    env_files: list[Path] = field(default_factory=list)
    setters: dict[str, str] = field(default_factory=dict)  # variable -> file that set it
    warnings: list[str] = field(default_factory=list)

    def assign(self, value: str, where: str) -> None:
        if not value:
            self.environment.clear()
            return
        try:
            for word in _split_words(value):
                self._assign_word(word, where)
        except _SyntaxError as exc:
            self.warnings.append(f"{where}: invalid Environment= syntax ({exc}); systemd "
                                 "ignores the rest of the line")

    def _assign_word(self, word: str, where: str) -> None:
        resolved = _resolve_specifiers(word)
        name = word.partition("=")[0]
        if resolved is None:
            self.warnings.append(f"{where}: {name}: unknown % specifier (write %% for a "
                                 "literal %); systemd ignores this assignment")
            return
        name, sep, val = resolved.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name):
            self.warnings.append(f"{where}: invalid environment assignment {name!r}; "
                                 "systemd ignores it")
            return
        self.environment[name] = val
        self.setters[name] = where.rsplit(":", 1)[0]


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with systemd's backslash continuation joined and comments dropped."""
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if pending and stripped[:1] in ("#", ";"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        yield start, " ".join(pending)
        pending = []
    if pending:
        yield start, " ".join(pending)


def _read_unit_file(path: Path, env: _UnitEnv) -> None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        env.warnings.append(f"{path}: cannot read ({exc.strerror})")
        return
    section = ""
    for number, line in _logical_lines(text):
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep or section != "Service":
            continue
        key, value = key.strip(), value.strip()
        if key == "Environment":
            env.assign(value, f"{path}:{number}")
        elif key == "EnvironmentFile":
            _add_env_file(value, env)


def _add_env_file(value: str, env: _UnitEnv) -> None:
    if not value:
        env.env_files.clear()
        return
    optional = value.startswith("-")
    path = Path(value[1:] if optional else value)
    if optional and not path.exists():
        return
    env.env_files.append(path)


def _env_file_value(raw: str) -> str:
    """One value of an environment file: quotes removed, shell-style backslashes resolved."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r'\\([\\"$`])', r"\1", raw[1:-1])
    return re.sub(r"\\(.)", r"\1", raw)


def _read_env_file(path: Path, env: _UnitEnv) -> None:
    """Settings from EnvironmentFile= override Environment=, as systemd documents."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        env.warnings.append(f"{path}: cannot read EnvironmentFile ({exc.strerror}); "
                            "systemd refuses to start the service")
        return
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        line = line.removeprefix("export ")
        name, sep, value = line.partition("=")
        name = name.strip()
        if sep and _ENV_NAME.fullmatch(name):
            env.environment[name] = _env_file_value(value)
            env.setters[name] = str(path)


def _unit_files(paths: Sequence[Path]) -> list[Path]:
    """Unit files first, then drop-ins by file name; an earlier dir masks a same-named drop-in."""
    units: list[Path] = []
    dropins: dict[str, Path] = {}
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for conf in sorted(path.glob("*.conf")):
                dropins.setdefault(conf.name, conf)
        elif path.suffix == ".conf":
            dropins.setdefault(path.name, path)
        elif path.exists():
            units.append(path)
    return units + [dropins[name] for name in sorted(dropins)]


def proxy_from_systemd(paths: Sequence[Path]) -> ProxyConfig | None:
    """Proxy settings from a service's unit file and drop-ins (files or ``*.service.d`` dirs).

    List higher-priority directories first (``/etc`` before ``/run`` before
    ``/usr/lib``). Returns None when no proxy variable is set and systemd
    rejected nothing; when it rejected an assignment the config (possibly
    without proxies) carries the reason in :attr:`ProxyConfig.warnings`.
    """
    env = _UnitEnv()
    for unit in _unit_files(paths):
        _read_unit_file(unit, env)
    for env_file in env.env_files:
        _read_env_file(env_file, env)
    present = [v for v in _PROXY_VARS if env.environment.get(v)]
    if not present and not env.warnings:
        return None
    sources = sorted({env.setters[v] for v in present})
    source = "systemd " + (", ".join(sources) if sources else "(no proxy variables)")
    return proxy_from_env(env.environment, source=source, warnings=env.warnings)
