"""Property tests for the parsers and matchers that read untrusted or hand-written input.

The module tests (test_reference, test_wwwauth, test_credentials, test_proxyenv,
test_hostsconfig) already prove their parsers total on arbitrary text; the
properties here generate *structured* input (references from the distribution
grammar, RFC 7235 challenges, docker configs with typed fields, NO_PROXY lists,
whole TOML documents, chains of foreign exceptions) and check what the result
must be, not only that nothing crashed.
"""

from __future__ import annotations

import base64
import errno
import json
import math
import socket
import ssl
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import dns.exception
import dns.resolver
import h11
import httpcore
import httpx
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from probes.codes import PROBE_CODES, Code
from probes.credentials import (
    Credential,
    DockerConfigError,
    Keyring,
    normalize_key,
    parse_docker_config,
    urls_match,
)
from probes.errors import describe_exception, diagnose_exception
from probes.hostsconfig import CAPABILITIES, HostsConfigError, load_hosts_config
from probes.proxyenv import proxy_from_env
from probes.reference import DOCKER_HUB, Reference, ReferenceError, parse_reference
from probes.wwwauth import MAX_CHALLENGES, MAX_PARAMS, parse_www_authenticate

FAST = settings(max_examples=200, deadline=None)
LOWER = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"

# --------------------------------------------------------------------------- references

_alnum = st.text(LOWER + DIGITS, min_size=1, max_size=6)
_component = st.builds(
    lambda first, rest: first + "".join(sep + run for sep, run in rest), _alnum,
    st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), _alnum), max_size=2))
_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_port = st.integers(min_value=1, max_value=65535)
_host = st.one_of(
    st.lists(_label, min_size=2, max_size=4).map(".".join),
    st.just("localhost"),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
)
_domain = st.one_of(
    st.tuples(_host, st.none() | _port).map(lambda t: t[0] + (f":{t[1]}" if t[1] else "")),
    _port.map(lambda p: f"[::1]:{p}"),
    st.sampled_from(["docker.io", "index.docker.io", "registry-1.docker.io"]),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.builds(lambda algo, hexa: f"{algo}:{hexa}",
                    st.sampled_from(["sha256", "sha512", "multihash+base58", "a.b-c_d"]),
                    st.text("0123456789abcdefABCDEF", min_size=32, max_size=64))


@st.composite
def _reference_parts(draw: st.DrawFn) -> tuple[str | None, list[str], str | None, str | None]:
    domain = draw(st.none() | _domain)
    path = draw(st.lists(_component, min_size=0 if domain else 1, max_size=3))
    if domain is None and ("." in path[0] or path[0] == "localhost"):
        path[0] = path[0].replace(".", "x") + "x"  # would read as a registry host
    tag = draw(st.none() | _tag) if path else None
    digest = draw(st.none() | _digest) if path else None
    return domain, path, tag, digest


def _text(domain: str | None, path: list[str], tag: str | None, digest: str | None) -> str:
    text = "/".join(([domain] if domain else []) + path)
    return text + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


@FAST
@given(_reference_parts())
def test_grammar_references_keep_their_parts(parts: tuple[str | None, list[str], str | None,
                                                          str | None]) -> None:
    """A reference built from the grammar parses to its own parts, normalised like Docker."""
    domain, path, tag, digest = parts
    expected_domain = DOCKER_HUB if domain in (None, "docker.io", "index.docker.io") else domain
    repository = "/".join(path)
    if expected_domain == DOCKER_HUB and len(path) == 1:
        repository = f"library/{repository}"
    assume(len(f"{expected_domain}/{repository}") <= 255)
    ref = parse_reference(_text(domain, path, tag, digest))
    want_tag = tag if tag or digest or not path else "latest"
    assert ref == Reference(expected_domain or "", repository, want_tag, digest if path else None)
    assert parse_reference(str(ref)) == ref
    if domain and domain.rsplit(":", 1)[-1].isdigit() and not domain.endswith("]"):
        assert ref.port == int(domain.rsplit(":", 1)[1])
    assert ":" not in ref.host or ref.host.startswith("::")


@FAST
@given(_reference_parts(), st.characters(min_codepoint=128, exclude_categories=["Cs"]).filter(
    lambda c: not c.isspace()))  # surrounding whitespace is trimmed, not part of the tag
def test_non_ascii_tags_are_rejected(parts: tuple[str | None, list[str], str | None,
                                                  str | None], char: str) -> None:
    """Docker's tag grammar is ASCII: one non-ASCII character makes the reference invalid."""
    domain, path = parts[:2]
    assume(path)
    text = _text(domain, path, "v" + char, None)
    try:
        parse_reference(text)
    except ReferenceError:
        return
    raise AssertionError(f"accepted {text!r}")


@FAST
@given(st.text(max_size=80))
def test_accepted_references_are_ascii(text: str) -> None:
    """Whatever text is accepted renders as an ASCII reference (as the runtime requires)."""
    try:
        ref = parse_reference(text)
    except ReferenceError:
        return
    assert str(ref).isascii(), ref


# --------------------------------------------------------------------------- WWW-Authenticate

_token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~",
                 min_size=1, max_size=10)
_value = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_challenge = st.tuples(_token, st.lists(st.tuples(_token, _value), max_size=5))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render(challenges: list[tuple[str, list[tuple[str, str]]]]) -> str:
    return ", ".join(scheme + (" " + ", ".join(f"{k}={_quote(v)}" for k, v in params)
                               if params else "")
                     for scheme, params in challenges)


@FAST
@given(st.lists(_challenge, min_size=1, max_size=5))
def test_rendered_challenges_parse_back(challenges: list[tuple[str, list[tuple[str, str]]]],
                                        ) -> None:
    """RFC 7235 challenges, quoted values with commas, quotes and backslashes, parse back."""
    parsed = parse_www_authenticate(_render(challenges))
    expected = []
    for scheme, params in challenges:
        kept: dict[str, str] = {}
        for name, value in params:
            kept.setdefault(name.lower(), value)
        expected.append((scheme.lower(), kept))
    assert [(c.scheme, c.params) for c in parsed] == expected


@FAST
@given(st.lists(st.text(max_size=400), max_size=40))
def test_any_header_list_is_bounded(values: list[str]) -> None:
    """Any list of header values yields bounded, lower-cased challenges."""
    parsed = parse_www_authenticate(values)
    assert len(parsed) <= MAX_CHALLENGES
    for challenge in parsed:
        assert challenge.scheme and challenge.scheme == challenge.scheme.lower()
        assert len(challenge.params) <= MAX_PARAMS
        assert all(name == name.lower() for name in challenge.params)


# --------------------------------------------------------------------------- docker config

_user = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=":"), max_size=12)
_password = st.text(st.characters(exclude_categories=["Cs"]), max_size=16)
_json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | \
    st.text(max_size=12)
_field_name = st.sampled_from(["auth", "Auth", "AUTH", "username", "Username", "password",
                               "Password", "identitytoken", "identityToken", "email", "other"])


def _auth_field(user: str, password: str, padded: bool) -> str:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return encoded if padded else encoded.rstrip("=")


_entry = st.one_of(
    st.builds(lambda u, p, padded: {"auth": _auth_field(u, p, padded)}, _user, _password,
              st.booleans()),
    st.dictionaries(_field_name, _json_scalar | st.builds(_auth_field, _user, _password,
                                                           st.booleans()), max_size=4),
    _json_scalar,
    st.lists(_json_scalar, max_size=2),
)
_key = st.one_of(st.text(max_size=20), _host, st.builds(
    lambda scheme, host, path: f"{scheme}{host}{path}", st.sampled_from(["", "https://", "http://"]),
    _host, st.sampled_from(["", "/", "/v1/", "/v2/", "/org", "/org/app"])))


@FAST
@given(st.dictionaries(_key, _entry, max_size=4), st.sampled_from(["auto", "dockerconfigjson",
                                                                     "dockercfg"]),
       st.booleans(), st.sampled_from([None, "osxkeychain", {"r.io": "x"}, 5]))
def test_typed_configs_raise_only_their_error(auths: dict[str, Any], fmt: str, wrapped: bool,
                                              helper: Any) -> None:
    """Configs with typed and mistyped fields parse or raise DockerConfigError, nothing else."""
    doc: dict[str, Any] = {"auths": auths, "credsStore": helper} if wrapped else dict(auths)
    try:
        ring = parse_docker_config(json.dumps(doc), "fuzz", format=fmt)  # type: ignore[arg-type]
    except DockerConfigError as exc:
        assert "fuzz" in str(exc)
        return
    for cred in ring.entries:
        ring.lookup(normalize_key(cred.key))
        ring.near_misses(normalize_key(cred.key))


@FAST
@given(_user, _password, st.booleans(), st.sampled_from(["auth", "Auth", "AUTH"]))
def test_auth_field_round_trips(user: str, password: str, padded: bool, name: str) -> None:
    """``auth`` decodes to the username and password it encodes, padded or not."""
    doc = {"auths": {"r.example": {name: _auth_field(user, password, padded)}}}
    (cred,) = parse_docker_config(json.dumps(doc), "t").entries
    assert (cred.username, cred.password) == (user, password)


_path = st.lists(_component, min_size=0, max_size=3).map(lambda p: "".join("/" + c for c in p))
_hostport = st.tuples(st.lists(_label.map(str.lower), min_size=2, max_size=4),
                      st.none() | _port)


def _hp(labels: list[str], port: int | None) -> str:
    return ".".join(labels) + (f":{port}" if port else "")


@FAST
@given(_hostport, _path, _path, st.integers(min_value=0, max_value=3))
def test_key_matching_rules(hostport: tuple[list[str], int | None], key_path: str,
                            rest: str, star: int) -> None:
    """A key matches images below its path, with glob labels; label count and port must agree."""
    labels, port = hostport
    key, image = _hp(labels, port) + key_path, _hp(labels, port) + key_path + rest
    assert urls_match(key, image)
    globbed = [("*" if i == star else lbl) for i, lbl in enumerate(labels)]
    assert urls_match(_hp(globbed, port) + key_path, image)
    assert not urls_match(_hp(["x", *labels], port) + key_path, image)
    assert not urls_match(_hp(labels, (port or 443) + 1) + key_path, image)
    for form in (f"https://{key}", f"http://{key}", f"{_hp(labels, port)}/v2/{key_path[1:]}",
                 f"https://{_hp(labels, port)}/v1/{key_path[1:]}"):
        assert normalize_key(form) == normalize_key(key)


@FAST
@given(_hostport, _path, _path)
def test_more_specific_keys_come_first(hostport: tuple[list[str], int | None], path: str,
                                       rest: str) -> None:
    """The kubelet tries the longest matching key first; lookups are a subset of entries."""
    host = _hp(*hostport)
    assume(path)
    broad = Credential(key=host, source="t", username="broad", password="p")
    narrow = Credential(key=host + path, source="t", username="narrow", password="p")
    ring = Keyring([broad, narrow])
    found = ring.lookup(host + path + rest)
    assert [c.username for c in found] == ["narrow", "broad"]
    assert not set(map(id, ring.near_misses(host + path + rest))) & set(map(id, found))


# --------------------------------------------------------------------------- NO_PROXY

_domain_name = st.lists(_label.map(str.lower), min_size=2, max_size=3).map(".".join)
_PROXY = "http://proxy.example:3128"


def _decide(no_proxy: str, host: str, port: int | None = None) -> bool:
    """True when the request to ``host`` goes through the proxy."""
    cfg = proxy_from_env({"HTTPS_PROXY": _PROXY, "NO_PROXY": no_proxy})
    return cfg.proxy_for("https", host, port) is not None


@FAST
@given(_domain_name, _label.map(str.lower), st.sampled_from(["", ".", "*."]),
       st.none() | _port)
def test_no_proxy_domain_forms(domain: str, sub: str, prefix: str, port: int | None) -> None:
    """``d`` exempts d and its subdomains; ``.d`` and ``*.d`` only subdomains (Go's rules)."""
    no_proxy = prefix + domain
    assert not _decide(no_proxy, f"{sub}.{domain}", port)
    assert _decide(no_proxy, domain, port) is (prefix != "")
    assert _decide(no_proxy, f"{sub}{domain}", port)  # a longer name is not a subdomain
    assert not _decide(no_proxy.upper(), f"{sub}.{domain}".upper(), port)


@FAST
@given(_domain_name, _port, _port)
def test_no_proxy_port_entries(domain: str, port: int, other: int) -> None:
    """``d:p`` exempts d only on port p."""
    assume(port != other)
    assert not _decide(f"{domain}:{port}", domain, port)
    assert _decide(f"{domain}:{port}", domain, other)


@FAST
@given(st.lists(st.one_of(_domain_name, st.just("*"), st.just("10.0.0.0/8"),
                          st.just("[::1]:443"), st.text(max_size=12)), max_size=6),
       st.randoms(use_true_random=False), st.one_of(_domain_name, st.just("10.1.2.3"),
                                                    st.just("127.0.0.1"), st.just("::1")),
       st.none() | _port)
def test_no_proxy_order_and_loopback(entries: list[str], rnd: Any, host: str,
                                     port: int | None) -> None:
    """The decision ignores entry order, and loopback and localhost are never proxied."""
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert _decide(",".join(entries), host, port) == _decide(" , ".join(shuffled), host, port)
    if host in ("127.0.0.1", "::1"):
        assert not _decide(",".join(entries), host, port)
    assert not _decide(",".join(entries), "localhost", port)


# --------------------------------------------------------------------------- hosts.toml

_toml_scalar = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=15), st.booleans(),
    st.integers(min_value=-2**63, max_value=2**63 - 1), st.floats(),
    st.datetimes(min_value=datetime(1970, 1, 1)),
    st.sampled_from(["https://m.test", "http://m.test:5000/v2", "m.test/sub", "ftp://x",
                     "https://", "1s", "-1.5h", "pull", "resolve", "push", "/etc/ca.pem",
                     "ca.pem", ""]),
)
_toml_value = st.recursive(
    _toml_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["x-a", "X-B", "k", ""]) | st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_host_key = st.sampled_from(["capabilities", "ca", "client", "skip_verify", "header",
                             "override_path", "dial_timeout", "proxy", "server", "host", "other"])
_fields = st.dictionaries(_host_key | st.text(max_size=6), _toml_value, max_size=5)
_host_name = st.one_of(
    st.sampled_from(["https://m1.test", "http://m2.test:5000", "m3.test/v2/sub", "https://",
                     "ftp://m4.test", "http://[::1]:80", "https://m5.test/a/../b"]),
    st.text(st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="'\x7f"),
            max_size=15),
)


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, (int, datetime)):
        return value.isoformat() if isinstance(value, datetime) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return _toml_string(value)


def _document(root: dict[str, Any], hosts: list[tuple[str, dict[str, Any], bool]]) -> str:
    lines = [f"{_toml_string(k)} = {_toml(v)}" for k, v in root.items()
             if k != "host" or not hosts]
    for name, fields, literal in hosts:
        quoted = f"'{name}'" if literal else _toml_string(name)
        lines.append(f"[host.{quoted}]" if len(name) % 2 else f"[ host . {quoted} ]")
        lines += [f"{_toml_string(k)} = {_toml(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


@FAST
@given(_fields, st.lists(st.tuples(_host_name, _fields, st.booleans()), max_size=3),
       st.booleans(), st.sampled_from(["r.test", "r.test:5000", "localhost:5000", "docker.io"]),
       st.sampled_from(["exact", "underscore", "default"]))
def test_random_toml_documents(root: dict[str, Any], hosts: list[tuple[str, dict[str, Any],
                                                                        bool]],
                               legacy: bool, registry: str, layout: str) -> None:
    """Whole random hosts.toml documents load to sane endpoints or raise HostsConfigError."""
    text = _document(root, hosts)
    with tempfile.TemporaryDirectory() as tmp:
        name = {"exact": registry, "default": "_default",
                "underscore": registry.replace(":", "_") + "_"}[layout]
        directory = Path(tmp) / name
        directory.mkdir()
        (directory / "hosts.toml").write_text(text, encoding="utf-8")
        try:
            cfg = load_hosts_config(registry, [Path(tmp)], legacy=legacy)
        except HostsConfigError as exc:
            assert str(directory) in str(exc) or tmp in str(exc)
            return
    assert cfg.endpoints and not cfg.endpoints[-1].is_mirror
    assert all(e.is_mirror for e in cfg.endpoints[:-1])
    for endpoint in cfg.endpoints:
        assert endpoint.scheme in ("http", "https") and endpoint.host
        assert endpoint.url == f"{endpoint.scheme}://{endpoint.host}"
        assert set(endpoint.capabilities) <= set(CAPABILITIES)
        assert endpoint.override_path or endpoint.path.endswith("/v2")
        repr(endpoint)


@FAST
@given(st.binary(max_size=200), st.sampled_from(["file", "dir", "bytes"]))
def test_unreadable_hosts_files(data: bytes, kind: str) -> None:
    """Non-UTF-8 bytes, or a directory where hosts.toml should be, are HostsConfigError."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "r.test"
        directory.mkdir()
        target = directory / "hosts.toml"
        if kind == "dir":
            target.mkdir()
        elif kind == "file":
            (Path(tmp) / "r.test").rmdir()
            (Path(tmp) / "r.test").write_bytes(data)
        else:
            target.write_bytes(data)
        try:
            load_hosts_config("r.test", [Path(tmp)])
        except HostsConfigError:
            pass
        else:
            assert kind == "bytes"
            data.decode("utf-8")  # only valid UTF-8 may load


# --------------------------------------------------------------------------- exception chains


def _verify_error(code: int) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_code, exc.verify_message = code, f"verify error {code}"
    return exc


def _ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}]")
    exc.reason = reason
    return exc


_message = st.text(max_size=500)
_exception = st.one_of(
    st.builds(OSError, st.sampled_from(sorted(errno.errorcode)), _message),
    st.builds(ConnectionResetError, st.just(errno.ECONNRESET), _message),
    st.builds(TimeoutError, _message),
    st.builds(socket.gaierror, st.integers(-20, 0), _message),
    st.builds(_verify_error, st.integers(0, 100)),
    st.builds(_ssl_error, st.sampled_from(["WRONG_VERSION_NUMBER", "HTTP_REQUEST", "X", ""])),
    st.builds(ssl.SSLEOFError, st.just(8), _message),
    st.sampled_from([dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers,
                     dns.exception.DNSException, dns.exception.Timeout]).map(
        lambda c: c()),  # type: ignore[no-untyped-call]
    st.builds(lambda t: dns.resolver.LifetimeTimeout(  # type: ignore[no-untyped-call]
        timeout=t, errors=[]), st.floats(0, 10)),
    st.builds(h11.RemoteProtocolError, _message),
    st.sampled_from([httpx.ConnectError, httpx.ReadError, httpx.ReadTimeout, httpx.ConnectTimeout,
                     httpx.RemoteProtocolError, httpx.ProxyError, httpx.TooManyRedirects,
                     httpx.UnsupportedProtocol, httpx.LocalProtocolError,
                     httpcore.ConnectError, httpcore.ReadError]).flatmap(
        lambda cls: st.builds(cls, _message)),
    st.builds(ValueError, _message), st.builds(KeyError, _message), st.builds(EOFError),
)
_LAYERS = ["dns", "tcp", "proxy", "tls", "challenge", "token", "manifest"]


def _link(chain: list[BaseException], causes: list[bool], cycle: int | None) -> BaseException:
    """Chain outer → inner by __cause__ or __context__; optionally point the last back."""
    for outer, inner, by_cause in zip(chain, chain[1:], causes):
        if by_cause:
            outer.__cause__ = inner
        else:
            outer.__context__ = inner
    if cycle is not None:
        chain[-1].__cause__ = chain[cycle % len(chain)]
    return chain[0]


@FAST
@given(st.lists(_exception, min_size=1, max_size=30), st.lists(st.booleans(), min_size=30,
                                                               max_size=30),
       st.none() | st.integers(0, 29), st.sampled_from(_LAYERS))
def test_any_chain_gets_a_probe_code(chain: list[BaseException], causes: list[bool],
                                     cycle: int | None, layer: str) -> None:
    """Any chain, cyclic or deep, maps to a probe code; timeouts are named by the layer."""
    exc = _link(chain, causes, cycle)
    code = diagnose_exception(exc, layer)
    assert code in PROBE_CODES
    if layer in ("dns", "tcp", "proxy", "tls"):  # these layers name their own timeout
        assert code is not Code.TIMEOUT
    assert code is not Code.TCP_TIMEOUT or layer not in ("dns", "proxy", "tls")
    text = describe_exception(exc)
    assert text and len(text) <= 300


@FAST
@given(st.lists(_exception, min_size=1, max_size=10), st.lists(st.booleans(), min_size=10,
                                                               max_size=10),
       st.sampled_from(_LAYERS), st.sampled_from([httpx.ConnectError, httpx.TransportError,
                                                  ValueError, RuntimeError]))
def test_generic_wrapper_keeps_a_specific_cause(chain: list[BaseException], causes: list[bool],
                                                layer: str, wrapper: type[Exception]) -> None:
    """Wrapping a chain in a generic exception never hides a specific inner cause."""
    inner = _link(chain, causes, None)
    assume(diagnose_exception(inner, "manifest") not in (Code.TIMEOUT, Code.UNKNOWN))
    outer = wrapper("wrapped")
    outer.__cause__ = inner
    assert diagnose_exception(outer, layer) is diagnose_exception(inner, layer)


_response_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda head, junk: head + junk,
              st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 401 Unauthorized\r\nA: b\r\n",
                               b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n",
                               b"HTTP/1.0 200 OK\r\n", b"SSH-2.0-OpenSSH_9.6\r\n", b""]),
              st.binary(max_size=100)),
)


@FAST
@given(_response_bytes, st.booleans())
def test_what_h11_rejects_is_named(data: bytes, then_close: bool) -> None:
    """Bytes h11 rejects are registry_not_v2; eof_or_reset only when the peer closed early."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=200)
    conn.send(h11.Request(method="GET", target="/v2/", headers=[("Host", "r.test")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if then_close:
        conn.receive_data(b"")
    try:
        for _ in range(20):  # a response is at most head, data, end, closed
            event = conn.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError as inner:
        exc = httpx.RemoteProtocolError(str(inner))
        exc.__cause__ = inner
        code = diagnose_exception(exc, "challenge")
        assert code in (Code.REGISTRY_NOT_V2, Code.EOF_OR_RESET), (inner, code)
        assert code is Code.REGISTRY_NOT_V2 or then_close, (inner, code)
