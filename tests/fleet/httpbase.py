"""A small threaded HTTP(S) server that can be stopped completely.

``http.server.ThreadingHTTPServer`` leaves keep-alive connections open after
``shutdown()``; this one tracks every accepted connection and closes it on
:meth:`ServerThread.stop`, so a stopped fleet holds no socket. TLS handshakes
happen in the per-connection thread, never in the accept loop, so a client
that stalls a handshake cannot block other clients.

It refuses to bind anything but 127.0.0.1 and to print tracebacks to stderr:
connection errors go to the server's log file.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.fleet.sockets import LOOPBACK

__all__ = ["QuietHandler", "ServerThread", "TrackingHTTPServer"]


class QuietHandler(BaseHTTPRequestHandler):
    """A handler speaking HTTP/1.1 that logs one line per request to the server's log."""

    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        server = self.server
        assert isinstance(server, TrackingHTTPServer)
        server.write_log(f"{self.address_string()} {format % args}")

    def send_body(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Send a complete response; HEAD gets the headers with the body's length only."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class TrackingHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its open connections and its log file."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        log: Path,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.log_path = log
        self.ssl_context = ssl_context
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__((LOOPBACK, 0), handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def write_log(self, line: str) -> None:
        with self._lock, self.log_path.open("a") as out:
            out.write(line.rstrip("\n") + "\n")

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn: socket.socket = request
        if self.ssl_context is not None:
            conn.settimeout(10)
            try:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.write_log(f"{client_address[0]} TLS handshake failed: {exc}")
                return
        with self._lock:
            self._conns.add(conn)
        try:
            super().finish_request(conn, client_address)
        finally:
            with self._lock:
                self._conns.discard(conn)
            if conn is not request:
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.write_log(f"{client_address[0]} error: {traceback.format_exc(limit=3)}")

    def close_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class ServerThread:
    """Runs a :class:`TrackingHTTPServer` in a daemon thread until :meth:`stop`."""

    def __init__(self, server: TrackingHTTPServer, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the listener and every open connection, join the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()
        self._thread.join(timeout=5)
