"""The scheduler spreads probes with jitter and rate-limits forced probes (fake clock)."""

from __future__ import annotations

import random

from agent.scheduler import Scheduler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, interval: float = 300, jitter: float = 0.2, forced: float = 30
         ) -> Scheduler:
    return Scheduler(interval=interval, jitter=jitter, min_forced_interval=forced, clock=clock,
                     rng=random.Random(7))


def test_new_targets_are_due_within_two_seconds() -> None:
    """New keys are spread over the first two seconds, not all at once."""
    clock = Clock()
    scheduler = make(clock)
    scheduler.sync(range(50))
    clock.now += 1.0
    early = scheduler.due(100)
    assert 0 < len(early) < 50
    clock.now += 1.0
    assert len(early) + len(scheduler.due(100)) == 50


def test_next_run_is_interval_with_jitter() -> None:
    """After a run the next one is interval ± jitter away."""
    clock = Clock()
    scheduler = make(clock)
    scheduler.sync(range(200))
    clock.now += 2.0
    keys = scheduler.due(1000)
    assert len(keys) == 200
    for key in keys:
        scheduler.done(key)
    clock.now += 239.9
    assert scheduler.due(1000) == []
    clock.now += 120.2
    assert len(scheduler.due(1000)) == 200


def test_due_respects_the_concurrency_limit_and_running() -> None:
    """At most ``limit`` keys are handed out; running keys are not handed out twice."""
    clock = Clock()
    scheduler = make(clock)
    scheduler.sync(range(10))
    clock.now += 2.0
    first = scheduler.due(4)
    assert len(first) == 4 and not set(first) & set(scheduler.due(4) + scheduler.due(10))


def test_forced_probes_are_rate_limited() -> None:
    """A pull failure forces a probe, but not again within the minimum interval."""
    clock = Clock()
    scheduler = make(clock, forced=30)
    scheduler.sync(["a"])
    clock.now += 2.0
    scheduler.due(1)
    scheduler.done("a")
    assert scheduler.force("a") and scheduler.due(1) == ["a"]
    scheduler.done("a")
    clock.now += 10
    assert not scheduler.force("a") and scheduler.due(1) == []
    clock.now += 21
    assert scheduler.force("a")


def test_sync_drops_vanished_keys() -> None:
    """Keys no longer wanted are dropped and reported."""
    clock = Clock()
    scheduler = make(clock)
    scheduler.sync(["a", "b"])
    assert scheduler.sync(["b"]) == ["a"] and len(scheduler) == 1
    assert not scheduler.force("a")


def test_all_ran_once() -> None:
    """The first cycle is complete when every key ran once."""
    clock = Clock()
    scheduler = make(clock)
    scheduler.sync(["a", "b"])
    clock.now += 2.0
    for key in scheduler.due(1):
        scheduler.done(key)
    assert not scheduler.all_ran_once()
    for key in scheduler.due(5):
        scheduler.done(key)
    assert scheduler.all_ran_once()


def test_a_key_forced_while_it_runs_is_due_again_when_the_run_ends() -> None:
    """A force that lands during a run is not undone by that run's done(): the key is due at
    once, not an interval later (the run may have started before the failure that forced it)."""
    clock = Clock()
    scheduler = make(clock, forced=0)
    scheduler.sync(["a"])
    clock.now += 2.0
    assert scheduler.due(1) == ["a"]
    assert scheduler.force("a") and scheduler.due(1) == []  # still running: not handed out twice
    clock.now += 1.0
    scheduler.done("a")
    assert scheduler.due(1) == ["a"]
    scheduler.done("a")  # that rerun was the forced one: the next is an interval away
    clock.now += 1.0
    assert scheduler.due(1) == []
