"""The demo's second half: the real ``pulldoctor agent`` process against a local cluster.

A fake Kubernetes API on loopback (``tests.fakekube``: real JSON shapes, list +
watch) holds pods of two nodes failing to pull from the real registry fleet
with containerd's own words, and Secrets of every shape. The agent runs as a
subprocess for node ``node-a`` exactly as in the DaemonSet (kubeconfig instead
of in-cluster config), and the demo prints its root-cause report lines, then a
few of its metrics, then stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.fakekube import FakeKube
from tests.fleet import Fleet
from tests.scenario import EXPECTED, NODE, populate


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kubeconfig(path: Path, url: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "demo",
        "clusters": [{"name": "demo", "cluster": {"server": url}}],
        "users": [{"name": "demo", "user": {}}],
        "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "demo"}}]}))
    return path


def _config(path: Path, fleet: Fleet, port: int) -> Path:
    path.write_text("\n".join([
        "interval_seconds: 60", "endpoint_interval_seconds: 60", "startup_spread_seconds: 1",
        "probe_timeout_seconds: 5", "secret_cache_seconds: 5",
        f'listen_address: "127.0.0.1:{port}"', f"resolv_conf: {fleet.resolv_conf}",
        f"hosts_file: {fleet.hosts_file}", f"certs_dirs: [{fleet.certs_dir}]", "ca_bundles: []",
        "node_docker_configs: []", "credential_provider_config: null", "proxy_dropin_dirs: []",
        f"crio_registries_conf: {path.parent / 'no-crio.conf'}",
        f"crio_registries_dir: {path.parent / 'no-crio.d'}", ""]))
    return path


def _get(port: int, path: str) -> str:
    """The body of a GET (also for error statuses: /readyz answers 503 with its reason)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return f"{answer.status} {answer.read().decode()}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode()}"


def _wait_ready(port: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    answer = _get(port, "/readyz")
    while not answer.startswith("200") and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = _get(port, "/readyz")
    return answer


def run_agent_once(fleet: Fleet, _configs: object) -> int:
    """Run the agent against the scenario; return how many pods got an unexpected verdict."""
    print("\nThe node agent (pulldoctor agent, node-a) against a local API server with failing "
          "pods on two nodes:")
    with FakeKube() as fake:
        populate(fake, fleet, wrong_password="demo-wrong-password")
        work = fleet.workdir / "demo-agent"
        work.mkdir(exist_ok=True)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        cmd = [sys.executable, "-m", "agent.cli", "agent", "--node", NODE,
               "--kubeconfig", str(_kubeconfig(work / "kubeconfig", fake.url)),
               "--config", str(_config(work / "config.yaml", fleet, port))]
        agent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, env=env)
        try:
            lines = _collect(agent, want=len(EXPECTED), timeout=30)
            metrics = _get(port, "/metrics")
            ready = _wait_ready(port, 15)
            agent.send_signal(signal.SIGTERM)
            began = time.monotonic()
            agent.wait(timeout=10)
            stopped = time.monotonic() - began
        finally:
            if agent.poll() is None:  # never leave the agent behind, whatever went wrong
                agent.kill()
                agent.wait(timeout=5)
    print(f"\n{'POD':<12} {'ROOT CAUSE':<20} {'VERDICT':<14} REPORT (kubectl logs)")
    for line in lines:
        print(f"{line['pod']:<12} {line['code']:<20} {line['verdict']:<14} "
              f"{line['message'][:150]}")
    print("\nexample report line as JSON:")
    print(json.dumps(lines[0], indent=None)[:900] if lines else "(none)")
    print("\nsome of its metrics (/metrics):")
    for row in metrics.splitlines():
        if row.startswith(("pulldoctor_probe_diagnosis{", "pulldoctor_pull_failures_total{")):
            print("  " + row)
    print(f"\n/readyz: {ready.strip()}; SIGTERM -> exited {agent.returncode} in {stopped:.2f}s")
    got = {str(line["pod"]): (line["code"], line["verdict"]) for line in lines}
    wrong = [pod for pod, expected in EXPECTED.items() if got.get(pod) != expected]
    for pod in wrong:
        print(f"  << {pod}: expected {EXPECTED[pod]}, got {got.get(pod)}")
    return len(wrong)


def _collect(agent: subprocess.Popen[str], want: int, timeout: float) -> list[dict[str, object]]:
    """Read the agent's JSON log until every expected pod has a diagnosis (or time runs out)."""
    latest: dict[str, dict[str, object]] = {}
    done = threading.Event()

    def read() -> None:
        assert agent.stdout is not None
        for raw in agent.stdout:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if record.get("event") == "pull_diagnosed":
                latest[str(record["pod"])] = record
            if all(pod in latest and (latest[pod]["code"], latest[pod]["verdict"]) == expected
                   for pod, expected in EXPECTED.items()):
                done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    return [latest[p] for p in EXPECTED if p in latest][:want]
