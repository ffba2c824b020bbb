"""Child processes of the fleet: started with a log file, stopped by PID, never orphaned.

Every daemon of the fleet (docker-registry, tinyproxy, containerd) runs through
:func:`spawn`, which puts ``setpriv --pdeathsig TERM`` in front of the command so
the kernel terminates the child if the thread that started it dies without
cleaning up (a SIGKILLed pytest, for instance). That is why fleet processes must
be started from a thread that outlives them — normally the main thread.

This module refuses to find processes by name: it only signals the PID it
spawned, and it refuses to wait forever (SIGTERM, then SIGKILL after a grace
period).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = [
    "FleetError",
    "ManagedProcess",
    "Stoppable",
    "log_tail",
    "spawn",
    "wait_until",
]

_SETPRIV = "/usr/bin/setpriv"


class Stoppable(Protocol):
    """Anything the fleet started and must stop on exit."""

    def stop(self) -> None: ...


class FleetError(RuntimeError):
    """A fleet component failed to start or stop; the message names it and its log."""


def log_tail(log: Path, lines: int = 8) -> str:
    """The last few lines of a log file, for error messages (empty when unreadable)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One child process with its log file; ``stop()`` is idempotent."""

    name: str
    popen: subprocess.Popen[bytes] = field(repr=False)
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`FleetError` naming the component and its log if it has exited."""
        code = self.popen.poll()
        if code is not None:
            raise FleetError(
                f"{self.name} (pid {self.pid}) exited with status {code} during start-up; "
                f"see {self.log}:\n{log_tail(self.log)}"
            )

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the PID, then SIGKILL it if it is still there after ``grace`` seconds."""
        if self.popen.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=grace)
        except ProcessLookupError:
            self.popen.wait(timeout=grace)


def spawn(name: str, argv: Sequence[str], log: Path, *, cwd: Path | None = None) -> ManagedProcess:
    """Start ``argv`` with stdout+stderr appended to ``log`` and a parent-death signal."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            popen = subprocess.Popen(
                [_SETPRIV, "--pdeathsig", "TERM", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                close_fds=True,
            )
        except OSError as exc:
            raise FleetError(f"{name}: cannot execute {argv[0]}: {exc}") from exc
    return ManagedProcess(name=name, popen=popen, log=log)


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    log: Path | None,
    timeout: float,
    check: Callable[[], None] | None = None,
    interval: float = 0.01,
) -> None:
    """Poll ``ready`` until it is true; ``check`` may raise early (e.g. the process died)."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        if ready():
            return
        if time.monotonic() > deadline:
            where = f"; see {log}:\n{log_tail(log)}" if log is not None else ""
            raise FleetError(f"{what} was not ready after {timeout:.0f} s{where}")
        time.sleep(interval)
