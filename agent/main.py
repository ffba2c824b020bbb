"""``pulldoctor agent``: wire configuration, Kubernetes, probes, metrics and HTTP together.

Runs until SIGTERM/SIGINT and exits within :data:`STOP_SECONDS`: the loop, the
watch and the HTTP server notice the stop flag, queued work is cancelled, and
the process then exits without waiting for probes or API calls still in
flight (a probe of a silent registry could otherwise hold it for its whole
deadline); a watchdog ends the process at the limit should the loop itself be
stuck in a slow call. ``--standalone`` needs no cluster and probes the config's
static targets; ``--once`` runs one cycle, prints the diagnoses and exits
(0 when every target passed). Configuration errors exit 2 with a message that
names the file and the key, and so does ``--standalone`` with nothing to probe
(no ``--config``, or one without ``static_targets``): that would otherwise
"pass" having checked nothing.
"""

from __future__ import annotations

import argparse
import json
import os
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

__all__ = ["STOP_SECONDS", "run_agent"]

VERSION = "0.1.0"
#: Longest time from SIGTERM/SIGINT to exit (the DaemonSet's grace period is 10 s).
STOP_SECONDS = 1.0


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
    if args.standalone and not config.static_targets:
        where = f"{args.config} has no static_targets" if args.config else "no --config given"
        print(f"pulldoctor: --standalone probes only the config's static_targets, and {where}; "
              "pass --config FILE listing them", file=sys.stderr)
        return 2
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
        agent.watch_error = lambda: watcher.last_error
        threads.append(threading.Thread(target=watcher.run, name="pod-watch", daemon=True))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: _stop(agent, log))
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
            thread.join(timeout=0.5)
        log.info("agent_stopped", message="pulldoctor stopped")
    _exit(0)  # probe and API threads still in flight hold nothing that needs finishing
    return 0


def _stop(agent: Agent, log: Any) -> None:
    """Signal handler: stop gracefully, and make sure of it within :data:`STOP_SECONDS`."""
    if agent.stop.is_set():
        return
    agent.stop.set()

    def force() -> None:
        log.warning("agent_stop_forced", message=f"pulldoctor did not stop within "
                    f"{STOP_SECONDS:g}s and exits now", seconds=STOP_SECONDS)
        _exit(0)
    watchdog = threading.Timer(STOP_SECONDS, force)
    watchdog.daemon = True
    watchdog.start()


def _exit(code: int) -> None:
    """Exit now, without joining worker threads (a probe may be waiting out its deadline)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
