"""``pulldoctor agent``: wire configuration, Kubernetes, probes, metrics and HTTP together.

Runs until SIGTERM/SIGINT and stops within about a second: the watch notices
the stop flag, in-flight probes are bounded by their own deadlines, and queued
work is cancelled. ``--standalone`` needs no cluster and probes the config's
static targets; ``--once`` runs one cycle, prints the diagnoses and exits
(0 when every target passed). Configuration errors exit 2 with a message that
names the file and the key.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.config import ConfigError, load_config
from agent.logs import configure
from agent.metrics import Metrics

__all__ = ["run_agent"]

VERSION = "0.1.0"


def _kube(args: argparse.Namespace) -> Any:
    from agent.kube import KubeClient

    return KubeClient.from_config(args.kubeconfig)


def run_agent(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.config) if args.config else None)
    except ConfigError as exc:
        print(f"pulldoctor: {exc}", file=sys.stderr)
        return 2
    node = args.node
    if not args.standalone and not node:
        print("pulldoctor: the node name is required (NODE_NAME from the downward API, or "
              "--node); use --standalone to run without a cluster", file=sys.stderr)
        return 2
    log = configure(node=node or "standalone")
    registry = CollectorRegistry()
    metrics = Metrics(registry, version=VERSION)
    kube = None if args.standalone else _kube(args)
    agent = Agent(config, node=node, kube=kube, metrics=metrics, log=log)
    if args.once:
        return _once(agent)
    return _serve(agent, config, registry, kube, node, log)


def _once(agent: Agent) -> int:
    agent.run_cycle()
    diagnoses = agent.diagnoses()
    for item in diagnoses:
        print(json.dumps(item), flush=True)
    agent.close()
    return 0 if all(d.get("ok", True) for d in diagnoses) else 1


def _serve(agent: Agent, config: Any, registry: CollectorRegistry, kube: Any, node: str | None,
           log: Any) -> int:
    from agent.http import serve

    host, port = config.listen
    server = serve(host=host, port=port, registry=registry, healthy=agent.healthy,
                   ready=agent.ready, diagnoses=agent.diagnoses)
    threads = []
    if kube is not None:
        from agent.kube import PodWatcher

        watcher = PodWatcher(kube, node or "", agent.on_pod, stop=agent.stop)
        agent.watch_healthy = lambda: watcher.healthy
        threads.append(threading.Thread(target=watcher.run, name="pod-watch", daemon=True))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop.set())
    log.info("agent_started", message=f"pulldoctor {VERSION} watching node {node or '-'}; "
             f"metrics on {host}:{server.port}", port=server.port,
             targets_static=len(config.static_targets), runtime=agent.view.runtime,
             proxy_source=agent.view.proxy.source)
    for thread in threads:
        thread.start()
    try:
        agent.run()
    finally:
        agent.close()
        server.close()
        for thread in threads:
            thread.join(timeout=1.5)
        log.info("agent_stopped", message="pulldoctor stopped")
    return 0
