"""Process hygiene of ``pulldoctor agent``: it stops on SIGTERM; its queues and pool are bounded.

The SIGTERM tests run the real agent as a subprocess (kubeconfig to the fake API,
configuration pointing at the registry fleet), once idle and once while probes
hang on the fleet's silent and black-hole ports, and time the exit. The bound
tests drive :class:`agent.agent.Agent` in-process: a flood of pod updates must
not grow memory with the number of updates, and no more than ``concurrency``
probes may run at once. :class:`AgentProcess` is the subprocess harness that
``test_no_leaks`` uses too.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from agent.agent import MAX_PENDING_PODS, Agent
from agent.config import AgentConfig, EventsConfig, StaticTarget
from agent.credentials import CredentialResolver
from agent.kube import parse_pod
from agent.metrics import Metrics
from agent.model import Pod
from probes.credentials import Keyring
from tests.agent.recorder import RecordingLog
from tests.fakekube import FakeKube, make_pod, wait_for
from tests.fleet import Fleet
from tests.scenario import NODE, agent_settings, populate

ROOT = Path(__file__).resolve().parents[2]
STOP_LIMIT = 2.0  # seconds from SIGTERM to exit that the hardening issue asks for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def agent_config(fleet: Fleet, workdir: Path, port: int, **extra: Any) -> dict[str, Any]:
    """The agent's config file as a dict: the fleet's node view, nothing from this host."""
    settings: dict[str, Any] = {"listen_address": f"127.0.0.1:{port}",
                                "secret_cache_seconds": 5, **extra}  # extra may override
    return agent_settings(fleet, workdir, **settings)


def kubeconfig(url: str, token: str | None = None) -> dict[str, Any]:
    user = {"token": token} if token else {}
    return {"apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": url}}],
            "users": [{"name": "test", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}


@dataclass
class AgentProcess:
    """``pulldoctor agent --node node-a`` as a subprocess in its own work directory.

    Its cwd is ``workdir``, ``HOME`` is ``workdir/home`` and ``TMPDIR`` is
    ``workdir/tmp``; stdout and stderr go to files there so nothing it prints is lost.
    """

    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @classmethod
    def start(cls, fleet: Fleet, api_url: str, workdir: Path, *, token: str | None = None,
              command: Sequence[str] = (sys.executable, "-m", "agent.cli"),
              **config: Any) -> AgentProcess:
        port = free_port()
        for sub in ("home", "tmp"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        (workdir / "kubeconfig").write_text(json.dumps(kubeconfig(api_url, token)))
        (workdir / "config.yaml").write_text(
            yaml.safe_dump(agent_config(fleet, workdir, port, **config)))
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(HOME=str(workdir / "home"), TMPDIR=str(workdir / "tmp"),
                   PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
        argv = [*command, "agent", "--node", NODE, "--kubeconfig", str(workdir / "kubeconfig"),
                "--config", str(workdir / "config.yaml")]
        with open(workdir / "stdout", "wb") as out, open(workdir / "stderr", "wb") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=workdir, env=env)
        return cls(proc, port, workdir)

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of a GET on the agent's port (error statuses too)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, type(exc).__name__

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (a line that is not JSON is kept as text)."""
        out: list[dict[str, Any]] = []
        for line in (self.workdir / "stdout").read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = {"text": line}
            out.append(record if isinstance(record, dict) else {"text": line})
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == name]

    def output(self) -> str:
        """Everything it printed: stdout then stderr."""
        return "\n".join((self.workdir / n).read_text(errors="replace")
                         for n in ("stdout", "stderr"))

    def wait_ready(self, timeout: float = 30) -> None:
        assert wait_for(lambda: self.get("/readyz")[0] == 200, timeout=timeout,
                        interval=0.2), (self.get("/readyz"), self.output()[-3000:])

    def terminate(self) -> float:
        """Send SIGTERM; the seconds until the process had exited (killed after 10 s)."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        finally:
            self.kill()
        return time.monotonic() - began

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.5) as api:
        yield api


def _connections(pid: int, ports: set[int]) -> dict[int, set[str]]:
    """TCP states of ``pid``'s sockets by remote port, for remote ports in ``ports``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    states = {"01": "ESTABLISHED", "02": "SYN_SENT"}
    found: dict[int, set[str]] = {}
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = row.split()
        remote_port = int(cols[2].split(":")[1], 16)
        if cols[9] in inodes and remote_port in ports:
            found.setdefault(remote_port, set()).add(states.get(cols[3], cols[3]))
    return found


def test_sigterm_stops_the_idle_agent_within_two_seconds(fleet: Fleet, fake: FakeKube,
                                                         tmp_path: Path) -> None:
    """A ready agent watching the scenario's pods exits 0 within 2 s of SIGTERM."""
    populate(fake, fleet)
    agent = AgentProcess.start(fleet, fake.url, tmp_path)
    try:
        agent.wait_ready()
        seconds = agent.terminate()
    finally:
        agent.kill()
    print(f"\n[sigterm] idle agent: exited in {seconds:.2f}s")
    assert seconds < STOP_LIMIT and agent.proc.returncode == 0, (seconds, agent.output()[-2000:])
    assert agent.events("agent_stopped")


def test_sigterm_with_probes_hanging_on_silent_and_blackhole_ports(
        fleet: Fleet, fake: FakeKube, tmp_path: Path) -> None:
    """With probes stuck on a silent server and a black hole (30 s deadline), SIGTERM still
    ends the process within 2 s."""
    silent, blackhole = fleet.silent_port, fleet.blackhole_port
    targets = [{"registry": f"127.0.0.1:{silent}"}, {"registry": f"127.0.0.1:{blackhole}"},
               {"image": f"127.0.0.1:{silent}/team/app:v1"}]
    agent = AgentProcess.start(fleet, fake.url, tmp_path, probe_timeout_seconds=30,
                               static_targets=targets)
    try:
        assert wait_for(lambda: {silent, blackhole} <= _connections(agent.proc.pid, {
            silent, blackhole}).keys(), timeout=20, interval=0.1), agent.output()[-2000:]
        in_flight = _connections(agent.proc.pid, {silent, blackhole})
        seconds = agent.terminate()
    finally:
        agent.kill()
    print(f"\n[sigterm] probes in flight {in_flight}: exited in {seconds:.2f}s")
    assert "ESTABLISHED" in in_flight[silent] and "SYN_SENT" in in_flight[blackhole]
    assert seconds < STOP_LIMIT and agent.proc.returncode == 0, (seconds, agent.output()[-2000:])


def test_sigterm_while_the_loop_waits_on_a_slow_api(fleet: Fleet, fake: FakeKube,
                                                   tmp_path: Path) -> None:
    """SIGTERM while the loop is stuck reading a new Secret from an API that takes 8 s to answer
    still ends the process within 2 s (the watchdog exits and says so)."""
    populate(fake, fleet)
    agent = AgentProcess.start(fleet, fake.url, tmp_path)
    try:
        agent.wait_ready()
        fake.set_latency(8)
        fake.add_secret("shop", "fresh", {".dockerconfigjson": b'{"auths": {}}'})
        fake.add_pod(make_pod("newcomer", "shop", NODE, ["registry.example.com/a:v1"],
                              image_pull_secrets=["fresh"],
                              waiting={"app": ("ErrImagePull", "failed")}))
        assert wait_for(lambda: any(r.kind == "get secrets" and r.path.endswith("/fresh")
                                    for r in fake.requests), timeout=10)
        seconds = agent.terminate()
    finally:
        fake.set_latency(0)
        agent.kill()
    print(f"\n[sigterm] loop blocked on an 8 s API call: exited in {seconds:.2f}s")
    assert seconds < STOP_LIMIT and agent.proc.returncode == 0, (seconds, agent.output()[-2000:])
    assert agent.events("agent_stop_forced")


# --------------------------------------------------------------------------- bounds


def _offline_agent(tmp_path: Path, **changes: Any) -> tuple[Agent, RecordingLog]:
    config = AgentConfig(
        interval_seconds=60, concurrency=2, listen_address="127.0.0.1:0", startup_spread_seconds=0,
        events=EventsConfig(False, 0.0), resolv_conf=tmp_path / "resolv.conf",
        hosts_file=tmp_path / "hosts", certs_dirs=(), ca_bundles=(), node_docker_configs=(),
        credential_provider_config=None, proxy_dropin_dirs=(),
        crio_registries_conf=tmp_path / "none", crio_registries_dir=tmp_path / "none.d")
    log = RecordingLog()
    agent = Agent(replace(config, **changes), node=NODE, kube=None,
                  metrics=Metrics(CollectorRegistry(), version="t"), log=log)
    return agent, log


def _pods(count: int, generation: int) -> list[Pod]:
    """``count`` pods of node A waiting on a pull, with a message that changes per generation."""
    return [parse_pod(make_pod(
        f"p{i}", "shop", NODE, [f"registry.example.com/team/app{i}:v1"],
        uid=f"uid-{i}", waiting={"app": ("ErrImagePull", f"attempt {generation} failed")}))
        for i in range(count)]


def _flood(agent: Agent, pods: int, rounds: int) -> None:
    for generation in range(rounds):
        for pod in _pods(pods, generation):
            agent.on_pod("MODIFIED", pod)


def test_pod_update_flood_costs_memory_per_pod_not_per_update(tmp_path: Path) -> None:
    """Ten times more updates of the same 50 pods leave memory where it was; the latest
    state of each pod is what the loop applies."""
    agent, _ = _offline_agent(tmp_path)
    try:
        _flood(agent, 50, 20)  # warm up: allocator pools, parse caches
        tracemalloc.start()
        _flood(agent, 50, 20)
        small, _ = tracemalloc.get_traced_memory()
        _flood(agent, 50, 200)
        large, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"\n[flood] 1,000 updates: {small / 1024:.0f} KiB held; 10,000 updates: "
              f"{large / 1024:.0f} KiB held")
        assert len(agent._pending) == 50
        assert large - small < 256 * 1024, (small, large)  # was +5 MiB with a FIFO queue
        agent._drain()
        messages = {r.failure.message for r in agent._failures.values()}
        assert messages == {"attempt 199 failed"}
    finally:
        agent.close()


def test_flood_of_distinct_pods_is_capped_and_reported(tmp_path: Path) -> None:
    """More distinct pods than MAX_PENDING_PODS before the loop drains: the excess is dropped,
    counted and logged once, never buffered."""
    agent, log = _offline_agent(tmp_path)
    template = _pods(1, 0)[0]
    try:
        for i in range(MAX_PENDING_PODS + 500):
            agent.on_pod("ADDED", replace(template, uid=f"u{i}", name=f"p{i}"))
        assert len(agent._pending) == MAX_PENDING_PODS
        agent._drain()
        (warning,) = log.events("pod_queue_full")
        assert warning["dropped"] == 500
        assert len(agent._pods) == MAX_PENDING_PODS and not agent._pending
    finally:
        agent.close()


def test_relist_split_across_drains_keeps_listed_pods(tmp_path: Path) -> None:
    """A relist whose pods are drained before its end marker keeps them; pods it did not list
    and that did not change after it are dropped."""
    agent, _ = _offline_agent(tmp_path)
    a, b, c = _pods(3, 0)
    try:
        for pod in (a, b, c):
            agent.on_pod("SYNC", pod)
        agent.on_pod("RELISTED", None)
        agent._drain()
        agent.on_pod("SYNC", a)
        agent._drain()  # the loop ran in the middle of the next relist
        agent.on_pod("SYNC", b)
        agent.on_pod("RELISTED", None)
        agent.on_pod("MODIFIED", c)  # seen by the watch after the relist: still there
        agent._drain()
        assert set(agent._pods) == {a.uid, b.uid, c.uid}
        agent.on_pod("SYNC", a)
        agent.on_pod("RELISTED", None)
        agent._drain()
        assert set(agent._pods) == {a.uid}
    finally:
        agent.close()


def test_deleted_pods_leave_no_state_behind(tmp_path: Path) -> None:
    """Pods that come, fail and go leave no pod, failure or event count behind."""
    agent, _ = _offline_agent(tmp_path)
    try:
        for round_ in range(50):
            (pod,) = _pods(1, round_)
            pod = replace(pod, uid=f"churn-{round_}")
            agent.on_pod("ADDED", pod)
            agent._drain()
            agent._seen_events[(pod.uid, f"{pod.name}.event")] = 1  # as _read_events counts
            agent.on_pod("DELETED", replace(pod, deleted=True))
            agent._drain()
        assert not agent._pods and not agent._failures and not agent._seen_events
    finally:
        agent.close()


class _Missing(Exception):
    status = 404


class _GoneSecrets:
    """A Secret source whose every read fails as agent.kube's do: raised from a cause."""

    def get_secret(self, *, namespace: str, name: str) -> Any:
        try:
            raise OSError("the HTTP response")
        except OSError as exc:
            raise _Missing(name) from exc

    def get_service_account(self, *, namespace: str, name: str) -> Any:
        raise _Missing(name)


def test_rereading_a_missing_secret_keeps_one_error_not_a_chain() -> None:
    """Fifty re-reads of a missing Secret leave one cached error alive, not fifty (each used to
    hold the frame that caught it, and through it the previous error and its response)."""
    now = [0.0]
    resolver = CredentialResolver(_GoneSecrets(), Keyring(), ttl=1, clock=lambda: now[0])
    pod = parse_pod(make_pod("p", "shop", NODE, ["registry.example.com/a:v1"],
                             image_pull_secrets=["gone"]))
    for _ in range(50):
        now[0] += 2
        (problem,) = resolver.resolve(pod).problems
        assert problem.name == "gone"
    gc.collect()
    assert len([o for o in gc.get_objects() if isinstance(o, _Missing)]) <= 2


def test_probe_concurrency_never_exceeds_the_pool(fleet: Fleet, tmp_path: Path) -> None:
    """Eight targets hanging on the silent port with concurrency 2: at most two probes run,
    and the pool's queue never holds more than the loop handed it."""
    targets = tuple(StaticTarget(image=f"127.0.0.1:{fleet.silent_port}/t/app{i}:v1")
                    for i in range(8))
    agent, _ = _offline_agent(tmp_path, static_targets=targets, probe_timeout_seconds=1.0,
                              concurrency=2, resolv_conf=fleet.resolv_conf,
                              hosts_file=fleet.hosts_file)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    busiest, queued = 0, 0
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            running = sum(1 for f in agent._running.values() if f.running())
            busiest = max(busiest, running)
            queued = max(queued, agent.pool._work_queue.qsize())
            time.sleep(0.01)
        threads = [t for t in threading.enumerate() if t.name.startswith("pulldoctor-probe")]
    finally:
        agent.close()
        runner.join(3)
    print(f"\n[pool] concurrency 2: at most {busiest} probes running, {queued} queued, "
          f"{len(threads)} pool threads")
    assert busiest == 2 and len(threads) <= 2
    assert queued <= 2
