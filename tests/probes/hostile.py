"""Small hostile servers on 127.0.0.1 for the probe's hardening tests.

The fleet's servers misbehave politely (a wrong status, a bad certificate); the
servers here attack the client instead: they drip headers one byte a second,
send endless or 100 MB bodies, megabyte header lines, thousands of challenge
parameters, redirect loops, random bytes after a ClientHello, half a TLS
handshake. Each one is a :class:`HostileServer`: a listener on 127.0.0.1 port 0,
one thread per connection running a handler, and a record of what arrived
(:attr:`HostileServer.requests`) and how many bytes it managed to send
(:attr:`HostileServer.bytes_sent`), so a test can prove a cap was honoured
from the server's side.

:class:`Registry` is a minimal v2 registry whose routes (``v2``, ``token``,
``manifest``) can each be replaced by one of the hostile behaviours below.

It refuses to listen anywhere but 127.0.0.1 and to outlive its test: leaving
the ``with`` block shuts every connection down, which wakes any handler blocked
in a read, a write or a drip, and joins every thread.
"""

from __future__ import annotations

import json
import random
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = [
    "API_HEADER",
    "LOOPBACK",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Connection",
    "Handler",
    "HostileServer",
    "Registry",
    "Request",
    "Route",
    "big_header",
    "drip_head",
    "endless_body",
    "late_plain_http",
    "many_params_challenge",
    "redirect",
    "response_head",
    "sized_body",
    "tls_cut_handshake",
    "tls_garbage",
    "tls_then_silent",
]

LOOPBACK = "127.0.0.1"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
API_HEADER = ("Docker-Distribution-Api-Version", "registry/2.0")
_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect",
            401: "Unauthorized", 404: "Not Found"}


@dataclass(frozen=True)
class Request:
    """One request head a hostile server received (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str] = field(repr=False)

    def __repr__(self) -> str:
        shown = {k: ("***" if k in _SECRET_HEADERS else v) for k, v in self.headers.items()}
        return f"Request({self.method} {self.path} {shown})"


class Connection:
    """One accepted connection: counted writes, bounded request reads, stoppable waits."""

    def __init__(self, sock: socket.socket, server: HostileServer) -> None:
        self.sock: socket.socket = sock
        self.server = server
        self.sent = 0
        self._buffer = b""

    @property
    def stopping(self) -> bool:
        return self.server.stopping.is_set()

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False when the server is stopping."""
        return not self.server.stopping.wait(seconds)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)
        self.server.count_sent(len(data))

    def recv(self, size: int = 65536) -> bytes:
        return self.sock.recv(size)

    def peek(self) -> bytes:
        """The first byte the client sent, left in the socket for the handler."""
        return self.sock.recv(1, socket.MSG_PEEK)

    def read_request(self) -> Request | None:
        """The next request head (and discard its body); None when the peer is gone."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _MAX_HEAD:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _version = (line.split(" ", 2) + ["", ""])[:3]
        headers: dict[str, str] = {}
        for raw in lines:
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._discard_body(int(headers.get("content-length", "0") or 0))
        request = Request(method, path, headers)
        self.server.record(request)
        return request

    def _discard_body(self, length: int) -> None:
        while len(self._buffer) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self._buffer += chunk
        self._buffer = self._buffer[length:]

    def hold(self) -> None:
        """Say nothing until the peer closes or the server stops."""
        while not self.stopping:
            try:
                if not self.sock.recv(65536):
                    return
            except (OSError, ssl.SSLError):
                return

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Finish a server-side TLS handshake on this connection."""
        self.sock = self.server.track(context.wrap_socket(self.sock, server_side=True))


Handler = Callable[[Connection], None]
Route = Callable[[Connection, Request], None]


class HostileServer:
    """A listener on 127.0.0.1 running ``handler`` in one thread per connection."""

    def __init__(self, handler: Handler, *, sndbuf: int | None = None) -> None:
        self.handler = handler
        self.sndbuf = sndbuf
        self.stopping = threading.Event()
        self.requests: list[Request] = []
        self.bytes_sent = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept_loop, name="hostile-accept",
                                          daemon=True)

    @property
    def netloc(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def __enter__(self) -> Self:
        self._accepter.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def count_sent(self, size: int) -> None:
        with self._lock:
            self.bytes_sent += size

    def track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            if self.stopping.is_set():
                _shutdown(sock)
        return sock

    def stop(self) -> None:
        """Shut every connection down, close the listener and join every thread."""
        self.stopping.set()
        with self._lock:
            for sock in self._sockets:
                _shutdown(sock)
        if self._accepter.is_alive():
            self._accepter.join(timeout=2)
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=2)
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            if self.sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            self.track(sock)
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(Connection(sock, self),),
                                      name="hostile-conn", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: Connection) -> None:
        try:
            self.handler(conn)
        except (OSError, ssl.SSLError, ValueError):
            pass  # the client hung up or the server is stopping: both are expected here
        finally:
            _shutdown(conn.sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# --------------------------------------------------------------------------- HTTP replies


def response_head(status: int, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _respond(conn: Connection, request: Request, status: int, body: bytes = b"",
             headers: Iterable[tuple[str, str]] = ()) -> None:
    head = response_head(status, [*headers, ("Content-Length", str(len(body)))])
    conn.send(head if request.method == "HEAD" else head + body)


class drip_head:  # lower case: used like the other route factories
    """Send the response head one byte every ``interval`` seconds; ``sent`` counts them."""

    def __init__(self, status: int, headers: Iterable[tuple[str, str]] = (), *,
                 interval: float = 1.0) -> None:
        self.head = response_head(status, [*headers, ("Content-Length", "0")])
        self.interval = interval
        self.sent = 0

    def __call__(self, conn: Connection, request: Request) -> None:
        for index in range(len(self.head)):
            conn.send(self.head[index:index + 1])
            self.sent += 1
            if not conn.pause(self.interval):
                return


def endless_body(content_type: str, headers: Iterable[tuple[str, str]] = ()) -> Route:
    """A 200 whose chunked body never ends (HEAD gets the head only)."""
    chunk = b"%x\r\n%s\r\n" % (_CHUNK, b"x" * _CHUNK)
    fixed = list(headers)

    def route(conn: Connection, request: Request) -> None:
        if request.method == "HEAD":
            _respond(conn, request, 200, b"{}", [("Content-Type", content_type), *fixed])
            return
        conn.send(response_head(200, [("Content-Type", content_type),
                                      ("Transfer-Encoding", "chunked"), *fixed]))
        while not conn.stopping:
            conn.send(chunk)
    return route


def sized_body(total: int, content_type: str) -> Route:
    """A 200 announcing and streaming ``total`` bytes (a JSON-looking prefix, then filler)."""
    def route(conn: Connection, request: Request) -> None:
        conn.send(response_head(200, [("Content-Type", content_type),
                                      ("Content-Length", str(total))]))
        prefix = b'{"token": "'
        conn.send(prefix)
        left = total - len(prefix)
        filler = b"A" * _CHUNK
        while left > 0 and not conn.stopping:
            piece = filler[:min(left, _CHUNK)]
            conn.send(piece)
            left -= len(piece)
    return route


def big_header(size: int) -> Route:
    """A 200 carrying one header line of ``size`` bytes."""
    def route(conn: Connection, request: Request) -> None:
        conn.send(response_head(200, [API_HEADER, ("X-Padding", "p" * size),
                                      ("Content-Length", "2")]) + b"{}")
    return route


def redirect(location: str | Callable[[Request], str], status: int = 302) -> Route:
    """A redirect to ``location`` (or to what a function of the request returns)."""
    def route(conn: Connection, request: Request) -> None:
        where = location(request) if callable(location) else location
        _respond(conn, request, status, b"", [("Location", where)])
    return route


def many_params_challenge(realm: str, count: int, *, realm_first: bool = True) -> str:
    """A Bearer challenge with ``count`` junk parameters before or after the realm."""
    junk = ",".join(f'p{i}="v{i}"' for i in range(count))
    head = f'realm="{realm}",service="hostile"'
    return f"Bearer {head},{junk}" if realm_first else f"Bearer {junk},{head}"


# --------------------------------------------------------------------------- a registry


class Registry:
    """A minimal v2 registry handler; any route can be swapped for a hostile one.

    Routes: ``v2`` (``GET /v2/``), ``token`` (``/token``), ``manifest`` (HEAD/GET of
    ``/v2/NAME/manifests/REF``), ``other``. With a ``challenge`` the registry
    answers 401 to ``/v2/`` and to manifest requests without a Bearer token.
    """

    def __init__(self, *, challenge: str | None = None, routes: Mapping[str, Route] = (
            {}), manifest_type: str = OCI_MANIFEST) -> None:
        self.challenge = challenge
        self.routes = dict(routes)
        self.manifest_type = manifest_type

    def __call__(self, conn: Connection) -> None:
        while not conn.stopping:
            request = conn.read_request()
            if request is None:
                return
            kind = _kind(request.path)
            route = self.routes.get(kind) or getattr(self, f"_{kind}")
            route(conn, request)

    def _unauthorized(self, conn: Connection, request: Request) -> bool:
        if self.challenge is None or request.headers.get("authorization", "").startswith(
                "Bearer "):
            return False
        _respond(conn, request, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                 [API_HEADER, ("Content-Type", "application/json"),
                  ("WWW-Authenticate", self.challenge)])
        return True

    def _v2(self, conn: Connection, request: Request) -> None:
        if not self._unauthorized(conn, request):
            _respond(conn, request, 200, b"{}", [API_HEADER, ("Content-Type", "application/json")])

    def _token(self, conn: Connection, request: Request) -> None:
        body = json.dumps({"token": "hostile-opaque-token", "expires_in": 60}).encode()
        _respond(conn, request, 200, body, [("Content-Type", "application/json")])

    def _manifest(self, conn: Connection, request: Request) -> None:
        if self._unauthorized(conn, request):
            return
        body = json.dumps({"schemaVersion": 2, "mediaType": self.manifest_type}).encode()
        _respond(conn, request, 200, body, [
            API_HEADER, ("Content-Type", self.manifest_type),
            ("Docker-Content-Digest", "sha256:" + "0" * 64)])

    def _other(self, conn: Connection, request: Request) -> None:
        _respond(conn, request, 404, b'{"errors":[{"code":"NOT_FOUND"}]}',
                 [API_HEADER, ("Content-Type", "application/json")])


def _kind(path: str) -> str:
    path = path.split("?", 1)[0]
    if path in ("/v2", "/v2/"):
        return "v2"
    if path.startswith("/token"):
        return "token"
    if path.startswith("/v2/") and "/manifests/" in path:
        return "manifest"
    return "other"


# --------------------------------------------------------------------------- TLS misbehaviour


def _read_client_hello(conn: Connection) -> bytes:
    return conn.recv(16 * 1024)


def tls_garbage(seed: int = 1, size: int = 4096) -> Handler:
    """Answer the ClientHello with ``size`` random bytes (fixed ``seed``), then hold."""
    noise = random.Random(seed).randbytes(size)

    def handler(conn: Connection) -> None:
        if _read_client_hello(conn):
            conn.send(noise)
            conn.hold()
    return handler


def tls_cut_handshake(context: ssl.SSLContext, fraction: float = 0.5) -> Handler:
    """Send the first ``fraction`` of a real server handshake flight, then close."""
    def handler(conn: Connection) -> None:
        hello = _read_client_hello(conn)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        engine = context.wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(hello)
        try:
            engine.do_handshake()
        except ssl.SSLWantReadError:
            pass
        flight = outgoing.read()
        conn.send(flight[:max(1, int(len(flight) * fraction))])
        conn.sock.close()
    return handler


def tls_then_silent(context: ssl.SSLContext) -> Handler:
    """Complete the TLS handshake, read the request, never answer."""
    def handler(conn: Connection) -> None:
        conn.start_tls(context)
        conn.hold()
    return handler


def late_plain_http(delay: float, http: Handler) -> Handler:
    """Answer a ClientHello after ``delay`` seconds with an HTTP error; serve HTTP with ``http``."""
    def handler(conn: Connection) -> None:
        if conn.peek() != b"\x16":  # not a TLS handshake record: a plain HTTP client
            http(conn)
            return
        _read_client_hello(conn)
        if conn.pause(delay):
            conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.hold()
    return handler
