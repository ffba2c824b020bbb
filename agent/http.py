"""The agent's HTTP endpoints on one port: metrics, health, readiness, diagnoses.

Why it exists: Prometheus scrapes ``/metrics``, the kubelet probes ``/healthz``
and ``/readyz``, and an SRE reads ``/diagnoses`` with curl; one small threaded
stdlib server serves all four so the agent needs no web framework.

What it refuses to do: let a callback take the server down. Each callback runs
in its own short-lived thread with a deadline; an exception or a missed
deadline becomes a 500 with a short, fixed message (the exception text is not
echoed: it could carry anything). It serves GET only, never writes state, and
logs no request bodies or headers.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["CALLBACK_TIMEOUT_SECONDS", "Server", "serve"]

#: Longest a health/readiness/diagnoses callback may take before the answer is a 500.
CALLBACK_TIMEOUT_SECONDS = 2.0
#: Callback threads allowed to run at once; beyond that requests get a 500 at once,
#: so hung callbacks cannot pile up threads without bound.
_MAX_CALLBACK_THREADS = 8

_log = structlog.get_logger(__name__)
T = TypeVar("T")


class _CallbackFailed(Exception):
    """A callback raised, timed out, or too many callbacks are still running."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Callbacks:
    """Runs callbacks with a deadline in bounded, daemon helper threads."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(_MAX_CALLBACK_THREADS)

    def call(self, name: str, fn: Callable[[], T]) -> T:
        if not self._slots.acquire(blocking=False):
            raise _CallbackFailed(f"{name} check busy")
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = fn()
            except Exception as exc:  # noqa: BLE001  any callback failure must become a 500
                box["error"] = exc
            finally:
                self._slots.release()
                done.set()

        threading.Thread(target=run, name=f"http-{name}", daemon=True).start()
        if not done.wait(self._timeout):
            _log.warning("http_callback_timeout", callback=name)
            raise _CallbackFailed(f"{name} check timed out")
        if "error" in box:
            _log.warning("http_callback_failed", callback=name,
                         error=type(box["error"]).__name__)
            raise _CallbackFailed(f"{name} check failed")
        value: T = box["value"]
        return value


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stalls mid-request loses its thread after this

    def do_GET(self) -> None:
        route = _ROUTES.get(urlsplit(self.path).path)
        if route is None:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            status, content_type, body = route(self)
        except _CallbackFailed as exc:
            status, content_type, body = 500, "text/plain; charset=utf-8", (
                exc.reason + "\n").encode()
        except Exception as exc:  # noqa: BLE001  rendering failed (e.g. not JSON-serialisable)
            _log.warning("http_handler_failed", path=urlsplit(self.path).path,
                         error=type(exc).__name__)
            status, content_type, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self._send(status, content_type, body)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request access logs: the kubelet probes every few seconds."""


def _metrics(h: _Handler) -> tuple[int, str, bytes]:
    encoder, content_type = choose_encoder(h.headers.get("Accept", ""))
    return 200, content_type, encoder(h.server.registry)


def _healthz(h: _Handler) -> tuple[int, str, bytes]:
    healthy = h.server.callbacks.call("healthz", h.server.healthy)
    return (200, "text/plain; charset=utf-8", b"ok\n") if healthy else (
        503, "text/plain; charset=utf-8", b"unhealthy\n")


def _readyz(h: _Handler) -> tuple[int, str, bytes]:
    ready, reason = h.server.callbacks.call("readyz", h.server.ready)
    text = (reason or ("ok" if ready else "not ready")) + "\n"
    return 200 if ready else 503, "text/plain; charset=utf-8", text.encode()


def _diagnoses(h: _Handler) -> tuple[int, str, bytes]:
    items = h.server.callbacks.call("diagnoses", h.server.diagnoses)
    body = json.dumps(items, indent=2, sort_keys=True).encode() + b"\n"
    return 200, "application/json", body


_ROUTES: dict[str, Callable[[_Handler], tuple[int, str, bytes]]] = {
    "/metrics": _metrics,
    "/healthz": _healthz,
    "/readyz": _readyz,
    "/diagnoses": _diagnoses,
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    healthy: Callable[[], bool]
    ready: Callable[[], tuple[bool, str]]
    diagnoses: Callable[[], list[dict[str, Any]]]
    callbacks: _Callbacks


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class Server:
    """A running endpoint server; ``close()`` stops it and frees the port."""

    def __init__(self, httpd: _HTTPServer) -> None:
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="http-server",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return int(self._httpd.server_address[1])

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(
    *,
    host: str,
    port: int,
    registry: CollectorRegistry,
    healthy: Callable[[], bool],
    ready: Callable[[], tuple[bool, str]],
    diagnoses: Callable[[], list[dict[str, Any]]],
    callback_timeout: float = CALLBACK_TIMEOUT_SECONDS,
) -> Server:
    """Start serving ``/metrics``, ``/healthz``, ``/readyz`` and ``/diagnoses`` in a thread."""
    cls = _HTTPServer6 if ":" in host else _HTTPServer
    httpd = cls((host.strip("[]"), port), _Handler)
    httpd.registry = registry
    httpd.healthy = healthy
    httpd.ready = ready
    httpd.diagnoses = diagnoses
    httpd.callbacks = _Callbacks(callback_timeout)
    _log.info("http_listening", host=host, port=httpd.server_address[1])
    return Server(httpd)
