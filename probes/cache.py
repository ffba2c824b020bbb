"""Share work between probes of one cycle: registry-level layers once, tokens until expiry.

The node agent probes many images on few registries. The network and TLS path
(dns, tcp, proxy, tls) and the ``/v2/`` challenge do not depend on the image or
the credentials, so one probe per endpoint per cycle runs them and later probes
of that endpoint reuse the results (marked ``shared`` in their evidence). A
token depends on the repository and the credential, and is reused until shortly
before it expires, as a runtime would. Tokens are kept in memory only, keyed by
a fingerprint of the credential, never by its content; nothing here is ever
written to disk or logs.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from probes._net import DnsSettings, NodeResolver
from probes.credentials import Credential
from probes.result import LayerResult

__all__ = ["ProbeCache", "SharedPrefix", "CachedToken", "fingerprint"]

#: Layers whose outcome depends only on the endpoint, not on image or credentials.
SHARED_LAYERS = ("dns", "tcp", "proxy", "tls", "challenge")
#: A token is not reused in its last seconds (the pull would race its expiry).
TOKEN_MARGIN = 10.0
#: How long endpoint results are shared: a passing endpoint for a minute, a failing one
#: briefly, so a registry that came back is seen as back at the next probe.
PREFIX_TTL_OK = 60.0
PREFIX_TTL_FAILED = 15.0
#: A probe forced by a pull failure reuses only endpoint results this recent.
FRESH_WINDOW = 5.0


def fingerprint(cred: Credential | None) -> str:
    """A stable, non-reversible identity of a credential for cache keys."""
    if cred is None:
        return "anonymous"
    material = "\0".join((cred.username, cred.password, cred.identity_token or ""))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SharedPrefix:
    """What the endpoint-level layers found, for reuse by later probes of the endpoint."""

    results: tuple[LayerResult, ...]
    ssl_context: ssl.SSLContext | None
    challenges: tuple[Any, ...]
    proxy_url: str | None
    addresses: tuple[str, ...]
    at: float = 0.0  # monotonic time it was stored

    @property
    def failed(self) -> bool:
        return any(r.code is not None for r in self.results)


@dataclass(frozen=True)
class CachedToken:
    authorization: str
    expires_at: float
    grants_pull: bool | None
    evidence: dict[str, Any]


class ProbeCache:
    """Thread-safe cache for one probe cycle (prefixes) and across cycles (tokens)."""

    def __init__(self, *, ok_ttl: float = PREFIX_TTL_OK,
                 failed_ttl: float = PREFIX_TTL_FAILED) -> None:
        self.ok_ttl, self.failed_ttl = ok_ttl, failed_ttl
        self._lock = threading.Lock()
        self._prefixes: dict[str, SharedPrefix] = {}
        self._tokens: dict[tuple[str, ...], CachedToken] = {}
        self._resolvers: dict[DnsSettings, NodeResolver] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self.hits = {"prefix": 0, "token": 0}

    def lock_for(self, key: str) -> threading.Lock:
        """One lock per endpoint, so concurrent probes of it run the shared layers once."""
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def new_cycle(self) -> None:
        """Forget DNS answers and expired tokens (endpoint results expire by their own TTL);
        the agent calls it every minute, so DNS answers are at most that old."""
        with self._lock:
            now = time.monotonic()
            self._prefixes = {k: v for k, v in self._prefixes.items()
                              if now - v.at <= (self.failed_ttl if v.failed else self.ok_ttl)}
            self._resolvers.clear()
            self._key_locks.clear()
            now = time.monotonic()
            self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}

    def resolver(self, settings: DnsSettings) -> NodeResolver:
        with self._lock:
            if settings not in self._resolvers:
                self._resolvers[settings] = NodeResolver(settings)
            return self._resolvers[settings]

    def prefix(self, key: str, max_age: float | None = None) -> SharedPrefix | None:
        """A still-fresh endpoint result (see :data:`PREFIX_TTL_OK` and ``_FAILED``), no
        older than ``max_age`` seconds when given."""
        with self._lock:
            found = self._prefixes.get(key)
            if found is None:
                return None
            ttl = self.failed_ttl if found.failed else self.ok_ttl
            if max_age is not None:
                ttl = min(ttl, max_age)
            if time.monotonic() - found.at > ttl:
                del self._prefixes[key]
                return None
            self.hits["prefix"] += 1
            return found

    def store_prefix(self, key: str, prefix: SharedPrefix) -> None:
        with self._lock:
            self._prefixes[key] = replace(prefix, at=time.monotonic())

    def token(self, key: tuple[str, ...]) -> CachedToken | None:
        with self._lock:
            found = self._tokens.get(key)
            if found is None or found.expires_at - TOKEN_MARGIN <= time.monotonic():
                return None
            self.hits["token"] += 1
            return found

    def store_token(self, key: tuple[str, ...], token: CachedToken) -> None:
        with self._lock:
            self._tokens[key] = token

    def __len__(self) -> int:
        return len(self._tokens)
