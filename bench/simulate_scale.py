"""Scale model: what a DaemonSet of agents costs one registry and the API, and how fast it sees.

Why: per-node costs that look small multiply by the node count. The issue "Performance and
scale" asks for defaults under which a 5,000-node cluster puts at most 10 requests/s on one
registry while a registry outage still shows within one minute on the nodes that pull from it.
This script answers with numbers, for the current design and for a proposed one.

1. **Measure** (``--measure``, default on): start the loopback fleet and run the real engine
   (``probes.engine.run_probe`` with a :class:`~probes.cache.ProbeCache`, as the agent does)
   against the token-auth registry, counting the requests the registry (its access log) and
   the token server saw for each step: endpoint layers (``GET /v2/``), a token, the manifest of
   a single image, of an index, of a missing tag, and Basic-auth's credential check. Every
   probe's diagnosis is checked. ``--no-measure`` uses the counts of the run recorded in
   docs/scale.md (:data:`RECORDED`).
2. **Simulate one node** with the agent's own :class:`agent.scheduler.Scheduler` on a fake
   clock, ticked like ``Agent.run`` (0.5 s, at most ``concurrency`` probes started per tick),
   the probe cache's rules (endpoint layers once per cache cycle, the cycle restarted every
   interval; tokens reused until 10 s before expiry) and the node's images on one registry.
   Many sample nodes (independent seeds) give per-node rates and, superposed with random phases,
   the cluster's requests per second (mean and the busiest second), plus the burst when every
   agent starts at once (a DaemonSet rollout with no surge limit, or a cluster restart).
3. **Detection**: for failures starting at random times in the steady state, how long until the
   node's next probe that can see them (a registry outage: any probe of the registry, since each
   probe opens a new connection; a node-local DNS failure: the first probe after the cache cycle
   that forgets DNS answers), plus Prometheus' scrape interval for "shows in Prometheus"; and
   how long until the first of N nodes sees a registry-wide outage.
4. The same for the **proposed** design: per node and registry, a cheap check of the endpoint
   layers (dns/tcp/proxy/tls/challenge: 1 request, nothing cached) every ``--check-interval``
   with a per-node splay (``auto``: the shortest that keeps 5,000 nodes within 90 % of
   ``--budget``, the token counted as if the realm were the registry's own host), the token
   and manifest layers of one image every ``--image-interval``, rotating through the node's
   images, and full probes forced by pull failures (unchanged).

What it refuses to do: extrapolate a figure it did not compute from a measurement or from the
simulation; every printed number says which.

Usage: python bench/simulate_scale.py [--no-measure] [--images 10] [--samples 40]
       [--check-interval auto] [--image-interval 3600] [--budget 10]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.scheduler import Scheduler  # noqa: E402

__all__ = ["StepCosts", "RECORDED", "NodeProfile", "Design", "simulate_node", "measure_costs",
           "main"]

TICK = 0.5  # agent.agent.TICK
TOKEN_MARGIN = 10.0  # probes.cache.TOKEN_MARGIN
SCRAPE_INTERVAL = 30.0  # deploy/podmonitor.yaml
NODE_COUNTS = (1000, 5000)
#: API cost per node and hour, measured with the real Agent as consumer (docs/scale.md, runs A1
#: and A2: bench_api_cost.py --agent --seconds 30, 110 pods, churn 20 and 2 pod changes per
#: minute; 30 simulated minutes that include the agent's start).
API_PER_NODE_HOUR = {"churn 20/min": 1693.8, "churn 2/min": 589.9}
API_START_LIST_EVENTS = 110  # one events list per running pod when an agent starts (run A1)


@dataclass(frozen=True)
class StepCosts:
    """HTTP requests one probe step sends: to the registry, or to the token server."""

    challenge: int  # endpoint layers: GET /v2/
    token: int  # one token from the realm
    manifest: int  # manifest layer, single manifest found
    manifest_index: int  # manifest layer, an index (HEAD, then GET of the index)
    manifest_missing: int  # manifest layer, a tag that does not exist
    basic_check: int  # token layer with Basic auth: GET /v2/ with the credentials


#: The counts of the recorded run (docs/scale.md, run S1), for ``--no-measure``.
RECORDED = StepCosts(challenge=1, token=1, manifest=1, manifest_index=2, manifest_missing=3,
                     basic_check=1)


# --------------------------------------------------------------------------- measure


def measure_costs(workdir: Path) -> StepCosts:
    """Count requests per step at the fleet's registries and token server (real engine)."""
    from bench.bench_continuous import RequestCounter
    from probes.cache import ProbeCache
    from probes.credentials import Keyring, parse_docker_config
    from probes.engine import run_probe
    from probes.reference import parse_reference
    from probes.state import ProbeOptions
    from probes.targets import upstream_target
    from tests.fleet import ALICE, Fleet
    from tests.scenario import dockerconfig

    with Fleet.start(workdir / "fleet") as fleet:
        token, basic = fleet.registries["token"].host, fleet.registries["basic"].host
        keyring: Keyring = parse_docker_config(dockerconfig({token: ALICE, basic: ALICE}),
                                               source="bench")
        options = ProbeOptions(keyring=keyring, ca_files=(fleet.ca_file,), system_ca=False,
                               certs_dirs=())
        counter = RequestCounter(fleet, "pulldoctor/")
        cache = ProbeCache()

        def probe(image: str, expect: str, fresh: bool = False) -> tuple[int, int]:
            nonlocal cache
            if fresh:
                cache = ProbeCache()
            counter.mark()
            reference = parse_reference(image)
            report = run_probe(reference, upstream_target(reference, options), options,
                               cache=cache)
            if report.code.value != expect:
                raise RuntimeError(f"{image}: expected {expect}, got {report.code.value}")
            counts = counter.counts()
            registry = sum(sum(v.values()) for k, v in counts.items() if k != "token-server")
            return registry, sum(counts.get("token-server", {}).values())

        first = probe(f"{token}/test/hello:v1", "ok", fresh=True)  # endpoint + token + HEAD
        index = probe(f"{token}/test/multi:v1", "ok")  # token (other repo) + HEAD + GET
        again = probe(f"{token}/test/hello:v1", "ok")  # everything shared: HEAD only
        missing = probe(f"{token}/test/hello:gone", "image_not_found")  # token shared
        basic_first = probe(f"{basic}/test/hello:v1", "ok", fresh=True)
    manifest = again[0]
    return StepCosts(challenge=first[0] - manifest, token=first[1], manifest=manifest,
                     manifest_index=index[0], manifest_missing=missing[0],
                     basic_check=basic_first[0] - (first[0] - manifest) - manifest)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class NodeProfile:
    """One node's use of one registry."""

    images: int = 10  # distinct images (targets) from the registry on the node
    repos: int = 10  # distinct repositories among them (tokens are per repository)
    index_fraction: float = 0.5  # multi-arch images: HEAD then GET of the index
    auth: str = "bearer"  # bearer | basic | anonymous
    token_lifetime: float = 300.0  # Docker Hub's and the fleet's token lifetime


@dataclass(frozen=True)
class Design:
    """How often what is probed. ``check_interval`` None = the current design."""

    name: str
    interval: float = 300.0  # full probe of each image (current: the only schedule)
    jitter: float = 0.2
    concurrency: int = 4
    check_interval: float | None = None  # proposed: endpoint layers alone, per registry
    splay: bool = False  # proposed: first run at a per-node phase, not within 2 s of start


@dataclass
class Timeline:
    """What one simulated node sent and when (seconds since the agent started)."""

    registry: list[float] = field(default_factory=list)  # one entry per request
    token: list[float] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)  # start of every probe of the registry
    dns_fresh: list[float] = field(default_factory=list)  # probes that resolved DNS anew


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _scheduler(design: Design, clock: _Clock, rng: random.Random, interval: float) -> Scheduler:
    return Scheduler(interval=interval, jitter=design.jitter, min_forced_interval=30.0,
                     clock=clock, rng=rng)


def simulate_node(design: Design, node: NodeProfile, costs: StepCosts, hours: float,
                  seed: int) -> Timeline:
    """One node's requests to one registry over ``hours``, ticked like ``Agent.run``."""
    rng, clock, out = random.Random(seed), _Clock(), Timeline()
    images = [(f"repo-{i % node.repos}", i < node.images * node.index_fraction)
              for i in range(node.images)]
    full = _scheduler(design, clock, rng, design.interval)
    checks = _scheduler(design, clock, rng, design.check_interval or 1.0)
    rotating = design.check_interval is not None  # proposed: one image per slot, in turn
    full.sync(["rotate"] if rotating else range(len(images)))
    if rotating:
        checks.sync(["endpoint"])
    if design.splay:  # a per-node phase over the whole interval instead of 0..2 s
        _splay(full, rng, design.interval)
        _splay(checks, rng, design.check_interval or 1.0)
    tokens: dict[str, float] = {}
    cycle_start, prefix_done, turn = 0.0, False, rng.randrange(len(images))
    end = hours * 3600.0
    while clock.now < end:
        if not rotating and clock.now - cycle_start > design.interval:
            cycle_start, prefix_done = clock.now, False  # ProbeCache.new_cycle()
        for key in checks.due(design.concurrency) if rotating else []:
            out.registry.extend([clock.now] * costs.challenge)
            out.probes.append(clock.now)
            out.dns_fresh.append(clock.now)
            checks.done(key)
        for key in full.due(design.concurrency):
            if rotating:
                (repo, is_index), turn = images[turn % len(images)], turn + 1
            else:
                repo, is_index = images[int(key)]  # type: ignore[call-overload]
            if not rotating and not prefix_done:  # proposed: the last check's results
                out.registry.extend([clock.now] * costs.challenge)
                out.dns_fresh.append(clock.now)
                prefix_done = True
            out.registry.extend([clock.now] * _auth_and_manifest(node, costs, is_index))
            if node.auth == "bearer" and tokens.get(repo, -1.0) - TOKEN_MARGIN <= clock.now:
                out.token.extend([clock.now] * costs.token)
                tokens[repo] = clock.now + node.token_lifetime
            out.probes.append(clock.now)
            full.done(key)
        clock.now = _next_tick(clock.now, full, checks, cycle_start, design)
    return out


def _splay(scheduler: Scheduler, rng: random.Random, interval: float) -> None:
    for slot in scheduler._slots.values():
        slot.next_due = rng.uniform(0, interval)


def _auth_and_manifest(node: NodeProfile, costs: StepCosts, is_index: bool) -> int:
    basic = costs.basic_check if node.auth == "basic" else 0
    return basic + (costs.manifest_index if is_index else costs.manifest)


def _next_tick(now: float, full: Scheduler, checks: Scheduler, cycle_start: float,
               design: Design) -> float:
    """The next 0.5 s tick at which anything can happen (skipping idle ticks)."""
    wakeups = [w for w in (full.next_wakeup(), checks.next_wakeup() if design.check_interval
                           else None) if w is not None]
    if design.check_interval is None:
        wakeups.append(cycle_start + design.interval + TICK)
    target = max(min(wakeups, default=now + TICK), now + TICK)
    return math.ceil(target / TICK) * TICK


# --------------------------------------------------------------------------- aggregate


@dataclass
class Rates:
    """Per-node and cluster figures of one design and profile."""

    registry_per_node_hour: float
    token_per_node_hour: float
    probes_per_node_hour: float
    cluster: dict[int, dict[str, float]]
    startup_peak: dict[int, float]


def _steady(times: list[float], start: float, end: float) -> list[float]:
    return [t - start for t in times if start <= t < end]


def aggregate(timelines: list[Timeline], hours: float, warmup: float, rng: random.Random,
              rollout: float) -> Rates:
    window = hours * 3600.0 - warmup
    per = [(len(_steady(t.registry, warmup, warmup + window)),
            len(_steady(t.token, warmup, warmup + window)),
            len(_steady(t.probes, warmup, warmup + window))) for t in timelines]
    hour = window / 3600.0
    reg, tok, prb = (statistics.mean(p[i] for p in per) / hour for i in range(3))
    cluster, startup = {}, {}
    for nodes in NODE_COUNTS:
        seconds = _superpose([_steady(t.registry, warmup, warmup + window) for t in timelines],
                             nodes, window, rng)
        cluster[nodes] = {"mean": nodes * reg / 3600.0, "peak": max(seconds.values()),
                          "p99": _p99_of_seconds(seconds, window),
                          "token": nodes * tok / 3600.0}
        startup[nodes] = _startup_peak([t.registry for t in timelines], nodes, rng, rollout)
    return Rates(reg, tok, prb, cluster, startup)


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
              design: Design, trials: int = 4000) -> dict[str, list[float]]:
    """Seconds from a failure's start to the node's first probe that can see it."""
    end = hours * 3600.0
    outage: list[float] = []
    dns_local: list[float] = []
    cluster: dict[int, list[float]] = {}
    for trial in range(trials):
        node = timelines[trial % len(timelines)]
        start = rng.uniform(warmup, end - 2 * (design.check_interval or design.interval))
        outage.append(_first_after(node.probes, start) - start)
        dns_local.append(_first_after(node.dns_fresh, start) - start)
    for nodes in NODE_COUNTS:  # independent nodes: the earliest of N draws of a node's wait
        cluster[nodes] = [min(rng.choice(outage) for _ in range(nodes)) for _ in range(100)]
    return {"outage": outage, "dns": dns_local, **{f"cluster {n}": v for n, v in cluster.items()}}


def _first_after(times: list[float], start: float) -> float:
    import bisect

    index = bisect.bisect_left(times, start)
    return times[index] if index < len(times) else float("inf")


# --------------------------------------------------------------------------- report


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q / 100 * len(ordered)), len(ordered) - 1)]


def _dist(values: list[float], extra: float = 0.0) -> str:
    shifted = [v + extra for v in values]
    return (f"p50 {_pct(shifted, 50):6.1f} s  p99 {_pct(shifted, 99):6.1f} s  "
            f"max {max(shifted):6.1f} s")


def run_design(design: Design, node: NodeProfile, costs: StepCosts, args: argparse.Namespace
               ) -> tuple[Rates, dict[str, list[float]]]:
    hours = args.hours
    timelines = [simulate_node(design, node, costs, hours, seed=args.seed * 1000 + i)
                 for i in range(args.samples)]
    rng = random.Random(args.seed)
    warmup = min(3600.0, hours * 3600.0 / 3)
    rates = aggregate(timelines, hours, warmup, rng, args.rollout)
    return rates, detection(timelines, warmup, hours, rng, design)


def report_design(design: Design, node: NodeProfile, rates: Rates,
                  detect: dict[str, list[float]], args: argparse.Namespace,
                  costs: StepCosts) -> bool:
    budget = args.budget
    interval = (f"endpoint check every {design.check_interval:.0f} s, one image (in turn) every "
                f"{design.interval:.0f} s" if design.check_interval
                else f"every image every {design.interval:g} s")
    print(f"\n== {design.name}: {interval} (±{100 * design.jitter:g} %)")
    print(f"  per node: {rates.registry_per_node_hour:.1f} registry requests/h, "
          f"{rates.token_per_node_hour:.1f} token requests/h, "
          f"{rates.probes_per_node_hour:.1f} probes/h of this registry")
    ok = True
    for nodes in NODE_COUNTS:
        c = rates.cluster[nodes]
        verdict = "within" if c["mean"] <= budget else "OVER"
        ok = ok and (nodes != max(NODE_COUNTS) or c["mean"] <= budget)
        print(f"  {nodes:>5} nodes: registry {c['mean']:7.2f} req/s mean ({verdict} {budget:g}/s: "
              f"{c['mean'] / budget:.2f}x), p99 second {c['p99']:.0f}, busiest second "
              f"{c['peak']:.0f}; token server {c['token']:.2f} req/s (same host: "
              f"{c['mean'] + c['token']:.2f}); all agents starting within "
              f"{args.rollout:g} s: busiest second {rates.startup_peak[nodes]:.0f}")
    per_full = costs.manifest + node.index_fraction * (costs.manifest_index - costs.manifest) \
        + (costs.challenge if design.check_interval is None else 0)
    forced = ", ".join(f"{n} nodes {n * args.pull_failures * per_full / 3600:.2f} req/s"
                       for n in NODE_COUNTS)
    print(f"  forced probes at {args.pull_failures:g} new pull failures per node-hour "
          f"(<= 1 per target per 30 s): {per_full:.1f} registry requests each; {forced}")
    print(f"  registry outage -> this node's next probe of it: {_dist(detect['outage'])}; in "
          f"Prometheus (+scrape {SCRAPE_INTERVAL:g} s): {_dist(detect['outage'], 15.0)} "
          "(mean scrape wait added)")
    print(f"  node-local DNS failure, or recovery after a failed endpoint check -> next probe "
          f"that runs the endpoint layers anew: {_dist(detect['dns'])}")
    for nodes in NODE_COUNTS:
        values = detect[f"cluster {nodes}"]
        print(f"  registry outage -> first of {nodes} nodes: mean {statistics.mean(values):.2f} s, "
              f"p99 {_pct(values, 99):.2f} s")
    within = _pct(detect["outage"], 99) + SCRAPE_INTERVAL <= 60.0
    print(f"  a node that is not pulling shows an outage within 60 s (p99 + a full scrape): "
          f"{'yes' if within else 'NO'}")
    return ok and within


def auto_check_interval(node: NodeProfile, costs: StepCosts, args: argparse.Namespace,
                        floor: float = 60.0) -> float:
    """The shortest endpoint-check interval that keeps the largest cluster within 90 % of the
    budget once the rotating image probe is paid (its token counted as if the realm were the
    registry's own host; 10 % is left for forced probes)."""
    nodes = max(NODE_COUNTS)
    per_image = costs.manifest + node.index_fraction * (costs.manifest_index - costs.manifest) \
        + (costs.basic_check if node.auth == "basic" else 0) \
        + (costs.token if node.auth == "bearer" else 0)
    images = nodes * per_image / args.image_interval
    left = 0.9 * args.budget - images
    if left <= 0:
        raise SystemExit(f"image probes alone ({images:.1f} req/s) exceed the budget")
    return max(floor, nodes * costs.challenge / left)


def required_check_interval(deadline: float, jitter: float) -> float:
    """The longest check interval whose worst wait (interval x (1 + jitter)) fits ``deadline``."""
    return deadline / (1 + jitter)


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
    p.add_argument("--hours", type=float, default=3.0, help="simulated hours per node")
    p.add_argument("--rollout", type=float, default=0.0,
                   help="seconds over which all agents start, for the start-up burst")
    p.add_argument("--budget", type=float, default=10.0, help="requests/s allowed per registry")
    p.add_argument("--check-interval", default="auto",
                   help="proposed endpoint check interval (s), or auto: nodes/budget for 5000")
    p.add_argument("--image-interval", type=float, default=3600.0,
                   help="proposed: one image's token+manifest probe per registry every so many "
                   "seconds, rotating through the node's images")
    p.add_argument("--pull-failures", type=float, default=1.0,
                   help="new pull failures per node-hour, for the forced-probe load")
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.measure:
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="pulldoctor-scale-") as tmp:
            costs = measure_costs(Path(tmp))
        source = f"measured now on the fleet ({time.monotonic() - began:.1f} s)"
    else:
        costs, source = RECORDED, "recorded run S1 (docs/scale.md)"
    print(f"== requests per probe step ({source}; every probe's diagnosis checked):")
    print(f"  endpoint layers (GET /v2/) {costs.challenge}; token {costs.token} (token server); "
          f"manifest: single {costs.manifest}, index {costs.manifest_index}, missing tag "
          f"{costs.manifest_missing}; Basic credential check {costs.basic_check}")
    node = NodeProfile(args.images, args.repos or args.images, args.index_fraction, args.auth,
                       args.token_lifetime)
    print(f"node profile: {node.images} images from one registry in {node.repos} repositories, "
          f"{100 * node.index_fraction:g} % indexes, {node.auth} auth, tokens live "
          f"{node.token_lifetime:g} s; {args.samples} sample nodes x {args.hours:g} h simulated")
    check = auto_check_interval(node, costs, args) if args.check_interval == "auto" \
        else float(args.check_interval)
    designs = [Design("current defaults"),
               Design("proposed", interval=args.image_interval, check_interval=check,
                      splay=True)]
    verdicts, all_rates = [], []
    for design in designs:
        rates, detect = run_design(design, node, costs, args)
        all_rates.append(rates)
        verdicts.append(report_design(design, node, rates, detect, args, costs))
    current = all_rates[0].cluster[max(NODE_COUNTS)]
    stretch = designs[0].interval * (current["mean"] + current["token"]) / args.budget
    print(f"\n  the current design fits {args.budget:g} req/s at {max(NODE_COUNTS)} nodes (realm on "
          f"the registry's host) only with interval_seconds >= {stretch:.0f} s "
          f"({stretch / 3600:.1f} h), the rate scaling as 1/interval")
    report_api()
    print(f"\n== the issue's requirement (<= {args.budget:g} req/s on one registry at 5000 nodes, "
          "outage visible within 60 s where pulls happen):")
    for design, met in zip(designs, verdicts):
        print(f"  {design.name}: {'met' if met else 'not met'} by periodic probing alone")
    for label, deadline in (("in the agent's /metrics", 60.0),
                            ("in Prometheus (30 s scrape)", 60.0 - SCRAPE_INTERVAL)):
        needed = required_check_interval(deadline, 0.2)
        rate = max(NODE_COUNTS) * costs.challenge / needed
        print(f"  periodic detection within 60 s {label} on every node needs a check every "
              f"{needed:.0f} s: {rate:.0f} req/s at {max(NODE_COUNTS)} nodes, "
              f"{rate / args.budget:.1f}x the budget")
    print("  on nodes that are pulling, a failed pull forces a probe at once: bench_latency.py "
          "measures that path (its p99 is the visible delay there), in every design")
    return 0


def report_api() -> None:
    print("\n== Kubernetes API (per node from bench_api_cost.py --agent; watches: 1 pod watch "
          "per node)")
    for label, per_hour in API_PER_NODE_HOUR.items():
        parts = ", ".join(f"{n} nodes {n * per_hour / 3600:.0f} req/s" for n in NODE_COUNTS)
        print(f"  {label}: {per_hour:.0f} requests/h per node; {parts}; open watches = nodes")
    parts = ", ".join(f"{n * API_START_LIST_EVENTS} at {n} nodes" for n in NODE_COUNTS)
    print(f"  agent start: {API_START_LIST_EVENTS} event lists per node (one per running pod): "
          f"{parts} during a rollout")


if __name__ == "__main__":
    raise SystemExit(main())
