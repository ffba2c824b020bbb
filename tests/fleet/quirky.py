"""Plain-HTTP servers that imitate registry behaviours the Distribution registry cannot produce.

=============== ============================= =============================================
name            ``GET /v2/``                  HEAD/GET ``/v2/NAME/manifests/REF``
=============== ============================= =============================================
``html``        200 ``text/html``, no         404 ``text/html``
                API-version header
``ratelimit``   200 + API-version header      429 + ``RateLimit-*`` + TOOMANYREQUESTS
``error500``    503 JSON error                503 JSON error
``forbidden``   200 + API-version header      403 DENIED
``manifest500`` 200 + API-version header      500 JSON error
=============== ============================= =============================================

Any other path answers 404 (JSON, or HTML for ``html``). Every request is
recorded as a :class:`RecordedRequest` (method, path, lower-cased headers) in
``QuirkyServer.requests``; its repr hides credential headers. It refuses to
speak TLS or to listen anywhere but 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.fleet.httpbase import QuietHandler, ServerThread, TrackingHTTPServer
from tests.fleet.process import Stoppable
from tests.fleet.sockets import LOOPBACK, record

__all__ = ["QUIRKS", "QuirkyServer", "RecordedRequest", "start_quirky_servers"]

_API = {"Docker-Distribution-Api-Version": "registry/2.0"}
_MANIFEST = re.compile(r"^/v2/.+/manifests/[^/]+$")
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

Reply = tuple[int, bytes, str, dict[str, str]]


def _errors(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


_NOT_FOUND: Reply = (404, _errors("NOT_FOUND", "not found"), "application/json", _API)
_HTML_PAGE = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body>It works</body></html>"


def _html(path: str) -> Reply:
    if path in ("/v2", "/v2/"):
        return 200, _HTML_PAGE, "text/html; charset=utf-8", {}
    return 404, b"<html><body>Not Found</body></html>", "text/html; charset=utf-8", {}


def _ratelimit(path: str) -> Reply:
    if _MANIFEST.match(path):
        headers = {**_API, "RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600"}
        body = _errors("TOOMANYREQUESTS", "You have reached your pull rate limit.")
        return 429, body, "application/json", headers
    return _v2_ok(path)


def _error500(path: str) -> Reply:
    return 503, _errors("UNAVAILABLE", "service unavailable"), "application/json", {}


def _forbidden(path: str) -> Reply:
    if _MANIFEST.match(path):
        body = _errors("DENIED", "requested access to the resource is denied")
        return 403, body, "application/json", _API
    return _v2_ok(path)


def _manifest500(path: str) -> Reply:
    if _MANIFEST.match(path):
        return 500, _errors("UNKNOWN", "unknown error"), "application/json", _API
    return _v2_ok(path)


def _v2_ok(path: str) -> Reply:
    if path in ("/v2", "/v2/"):
        return 200, b"{}", "application/json; charset=utf-8", _API
    return _NOT_FOUND


QUIRKS: dict[str, Callable[[str], Reply]] = {
    "html": _html,
    "ratelimit": _ratelimit,
    "error500": _error500,
    "forbidden": _forbidden,
    "manifest500": _manifest500,
}


@dataclass(frozen=True, repr=False)
class RecordedRequest:
    """One request a quirky server received; header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k in _SECRET_HEADERS else v) for k, v in self.headers.items()}
        return f"RecordedRequest(method={self.method!r}, path={self.path!r}, headers={shown!r})"


class _QuirkyHandler(QuietHandler):
    server: _QuirkyHTTPServer

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        record(self.server.requests, RecordedRequest(self.command, self.path, headers))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        status, body, content_type, extra = self.server.quirk(path)
        self.send_body(status, body, content_type, extra)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class _QuirkyHTTPServer(TrackingHTTPServer):
    def __init__(self, quirk: Callable[[str], Reply], log: Path) -> None:
        self.quirk = quirk
        self.requests: list[RecordedRequest] = []
        super().__init__(_QuirkyHandler, log)


@dataclass
class QuirkyServer:
    """One running quirky server (plain HTTP)."""

    name: str
    port: int
    log: Path
    requests: list[RecordedRequest] = field(repr=False)
    _thread: ServerThread = field(repr=False)
    scheme: str = "http"

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        self._thread.stop()


def start_quirky_servers(logs: Path, started: list[Stoppable]) -> dict[str, QuirkyServer]:
    """Start one server per entry of :data:`QUIRKS`; each is appended to ``started``."""
    servers: dict[str, QuirkyServer] = {}
    for name, quirk in QUIRKS.items():
        srv = _QuirkyHTTPServer(quirk, logs / f"quirky-{name}.log")
        thread = ServerThread(srv, f"fleet-quirky-{name}")
        servers[name] = QuirkyServer(name, srv.port, srv.log_path, srv.requests, thread)
        started.append(servers[name])
    return servers
