"""When to probe what: per-target due times with jitter, and rate-limited immediate probes.

A target is one image (or bare registry) with one credential set. Each is
probed every interval ±jitter, spread out so a node (and a fleet of nodes)
does not probe in bursts, and at once when a new pull failure names it — but
no more often than the failure rate limit allows. The scheduler only keeps
time; it never probes or blocks, so it is easy to test with a fake clock.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Scheduler", "Slot"]


@dataclass
class Slot:
    next_due: float
    interval: float | None = None  # this key's own period (default: the scheduler's)
    last_run: float | None = None
    last_forced: float | None = None
    running: bool = False
    rerun: bool = False  # forced while running: due again as soon as this run ends


class Scheduler:
    """Due times for a changing set of keys; thread-safe."""

    def __init__(self, *, interval: float, jitter: float, min_forced_interval: float,
                 clock: Callable[[], float], rng: random.Random | None = None) -> None:
        self.interval, self.jitter = interval, jitter
        self.min_forced_interval = min_forced_interval
        self._clock = clock
        self._rng = rng or random.Random()
        self._slots: dict[Hashable, Slot] = {}
        self._lock = threading.Lock()

    def _next(self, now: float, interval: float | None = None) -> float:
        interval = interval or self.interval
        spread = interval * self.jitter
        return now + interval + self._rng.uniform(-spread, spread)

    def sync(self, keys: Iterable[Hashable], *, intervals: Mapping[Hashable, float] | None = None,
             spread: float = 2.0) -> list[Hashable]:
        """Track exactly ``keys``: new ones are due within ``spread`` seconds (a random phase,
        so nodes started together do not probe together); ``intervals`` gives keys their own
        period. Returns the keys dropped."""
        wanted = set(keys)
        intervals = intervals or {}
        now = self._clock()
        with self._lock:
            dropped = [k for k in self._slots if k not in wanted]
            for key in dropped:
                del self._slots[key]
            for key in wanted:
                slot = self._slots.get(key)
                if slot is None:
                    phase = self._rng.uniform(0, min(spread, intervals.get(key, self.interval)))
                    self._slots[key] = slot = Slot(next_due=now + phase)
                if key in intervals:
                    slot.interval = intervals[key]
            return dropped

    def force(self, key: Hashable) -> bool:
        """Make ``key`` due now unless it was forced too recently; True if it was. A key
        forced while it runs is due again when that run ends."""
        now = self._clock()
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                return False
            if slot.last_forced is not None and now - slot.last_forced < self.min_forced_interval:
                return False
            slot.last_forced, slot.next_due = now, now
            # a run already under way may have started before what prompted the force
            # (it read the old state): without this, done() would move the forced run an
            # interval away
            slot.rerun = slot.running
            return True

    def due(self, limit: int) -> list[Hashable]:
        """Up to ``limit`` keys whose time has come (earliest first); marks them running."""
        now = self._clock()
        with self._lock:
            ready = sorted((s.next_due, i, k) for i, (k, s) in enumerate(self._slots.items())
                           if not s.running and s.next_due <= now)
            picked = [k for _, _, k in ready[:max(limit, 0)]]
            for key in picked:
                self._slots[key].running = True
            return picked

    def done(self, key: Hashable) -> None:
        """Record that ``key`` was probed; schedule its next run."""
        now = self._clock()
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None:
                slot.running, slot.last_run = False, now
                slot.next_due = now if slot.rerun else self._next(now, slot.interval)
                slot.rerun = False

    def next_wakeup(self) -> float | None:
        with self._lock:
            pending = [s.next_due for s in self._slots.values() if not s.running]
            return min(pending) if pending else None

    def all_ran_once(self) -> bool:
        with self._lock:
            return all(s.last_run is not None for s in self._slots.values())

    def __len__(self) -> int:
        return len(self._slots)
