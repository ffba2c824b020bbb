"""Scale model: what a DaemonSet of agents costs one registry and the API, and how fast it sees.

Why: per-node costs that look small multiply by the node count. The issue "Performance and
scale" asks for defaults under which a 5,000-node cluster puts at most 10 requests/s on one
registry while a registry outage still shows within one minute on the nodes that pull from it.
This script answers with numbers for the schedule in main ("current") and, for comparison, the
schedule it replaced ("before": every image every 300 s).

1. **Measure** (``--measure``, default on): start the loopback fleet, build a real
   :class:`agent.agent.Agent` whose static targets are images of the token-auth and Basic-auth
   registries, and call ``Agent.probe_target`` on its targets in a fixed order, counting the
   requests the registry (its access log) and the token server saw for each step: the
   registry's endpoint check (``stop_after="challenge"``), an image probe right after it
   (endpoint results reused?), a token, the manifest of a single image, of an index, of a
   missing tag, an image probe once the endpoint results are gone (``ProbeCache.new_cycle``),
   a forced probe (``fresh``) with endpoint results older than ``FRESH_WINDOW``, and Basic
   auth's credential check. Every probe's diagnosis is checked. ``--no-measure`` uses the
   counts of the run recorded in docs/scale.md (:data:`RECORDED`).
2. **Simulate one node, current schedule**: a real ``Agent`` (no Kubernetes, a fake clock)
   with the node's images of one registry as targets; its own ``_rebuild_targets`` creates the
   endpoint target and the per-key intervals and start-up phases in its own ``Scheduler``; the
   model then drives that scheduler like ``Agent.run`` (0.5 s ticks, a probe ends within its
   tick) and charges each probe the measured requests under the cache's rules read from the
   code (``probes.cache``: endpoint results shared ``PREFIX_TTL_OK``, ``FRESH_WINDOW`` for a
   forced probe, all dropped by ``ProbeCache.new_cycle`` every ``CACHE_REFRESH`` + one tick;
   tokens per repository until ``TOKEN_MARGIN`` before expiry). Pull failures arrive at
   random (``--pull-failures`` per node-hour) and force a probe of one image through
   ``Scheduler.force``; their requests are counted apart. ``--startup pods`` (default) builds
   the targets as a pod-watching agent gets them: a first ``_rebuild_targets`` before the pod
   list arrives, then one with the images; ``static`` as a standalone agent with static targets.
3. **Before**: the old defaults (every image every 300 s ±20 %, new keys within 2 s, endpoint
   layers once per cache cycle restarted every interval), simulated with the same scheduler.
4. **Cluster and detection**: sample nodes superposed at random phases give requests per
   second at 1,000 and 5,000 nodes (mean, p99 second, busiest second) and the start-up burst
   when every agent starts within ``--rollout`` seconds; for failures starting at random times,
   the wait until the node's next periodic probe of the registry (an idle node), until the
   first of N nodes, until the next probe that runs the endpoint layers anew (node-local DNS),
   and after an outage of ``--outage`` seconds, until every target probed during it was probed
   again (the per-registry state is the worst of the targets' last results).

What it refuses to do: extrapolate a figure it did not compute from a measurement or from the
simulation; every printed number says which.

Usage: python bench/simulate_scale.py [--no-measure] [--images 10] [--samples 40] [--hours 12]
       [--startup pods|static] [--pull-failures 1] [--outage 600]
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.agent import CACHE_REFRESH, ENDPOINT, TICK  # noqa: E402
from agent.config import AgentConfig, StaticTarget  # noqa: E402
from agent.scheduler import Scheduler  # noqa: E402
from probes.cache import FRESH_WINDOW, PREFIX_TTL_OK, TOKEN_MARGIN  # noqa: E402

__all__ = ["StepCosts", "RECORDED", "NodeProfile", "Timeline", "simulate_current",
           "simulate_before", "measure_costs", "main"]

SCRAPE_INTERVAL = 30.0  # deploy/podmonitor.yaml
NODE_COUNTS = (1000, 5000)
BEFORE_INTERVAL = 300.0  # interval_seconds before commit 6d14681
#: API cost per node and hour, measured with the real Agent as consumer (docs/scale.md, runs A3
#: and A4: bench_api_cost.py --agent --seconds 30, 110 pods, churn 20 and 2 pod changes per
#: minute; 30 simulated minutes that include the agent's start).
API_PER_NODE_HOUR = {"churn 20/min": 1713.6, "churn 2/min": 333.8}


@dataclass(frozen=True)
class StepCosts:
    """HTTP requests one probe step sends: to the registry, or to the token server."""

    endpoint_check: int  # the registry's endpoint target (dns..challenge): GET /v2/
    challenge: int  # endpoint layers run by an image probe: GET /v2/
    image_after_check: int  # registry requests of an image probe right after the check
    token: int  # one token from the realm
    manifest: int  # manifest layer, single manifest found
    manifest_index: int  # manifest layer, an index (HEAD, then GET of the index)
    manifest_missing: int  # manifest layer, a tag that does not exist
    stale_prefix: int  # image probe, endpoint results dropped, token cached
    forced_aged: int  # forced (fresh) probe, endpoint results older than FRESH_WINDOW
    basic_check: int  # token layer with Basic auth: GET /v2/ with the credentials


#: The counts of the recorded run (docs/scale.md, run S3), for ``--no-measure``.
RECORDED = StepCosts(endpoint_check=1, challenge=1, image_after_check=1, token=1, manifest=1,
                     manifest_index=2, manifest_missing=3, stale_prefix=2, forced_aged=2,
                     basic_check=1)


# --------------------------------------------------------------------------- measure


def _fleet_config(fleet: Any, workdir: Path, **extra: Any) -> AgentConfig:
    none = workdir / "absent"
    return AgentConfig(
        listen_address="127.0.0.1:0", resolv_conf=fleet.resolv_conf, hosts_file=fleet.hosts_file,
        certs_dirs=(fleet.certs_dir,), ca_bundles=(), node_docker_configs=(),
        credential_provider_config=None, proxy_dropin_dirs=(), crio_registries_conf=none,
        crio_registries_dir=none, host_root=none, **extra)


def _agent(config: AgentConfig, clock: Any = time.monotonic) -> Any:
    from prometheus_client import CollectorRegistry

    from agent.agent import Agent
    from agent.metrics import Metrics
    from tests.agent.recorder import RecordingLog

    return Agent(config, node=None, kube=None, log=RecordingLog(), clock=clock,
                 metrics=Metrics(CollectorRegistry(), version="bench"))


def measure_costs(workdir: Path) -> StepCosts:
    """Count requests per step at the fleet's registries and token server, probing through
    a real Agent's ``probe_target`` (endpoint target, image targets, forced probe)."""
    from dataclasses import replace

    from bench.bench_continuous import RequestCounter
    from probes.cache import ProbeCache
    from tests.fleet import ALICE, Fleet
    from tests.scenario import dockerconfig

    with Fleet.start(workdir / "fleet") as fleet:
        token, basic = fleet.registries["token"].host, fleet.registries["basic"].host
        auth = workdir / "config.json"
        auth.write_bytes(dockerconfig({token: ALICE, basic: ALICE}))
        images = [f"{token}/test/hello:v1", f"{token}/test/multi:v1", f"{token}/test/hello:gone",
                  f"{basic}/test/hello:v1"]
        agent = _agent(_fleet_config(fleet, workdir, static_targets=tuple(
            StaticTarget(image=i, docker_config=auth) for i in images)))
        counter = RequestCounter(fleet, "pulldoctor/")
        try:
            agent._rebuild_targets()
            keys = {k.reference: k for k in agent._targets}  # images, and each registry

            def probe(name: str, expect: str, fresh: bool = False) -> tuple[int, int]:
                counter.mark()
                outcome = agent.probe_target(keys[name], fresh=fresh)
                if outcome is None or outcome.code.value != expect:
                    got = outcome.code.value if outcome else None
                    raise RuntimeError(f"{name}: expected {expect}, got {got}")
                counts = counter.counts()
                registry = sum(sum(v.values()) for k, v in counts.items() if k != "token-server")
                return registry, sum(counts.get("token-server", {}).values())

            check = probe(token, "ok")  # endpoint check, nothing cached: GET /v2/
            after = probe(f"{token}/test/hello:v1", "ok")  # endpoint reused? token, HEAD
            index = probe(f"{token}/test/multi:v1", "ok")  # token (other repo), HEAD, GET
            missing = probe(f"{token}/test/hello:gone", "image_not_found")  # token shared
            agent.cache.new_cycle()  # as Agent.run does every CACHE_REFRESH seconds
            stale = probe(f"{token}/test/hello:v1", "ok")  # GET /v2/ again, token cached
            for key_, prefix in list(agent.cache._prefixes.items()):  # age it past the window
                agent.cache._prefixes[key_] = replace(prefix, at=prefix.at - FRESH_WINDOW - 1)
            forced = probe(f"{token}/test/hello:v1", "ok", fresh=True)
            agent.cache = ProbeCache()
            cold = probe(f"{token}/test/hello:v1", "ok")  # nothing shared
            probe(basic, "ok")
            basic_image = probe(f"{basic}/test/hello:v1", "ok")
        finally:
            agent.close()
    manifest = cold[0] - check[0]  # a cold image probe: GET /v2/ (as the check) + manifest
    return StepCosts(endpoint_check=check[0], challenge=check[0], image_after_check=after[0],
                     token=after[1], manifest=manifest,
                     manifest_index=index[0], manifest_missing=missing[0],
                     stale_prefix=stale[0], forced_aged=forced[0],
                     basic_check=basic_image[0] - after[0])


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class NodeProfile:
    """One node's use of one registry."""

    images: int = 10  # distinct images (targets) from the registry on the node
    repos: int = 10  # distinct repositories among them (tokens are per repository)
    index_fraction: float = 0.5  # multi-arch images: HEAD then GET of the index
    auth: str = "bearer"  # bearer | basic | anonymous
    token_lifetime: float = 300.0  # Docker Hub's and the fleet's token lifetime


@dataclass
class Timeline:
    """What one simulated node sent and when (seconds since the agent started)."""

    registry: list[float] = field(default_factory=list)  # periodic probes, one per request
    token: list[float] = field(default_factory=list)
    forced_registry: list[float] = field(default_factory=list)  # forced probes' requests
    forced_token: list[float] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)  # start of every periodic probe
    dns_fresh: list[float] = field(default_factory=list)  # probes that ran the endpoint layers
    by_key: dict[str, list[float]] = field(default_factory=dict)  # periodic probes per target
    forced: int = 0


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _images(node: NodeProfile, host: str = "registry.example") -> dict[str, tuple[str, bool]]:
    """reference -> (repository, is an index)"""
    out = {}
    for i in range(node.images):
        repo = f"team/app-{i % node.repos}"
        out[f"{host}/{repo}:v{i}"] = (repo, i < node.images * node.index_fraction)
    return out


class _Costs:
    """The requests of one probe under the cache's rules (probes.cache, agent.agent)."""

    def __init__(self, node: NodeProfile, costs: StepCosts, out: Timeline) -> None:
        self.node, self.costs, self.out = node, costs, out
        self.prefix_at: float | None = None
        self.tokens: dict[str, float] = {}

    def endpoint_layers(self, now: float, fresh: bool, forced: bool) -> None:
        refresh = CACHE_REFRESH + TICK  # Agent.run: new_cycle() at the first tick after 60 s
        cleared = math.floor(now / refresh) * refresh
        max_age = FRESH_WINDOW if fresh else PREFIX_TTL_OK
        if self.prefix_at is not None and now - self.prefix_at <= max_age and \
                self.prefix_at >= cleared:
            return
        self.prefix_at = now
        (self.out.forced_registry if forced else self.out.registry).extend(
            [now] * self.costs.challenge)
        if not forced:
            self.out.dns_fresh.append(now)

    def image(self, now: float, repo: str, is_index: bool, forced: bool) -> None:
        costs, node = self.costs, self.node
        registry = self.out.forced_registry if forced else self.out.registry
        token = self.out.forced_token if forced else self.out.token
        if node.auth == "basic":
            registry.extend([now] * costs.basic_check)
        if node.auth == "bearer" and self.tokens.get(repo, -1.0) - TOKEN_MARGIN <= now:
            token.extend([now] * costs.token)
            self.tokens[repo] = now + node.token_lifetime
        registry.extend([now] * (costs.manifest_index if is_index else costs.manifest))


def _sim_agent(node: NodeProfile, clock: _Clock, rng: random.Random, startup: str,
               config: AgentConfig) -> tuple[Any, dict[str, tuple[str, bool]]]:
    """A real Agent (no Kubernetes) whose own ``_rebuild_targets`` schedules the images."""
    images = _images(node)
    absent = Path(tempfile.gettempdir()) / "pulldoctor-simulate-absent"
    config = AgentConfig(**{**{f: getattr(config, f) for f in config.__dataclass_fields__},
                            "static_targets": tuple(StaticTarget(image=i) for i in images),
                            "resolv_conf": absent, "hosts_file": absent, "certs_dirs": (),
                            "ca_bundles": (), "node_docker_configs": (),
                            "credential_provider_config": None, "proxy_dropin_dirs": (),
                            "crio_registries_conf": absent, "crio_registries_dir": absent,
                            "host_root": absent})
    agent = _agent(config, clock)
    agent.scheduler = Scheduler(interval=config.interval_seconds, jitter=config.jitter,
                                min_forced_interval=config.failure_probe_min_interval_seconds,
                                clock=clock, rng=rng)
    if startup == "pods":  # the first rebuild runs before the pod list has arrived
        static, agent._static = agent._static, []
        agent._rebuild_targets()
        agent._static = static
    agent._rebuild_targets()
    return agent, images


def simulate_current(node: NodeProfile, costs: StepCosts, hours: float, seed: int, *,
                     config: AgentConfig, startup: str = "pods",
                     pull_failures: float = 1.0) -> Timeline:
    """One node's requests to one registry over ``hours`` with the schedule in main."""
    rng, clock, out = random.Random(seed), _Clock(), Timeline()
    agent, images = _sim_agent(node, clock, rng, startup, config)
    try:
        scheduler, targets = agent.scheduler, dict(agent._targets)
        image_keys = [k for k, i in targets.items() if i.kind == "image"]
        end = hours * 3600.0
        failures, at = [], 0.0
        while pull_failures > 0:
            at += rng.expovariate(pull_failures / 3600.0)
            if at >= end:
                break
            failures.append((at, rng.choice(image_keys)))
        model, forced, next_failure = _Costs(node, costs, out), set(), 0
        while clock.now < end:
            while next_failure < len(failures) and failures[next_failure][0] <= clock.now:
                key = failures[next_failure][1]
                next_failure += 1
                if scheduler.force(key):
                    forced.add(key)
            while due := scheduler.due(config.concurrency):
                for key in due:
                    _probe(model, out, targets[key], key, images, clock.now, key in forced)
                    forced.discard(key)
                    scheduler.done(key)
            wakeups = [w for w in (scheduler.next_wakeup(),
                                   failures[next_failure][0] if next_failure < len(failures)
                                   else None) if w is not None]
            target = max(min(wakeups, default=clock.now + TICK), clock.now + TICK)
            clock.now = math.ceil(target / TICK) * TICK
    finally:
        agent.close()
    return out


def _probe(model: _Costs, out: Timeline, info: Any, key: Any,
           images: dict[str, tuple[str, bool]], now: float, forced: bool) -> None:
    model.endpoint_layers(now, fresh=forced, forced=forced)
    if info.kind == "image":
        repo, is_index = images[key.reference]
        model.image(now, repo, is_index, forced)
    if forced:
        out.forced += 1
    else:
        out.probes.append(now)
        out.by_key.setdefault(key.reference + "|" + key.credentials, []).append(now)


def simulate_before(node: NodeProfile, costs: StepCosts, hours: float, seed: int, *,
                    concurrency: int = 4, jitter: float = 0.2) -> Timeline:
    """The replaced schedule: every image every 300 s ±20 %, new keys within 2 s, endpoint
    layers once per cache cycle (restarted every interval), tokens until expiry."""
    rng, clock, out = random.Random(seed), _Clock(), Timeline()
    images = list(_images(node).values())
    scheduler = Scheduler(interval=BEFORE_INTERVAL, jitter=jitter, min_forced_interval=30.0,
                          clock=clock, rng=rng)
    scheduler.sync(range(len(images)))
    model = _Costs(node, costs, out)
    cycle_start, prefix_done, end = 0.0, False, hours * 3600.0
    while clock.now < end:
        if clock.now - cycle_start > BEFORE_INTERVAL:
            cycle_start, prefix_done = clock.now, False  # ProbeCache.new_cycle()
        for key in scheduler.due(concurrency):
            repo, is_index = images[int(key)]  # type: ignore[call-overload]
            if not prefix_done:
                out.registry.extend([clock.now] * costs.challenge)
                out.dns_fresh.append(clock.now)
                prefix_done = True
            model.image(clock.now, repo, is_index, forced=False)
            out.probes.append(clock.now)
            out.by_key.setdefault(str(key), []).append(clock.now)
            scheduler.done(key)
        wakeups = [w for w in (scheduler.next_wakeup(), cycle_start + BEFORE_INTERVAL + TICK)
                   if w is not None]
        target = max(min(wakeups), clock.now + TICK)
        clock.now = math.ceil(target / TICK) * TICK
    return out


# --------------------------------------------------------------------------- aggregate


@dataclass
class Rates:
    """Per-node and cluster figures of one schedule and profile."""

    registry_per_node_hour: float
    token_per_node_hour: float
    probes_per_node_hour: float
    forced_registry_per_node_hour: float
    forced_token_per_node_hour: float
    cluster: dict[int, dict[str, float]]
    startup_peak: dict[int, tuple[float, float]]  # (registry, registry + token)


def _steady(times: list[float], start: float, end: float) -> list[float]:
    return [t - start for t in times if start <= t < end]


def aggregate(timelines: list[Timeline], hours: float, warmup: float, rng: random.Random,
              rollout: float) -> Rates:
    window = hours * 3600.0 - warmup
    hour = window / 3600.0

    def per_hour(pick: Any) -> float:
        return statistics.mean(len(_steady(pick(t), warmup, warmup + window))
                               for t in timelines) / hour

    reg, tok = per_hour(lambda t: t.registry), per_hour(lambda t: t.token)
    cluster, startup = {}, {}
    for nodes in NODE_COUNTS:
        seconds = _superpose([_steady(t.registry, warmup, warmup + window) for t in timelines],
                             nodes, window, rng)
        cluster[nodes] = {"mean": nodes * reg / 3600.0, "peak": max(seconds.values()),
                          "p99": _p99_of_seconds(seconds, window),
                          "token": nodes * tok / 3600.0}
        startup[nodes] = (_startup_peak([t.registry for t in timelines], nodes, rng, rollout),
                          _startup_peak([sorted(t.registry + t.token) for t in timelines],
                                        nodes, rng, rollout))
    return Rates(reg, tok, per_hour(lambda t: t.probes), per_hour(lambda t: t.forced_registry),
                 per_hour(lambda t: t.forced_token), cluster, startup)


def _superpose(samples: list[list[float]], nodes: int, window: float,
               rng: random.Random) -> Counter[int]:
    """Requests per second of ``nodes`` agents, each a sample node at a random phase."""
    seconds: Counter[int] = Counter()
    for index in range(nodes):
        shift = rng.uniform(0, window)
        for t in samples[index % len(samples)]:
            seconds[int((t + shift) % window)] += 1
    return seconds


def _p99_of_seconds(seconds: Counter[int], window: float) -> float:
    values = sorted([seconds.get(s, 0) for s in range(int(window))])
    return float(values[int(0.99 * (len(values) - 1))])


def _startup_peak(samples: list[list[float]], nodes: int, rng: random.Random,
                  rollout: float) -> float:
    """Busiest second when ``nodes`` agents start within ``rollout`` seconds of each other."""
    seconds: Counter[int] = Counter()
    for index in range(nodes):
        offset = rng.uniform(0, rollout)
        for t in samples[index % len(samples)]:
            if t > 900:
                break
            seconds[int(t + offset)] += 1
    return float(max(seconds.values()))


# --------------------------------------------------------------------------- detection


def detection(timelines: list[Timeline], warmup: float, hours: float, rng: random.Random,
              outage_seconds: float, tail: float, trials: int = 4000) -> dict[str, list[float]]:
    """Seconds from a failure's start to the node's first periodic probe that can see it, and
    from the end of an outage to the last re-probe of a target that failed during it."""
    end = hours * 3600.0
    outage, dns_local, recovery = [], [], []
    for trial in range(trials):
        node = timelines[trial % len(timelines)]
        start = rng.uniform(warmup, end - tail)
        outage.append(_first_after(node.probes, start) - start)
        dns_local.append(_first_after(node.dns_fresh, start) - start)
        back = start + outage_seconds
        waits = [_first_after(times, back) - back for times in node.by_key.values()
                 if _first_after(times, start) < back]  # failed during the outage
        recovery.append(max(waits, default=0.0))
    out = {"outage": outage, "dns": dns_local, "recovery": recovery}
    for nodes in NODE_COUNTS:  # independent nodes: the earliest of N draws of a node's wait
        out[f"cluster {nodes}"] = [min(rng.choice(outage) for _ in range(nodes))
                                   for _ in range(100)]
    return out


def _first_after(times: list[float], start: float) -> float:
    index = bisect.bisect_left(times, start)
    return times[index] if index < len(times) else float("inf")


# --------------------------------------------------------------------------- report


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)]


def _dist(values: list[float], extra: float = 0.0) -> str:
    shifted = [v + extra for v in values]
    return (f"p50 {_pct(shifted, 50):7.1f} s  p99 {_pct(shifted, 99):7.1f} s  "
            f"max {max(shifted):7.1f} s")


def report(name: str, rates: Rates, detect: dict[str, list[float]],
           args: argparse.Namespace) -> bool:
    budget = args.budget
    print(f"\n== {name}")
    print(f"  per node: {rates.registry_per_node_hour:.2f} registry requests/h, "
          f"{rates.token_per_node_hour:.2f} token requests/h, "
          f"{rates.probes_per_node_hour:.2f} periodic probes/h of this registry")
    if rates.forced_registry_per_node_hour or rates.forced_token_per_node_hour:
        print(f"  forced probes ({args.pull_failures:g} new pull failures per node-hour, "
              f"<= 1 per target per 30 s): {rates.forced_registry_per_node_hour:.2f} registry + "
              f"{rates.forced_token_per_node_hour:.2f} token requests/h per node")
    ok = True
    for nodes in NODE_COUNTS:
        c = rates.cluster[nodes]
        same = c["mean"] + c["token"]
        forced = nodes * (rates.forced_registry_per_node_hour
                          + rates.forced_token_per_node_hour) / 3600.0
        if nodes == max(NODE_COUNTS):
            ok = c["mean"] <= budget
        print(f"  {nodes:>5} nodes: registry {c['mean']:7.2f} req/s mean ({c['mean'] / budget:.2f}x "
              f"the {budget:g}/s budget), p99 second {c['p99']:.0f}, busiest {c['peak']:.0f}; "
              f"token server {c['token']:.2f}; realm on the registry's host {same:.2f} "
              f"({same / budget:.2f}x); forced probes add {forced:.2f}")
        reg, both = rates.startup_peak[nodes]
        print(f"         all agents starting within {args.rollout:g} s: busiest second "
              f"{reg:.0f} registry requests ({both:.0f} with the realm's)")
    print(f"  registry outage -> this node's next periodic probe of it (idle node): "
          f"{_dist(detect['outage'])}; in Prometheus (+ mean scrape wait 15 s): "
          f"{_dist(detect['outage'], 15.0)}")
    print(f"  node-local DNS failure -> next probe that runs the endpoint layers anew: "
          f"{_dist(detect['dns'])}")
    print(f"  after a {args.outage:g} s outage -> every target that failed during it probed "
          f"again (registry state ok): {_dist(detect['recovery'])}")
    for nodes in NODE_COUNTS:
        values = detect[f"cluster {nodes}"]
        print(f"  registry outage -> first of {nodes} nodes: mean {statistics.mean(values):.2f} s, "
              f"p99 {_pct(values, 99):.2f} s")
    within = _pct(detect["outage"], 99) + SCRAPE_INTERVAL <= 60.0
    print(f"  an idle node shows an outage within 60 s (p99 + a full scrape): "
          f"{'yes' if within else 'NO'}")
    return ok


def run_schedule(simulate: Any, node: NodeProfile, costs: StepCosts, args: argparse.Namespace,
                 hours: float, warmup: float, tail: float
                 ) -> tuple[Rates, dict[str, list[float]]]:
    """``warmup`` seconds are dropped from the steady figures; failures start no later than
    ``tail`` seconds before the end (so every re-probe they wait for is simulated)."""
    timelines = [simulate(node, costs, hours, args.seed * 1000 + i) for i in range(args.samples)]
    rng = random.Random(args.seed)
    rates = aggregate(timelines, hours, warmup, rng, args.rollout)
    return rates, detection(timelines, warmup, hours, rng, args.outage, tail)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simulate_scale.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-measure", dest="measure", action="store_false",
                   help="use the recorded request counts instead of measuring on the fleet")
    p.add_argument("--images", type=int, default=10, help="images from the registry per node")
    p.add_argument("--repos", type=int, default=0, help="repositories among them (default all)")
    p.add_argument("--index-fraction", type=float, default=0.5)
    p.add_argument("--auth", choices=("bearer", "basic", "anonymous"), default="bearer")
    p.add_argument("--token-lifetime", type=float, default=300.0)
    p.add_argument("--samples", type=int, default=40, help="simulated sample nodes")
    p.add_argument("--hours", type=float, default=0.0,
                   help="simulated hours per node, current schedule (default: 5 of the longest "
                   "image period, at least 24); the replaced one is simulated for 3 h")
    p.add_argument("--startup", choices=("pods", "static"), default="pods",
                   help="targets from the pod watch (after a first empty rebuild) or static")
    p.add_argument("--rollout", type=float, default=0.0,
                   help="seconds over which all agents start, for the start-up burst")
    p.add_argument("--budget", type=float, default=10.0, help="requests/s allowed per registry")
    p.add_argument("--pull-failures", type=float, default=1.0,
                   help="new pull failures per node-hour, each forcing a probe")
    p.add_argument("--outage", type=float, default=600.0, help="outage length for recovery")
    p.add_argument("--no-before", dest="before", action="store_false",
                   help="skip the replaced schedule")
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.measure:
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="pulldoctor-scale-") as tmp:
            costs = measure_costs(Path(tmp))
        source = f"measured now through Agent.probe_target on the fleet ({time.monotonic() - began:.1f} s)"
    else:
        costs, source = RECORDED, "recorded run S3 (docs/scale.md)"
    print(f"== requests per probe step ({source}; every probe's diagnosis checked):")
    print(f"  endpoint check {costs.endpoint_check}; image probe right after it "
          f"{costs.image_after_check} registry + {costs.token} token (endpoint results "
          f"{'reused' if costs.image_after_check == costs.manifest else 'NOT reused'}); "
          f"manifest: single {costs.manifest}, index {costs.manifest_index}, missing tag "
          f"{costs.manifest_missing}; image probe after new_cycle (token cached) "
          f"{costs.stale_prefix}; forced probe, endpoint results older than "
          f"{FRESH_WINDOW:g} s: {costs.forced_aged}; Basic credential check {costs.basic_check}")
    node = NodeProfile(args.images, args.repos or args.images, args.index_fraction, args.auth,
                       args.token_lifetime)
    config = AgentConfig()
    print(f"node profile: {node.images} images from one registry in {node.repos} repositories, "
          f"{100 * node.index_fraction:g} % indexes, {node.auth} auth, tokens live "
          f"{node.token_lifetime:g} s; {args.samples} sample nodes; start-up: {args.startup}; "
          "steady and detection figures without pull failures (an idle node)")
    print(f"agent defaults (agent/config.py): endpoint_interval_seconds "
          f"{config.endpoint_interval_seconds:g}, interval_seconds {config.interval_seconds:g} "
          f"(x images of the registry per image), jitter {config.jitter:g}, "
          f"startup_spread_seconds {config.startup_spread_seconds:g}; probes.cache: endpoint "
          f"results {PREFIX_TTL_OK:g} s (forced {FRESH_WINDOW:g} s), new_cycle every "
          f"{CACHE_REFRESH:g} s")

    if not args.hours:
        args.hours = max(24.0, 5 * config.interval_seconds * node.images * 1.2 / 3600.0)

    def current(node_: NodeProfile, costs_: StepCosts, hours: float, seed: int,
                failures: float = 0.0) -> Timeline:
        return simulate_current(node_, costs_, hours, seed, config=config, startup=args.startup,
                                pull_failures=failures)

    longest = config.interval_seconds * node.images * (1 + config.jitter)  # one image's period
    # periodic probes alone (an idle node); forced probes from a second run with pull failures
    rates, detect = run_schedule(current, node, costs, args, args.hours, longest, 2 * longest)
    with_failures = [current(node, costs, args.hours, args.seed * 1000 + i, args.pull_failures)
                     for i in range(args.samples)]
    window = args.hours - longest / 3600.0
    rates.forced_registry_per_node_hour = statistics.mean(
        sum(t >= longest for t in tl.forced_registry) for tl in with_failures) / window
    rates.forced_token_per_node_hour = statistics.mean(
        sum(t >= longest for t in tl.forced_token) for tl in with_failures) / window
    forced_probes = statistics.mean(tl.forced for tl in with_failures) / args.hours
    print(f"current: {args.hours:g} h simulated per node, the first {longest / 3600:g} h "
          f"dropped from the steady figures; forced probes {forced_probes:.2f} per node-hour "
          f"in the run with {args.pull_failures:g} pull failures per node-hour")
    met = report(f"current (main): endpoint check every {config.endpoint_interval_seconds:g} s, "
                 f"each image every {config.interval_seconds:g} s x {node.images}", rates, detect,
                 args)
    if args.before:
        before = run_schedule(simulate_before, node, costs, args, 3.0, 3600.0, 1800.0)
        report(f"before (replaced): every image every {BEFORE_INTERVAL:g} s (3 h simulated, "
               "first hour dropped)", *before, args)
    report_api()
    print(f"\n== the issue's requirement (<= {args.budget:g} req/s on one registry at "
          f"{max(NODE_COUNTS)} nodes, outage visible within 60 s where pulls happen): load "
          f"{'met' if met else 'MISSED'} by the current schedule (periodic probes, registry "
          "host only); pulling nodes see an outage through forced probes (bench_latency.py)")
    return 0 if met else 1


def report_api() -> None:
    print("\n== Kubernetes API (per node from bench_api_cost.py --agent; watches: 1 pod watch "
          "per node)")
    for label, per_hour in API_PER_NODE_HOUR.items():
        parts = ", ".join(f"{n} nodes {n * per_hour / 3600:.0f} req/s" for n in NODE_COUNTS)
        print(f"  {label}: {per_hour:.0f} requests/h per node; {parts}; open watches = nodes")


if __name__ == "__main__":
    raise SystemExit(main())
