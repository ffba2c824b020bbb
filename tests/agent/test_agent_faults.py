"""The agent against a misbehaving Kubernetes API: it stays up, says so in /readyz, loses nothing.

The agent and its pod watcher run in-process, as ``pulldoctor agent`` wires them,
against the fake API server (real HTTP on loopback) and the real registry fleet.
Each test breaks the API in one way (a watch dropped mid-stream, 410 Gone after
compaction, 429 with Retry-After, 500s, a slow API, the API down at start or
mid-run), then checks that :meth:`Agent.healthy` never turned false, that
:meth:`Agent.ready` reported the outage with its reason and recovered, and that
a pod which began to fail during the outage is diagnosed afterwards. Recovery
times are printed (``pytest -s``) so the hardening report can quote them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.config import AgentConfig
from agent.kube import KubeClient, PodWatcher
from agent.metrics import Metrics
from tests.agent.recorder import RecordingLog
from tests.fakekube import FakeKube, make_pod, wait_for
from tests.fleet import ALICE, Fleet
from tests.scenario import NODE, RPC, WORDS, agent_config, dockerconfig

WRONG = "pw-faults-not-it"
RECOVERY_LIMIT = 15.0  # seconds from the API's return to a diagnosis, with the test backoff


@dataclass
class Sampler:
    """Samples healthy() and ready() every 20 ms on its own thread while a fault lasts."""

    agent: Agent
    healthy: list[bool] = field(default_factory=list)
    ready: list[tuple[float, bool, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.healthy.append(self.agent.healthy())
            ok, reason = self.agent.ready()
            self.ready.append((time.monotonic(), ok, reason))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def outage_reasons(self) -> set[str]:
        return {reason for _, ok, reason in self.ready if not ok}


@dataclass
class World:
    fake: FakeKube
    agent: Agent
    watcher: PodWatcher
    log: RecordingLog
    image: str
    threads: list[threading.Thread]

    def diagnosis(self, pod: str) -> dict[str, Any] | None:
        found = [d for d in self.log.events("pull_diagnosed") if d["pod"] == pod]
        return found[-1] if found else None

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def failing(self, name: str, *, uid: str | None = None) -> dict[str, Any]:
        """A pod of node A whose pull fails with a wrong password (auth_invalid, agree)."""
        message = RPC.format(img=self.image) + WORDS["oauth401"]
        return make_pod(name, "shop", NODE, [self.image], image_pull_secrets=["wrongpw"],
                        waiting={"app": ("ErrImagePull", message)}, uid=uid)

    def diagnosed(self, pod: str) -> bool:
        found = self.diagnosis(pod)
        return found is not None and (found["code"], found["verdict"]) == ("auth_invalid", "agree")

    def posted(self, pod: str) -> bool:
        return any(e.get("reason") == "PullDiagnosis" and e["involvedObject"]["name"] == pod
                   for e in self.fake.objects("events", "shop"))


def _config(fleet: Fleet, tmp_path: Path) -> AgentConfig:
    """The end-to-end test's config: the fleet's node view, fast Secret refresh, Events on."""
    return agent_config(fleet, tmp_path)


def _populate(fake: FakeKube, fleet: Fleet) -> str:
    token = fleet.registries["token"].host
    image = f"{token}/test/hello:v1"
    fake.add_secret("shop", "good", {".dockerconfigjson": dockerconfig({token: ALICE})})
    fake.add_secret("shop", "wrongpw", {".dockerconfigjson": dockerconfig(
        {token: (ALICE[0], WRONG)})})
    fake.add_service_account("shop", "default")
    # another image of the same registry: a working pull of *this* image would make the
    # failures below node-specific rather than agree
    fake.add_pod(make_pod("healthy", "shop", NODE, [f"{token}/test/multi:v1"],
                          image_pull_secrets=["good"]))
    return image


@pytest.fixture
def world(fleet: Fleet, tmp_path: Path) -> Iterator[World]:
    """The agent for node A with a fast-backoff watcher; started by the test (``world.start``)."""
    with FakeKube(bookmark_interval=0.5) as fake:
        image = _populate(fake, fleet)
        log, registry = RecordingLog(), CollectorRegistry()
        kube = KubeClient(fake.url, timeout=5)
        agent = Agent(_config(fleet, tmp_path), node=NODE, kube=kube,
                      metrics=Metrics(registry, version="t"), log=log)
        watcher = PodWatcher(kube, NODE, agent.on_pod, stop=agent.stop, backoff_base=0.1,
                             backoff_max=1.0, watch_timeout=5, read_grace=2)
        agent.watch_healthy = lambda: watcher.healthy
        agent.watch_error = lambda: watcher.last_error
        threads = [threading.Thread(target=watcher.run, daemon=True),
                   threading.Thread(target=agent.run, daemon=True)]
        world = World(fake, agent, watcher, log, image, threads)
        try:
            yield world
        finally:
            agent.close()
            fake.start()  # a test may leave it stopped; the watcher must not spin on it
            for thread in threads:
                thread.join(timeout=3)
            kube.close()


def _timed(predicate: Callable[[], bool], timeout: float = RECOVERY_LIMIT) -> float:
    """Seconds until ``predicate`` holds; fails the test when it never does."""
    began = time.monotonic()
    assert wait_for(predicate, timeout=timeout, interval=0.02), "did not recover in time"
    return time.monotonic() - began


def _report(fault: str, **seconds: float) -> None:
    figures = ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items())
    print(f"\n[fault] {fault}: {figures}")


def _started(world: World) -> None:
    world.start()
    assert wait_for(lambda: world.agent.ready()[0], timeout=20), world.agent.ready()


def test_watch_dropped_mid_stream(world: World) -> None:
    """A watch closed mid-stream is re-opened, and a pod failing right then is diagnosed."""
    _started(world)
    watches = world.fake.count("watch pods")
    sampler = Sampler(world.agent)
    world.fake.drop_watches()
    world.fake.add_pod(world.failing("during-drop"))
    rewatch = _timed(lambda: world.fake.count("watch pods") > watches
                     and world.fake.open_watches >= 1)
    diagnosed = _timed(lambda: world.diagnosed("during-drop"))
    sampler.stop()
    _report("watch dropped mid-stream", rewatch=rewatch, diagnosis=rewatch + diagnosed)
    assert all(sampler.healthy) and world.agent.ready()[0]


def test_gone_after_compaction_relists_and_finds_the_failure(world: World) -> None:
    """410 Gone on re-watch leads to a relist that finds a pod which failed during the outage."""
    _started(world)
    world.fake.add_pod(make_pod("victim", "shop", NODE, [world.image],
                                image_pull_secrets=["wrongpw"]))
    assert wait_for(lambda: "victim" in {p.name for p in world.agent._pods.values()}, timeout=10)
    lists = world.fake.count("list pods")
    sampler = Sampler(world.agent)
    world.fake.stop()
    world.fake.update_pod(world.failing("victim", uid=world.fake.get(
        "pods", "shop", "victim")["metadata"]["uid"]))
    world.fake.compact()  # the change is no longer in any watch history: only a list shows it
    assert wait_for(lambda: not world.agent.ready()[0], timeout=10)
    back = time.monotonic()
    world.fake.start()
    relist = _timed(lambda: world.fake.count("list pods") > lists)
    diagnosed = _timed(lambda: world.diagnosed("victim"), RECOVERY_LIMIT)
    _timed(lambda: world.agent.ready()[0])
    sampler.stop()
    _report("410 Gone after compaction", relist=relist, diagnosis=relist + diagnosed,
            ready=time.monotonic() - back)
    assert world.watcher.gone >= 1
    assert all(sampler.healthy)
    assert any("watch" in reason for reason in sampler.outage_reasons())


def test_429_with_retry_after_is_honoured(world: World) -> None:
    """Re-watches answered 429 wait at least Retry-After, /readyz names the 429, then recovers."""
    _started(world)
    world.fake.reset_log()
    world.fake.fail_next(2, 429, retry_after=1, kind="watch pods")
    sampler = Sampler(world.agent)
    began = time.monotonic()
    world.fake.drop_watches()
    world.fake.add_pod(world.failing("during-429"))
    _timed(lambda: world.fake.count("watch pods") >= 3 and world.fake.open_watches >= 1)
    rewatch = time.monotonic() - began
    diagnosed = _timed(lambda: world.diagnosed("during-429"))
    ready = _timed(lambda: world.agent.ready()[0])
    sampler.stop()
    _report("429 Retry-After: 1 (twice)", rewatch=rewatch, diagnosis=rewatch + diagnosed,
            ready=rewatch + diagnosed + ready)
    starts = [r.started for r in world.fake.requests if r.kind == "watch pods"]
    assert len(starts) >= 3
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(starts[:3])), starts
    assert any("429" in reason for reason in sampler.outage_reasons()), sampler.outage_reasons()
    assert all(sampler.healthy)


def test_500s_on_every_kind_of_request_lose_nothing(world: World) -> None:
    """500s on watch, Secret reads, event reads and the Event post: the diagnosis and the Event
    still arrive, and no wrong cause is ever logged on the way."""
    _started(world)
    sampler = Sampler(world.agent)
    began = time.monotonic()
    for kind in ("watch pods", "get secrets", "list events", "create events"):
        world.fake.fail_next(2, 500, kind=kind)
    world.fake.drop_watches()
    world.fake.add_pod(world.failing("during-500"))
    diagnosed = _timed(lambda: world.diagnosed("during-500"))
    posted = _timed(lambda: world.posted("during-500"))
    sampler.stop()
    _report("500s (2 each on watch, secret get, event list, event create)",
            diagnosis=diagnosed, event=diagnosed + posted, total=time.monotonic() - began)
    causes = {(d["code"], d["verdict"]) for d in world.log.events("pull_diagnosed")
              if d["pod"] == "during-500"}
    assert causes == {("auth_invalid", "agree")}, causes
    assert world.fake.count("create events", status=500) == 2
    assert all(sampler.healthy)


def test_slow_api_keeps_the_agent_live(world: World) -> None:
    """With every API answer taking 1.5 s the agent stays healthy and still diagnoses."""
    _started(world)
    sampler = Sampler(world.agent)
    world.fake.set_latency(1.5)
    try:
        world.fake.add_pod(world.failing("during-slow"))
        diagnosed = _timed(lambda: world.diagnosed("during-slow"), 30)
        posted = _timed(lambda: world.posted("during-slow"), 30)
        time.sleep(3)  # several secret-cache expiries, each re-reading Secrets at 1.5 s a read
    finally:
        world.fake.set_latency(0)
        sampler.stop()
    _report("slow API (1.5 s per request)", diagnosis=diagnosed, event=diagnosed + posted)
    assert all(sampler.healthy), sampler.healthy.count(False)


def test_api_down_at_start_then_up(world: World) -> None:
    """Started while the API is down, the agent is live and not ready (saying why); once the API
    is up it lists, becomes ready and diagnoses a pod that failed meanwhile."""
    world.fake.stop()
    world.fake.add_pod(world.failing("before-start"))
    sampler = Sampler(world.agent)
    world.start()
    time.sleep(2)
    ok, reason = world.agent.ready()
    assert not ok and "list pods on node node-a" in reason, reason
    assert world.agent.healthy()
    back = time.monotonic()
    world.fake.start()
    diagnosed = _timed(lambda: world.diagnosed("before-start"))
    _timed(lambda: world.agent.ready()[0])
    _timed(lambda: world.posted("before-start"))
    sampler.stop()
    _report("API down at start", diagnosis=diagnosed, ready=time.monotonic() - back)
    assert all(sampler.healthy)
    assert not any("token" in r or WRONG in r for r in sampler.outage_reasons())


def test_api_down_mid_run_keeps_known_diagnoses(world: World) -> None:
    """While the API is down no cached Secret turns into a spurious cause, and a pod that began
    failing during the outage is diagnosed once the API is back."""
    world.fake.add_pod(world.failing("known"))
    _started(world)
    assert wait_for(lambda: world.diagnosed("known"), timeout=20)
    before = len(world.log.events("pull_diagnosed"))
    world.fake.stop()
    uid = world.fake.get("pods", "shop", "healthy")["metadata"]["uid"]
    world.fake.update_pod(world.failing("healthy", uid=uid))
    time.sleep(3)  # several secret-cache expiries and target rebuilds while the API is down
    assert not world.agent.ready()[0]
    spurious = world.log.events("pull_diagnosed")[before:]
    assert not spurious, spurious
    back = time.monotonic()
    world.fake.start()
    diagnosed = _timed(lambda: world.diagnosed("healthy"))
    _timed(lambda: world.agent.ready()[0])
    _timed(lambda: world.posted("healthy"))
    _report("API down mid-run (3 s)", diagnosis=diagnosed, ready=time.monotonic() - back)
    assert world.diagnosis("known")["verdict"] == "agree"  # type: ignore[index]
