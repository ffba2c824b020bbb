"""Loopback ports for the fleet, and the sockets that imitate network faults.

* :func:`allocate_ports` asks the kernel for free TCP ports (bind to port 0) so
  parallel runs never clash; the ports are distinct within one call.
* :class:`FaultSockets` keeps four ports for the fleet's life:
  ``closed`` (bound, never listening: connects are refused and nobody else can
  take the port), ``silent`` (accepts and never sends a byte), ``blackhole``
  (a listener whose accept queue is full, so new SYNs are dropped and connects
  time out — infra-recipes §7a) and ``reset`` (accepts, reads the request, then
  closes with an RST via ``SO_LINGER`` 0).
* :func:`record` appends to the fleet's request/query logs with a size bound.

It refuses to touch any address but 127.0.0.1, and to change the machine's
firewall: every fault is made with ordinary sockets.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = [
    "LOOPBACK",
    "RECORD_LIMIT",
    "FaultSockets",
    "allocate_ports",
    "record",
]

LOOPBACK = "127.0.0.1"
T = TypeVar("T")
_BLACKHOLE_FILLERS = 3


#: Recorded requests/queries kept per server; the oldest half goes when a list is full, so a
#: long benchmark run cannot grow memory without bound.
RECORD_LIMIT = 10_000


def record(items: list[T], item: T) -> None:
    """Append ``item``, dropping the oldest half of ``items`` once it holds RECORD_LIMIT."""
    if len(items) >= RECORD_LIMIT:
        del items[: RECORD_LIMIT // 2]
    items.append(item)


def allocate_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    holders: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            holders.append(s)
        return [s.getsockname()[1] for s in holders]
    finally:
        for s in holders:
            s.close()


def _listener(backlog: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    s.listen(backlog)
    return s


@dataclass
class FaultSockets:
    """The four fault ports; one selector thread serves ``silent`` and ``reset``."""

    closed_port: int
    silent_port: int
    blackhole_port: int
    reset_port: int
    _sockets: list[socket.socket] = field(repr=False)
    _selector: selectors.DefaultSelector = field(repr=False)
    _wake: tuple[socket.socket, socket.socket] = field(repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def start(cls) -> FaultSockets:
        closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        closed.bind((LOOPBACK, 0))  # bound, never listen(): connect() is refused
        silent, reset = _listener(128), _listener(128)
        blackhole, fillers = _blackhole()
        sel = selectors.DefaultSelector()
        wake = socket.socketpair()
        self = cls(
            closed_port=closed.getsockname()[1],
            silent_port=silent.getsockname()[1],
            blackhole_port=blackhole.getsockname()[1],
            reset_port=reset.getsockname()[1],
            _sockets=[closed, silent, reset, blackhole, *fillers],
            _selector=sel,
            _wake=wake,
        )
        for lst, kind in ((silent, "silent"), (reset, "reset")):
            lst.setblocking(False)
            sel.register(lst, selectors.EVENT_READ, ("accept", kind))
        sel.register(wake[0], selectors.EVENT_READ, ("wake", ""))
        self._thread = threading.Thread(target=self._serve, name="fleet-faults", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=1.0):
                action, kind = key.data
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if action == "accept":
                    self._accept(sock, kind)
                elif action == "read":
                    self._read(sock, kind)
        for key in list(self._selector.get_map().values()):
            if key.data[0] == "read":
                self._drop(key.fileobj)  # type: ignore[arg-type]

    def _accept(self, listener: socket.socket, kind: str) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = listener.accept()
            conn.setblocking(False)
            self._selector.register(conn, selectors.EVENT_READ, ("read", kind))

    def _read(self, conn: socket.socket, kind: str) -> None:
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
        elif kind == "reset":
            time.sleep(0.01)  # let the rest of a request arrive so the RST follows it
            with contextlib.suppress(OSError):
                conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._drop(conn)
        # kind == "silent": read and discard, never answer

    def _drop(self, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn)
        conn.close()

    def stop(self) -> None:
        """Stop the thread and close every socket, accepted connections included."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake[1].send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._selector.close()
        for s in (*self._sockets, *self._wake):
            s.close()


def _blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A listener with backlog 0 whose queue is filled by never-accepted connects."""
    srv = _listener(0)
    port = srv.getsockname()[1]
    fillers: list[socket.socket] = []
    for _ in range(_BLACKHOLE_FILLERS):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect((LOOPBACK, port))
        fillers.append(c)
    time.sleep(0.05)
    return srv, fillers
