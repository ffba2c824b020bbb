"""A logger double that records structured log calls (event name and fields) for assertions."""

from __future__ import annotations

import threading
from typing import Any


class RecordingLog:
    """Stands in for a structlog bound logger; keeps every call in :attr:`records`."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _add(self, level: str, event: str, **fields: Any) -> None:
        with self._lock:
            self.records.append({"event": event, "level": level, **fields})

    def info(self, event: str, **fields: Any) -> None:
        self._add("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._add("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._add("error", event, **fields)

    def bind(self, **_: Any) -> RecordingLog:
        return self

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.records if r["event"] == name]
