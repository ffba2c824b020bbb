"""Classify a kubelet / container-runtime image-pull error message into a diagnosis code.

Why this exists: the kubelet reports a failed pull as free text (an Event message or a
container's waiting message) that wraps whatever the runtime said. containerd, CRI-O
(containers/image) and Docker word the same failure differently, and the kubelet adds
its own wrappers (``Failed to pull image "X": rpc error: code = ... desc = ...``,
``Error syncing pod ...``). This module turns that text into one :class:`~probes.codes.Code`
plus the facts the text states (image, registry, failing URL and host, HTTP status), so
the agent can name the root cause without probing anything.

What it refuses to do:

* It never guesses beyond the text. When the wording cannot tell two causes apart (Docker
  Hub's "pull access denied", a bare 401, a 400 answer) it returns the code that says so
  (``ambiguous_not_found_or_auth``, ``auth_failed``, ``registry_not_v2``); the layered
  probe is the tool that tells them apart.
* It never copies a credential into its output: userinfo in URLs, ``Authorization``
  values, bearer/basic tokens, JWTs, ``password=``-style pairs and URL query strings
  (signed blob URLs carry signatures) are removed from ``detail`` and ``url``.
* It never raises on input and never does unbounded work: only the first 64 KiB of a
  message are read, every pattern is precompiled, gaps in patterns are bounded, and an
  index from words to rules keeps most patterns from running at all.
* It does not import the Kubernetes client: this is pure text work.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from probes.codes import Code
from probes.reference import DOCKER_HUB

__all__ = ["MAX_MESSAGE_CHARS", "RULES", "Classification", "classify", "main"]

#: Only this much of a message is examined; the rest is ignored (bounded work).
MAX_MESSAGE_CHARS = 64 * 1024
_DETAIL_MAX = 300


@dataclass(frozen=True, slots=True)
class Classification:
    """What one pull-error message says: the diagnosis and the facts stated in the text."""

    code: Code
    runtime: str | None  # "containerd" | "cri-o" | "docker" | None when the wording does not tell
    image: str | None  # the image reference as it appears in the message
    registry: str | None  # host[:port] of the registry (docker.io for Docker Hub)
    url: str | None  # failing request URL, without userinfo or query string
    host: str | None  # failing host (looked-up name, dialled address, or URL host)
    http_status: int | None
    detail: str  # short human-readable reason; never a credential

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "runtime": self.runtime,
            "image": self.image,
            "registry": self.registry,
            "url": self.url,
            "host": self.host,
            "http_status": self.http_status,
            "detail": self.detail,
        }


# --------------------------------------------------------------------------------------
# The rule table.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """One row of the table: a diagnosis, a label for ``detail`` and how to recognise it.

    All matching runs on the lower-cased message. A rule is a candidate when the message
    contains one of its ``tokens`` as a whole word (looked up in an index, so most rules
    never run), or when it has no tokens but ``statuses``. A candidate matches when one
    of ``phrases`` is a substring (if any are given), ``pattern`` matches (if given), and
    the message's HTTP status is in ``statuses`` (if given).
    """

    code: Code
    label: str
    tokens: frozenset[bytes]
    phrases: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    statuses: frozenset[int] | None = None


def _rule(code: Code, label: str, tokens: str = "", phrases: tuple[str, ...] = (),
          pattern: str | None = None, statuses: frozenset[int] | None = None) -> _Rule:
    return _Rule(code, label, frozenset(token.encode() for token in tokens.split()), phrases,
                 re.compile(pattern) if pattern else None, statuses)


def _statuses(*ranges: range | int) -> frozenset[int]:
    out: set[int] = set()
    for item in ranges:
        out.update(item if isinstance(item, range) else (item,))
    return frozenset(out)


# Order is the contract: the first matching row wins, so more specific rows come first.
# Each comment says why a row sits where it does. Patterns are lower-case: they run on
# the lower-cased message.
RULES: tuple[_Rule, ...] = (
    # Kubelet decisions that involve no runtime at all: nothing else in the text matters.
    _rule(Code.OK, "image pulled", "successfully present",
          ("successfully pulled image", "already present on machine")),
    _rule(Code.IMAGE_NEVER_PULL, "image absent and pull policy is Never",
          "never errimageneverpull", ("pull policy of never", "errimageneverpull")),
    # Before every network/status row: a reference that does not parse never reached a
    # registry, even when it looks like a URL ("https://harbor/x:1").
    _rule(Code.INVALID_IMAGE_NAME, "image reference does not parse",
          "couldn format invalidimagename apply",
          ("couldn't parse image", "invalid reference format", "invalidimagename",
           "failed to apply default image tag")),
    # The bytes arrived; storing or unpacking them failed. Before "not found" because
    # containerd says "failed to unpack image ...: content digest ...: not found".
    _rule(Code.DISK_PRESSURE_OR_UNPACK, "no space left on the node", "space",
          ("no space left on device",)),
    _rule(Code.DISK_PRESSURE_OR_UNPACK, "image could not be stored or unpacked",
          "extract unpack register applylayer extraction lease",
          ("failed to extract layer", "failed to unpack image", "failed to register layer",
           "applylayer exit status", "failed to prepare extraction",
           "error creating temporary lease")),
    _rule(Code.DISK_PRESSURE_OR_UNPACK, "image could not be stored or unpacked", "input only",
          pattern=r"(?:write|open|mkdir|create|rename) \S{1,512}: (?:input/output error"
                  r"|read-only file system)"),
    # The index has no manifest for this platform; containerd adds ": not found" and
    # gRPC "code = NotFound", so this must precede the not-found rows.
    _rule(Code.PLATFORM_MISMATCH, "no manifest for this platform", "match matching index",
          pattern=r"no match for (?:current )?platform|no matching manifest for"
                  r"|no image found in image index"),
    # CRI-O/containers-image refuse a registry that registries.conf marks "blocked = true"
    # ("registry docker.io is blocked in /etc/containers/registries.conf"); the text may
    # also list failed mirrors, but the refusal is the node's own configuration.
    _rule(Code.REGISTRY_BLOCKED, "registry blocked by the node's registries.conf", "blocked",
          pattern=r"registry \S{1,512} is blocked in "),
    # Proxy failures wrap dial/TLS/DNS errors ("proxyconnect tcp: dial tcp ...: refused"),
    # so they precede the TLS, DNS and TCP rows that would otherwise claim them.
    _rule(Code.PROXY_AUTH_REQUIRED, "proxy requires authentication", "proxy",
          ("proxy authentication required",)),
    _rule(Code.PROXY_AUTH_REQUIRED, "proxy requires authentication (HTTP 407)",
          statuses=_statuses(407)),
    _rule(Code.PROXY_UNREACHABLE, "proxy cannot be reached", "proxyconnect proxy",
          ("proxyconnect", "error connecting to proxy")),
    # Go's answer when a CONNECT tunnel is refused: the bare reason phrase right after an
    # https URL ('Get "https://h/v2/": Forbidden'). Registries never answer like this
    # (their errors carry a status code or an error code), so it means the proxy said no.
    _rule(Code.PROXY_REFUSED, "proxy refused to open a tunnel", "forbidden gateway unavailable",
          pattern=r"(?:get|head|post|put) \"?https://[^\s\"]{1,2048}\"?: (?:forbidden|bad gateway"
                  r"|service unavailable|gateway timeout)\s*\.?\s*(?:$|[\"\])\n])"),
    # TLS. Plain-HTTP first: its text has no "x509"/"tls" to confuse; then the specific
    # x509 verdicts, most specific first; the catch-all "tls_other" last.
    _rule(Code.TLS_PLAIN_HTTP, "registry port speaks plain HTTP", "gave",
          ("server gave http response to https client",)),
    _rule(Code.TLS_HOSTNAME_MISMATCH, "certificate does not name this host", "sans valid legacy",
          pattern=r"doesn't contain any ip sans|certificate is valid for .{1,512}?, not \S"
                  r"|certificate is not valid for any names|relies on legacy common name"),
    # Go: "... has expired or is not yet valid: current time A is before B" = not yet valid.
    _rule(Code.TLS_NOT_YET_VALID, "certificate not valid yet (check the node clock)", "before",
          pattern=r"not yet valid: current time \S{1,64} is before \S"),
    # "is after", or no time clause at all (older Go). Without the clause the text cannot
    # tell expired from not-yet-valid; expiry is by far the common case, and the detail
    # keeps Go's own "expired or not yet valid" wording.
    _rule(Code.TLS_EXPIRED, "certificate expired", "expired", ("certificate has expired",)),
    _rule(Code.TLS_UNKNOWN_AUTHORITY, "certificate signed by an unknown authority",
          "authority trusted self",
          ("unknown authority", "certificate is not trusted", "self-signed certificate",
           "self signed certificate")),
    _rule(Code.TLS_HANDSHAKE_TIMEOUT, "TLS handshake timed out", "handshake",
          ("tls handshake timeout",)),
    _rule(Code.TLS_OTHER, "TLS handshake failed", "tls x509", pattern=r"\b(?:tls|x509): "),
    # The token service (auth realm) could not be reached: a dial/DNS/timeout error on the
    # token request. Before the DNS and TCP rows, which would name the symptom but not
    # the layer; after TLS, whose verdicts are more specific than "unreachable".
    _rule(Code.TOKEN_ENDPOINT_UNREACHABLE, "token service cannot be reached", "token auth",
          pattern=r"fetch (?:oauth|anonymous) token: (?:get|post) \"?https?://[^\s\"]{1,2048}\"?: "
                  r"(?:dial tcp|read tcp|net/http|eof|context deadline|[^\n]{0,256}?(?:i/o timeout"
                  r"|connection refused|no such host|connection reset|network is unreachable))"
                  r"|(?:get|post) \"?https?://[^\s\"]{1,2048}(?:/token|scope=repository)"
                  r"[^\s\"]{0,1024}\"?: (?:dial tcp|read tcp|net/http: tls handshake timeout"
                  r"|eof\b)"),
    # DNS before TCP: "dial tcp: lookup h on ns: dial udp ns:53: network is unreachable"
    # is a DNS failure, not a route problem to the registry.
    _rule(Code.DNS_NXDOMAIN, "registry name does not exist in DNS", "such",
          ("no such host",), r"lookup \S{1,256}(?: on \S{1,64})?: no such host"),
    _rule(Code.DNS_TIMEOUT, "DNS server did not answer", "lookup",
          pattern=r"lookup \S{1,256} on \S{1,64}: (?:read udp \S{1,128}: )?i/o timeout"
                  r"|lookup \S{1,256}: i/o timeout"),
    _rule(Code.DNS_FAILURE, "DNS lookup failed", "lookup resolution misbehaving",
          pattern=r"dial tcp: lookup \S|lookup \S{1,256} on \S{1,64}: |temporary failure in name"
                  r" resolution|server misbehaving|lookup \S{1,256}: (?:try again|no address)"),
    # TCP connect verdicts.
    _rule(Code.TCP_REFUSED, "connection refused", "refused",
          ("connection refused", "actively refused")),
    _rule(Code.NETWORK_UNREACHABLE, "no route to the registry", "unreachable route",
          ("network is unreachable", "no route to host", "host is unreachable")),
    _rule(Code.TCP_TIMEOUT, "TCP connection timed out", "dial connectex timed",
          pattern=r"dial tcp \S{1,128}:\d{1,5}: (?:connect: )?(?:i/o timeout|connection timed out)"
                  r"|connected party did not properly respond after a period of time"
                  r"|connect: connection timed out"),
    # A connection broken mid-exchange. Before the status rows: containerd and CRI-O
    # append the status of a retry ("unexpected EOF (after reconnecting ... StatusCode: 400").
    _rule(Code.EOF_OR_RESET, "connection reset or closed mid-transfer",
          "reset eof pipe forcibly goaway",
          pattern=r"connection reset by peer|unexpected eof|: eof\b|broken pipe|forcibly closed"
                  r"|server sent goaway"),
    # Registry answers, by specificity of the wording, then by bare status code.
    # Rate limiting first: its text says "authenticating and upgrading", nothing else.
    _rule(Code.RATE_LIMITED, "registry rate limit", "toomanyrequests many rate",
          ("toomanyrequests", "too many requests", "rate limit")),
    _rule(Code.RATE_LIMITED, "registry rate limit (HTTP 429)", statuses=_statuses(429)),
    # containerd/Docker say outright that no credentials were configured.
    _rule(Code.AUTH_MISSING, "no credentials for this registry", "basic",
          ("no basic auth credentials",)),
    # containerd fetches an anonymous token only when it has no credentials.
    _rule(Code.AUTH_MISSING, "anonymous token refused: registry needs credentials", "anonymous",
          pattern=r"failed to fetch anonymous token: unexpected status[^\n]{0,2048}?\b401\b"),
    # containerd uses the oauth flow only when credentials are present, and skopeo/CRI-O
    # say "invalid username/password": credentials were sent and rejected.
    _rule(Code.AUTH_INVALID, "credentials were sent and rejected", "oauth password credentials",
          pattern=r"failed to fetch oauth token: unexpected status[^\n]{0,2048}?\b401\b"
                  r"|invalid username/password|incorrect username or password|bad credentials"),
    # Docker Hub, Quay, GCR and distribution's token flow answer "missing" and "forbidden"
    # the same way; before access_denied/auth_failed/not_found, whose words they contain.
    _rule(Code.AMBIGUOUS_NOT_FOUND_OR_AUTH, "repository missing or needs authorization",
          "denied require insufficient_scope access authorized verify",
          ("pull access denied", "may require", "requested access to the resource is denied",
           "insufficient_scope", "no pull access", "requested resource is not authorized",
           "verify that it exists")),
    # CRI-O's token request refused: the text does not say whether credentials were sent.
    _rule(Code.AUTH_FAILED, "token request refused", "bearer",
          pattern=r"requesting bearer token: invalid status code from registry 40[13]"),
    _rule(Code.ACCESS_DENIED, "access denied", "denied", pattern=r"\bdenied: "),
    _rule(Code.ACCESS_DENIED, "access denied (HTTP 403)", statuses=_statuses(403)),
    # A 401 that does not say whether credentials were sent.
    _rule(Code.AUTH_FAILED, "registry answered 401", statuses=_statuses(401)),
    _rule(Code.AUTH_FAILED, "registry requires authentication", "unauthorized authentication",
          ("unauthorized", "authentication required")),
    _rule(Code.IMAGE_NOT_FOUND, "repository or tag not found", "found notfound manifest",
          pattern=r"manifest unknown|name unknown|: not found\b|manifest for \S{1,512} not found"
                  r"|tag \S{1,256} not found in repository|repository \S{1,512} not found"
                  r"|code = notfound"),
    _rule(Code.IMAGE_NOT_FOUND, "repository or tag not found (HTTP 404)", statuses=_statuses(404)),
    _rule(Code.REGISTRY_SERVER_ERROR, "registry server error", statuses=_statuses(range(500, 600))),
    _rule(Code.REGISTRY_SERVER_ERROR, "registry server error", "unavailable",
          ("\"code\":\"unavailable\"",)),
    # Any other 4xx (400 Bad Request, 405, ...) from a request a registry must accept, or a
    # body that is not registry JSON: the endpoint does not behave like a v2 registry.
    # A TLS port spoken to in plain HTTP answers 400 too; the text cannot tell.
    _rule(Code.REGISTRY_NOT_V2, "endpoint does not behave like a v2 registry",
          statuses=_statuses(range(400, 500))),
    _rule(Code.REGISTRY_NOT_V2, "endpoint answered something that is not registry JSON",
          "value json", ("looking for beginning of value", "unexpected end of json")),
    # Deadlines without a more specific layer (after every layer-specific timeout row).
    _rule(Code.TIMEOUT, "timed out", "timeout deadline canceled timed deadlineexceeded desc",
          pattern=r"context deadline exceeded|client\.timeout exceeded|request canceled"
                  r"|i/o timeout|deadlineexceeded|code = 4 desc|context canceled|timed out"),
    # States, not causes: only when no cause was recognised above.
    _rule(Code.BACKOFF, "kubelet is backing off after an earlier pull failure",
          "back imagepullbackoff", ("back-off pulling image", "imagepullbackoff")),
)

# Which rules each word can trigger, as a bit mask (bit i = RULES[i]); rules without
# words are status rules, candidates whenever the message carries an HTTP status.
_TOKEN_MASKS: dict[bytes, int] = {}
for _index, _row in enumerate(RULES):
    for _token in _row.tokens:
        _TOKEN_MASKS[_token] = _TOKEN_MASKS.get(_token, 0) | 1 << _index
_INDEXED_TOKENS = frozenset(_TOKEN_MASKS)
_STATUS_RULES_MASK = sum(1 << i for i, row in enumerate(RULES) if not row.tokens)

_UNKNOWN, _INVALID_NAME = Code.UNKNOWN, Code.INVALID_IMAGE_NAME
_PROXY_CODES = frozenset((Code.PROXY_REFUSED, Code.PROXY_AUTH_REQUIRED))

# Reason fallbacks, used only when no rule matched the message.
_REASON_CODES: dict[str, Code] = {
    "errimageneverpull": Code.IMAGE_NEVER_PULL,
    "invalidimagename": Code.INVALID_IMAGE_NAME,
    "imagepullbackoff": Code.BACKOFF,
    "pulled": Code.OK,
}

# --------------------------------------------------------------------------------------
# Normalisation and field extraction.
# --------------------------------------------------------------------------------------

# Words are found by mapping every byte that is not [a-z0-9_] to a space and splitting:
# far cheaper than a regex, and the word set drives both rule and runtime lookups.
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_WORD_TABLE = bytes(c if c in _WORD_BYTES else 0x20 for c in range(256))
# Docker daemon API wrappers carry the daemon's status, not the registry's.
_API_WRAPPER = re.compile(r"\(HTTP code \d{3}\) server error - |API error \(\d{3}\): ")
_ESCAPED_QUOTE = re.compile(r"\\+\"")
_ESCAPED_NEWLINE = re.compile(r"\\+[nr]")

# HTTP statuses the rules act on (not 443 or IP octets like 127/168, which are common).
_STATUS_TOKENS = frozenset(str(code).encode() for code in (*range(400, 418), 429, *range(500, 512)))
_STATUS_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\b([1-5]\d\d) (?:unauthorized|forbidden|not found|too many requests|bad request"
               r"|internal server error|bad gateway|service unavailable|gateway timeout"
               r"|method not allowed|not acceptable|conflict|request timeout"
               r"|proxy authentication required|unsupported)"),
    re.compile(r"(?<!exit )(?:unexpected status(?: code)?|http status|status code from registry"
               r"|statuscode|error parsing http|status)\W{0,3}([1-5]\d\d)\b"),
    re.compile(r"<title>([1-5]\d\d) "),
)
_BARE_REASON = re.compile(r": (forbidden|bad gateway|service unavailable|gateway timeout"
                          r"|proxy authentication required)\s*\.?$")
_BARE_REASON_STATUS = {"forbidden": 403, "bad gateway": 502, "service unavailable": 503,
                       "gateway timeout": 504, "proxy authentication required": 407}

# A quoted image: ' "X"' right after one of these kubelet/runtime phrases.
_QUOTED = re.compile(r" \"(?:docker://)?([^\"\s]{0,512})\"")
_IMAGE_LEADS = (
    "Failed to pull image", "ack-off pulling image", "ulling image", "Container image",
    "Successfully pulled image", "Failed to inspect image", "Failed to apply default image tag",
    "failed to pull and unpack image", "failed to resolve reference", "failed to get sandbox image",
    "PullImage", "Pull image", "failed to pull", "error pulling image", "Error parsing image name")
# Unquoted images, each pattern behind a cheap substring gate.
_BARE_IMAGES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("pull access denied for ", re.compile(r"pull access denied for ([^\s,\"]{1,512}),")),
    ("manifest for ", re.compile(r"manifest for ([^\s\"]{1,512}) not found")),
    ("image pull failed for ", re.compile(r"image pull failed for ([^\s,\"]{1,512}),")),
    (" not found in repository ", re.compile(r" not found in repository ([^\s\"]{1,512})")),
    ("repository ", re.compile(r"repository ([^\s\"]{1,512}) not found")),
    ("reading manifest ", re.compile(r"reading manifest \S{1,256} in ([\w.-]{1,253}(?::\d{1,5})?"
                                     r"(?:/[\w./-]{1,512})?)")),
    ("source docker://", re.compile(r"source docker://([^\s\"]{1,512})")),
)
# A request URL: "http(s)://..." right after one of these phrases.
_URL = re.compile(r"https?:/{1,2}[^\s\"<>\])/][^\s\"<>\])]{0,2048}")
_URL_LEADS = ("Get ", "Head ", "Post ", "Put ", "GET ", "HEAD ", "POST ", "Get \"", "Head \"",
              "Post \"", "Put \"", "unexpected status code ", "request to ", "failed open: ")
_EXPLICIT_REGISTRY = re.compile(
    r"(?:pinging (?:container|docker) registry|pulling from host|error pinging docker registry"
    r"|reading manifest \S{1,256} in) ([\w.-]{1,253}(?::\d{1,5})?)")
_LOOKUP_HOST = re.compile(r"lookup ([\w.-]{1,253})(?: on |: )")
_DIAL_HOST = re.compile(
    r"(?:dial tcp|connecting to) (\[[0-9a-fA-F:.]{2,64}\]|[\w.-]{1,253}):\d{1,5}")
_READ_HOST = re.compile(r"read tcp \S{1,128}->(\[[0-9a-fA-F:.]{2,64}\]|[\w.-]{1,253}):\d{1,5}")
_TLS_HOST = re.compile(r"cannot validate certificate for (\S{1,253}) because"
                       r"|wanted to match (\S{1,253})"
                       r"|certificate is valid for .{1,512}?, not ([\w.-]{1,253})")
_HOST_PATTERNS = (("lookup ", _LOOKUP_HOST), ("dial tcp ", _DIAL_HOST),
                  ("connecting to ", _DIAL_HOST), ("read tcp ", _READ_HOST),
                  ("certificate", _TLS_HOST), ("wanted to match", _TLS_HOST))
_URL_HOSTPORT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]{0,16}:/+([^/\s]{1,260})")
_REGISTRY_PATH = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]{0,16}:/+[^/\s]{1,260}/v[12]/")
_HUB_HOSTS = frozenset({"registry-1.docker.io", "index.docker.io", "registry.hub.docker.com"})

# Wording that only one runtime produces: (runtime, a word of the phrase, the phrase).
# Docker first: Docker with the containerd image store also prints containerd text, but
# the daemon that answered is Docker's.
_RUNTIME_MARKERS: tuple[tuple[str, str, str], ...] = (
    ("docker", "daemon", "error response from daemon"),
    ("docker", "configuration", "error pulling image configuration"),
    ("docker", "while", "error while pulling image"),
    ("docker", "register", "failed to register layer"),
    ("docker", "applylayer", "applylayer"),
    ("docker", "received", "received unexpected http status"),
    ("docker", "code", "(http code"),
    ("docker", "api", "api error ("),
    ("docker", "denied", "pull access denied for"),
    ("docker", "matching", "no matching manifest for"),
    ("docker", "attempting", "attempting next endpoint"),
    ("docker", "handler", "handler for post"),
    ("docker", "repository", "trying to pull repository"),
    ("docker", "repository", "not found in repository"),
    ("docker", "failed", "image pull failed for"),
    ("docker", "status", "error: status "),
    ("cri-o", "reading", "reading manifest "),
    ("cri-o", "pinging", "pinging container registry"),
    ("cri-o", "pinging", "error pinging docker registry"),
    ("cri-o", "bearer", "requesting bearer token"),
    ("cri-o", "initializing", "initializing source"),
    ("cri-o", "initializing", "error initializing image from"),
    ("cri-o", "copying", "copying system image"),
    ("cri-o", "blob", "writing blob"),
    ("cri-o", "retrieve", "unable to retrieve auth token"),
    ("cri-o", "choosing", "choosing image instance"),
    ("cri-o", "index", "no image found in image index"),
    ("cri-o", "artifact", "unable to pull image or oci artifact"),
    ("cri-o", "registries", "registries.conf"),
    ("cri-o", "parsing", "error parsing image name"),
    ("containerd", "unpack", "failed to pull and unpack image"),
    ("containerd", "resolve", "failed to resolve reference"),
    ("containerd", "resolve", "failed to resolve image"),
    ("containerd", "request", "failed to do request"),
    ("containerd", "httpreadseeker", "httpreadseeker"),
    ("containerd", "httpreaderseeker", "httpreaderseeker"),
    ("containerd", "host", "pulling from host"),
    ("containerd", "copy", "failed to copy:"),
    ("containerd", "oauth", "oauth token"),
    ("containerd", "anonymous", "anonymous token"),
    ("containerd", "ctr", "ctr:"),
    ("containerd", "extract", "failed to extract layer"),
    ("containerd", "snapshotter", "snapshotter"),
    ("containerd", "status", "unexpected status from"),
    ("containerd", "status", "unexpected status code"),
    ("containerd", "expected", "failed to read expected number of bytes"),
    ("containerd", "platform", "no match for platform"),
    ("containerd", "platform", "no match for current platform"),
    ("containerd", "trying", "trying next host"),
    ("containerd", "authorize", "failed to authorize"),
    ("containerd", "require", ("pull access denied, repository does not exist or may require"
                              " authorization")),
)
_RUNTIME_WORDS = frozenset(word.encode() for _, word, _ in _RUNTIME_MARKERS)
_RUNTIME_LOOKUP = tuple((name, word.encode(), phrase) for name, word, phrase in _RUNTIME_MARKERS)

# Credentials and secrets that may appear in runtime text; each behind a substring gate.
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]{1,16}://)[^/@\s\"]{1,256}@")
_SECRET_KEYS = (r"password|passwd|secret|access_token|refresh_token|identitytoken|registrytoken"
                r"|authorization|proxy-authorization|auth|token|x-amz-signature|x-amz-credential"
                r"|signature|sig")
_SECRET_WORDS = frozenset(word.encode() for word in re.split(r"[|-]", _SECRET_KEYS))
_PASSWORD_WORDS = frozenset((b"password", b"passwd"))
_BEARER_WORDS = frozenset((b"bearer", b"basic"))
# "Authorization: Bearer x" / "Basic x" (header values and bare scheme+token pairs).
_BEARER = re.compile(r"\b([Bb]earer|BEARER)\s+[A-Za-z0-9._~+/=-]{8,4096}")
_BASIC = re.compile(r"\b([Bb]asic|BASIC)\s+[A-Za-z0-9+/=]{8,4096}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{4,4096}(?:\.[A-Za-z0-9_-]{0,4096})?")
# JSON pairs ("auth": "...") and key=value pairs; "key: value" prose is left alone
# because Go error chains use ": " everywhere ("failed to fetch oauth token: ...").
_JSON_SECRET = re.compile(rf"(\"(?:{_SECRET_KEYS})\"\s*:\s*\")[^\"]{{0,4096}}", re.IGNORECASE)
_KEY_SECRET = re.compile(rf"\b((?:{_SECRET_KEYS})=)[^\s\"',&]{{1,4096}}", re.IGNORECASE)
_PASSWORD = re.compile(r"\b((?:[Pp]assword|[Pp]asswd|PASSWORD):)[^\s\"',]{1,4096}")
# Query strings: signed blob URLs carry signatures and expiring credentials.
_QUERY = re.compile(r"(https?://[^\s\"?<>]{1,512})\?[^\s\"<>]{0,8192}")
_INTERESTING_WORDS = (_INDEXED_TOKENS | _STATUS_TOKENS | _RUNTIME_WORDS | _SECRET_WORDS
                      | _BEARER_WORDS | _PASSWORD_WORDS)
_KUBELET_WRAPPERS = re.compile(
    r"^(?:Failed to pull image \"[^\"]{0,512}\": |rpc error: code = \w{1,32} desc = "
    r"|Error response from daemon: |pulling image(?: failed)?: )+")
# Secrets are at most this long, so scrubbing this much more than we keep is enough to
# never show the tail of a secret whose head was cut off.
_SCRUB_MARGIN = 8192


def _text_of(message: object) -> str:
    """The first 64 KiB of ``message`` as text, whatever it was given as."""
    if isinstance(message, str):
        return message[:MAX_MESSAGE_CHARS]
    if isinstance(message, (bytes, bytearray)):
        return bytes(message[:MAX_MESSAGE_CHARS]).decode("utf-8", "replace")
    return "" if message is None else str(message)[:MAX_MESSAGE_CHARS]


def _normalise(text: str) -> str:
    """Undo the quoting layers logs add (\\\" and \\n) and drop Docker API status wrappers."""
    if "\\" in text:
        text = _ESCAPED_QUOTE.sub('"', text)
        text = _ESCAPED_NEWLINE.sub("\n", text)
    if "(HTTP code" in text or "API error (" in text:
        text = _API_WRAPPER.sub("", text)
    return text


def _words(lower: str) -> frozenset[bytes]:
    """The words of ``lower`` that any lookup cares about (rules, statuses, runtimes, secrets)."""
    return _INTERESTING_WORDS.intersection(
        lower.encode("ascii", "replace").translate(_WORD_TABLE).split())


def _http_status(lower: str, words: frozenset[bytes]) -> int | None:
    if words.isdisjoint(_STATUS_TOKENS):
        return None
    for pattern in _STATUS_PATTERNS:
        match = pattern.search(lower)
        if match:
            return int(match.group(1))
    return None


def _bare_reason_status(lower: str) -> int | None:
    """The status behind Go's bare CONNECT-refusal text ('Get "https://h/": Forbidden')."""
    bare = _BARE_REASON.search(lower.strip())
    return _BARE_REASON_STATUS.get(bare.group(1)) if bare else None


def _match_rule(lower: str, words: frozenset[bytes], status: int | None) -> _Rule | None:
    mask = _STATUS_RULES_MASK if status is not None else 0
    for word in words:
        mask |= _TOKEN_MASKS.get(word, 0)
    while mask:
        lowest = mask & -mask
        mask ^= lowest
        rule = RULES[lowest.bit_length() - 1]
        if rule.statuses is not None and status not in rule.statuses:
            continue
        if rule.phrases and not any(phrase in lower for phrase in rule.phrases):
            continue
        if rule.pattern is not None and not rule.pattern.search(lower):
            continue
        return rule
    return None


def _runtime(lower: str, words: frozenset[bytes]) -> str | None:
    present = words & _RUNTIME_WORDS
    if not present:
        return None
    for name, word, phrase in _RUNTIME_LOOKUP:
        if word in present and phrase in lower:
            return name
    return None


def _image(text: str) -> str | None:
    if ' "' in text:
        for match in _QUOTED.finditer(text):
            if text.endswith(_IMAGE_LEADS, 0, match.start()):
                return _scrub_image(match.group(1)) or None
    for gate, pattern in _BARE_IMAGES:
        if gate in text:
            found = pattern.search(text)
            if found:
                return _scrub_image(found.group(1))
    return None


def _scrub_image(image: str) -> str:
    """An image reference only carries a secret when it is (wrongly) written as a URL."""
    return _scrub(image) if "://" in image or "=" in image or "?" in image else image


def _clean_url(raw: str) -> str:
    url = raw.rstrip(".,:;'\"").split("?", 1)[0]
    return _USERINFO.sub(r"\1", url) if "@" in url else url


def _urls(text: str) -> list[str]:
    """Request URLs in order of appearance; the last is the innermost, failing request."""
    if "://" not in text and ":/" not in text:
        return []
    return [_clean_url(match.group(0)) for match in _URL.finditer(text)
            if text.endswith(_URL_LEADS, 0, match.start())]


def _url_host(url: str | None) -> str | None:
    match = _URL_HOSTPORT.match(url) if url else None
    return match.group(1) if match else None


def _hub(hostport: str) -> str:
    """Docker Hub's API hosts are the registry ``docker.io`` (the ``registry`` label value)."""
    return DOCKER_HUB if hostport in _HUB_HOSTS else hostport


def _named_registry(image: str) -> bool:
    """True when the reference names its registry (first component has '.', ':' or is localhost)."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]"
                     r"{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,64}\])(?::\d{1,5})?")
# Repository path characters (lower-case only; the full grammar lives in probes.reference).
_PATH = re.compile(r"[a-z0-9][a-z0-9._/-]{0,254}")


def _image_registry(image: str) -> str | None:
    """The registry an image reference names, by the distribution grammar, or None if invalid.

    A cheap subset of :func:`probes.reference.parse_reference` (which validates far more):
    this only needs the domain, and it runs on every message.
    """
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    if _named_registry(name):
        domain, _, path = name.partition("/")
        if not _DOMAIN.fullmatch(domain) or not _PATH.fullmatch(path):
            return None
        return DOCKER_HUB if domain in {"index.docker.io", DOCKER_HUB} else domain
    return DOCKER_HUB if _PATH.fullmatch(name) else None


def _registry(image: str | None, text: str, urls: list[str]) -> str | None:
    explicit = None
    if "registry " in text or "host " in text or "reading manifest " in text:
        explicit = _EXPLICIT_REGISTRY.search(text)
    if image and (_named_registry(image) or not explicit):
        registry = _image_registry(image)
        if registry is not None:
            return registry
    if explicit:
        return _hub(explicit.group(1))
    for url in urls:
        hostport = _url_host(url)
        if hostport and _REGISTRY_PATH.match(url):
            return _hub(hostport)
    return None


def _host(text: str, url: str | None) -> str | None:
    for gate, pattern in _HOST_PATTERNS:
        if gate in text:
            match = pattern.search(text)
            if match:
                found = next((group for group in match.groups() if group), "")
                return found.strip("[]") or None
    hostport = _url_host(url)
    if hostport is None and "host " in text:
        explicit = _EXPLICIT_REGISTRY.search(text)
        hostport = explicit.group(1) if explicit else None
    if hostport is None:
        return None
    if hostport.startswith("["):
        return hostport.split("]", 1)[0].strip("[") or None
    host, colon, port = hostport.rpartition(":")
    return host if colon and port.isdigit() else hostport


def _scrub(text: str, words: frozenset[bytes] | None = None) -> str:
    """Remove credentials, tokens and URL query strings from ``text``.

    Each pattern runs only when a substring it needs is present (and, for the key-based
    ones, a word it needs), because this runs on every message.
    """
    if "@" in text:
        text = _USERINFO.sub(r"\1***@", text)
    if "eyJ" in text:
        text = _JWT.sub("***", text)
    keyed = "=" in text or "\": \"" in text or "\":\"" in text
    if keyed or "earer " in text or "asic " in text or "ass" in text:
        if words is None:
            words = _words(text.lower())
        if not words.isdisjoint(_BEARER_WORDS):
            text = _BASIC.sub(r"\1 ***", _BEARER.sub(r"\1 ***", text))
        if keyed and not words.isdisjoint(_SECRET_WORDS):
            text = _KEY_SECRET.sub(r"\1***", _JSON_SECRET.sub(r"\1***", text))
        if "ass" in text and not words.isdisjoint(_PASSWORD_WORDS):
            text = _PASSWORD.sub(r"\1***", text)
    if "?" in text:
        text = _QUERY.sub(r"\1?...", text)
    return text


def _detail(label: str, text: str, words: frozenset[bytes]) -> str:
    room = _DETAIL_MAX - len(label) - 2
    core = text[-(room + _SCRUB_MARGIN):] if len(text) > room + _SCRUB_MARGIN else text
    core = _scrub(core, words)
    if "\n" in core or "  " in core or "\t" in core or "\r" in core:
        core = " ".join(core.split())
    if core.startswith(("Failed to pull", "rpc error", "Error response", "pulling image")):
        core = _KUBELET_WRAPPERS.sub("", core, count=1)
    if not core:
        return label
    if len(core) > room:
        core = "..." + core[-(room - 3):]
    return f"{label}: {core}"


def classify(message: str, reason: str | None = None) -> Classification:
    """Diagnose one pull-error message (an Event or waiting message); never raises."""
    try:
        text = message if type(message) is str and len(message) <= MAX_MESSAGE_CHARS \
            else _text_of(message)
        return _classify(text, _text_of(reason) if reason else "")
    except Exception:  # noqa: BLE001 -- a classifier of foreign text must not crash the agent
        return Classification(Code.UNKNOWN, None, None, None, None, None, None,
                              "message could not be classified")


def _classify(raw: str, reason: str) -> Classification:
    text = _normalise(raw)
    lower = text.lower()
    words = _words(lower)
    # Docker's API wrappers are removed by _normalise, but they do say who answered.
    docker_api = text is not raw and ("(HTTP code" in raw or "API error (" in raw)
    runtime = "docker" if docker_api else _runtime(lower, words)
    status = _http_status(lower, words)
    rule = _match_rule(lower, words, status)
    if rule is not None:
        code, label = rule.code, rule.label
    else:
        code = _REASON_CODES.get(reason.strip().lower(), _UNKNOWN)
        label = f"reason {reason.strip()}" if code is not _UNKNOWN else "unrecognised message"
    if status is None and code in _PROXY_CODES:
        status = _bare_reason_status(lower)
    image = _image(text)
    invalid = code is _INVALID_NAME
    urls = [] if invalid else _urls(text)
    url = urls[-1] if urls else None
    return Classification(
        code=code,
        runtime=runtime,
        image=image,
        registry=_registry(image, text, urls),
        url=url,
        host=None if invalid else _host(text, url),
        http_status=status,
        detail=_detail(label, text, words),
    )


# --------------------------------------------------------------------------------------
# CLI: pulldoctor classify [MESSAGE]
# --------------------------------------------------------------------------------------


def _parse_line(line: str) -> tuple[str, str | None]:
    """A stdin line is a JSON object {"message", "reason"?} or, failing that, plain text."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("message"), str):
            reason = obj.get("reason")
            return obj["message"], reason if isinstance(reason, str) else None
    return line.rstrip("\r\n"), None


def main(argv: list[str] | None, stdin: TextIO, stdout: TextIO) -> int:
    """Classify MESSAGE, or every stdin line, printing one JSON object per message."""
    parser = argparse.ArgumentParser(
        prog="pulldoctor classify",
        description="Classify a kubelet/runtime image-pull error message.")
    parser.add_argument("message", nargs="?", help="the message; read stdin lines when absent")
    parser.add_argument("--reason", help="the Event or waiting reason (Failed, BackOff, ...)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.message is not None:
        pairs: Any = [(args.message, args.reason)]
    else:
        pairs = (_parse_line(line) for line in stdin if line.strip())
    for message, reason in pairs:
        result = classify(message, reason if reason is not None else args.reason)
        stdout.write(json.dumps(result.to_dict(), sort_keys=True) + "\n")
    stdout.flush()
    return 0
