"""The httpx transport of a probe: requests dial through the node's resolver and the
probe's :class:`~probes._net.SocketSet`, directly or through the node's proxy.

Why a module of its own: httpx, httpcore and h11 take tens of milliseconds to
import, and a probe that fails at the dns, tcp, proxy or tls layer never sends an
HTTP request; :mod:`probes._net` stays free of them and the engine loads this
module just before the first HTTP layer. It refuses to resolve names or open
sockets any other way than :mod:`probes._net` does.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

from probes._net import NodeResolver, SocketSet, connect

__all__ = ["NodeBackend", "build_client", "with_cause"]


def with_cause(exc: BaseException, cause: BaseException) -> BaseException:
    """Keep ``cause`` findable: httpcore's pool re-raises ``from None``, dropping __cause__."""
    exc.pulldoctor_cause = cause  # type: ignore[attr-defined]
    return exc


class NodeBackend(httpcore.NetworkBackend):
    """httpcore backend that resolves with the node's resolver and registers its sockets."""

    def __init__(self, resolver: NodeResolver, sockets: SocketSet,
                 default_timeout: Callable[[], float]) -> None:
        self._resolver = resolver
        self._sockets = sockets
        self._default_timeout = default_timeout

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        budget = timeout if timeout is not None else self._default_timeout()
        resolution = self._resolver.resolve(host, budget)
        last: BaseException | None = None
        for address in resolution.addresses:
            try:
                sock = connect(address, port, budget, self._sockets)
            except TimeoutError as exc:
                raise with_cause(httpcore.ConnectTimeout(str(exc) or "connect timed out"),
                                 exc) from exc
            except OSError as exc:
                last = exc
                continue
            return SyncStream(sock)
        assert last is not None
        raise with_cause(httpcore.ConnectError(str(last)), last) from last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by probes")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _RoutingTransport(httpx.BaseTransport):
    """Send each request directly or through the proxy the node's runtime would use for it."""

    def __init__(self, ssl_context: ssl.SSLContext, backend: NodeBackend,
                 proxy_for: Callable[[str, str, int | None], str | None] | None) -> None:
        self._ssl_context = ssl_context
        self._backend = backend
        self._proxy_for = proxy_for
        self._direct = self._transport(None)
        self._proxied: dict[str, httpx.HTTPTransport] = {}

    def _transport(self, proxy: str | None) -> httpx.HTTPTransport:
        transport = httpx.HTTPTransport(verify=self._ssl_context, trust_env=False, retries=0)
        # httpx has no public hook for a network backend; the pool is swapped for one that
        # dials through the node's resolver (the only private attribute this project touches).
        if proxy is None:
            transport._pool = httpcore.ConnectionPool(
                ssl_context=self._ssl_context, network_backend=self._backend, max_connections=4,
                retries=0)
        else:
            url = httpx.URL(proxy)
            auth = (url.username, url.password) if url.username else None
            transport._pool = httpcore.HTTPProxy(
                proxy_url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                                       target=b"/"),
                proxy_auth=auth, ssl_context=self._ssl_context, network_backend=self._backend,
                max_connections=4)
        return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        proxy = None
        if self._proxy_for is not None:
            proxy = self._proxy_for(request.url.scheme, request.url.host, request.url.port)
        if proxy is None:
            return self._direct.handle_request(request)
        if proxy not in self._proxied:
            self._proxied[proxy] = self._transport(proxy)
        return self._proxied[proxy].handle_request(request)

    def close(self) -> None:
        self._direct.close()
        for transport in self._proxied.values():
            transport.close()


def build_client(ssl_context: ssl.SSLContext, backend: NodeBackend,
                 proxy_for: Callable[[str, str, int | None], str | None] | None,
                 timeout: float, user_agent: str) -> httpx.Client:
    """An httpx client that sees the network as the node's runtime does."""
    return httpx.Client(
        transport=_RoutingTransport(ssl_context, backend, proxy_for),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
    )
