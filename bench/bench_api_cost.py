"""What one pulldoctor agent costs the Kubernetes API: requests per hour and open watches.

Why: a DaemonSet multiplies every request by the node count, so the per-node cost of the pod
watch (and, later, of the agent's own lookups) must be measured, not guessed. This runs a
:class:`agent.kube.PodWatcher` against ``tests/fakekube.py`` with N pods on its node, churn
(pods going into ErrImagePull/ImagePullBackOff with kubelet events, recovering, being
replaced) and optional disruptions, on a compressed clock (``--scale``: one real second is
``scale`` simulated seconds; watch timeout and bookmark interval are compressed alike), and
prints requests by kind per simulated hour, open watches, and a cluster-wide extrapolation.

What it refuses to do: talk to a real cluster, or count anything the fake did not see.

HOOK for the agent: pass ``--consumer module:factory`` (or ``run_bench(consumer=...)``). The
factory is called as ``factory(client, node)`` and returns the ``on_pod(kind, pod)``
callback the PodWatcher drives; everything it does through ``client`` (list_pod_events,
get_secret, get_service_account, create_event) hits the same fake and is counted. Without
it, the bench measures the pod watch alone.

``--agent`` makes the real :class:`agent.agent.Agent` the consumer (its ``on_pod``, Secret and
service-account reads, event listing on failures and starts, Warning Events): it starts the
loopback fleet, pushes ``bench/app-NN`` images, points the pods at the fleet's token registry
with a ``regcred`` Secret that pulls them (about one new generation in four names a tag that
does not exist, so its pull failures are real), and runs the agent with the default config on a
clock compressed like the bench's (``--scale``), so its own timers (Secret cache, probe
interval, Event rate limit, forced-probe limit) run at their default simulated periods.

Run from the repository root: ``/tmp/venv/bin/python bench/bench_api_cost.py --seconds 30``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.kube import KubeClient, OnPod, PodWatcher  # noqa: E402
from agent.model import Pod  # noqa: E402
from tests.fakekube import FakeKube, make_event, make_pod  # noqa: E402

__all__ = ["AgentConsumer", "BenchConfig", "BenchResult", "ConsumerFactory", "ImagePlan",
           "run_bench", "main"]

#: The hook: ``factory(client, node) -> on_pod``. See the module docstring.
ConsumerFactory = Callable[[KubeClient, str], OnPod]

NODE = "bench-node"
_SIM_WATCH_TIMEOUT = 300.0  # PodWatcher's default, seconds
_SIM_BOOKMARK_INTERVAL = 60.0  # the API server's bookmark cadence, seconds
_NAMESPACES = ("team-a", "team-b", "team-c")


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run; times in simulated seconds unless named ``real``."""

    pods: int = 110
    other_pods: int = 300  # pods on other nodes: filtered out, but they move resourceVersions
    real_seconds: float = 20.0
    scale: float = 60.0
    churn_per_minute: float = 20.0  # pod changes per simulated minute on this node
    other_churn_per_minute: float = 200.0
    compact_every: float = 0.0  # 0: never; else force 410 Gone at this simulated interval
    drop_every: float = 0.0  # 0: never; else cut the watch at this simulated interval
    nodes: int = 1000  # for the cluster-wide extrapolation only
    seed: int = 1


@dataclass
class BenchResult:
    """Counts seen by the fake, and the same per simulated hour."""

    config: BenchConfig
    simulated_hours: float
    requests: dict[str, int]
    per_hour: dict[str, float]
    total_per_hour: float
    open_watches_end: int
    max_open_watches: int
    watcher: dict[str, int | bool | str | None] = field(default_factory=dict)
    cluster_requests_per_second: float = 0.0


class ImagePlan:
    """Which image a pod generation runs, the words of its pull failure, its pull Secret.

    The default names an unreachable ``registry.example.com`` image per generation and an empty
    docker config: enough for the pod watch alone, where nothing probes.
    """

    secret: bytes = b'{"auths":{}}'

    def image(self, namespace: str, name: str, generation: int) -> str:
        return f"registry.example.com/{namespace}/{name}:{generation}"

    def failure(self, image: str) -> str:
        return f'failed to pull "{image}"'


class _Churn:
    """Drives pod and event changes on the fake at the configured simulated rates."""

    def __init__(self, fake: FakeKube, config: BenchConfig, plan: ImagePlan | None = None) -> None:
        self.fake, self.config = fake, config
        self.plan = plan or ImagePlan()
        self.rng = random.Random(config.seed)
        self.state: dict[str, int] = {}  # pod name -> 0 running, 1 ErrImagePull, 2 BackOff
        self.namespace: dict[str, str] = {}
        self.generation: dict[str, int] = {}

    def populate(self) -> None:
        for i in range(self.config.pods):
            self._create(f"app-{i}", NODE)
        for i in range(self.config.other_pods):
            self._create(f"elsewhere-{i}", f"node-{i % 50}")
        for ns in _NAMESPACES:
            self.fake.add_service_account(ns, "default", ["regcred"])
            self.fake.add_secret(ns, "regcred", {".dockerconfigjson": self.plan.secret})

    def _create(self, name: str, node: str) -> None:
        ns = self.namespace.setdefault(name, self.rng.choice(_NAMESPACES))
        images = [self.plan.image(ns, name, self.generation.get(name, 0))]
        self.fake.add_pod(make_pod(name, ns, node, images, image_pull_secrets=["regcred"]))
        self.state[name] = 0

    def step_mine(self) -> None:
        name = f"app-{self.rng.randrange(self.config.pods)}"
        ns = self.namespace[name]
        image = self.fake.get("pods", ns, name)["spec"]["containers"][0]["image"]
        state = self.state[name]
        if state == 0 and self.rng.random() < 0.2:  # replaced by its controller
            self.fake.delete_pod(ns, name)
            self.generation[name] = self.generation.get(name, 0) + 1
            self._create(name, NODE)
            return
        waiting = {
            0: {"app": ("ErrImagePull", self.plan.failure(image))},
            1: {"app": ("ImagePullBackOff", f'Back-off pulling image "{image}"')},
            2: {},
        }[state]
        updated = make_pod(name, ns, NODE, [image], image_pull_secrets=["regcred"], waiting=waiting)
        stored = self.fake.update_pod(updated)
        if state == 0:
            self.fake.add_event(make_event(stored))
        elif state == 1:
            self.fake.add_event(
                make_event(stored, reason="BackOff", type="Normal", message=waiting["app"][1])
            )
        self.state[name] = (state + 1) % 3

    def step_other(self) -> None:
        name = f"elsewhere-{self.rng.randrange(self.config.other_pods)}"
        self.fake.update_pod(self.fake.get("pods", self.namespace[name], name))


def _recorder(_client: KubeClient, _node: str) -> OnPod:
    """Default consumer: keep the pod view, make no requests (the pod watch's cost alone)."""
    view: dict[str, Pod] = {}

    def on_pod(kind: str, pod: Pod | None) -> None:
        if pod is not None:
            if pod.deleted:
                view.pop(pod.uid, None)
            else:
                view[pod.uid] = pod

    return on_pod


class FleetImagePlan(ImagePlan):
    """Pods on the fleet's token registry: ``bench/app-NN`` tags, a Secret that pulls them."""

    def __init__(self, fleet: Any) -> None:
        from tests.fleet import ALICE
        from tests.scenario import dockerconfig

        self.host = fleet.registries["token"].host
        self.secret = dockerconfig({self.host: ALICE})

    def image(self, namespace: str, name: str, generation: int) -> str:
        from bench.bench_continuous import BENCH_REPOS, BENCH_TAGS

        index = sum(name.encode()) % BENCH_REPOS  # stable per pod name
        tag = f"gone-{generation}" if generation % 4 == 3 else \
            BENCH_TAGS[generation % len(BENCH_TAGS)]
        return f"{self.host}/bench/app-{index:02d}:{tag}"

    def failure(self, image: str) -> str:
        from tests.scenario import RPC, WORDS

        return RPC.format(img=image) + WORDS["notfound"].format(img=image)


class AgentConsumer:
    """The real Agent as the consumer: ``consumer(client, node)`` builds and starts it.

    Default :class:`~agent.config.AgentConfig` except the node paths (the fleet's resolv.conf,
    hosts file and certs.d, nothing else of the host); its clock runs ``scale`` times faster
    than real time, like the bench's, so its timers keep their default simulated periods.
    """

    def __init__(self, fleet: Any, workdir: Path, scale: float) -> None:
        self.fleet, self.workdir, self.scale = fleet, workdir, scale
        self.agent: Any = None
        self.log: Any = None
        self._thread: threading.Thread | None = None

    def __call__(self, client: KubeClient, node: str) -> OnPod:
        from prometheus_client import CollectorRegistry

        from agent.agent import Agent
        from agent.config import AgentConfig
        from agent.metrics import Metrics
        from tests.agent.recorder import RecordingLog

        fleet, none = self.fleet, self.workdir / "absent"
        config = AgentConfig(
            listen_address="127.0.0.1:0", resolv_conf=fleet.resolv_conf,
            hosts_file=fleet.hosts_file, certs_dirs=(fleet.certs_dir,), ca_bundles=(),
            node_docker_configs=(), credential_provider_config=None, proxy_dropin_dirs=(),
            crio_registries_conf=none, crio_registries_dir=none, host_root=none)
        began, scale = time.monotonic(), self.scale

        def clock() -> float:
            return began + (time.monotonic() - began) * scale

        self.log = RecordingLog()
        self.agent = Agent(config, node=node, kube=client, log=self.log, clock=clock,
                           metrics=Metrics(CollectorRegistry(), version="bench"))
        self._thread = threading.Thread(target=self.agent.run, name="agent", daemon=True)
        self._thread.start()
        on_pod: OnPod = self.agent.on_pod
        return on_pod

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
        if self._thread is not None:
            self._thread.join(5)

    def summary(self) -> dict[str, int]:
        """What the agent did: log events by name, and its probe targets."""
        counts: dict[str, int] = {}
        for record in self.log.records if self.log else []:
            counts[record["event"]] = counts.get(record["event"], 0) + 1
        counts["targets"] = len(getattr(self.agent, "_targets", {}))
        return dict(sorted(counts.items()))


def _drive(fake: FakeKube, churn: _Churn, config: BenchConfig, stop: threading.Event) -> None:
    """Apply churn and disruptions on the simulated clock until ``stop``."""
    rng = random.Random(config.seed + 1)
    start = time.monotonic()
    next_compact = config.compact_every or float("inf")
    next_drop = config.drop_every or float("inf")
    per_real_second_mine = config.churn_per_minute / 60.0 * config.scale
    per_real_second_other = (
        config.other_churn_per_minute / 60.0 * config.scale if config.other_pods else 0
    )
    tick = 0.05
    while not stop.wait(tick):
        for _ in range(_poisson(rng, per_real_second_mine * tick)):
            churn.step_mine()
        for _ in range(_poisson(rng, per_real_second_other * tick)):
            churn.step_other()
        simulated = (time.monotonic() - start) * config.scale
        if simulated >= next_compact:
            fake.compact()
            fake.drop_watches()
            next_compact += config.compact_every
        if simulated >= next_drop:
            fake.drop_watches()
            next_drop += config.drop_every


def _poisson(rng: random.Random, mean: float) -> int:
    """Events in one tick: Poisson-distributed with the given mean."""
    count, threshold, product = 0, pow(2.718281828459045, -mean), rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def run_bench(config: BenchConfig, consumer: ConsumerFactory | None = None,
              plan: ImagePlan | None = None) -> BenchResult:
    """Run one benchmark and return its counts; see the module docstring for the hook.

    A consumer with a ``close()`` method (like :class:`AgentConsumer`) is closed before the
    fake API server stops.
    """
    with FakeKube(bookmark_interval=_SIM_BOOKMARK_INTERVAL / config.scale) as fake:
        churn = _Churn(fake, config, plan)
        churn.populate()
        fake.reset_log()
        stop = threading.Event()
        client = KubeClient(fake.url, timeout=10.0)
        on_pod = (consumer or _recorder)(client, NODE)
        watcher = PodWatcher(
            client,
            NODE,
            on_pod,
            stop=stop,
            watch_timeout=_SIM_WATCH_TIMEOUT / config.scale,
            read_grace=15.0 / config.scale + 1.0,
            backoff_base=0.5 / config.scale,
            backoff_max=30.0 / config.scale,
        )
        threads = [
            threading.Thread(target=watcher.run, name="watcher"),
            threading.Thread(target=_drive, args=(fake, churn, config, stop), name="churn"),
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(config.real_seconds)
        stop.set()
        for thread in threads:
            thread.join(10)
        elapsed = time.monotonic() - started
        open_end = fake.open_watches
        close = getattr(consumer, "close", None)
        if close is not None:
            close()
        client.close()
        return _result(config, fake, watcher, elapsed, open_end)


def _result(
    config: BenchConfig, fake: FakeKube, watcher: PodWatcher, elapsed: float, open_end: int
) -> BenchResult:
    hours = elapsed * config.scale / 3600.0
    requests = dict(sorted(fake.counts().items()))
    per_hour = {kind: count / hours for kind, count in requests.items()}
    total = sum(per_hour.values())
    counters = ("lists", "watches", "errors", "gone", "events", "bad_objects", "callback_errors")
    stats: dict[str, int | bool | str | None] = {name: getattr(watcher, name) for name in counters}
    stats["resource_version"] = watcher.resource_version
    return BenchResult(
        config=config,
        simulated_hours=hours,
        requests=requests,
        per_hour=per_hour,
        total_per_hour=total,
        open_watches_end=open_end,
        max_open_watches=fake.max_open_watches,
        watcher=stats,
        cluster_requests_per_second=total * config.nodes / 3600.0,
    )


def _report(result: BenchResult) -> str:
    c = result.config
    lines = [
        f"pulldoctor API cost: 1 node, {c.pods} pods on it, {c.other_pods} elsewhere; "
        f"churn {c.churn_per_minute:g}/min here, {c.other_churn_per_minute:g}/min elsewhere",
        f"{c.real_seconds:g} s real x{c.scale:g} = {result.simulated_hours * 60:.1f} simulated "
        "min; "
        f"watch timeout {_SIM_WATCH_TIMEOUT:g} s, bookmarks every {_SIM_BOOKMARK_INTERVAL:g} s"
        + (f", compaction every {c.compact_every:g} s" if c.compact_every else "")
        + (f", watch cut every {c.drop_every:g} s" if c.drop_every else ""),
        f"{'request kind':<24}{'count':>8}{'per hour':>12}",
    ]
    for kind, count in result.requests.items():
        lines.append(f"{kind:<24}{count:>8}{result.per_hour[kind]:>12.1f}")
    lines += [
        f"{'total':<24}{sum(result.requests.values()):>8}{result.total_per_hour:>12.1f}",
        f"open watches: {result.open_watches_end} at the end, {result.max_open_watches} at most",
        "watcher: " + " ".join(f"{k}={v}" for k, v in result.watcher.items()),
        f"{c.nodes} nodes: {result.cluster_requests_per_second:.2f} requests/s cluster-wide, "
        f"{c.nodes * result.max_open_watches} open watches",
    ]
    return "\n".join(lines)


def _load_consumer(spec: str) -> ConsumerFactory:
    module, _, name = spec.partition(":")
    factory: ConsumerFactory = getattr(importlib.import_module(module), name)
    return factory


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=BenchConfig.pods)
    parser.add_argument("--other-pods", type=int, default=BenchConfig.other_pods)
    parser.add_argument("--seconds", type=float, default=BenchConfig.real_seconds, help="real")
    parser.add_argument("--scale", type=float, default=BenchConfig.scale)
    parser.add_argument("--churn-per-minute", type=float, default=BenchConfig.churn_per_minute)
    parser.add_argument(
        "--other-churn-per-minute", type=float, default=BenchConfig.other_churn_per_minute
    )
    parser.add_argument("--compact-every", type=float, default=0.0, help="simulated seconds")
    parser.add_argument("--drop-every", type=float, default=0.0, help="simulated seconds")
    parser.add_argument("--nodes", type=int, default=BenchConfig.nodes)
    parser.add_argument("--seed", type=int, default=BenchConfig.seed)
    parser.add_argument("--consumer", help="module:factory returning on_pod (the agent hook)")
    parser.add_argument("--agent", action="store_true",
                        help="the real Agent as the consumer, pods on the loopback fleet")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    config = BenchConfig(
        pods=args.pods,
        other_pods=args.other_pods,
        real_seconds=args.seconds,
        scale=args.scale,
        churn_per_minute=args.churn_per_minute,
        other_churn_per_minute=args.other_churn_per_minute,
        compact_every=args.compact_every,
        drop_every=args.drop_every,
        nodes=args.nodes,
        seed=args.seed,
    )
    if args.agent:
        return _run_with_agent(config, args.json)
    consumer = _load_consumer(args.consumer) if args.consumer else None
    result = run_bench(config, consumer)
    print(json.dumps(asdict(result), indent=2) if args.json else _report(result))
    return 0


def _run_with_agent(config: BenchConfig, as_json: bool) -> int:
    from bench.bench_continuous import push_bench_images
    from tests.fleet import Fleet

    with tempfile.TemporaryDirectory(prefix="pulldoctor-api-cost-") as tmp, \
            Fleet.start(Path(tmp) / "fleet") as fleet:
        push_bench_images(fleet.registries["plain"].url)
        consumer = AgentConsumer(fleet, Path(tmp), config.scale)
        result = run_bench(config, consumer, FleetImagePlan(fleet))
        summary = consumer.summary()
    if as_json:
        print(json.dumps({**asdict(result), "agent": summary}, indent=2))
    else:
        print(_report(result))
        print("consumer: the real Agent (default config, clock x"
              f"{config.scale:g}); its log events: "
              + ", ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
