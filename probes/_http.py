"""Bounded HTTP exchanges for the challenge, token and manifest layers.

Every response body is read with a byte cap and against the layer's deadline;
headers pass through httpx's own size limits. Evidence helpers here pull out
what the registry told us (status, content type, registry error codes, rate
limit headers) and nothing that could carry a secret: request headers are
never echoed.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin, urlsplit
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probes.state import ProbeState

if TYPE_CHECKING:
    import httpx

__all__ = ["Exchange", "exchange", "exchange_following", "registry_errors", "rate_limit_evidence", "MAX_BODY",
           "prepare"]

#: Bytes read at most from an ordinary response body (errors, /v2/, token).
MAX_BODY = 256 * 1024
_RATE = re.compile(r"^\s*(\d+)")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request's response: status, headers and a capped body."""

    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool
    url: str

    @property
    def content_type(self) -> str:
        return str(self.headers.get("content-type", "")).split(";")[0].strip().lower()

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def prepare() -> None:
    """Load the HTTP stack (httpx, httpcore, h11): the engine calls this before the clock of
    a layer that sends requests, so the import is not counted as the registry's time."""
    import probes._transport  # noqa: F401


def exchange(state: ProbeState, method: str, url: str, *, headers: dict[str, str] | None = None,
             limit: int = MAX_BODY, **kwargs: Any) -> Exchange:
    """Send one request through the probe's client and read at most ``limit`` body bytes."""
    import httpx  # loaded by prepare()

    client = state.client()
    request = client.build_request(method, url, headers=headers, timeout=state.http_timeout(),
                                   **kwargs)
    response = client.send(request, stream=True)
    try:
        body = bytearray()
        truncated = False
        if method != "HEAD":
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > limit:
                    truncated = True
                    del body[limit:]
                    break
                if state.time_left() <= 0:
                    raise httpx.ReadTimeout("deadline reached while reading the body")
        return Exchange(response.status_code, response.headers, bytes(body), truncated,
                        str(response.url))
    finally:
        response.close()


REDIRECTS = (301, 302, 303, 307, 308)
#: Redirects followed at most (token realms and manifests; registries use one at most).
MAX_REDIRECTS = 3


def exchange_following(state: ProbeState, method: str, url: str, *,
                       headers: dict[str, str] | None = None, limit: int = MAX_BODY
                       ) -> tuple[Exchange, list[str]]:
    """:func:`exchange`, following up to :data:`MAX_REDIRECTS` redirects as Go's client does;
    the Authorization header never follows to another origin. Returns the last answer and
    the origins redirected to (a loop ends with the last 3xx answer)."""
    headers = dict(headers or {})
    hops: list[str] = []
    for _ in range(MAX_REDIRECTS + 1):
        ex = exchange(state, method, url, headers=headers, limit=limit)
        location = ex.headers.get("location")
        if ex.status not in REDIRECTS or not location or len(hops) >= MAX_REDIRECTS:
            return ex, hops
        target = urljoin(url, location)
        if urlsplit(target)[:2] != urlsplit(url)[:2]:
            headers.pop("Authorization", None)  # credentials never cross origins
        hops.append("://".join(urlsplit(target)[:2]))
        url = target
    return ex, hops


def registry_errors(ex: Exchange) -> list[str]:
    """The ``errors[].code`` values of a registry error body (distribution spec)."""
    data = ex.json()
    if not isinstance(data, dict) or not isinstance(data.get("errors"), list):
        return []
    codes = []
    for item in data["errors"][:8]:
        if isinstance(item, dict) and isinstance(item.get("code"), str):
            codes.append(item["code"][:64])
    return codes


def rate_limit_evidence(headers: httpx.Headers) -> dict[str, int]:
    """Docker Hub style ``RateLimit-Limit``/``RateLimit-Remaining`` (``100;w=21600``)."""
    out = {}
    for name, key in (("ratelimit-limit", "rate_limit_limit"),
                      ("ratelimit-remaining", "rate_limit_remaining")):
        match = _RATE.match(headers.get(name, ""))
        if match:
            out[key] = int(match.group(1))
    return out


def base_evidence(ex: Exchange) -> dict[str, Any]:
    evidence: dict[str, Any] = {"status": ex.status, "url": ex.url}
    if ex.content_type:
        evidence["content_type"] = ex.content_type
    api_version = ex.headers.get("docker-distribution-api-version")
    if api_version:
        evidence["api_version"] = api_version[:64]
    errors = registry_errors(ex)
    if errors:
        evidence["registry_errors"] = errors
    evidence.update(rate_limit_evidence(ex.headers))
    return evidence
