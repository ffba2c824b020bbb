"""Parse ``WWW-Authenticate`` headers (RFC 7235) into challenges.

Registries send ``Bearer realm="…",service="…",scope="…"`` or ``Basic realm="…"``;
some send several challenges in one header or several headers, and quoted
strings may contain commas and escaped quotes. This parser is total: any input
gives a (possibly empty) list of challenges and never raises, because the header
comes from a server we do not trust. It bounds its work: at most
:data:`MAX_CHALLENGES` challenges of :data:`MAX_PARAMS` parameters each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Challenge", "parse_www_authenticate", "MAX_CHALLENGES", "MAX_PARAMS", "MAX_HEADER"]

MAX_CHALLENGES = 16
MAX_PARAMS = 32
MAX_HEADER = 16 * 1024

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN68 = r"[A-Za-z0-9\-._~+/]+=*"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_SCANNER = re.compile(
    rf"""\s*(?:
        (?P<comma>,)
      | (?P<param>(?P<pname>{_TOKEN})\s*=\s*(?P<pvalue>{_QUOTED}|{_TOKEN}))
      | (?P<t68>{_TOKEN68})(?=\s*(?:,|$))
      | (?P<scheme>{_TOKEN})
      | (?P<junk>.)
    )""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Challenge:
    """One authentication challenge: a scheme (lower-cased) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_www_authenticate(headers: str | list[str]) -> list[Challenge]:
    """Return the challenges in one header value or a list of header values."""
    values = [headers] if isinstance(headers, str) else list(headers)
    challenges: list[Challenge] = []
    for value in values:
        challenges.extend(_parse_one(_bounded(value)))
        if len(challenges) >= MAX_CHALLENGES:
            break
    return challenges[:MAX_CHALLENGES]


def _bounded(value: str) -> str:
    """The first MAX_HEADER characters, without the list element the cut split in two."""
    return value if len(value) <= MAX_HEADER else value[:MAX_HEADER].rsplit(",", 1)[0]


def _parse_one(value: str) -> list[Challenge]:
    out: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    after_scheme = False

    def flush() -> None:
        if scheme is not None:
            out.append(Challenge(scheme, dict(params)))

    for match in _SCANNER.finditer(value):
        if len(out) >= MAX_CHALLENGES:
            break
        kind = match.lastgroup or "junk"
        # a token68 only ever follows its scheme; a lone token after a comma is a new scheme
        new_scheme = kind == "scheme" or (kind == "t68" and not after_scheme)
        if kind == "param" and scheme is not None:
            name = (match.group("pname") or "").lower()
            if len(params) < MAX_PARAMS and name not in params:
                params[name] = _unquote(match.group("pvalue") or "")
        elif new_scheme:
            flush()
            scheme, params = (match.group(kind) or "").lower(), {}
        after_scheme = new_scheme
        # commas, token68 credentials and junk characters carry no information we use
    flush()
    return out
