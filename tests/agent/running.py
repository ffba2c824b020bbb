"""Run an Agent with its pod watcher in threads, as ``pulldoctor agent`` wires them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.config import AgentConfig
from agent.kube import KubeClient, PodWatcher
from agent.metrics import Metrics
from tests.agent.recorder import RecordingLog
from tests.scenario import NODE


@contextmanager
def running_agent(config: AgentConfig, kube: KubeClient, *, log: Any = None,
                  registry: CollectorRegistry | None = None, join: float = 3.0,
                  **watch: Any) -> Iterator[tuple[Agent, PodWatcher, list[threading.Thread]]]:
    """The agent for node ``NODE`` and its watcher, started; stopped and joined on exit.

    ``watch`` overrides the watcher's quick test timings (backoff, watch timeout)."""
    agent = Agent(config, node=NODE, kube=kube,
                  metrics=Metrics(registry or CollectorRegistry(), version="t"),
                  log=log or RecordingLog())
    watcher = PodWatcher(kube, NODE, agent.on_pod, stop=agent.stop,
                         **{"backoff_base": 0.05, "backoff_max": 0.5, "watch_timeout": 5,
                            "read_grace": 2, **watch})
    agent.watch_healthy = lambda: watcher.healthy
    agent.watch_error = lambda: watcher.last_error
    threads = [threading.Thread(target=watcher.run, daemon=True),
               threading.Thread(target=agent.run, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        yield agent, watcher, threads
    finally:
        agent.close()
        for thread in threads:
            thread.join(timeout=join)
