"""Continuous cost of the node agent: 500 static targets, cycle after cycle, next to blackbox_exporter.

Why: the agent runs on every node for ever, so its CPU and memory per target are a cost every
cluster pays all the time. This bench runs the real agent against the loopback fleet with a
static config of many targets (``--targets``, default 500: many repositories and tags on the
``token``, ``tls``, ``basic`` and ``plain`` registries, some tags and repositories missing,
wrong or missing credentials, and the fleet's faulty members: bad certificates, HTML, 429,
5xx, 403, refused and reset ports) and compares it with ``prometheus-blackbox-exporter``
probing the same ``/v2/`` endpoints through its ``/probe`` API.

Sections (``--section``, default all):

``cycle``
    a child process, pinned to one CPU, builds the Agent exactly as ``pulldoctor agent
    --standalone`` does and runs ``Agent.run_cycle()`` ``--cycles`` times (the first cold, the
    others after ``ProbeCache.new_cycle()``: endpoint layers again, tokens reused), then one
    pass of unshared probes (``run_probe`` without a cache: all seven layers for each target).
    Per cycle: wall time, CPU seconds of the process (all threads, ``time.process_time``),
    RSS and peak RSS (``/proc/self/status``), and the requests the registries and the token
    server saw. Every target's diagnosis must match its category's, or no figure is printed.
``standalone``
    the real process ``python -m agent.cli agent --standalone --config F`` pinned to one CPU:
    time to ``/readyz`` (first full cycle, start-up included), CPU per probe over a steady
    window (``pulldoctor_probe_runs_total`` from ``/metrics`` against ``/proc/PID/stat``),
    peak RSS (``VmHWM``) and RSS between cycles; then an idle agent (no targets) for idle RSS
    and idle CPU per second.
``blackbox``
    ``prometheus-blackbox-exporter`` pinned to the same CPU, one ``http`` probe of each
    target's ``/v2/`` (``valid_status_codes: [200, 401]``, the fleet CA, IPv4) through
    ``/probe``, ``--concurrency`` at a time, after one warm-up round; CPU per probe from
    ``/proc/PID/stat``. With ``--section all`` one round runs right after each steady agent
    cycle, so agent and exporter are measured under the same machine
    load; alone, ``--bb-rounds`` rounds.

Schedule (commit 6d14681): the agent probes one endpoint target per registry (``dns`` ..
``challenge``) besides the images, and in steady state one image per registry every
``interval_seconds`` (in turn), so a default-config process probes a few targets an hour. The
``cycle`` section therefore drives ``Agent.run_cycle()`` (every image target and every endpoint
target, at once); the ``standalone`` process gets ``startup_spread_seconds: 0`` (its first
cycle is timed, not the 30 s start-up spread) and ``interval_seconds: 1`` (the config's floor:
one image per registry per second, each registry's images in turn) with
``endpoint_interval_seconds: --interval``, so its steady window has probes to measure.

Targets (the issue "Performance and scale"): a full cycle of 500 targets within 10 s on one
core; agent CPU per full layered probe within 2x blackbox_exporter's CPU per HTTP probe; agent
RSS <= 80 MiB with 500 targets and <= 50 MiB idle. Exit 0 when all are met, 1 when one is
missed, 2 when a run failed (no figures).

Pinning: with two or more CPUs the driver (and the fleet it starts) runs on CPU 0 and the
measured process on the last CPU, so the registries never compete with it for its core.

What it refuses to do: report a figure from a run whose diagnoses are not the expected ones,
touch anything but loopback, or leave a process it started running.

Usage: python bench/bench_continuous.py [--targets 500] [--cycles 4] [--concurrency 4]
       [--section all|cycle|standalone|blackbox] [--interval 20] [--bb-rounds 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

__all__ = ["BENCH_REPOS", "BENCH_TAGS", "BenchTarget", "Category", "CATEGORIES",
           "build_workload", "push_bench_images", "RequestCounter", "proc_cpu_seconds",
           "proc_memory_kib", "main"]

CYCLE_TARGET_S = 10.0
CPU_RATIO_TARGET = 2.0
RSS_TARGET_MIB = 80.0
IDLE_RSS_TARGET_MIB = 50.0
BENCH_REPOS = 60
BENCH_TAGS = ("v1", "v2", "v3")
CLK_TCK = os.sysconf("SC_CLK_TCK")
_ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) '
                     r'\S+ "[^"]*" "(?P<agent>[^"]*)"\s*$')


# --------------------------------------------------------------------------- process figures


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` (``/proc/PID/stat``)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_memory_kib(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _mib(kib: float) -> float:
    return kib / 1024.0


def cpus() -> tuple[set[int], set[int]]:
    """(driver CPUs, measured CPU): split when there are two or more CPUs."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return set(allowed), set(allowed)
    return set(allowed[:-1]), {allowed[-1]}


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Category:
    """A kind of target: where it points, with which credentials, and what it must diagnose."""

    name: str
    weight: int  # targets per 500
    host: str  # fleet key: registries[...] / quirky[...] / ports[...]
    creds: str | None  # "alice" | "bob" | None
    expect: str  # the diagnosis code every target of this category must get
    kind: str = "app"  # app | missing_tag | missing_repo | own_repo | fixed


#: Weights sum to 500: 302 healthy, the rest failing in every way the fleet can fail.
CATEGORIES: tuple[Category, ...] = (
    Category("token ok", 180, "token", "alice", "ok"),
    Category("tls ok", 60, "tls", None, "ok"),
    Category("basic ok", 30, "basic", "alice", "ok"),
    Category("plain ok", 30, "plain", None, "ok"),
    Category("token index", 2, "token", "alice", "ok", "fixed"),
    Category("token missing tag", 30, "token", "alice", "image_not_found", "missing_tag"),
    Category("tls missing tag", 10, "tls", None, "image_not_found", "missing_tag"),
    Category("basic missing tag", 5, "basic", "alice", "image_not_found", "missing_tag"),
    Category("plain missing tag", 5, "plain", None, "image_not_found", "missing_tag"),
    Category("token missing repo", 20, "token", "alice", "image_not_found", "missing_repo"),
    Category("tls missing repo", 10, "tls", None, "image_not_found", "missing_repo"),
    Category("token anonymous", 15, "token", None, "auth_missing", "own_repo"),
    Category("token no pull right", 15, "token", "bob", "access_denied", "own_repo"),
    Category("basic anonymous", 10, "basic", None, "auth_missing", "own_repo"),
    Category("expired cert", 10, "expired", None, "tls_expired"),
    Category("not-yet-valid cert", 10, "notyet", None, "tls_not_yet_valid"),
    Category("hostname mismatch", 10, "mismatch", None, "tls_hostname_mismatch"),
    Category("untrusted CA", 10, "untrusted", None, "tls_unknown_authority"),
    Category("HTML front page", 6, "html", None, "registry_not_v2"),
    Category("rate limited", 6, "ratelimit", None, "rate_limited"),
    Category("/v2/ 503", 6, "error500", None, "registry_server_error"),
    Category("manifest 403", 6, "forbidden", None, "access_denied"),
    Category("manifest 500", 6, "manifest500", None, "registry_server_error"),
    Category("refused port", 4, "closed", None, "tcp_refused"),
    Category("reset port", 4, "reset", None, "eof_or_reset"),
)
assert sum(c.weight for c in CATEGORIES) == 500


@dataclass(frozen=True)
class BenchTarget:
    """One static target of the agent config."""

    reference: str
    category: str
    expect: str
    docker_config: Path | None
    v2_url: str  # what blackbox_exporter probes for it


def _host_and_url(fleet: Any, key: str) -> tuple[str, str]:
    if key in fleet.registries:
        reg = fleet.registries[key]
        return reg.host, reg.url
    if key in fleet.quirky:
        url = fleet.quirky[key].url.rstrip("/")
        return url.split("://", 1)[1], url
    port = {"closed": fleet.closed_port, "reset": fleet.reset_port}[key]
    return f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"


def _repo_and_tag(category: Category, index: int) -> str:
    if category.kind == "missing_tag":
        return f"bench/app-{index % BENCH_REPOS:02d}:gone-{index}"
    if category.kind == "missing_repo":
        return f"bench/nothere-{index}:v1"
    if category.kind == "own_repo":  # an image no other category names
        return f"bench/{category.name.replace(' ', '-')}-{index}:v1"
    if category.kind == "fixed":
        return ("test/multi:v1", "test/dockerlist:v1")[index % 2]
    repo = (index // len(BENCH_TAGS)) % BENCH_REPOS
    return f"bench/app-{repo:02d}:{BENCH_TAGS[index % len(BENCH_TAGS)]}"


def _counts(total: int) -> list[int]:
    """Each category's share of ``total`` (largest remainders), at least one each."""
    raw = [c.weight * total / 500 for c in CATEGORIES]
    counts = [max(1, int(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    for i in order[: max(0, total - sum(counts))]:
        counts[i] += 1
    return counts


def build_workload(fleet: Any, total: int, workdir: Path) -> list[BenchTarget]:
    """``total`` distinct targets in the proportions of :data:`CATEGORIES`."""
    from tests.fleet import ALICE, BOB

    hosts = {k: fleet.registries[k].host for k in ("token", "basic")}
    configs = {"alice": fleet.docker_config({h: ALICE for h in hosts.values()},
                                            workdir / "alice.json"),
               "bob": fleet.docker_config({hosts["token"]: BOB}, workdir / "bob.json")}
    out = []
    for category, count in zip(CATEGORIES, _counts(total)):
        host, url = _host_and_url(fleet, category.host)
        for index in range(count):
            out.append(BenchTarget(f"{host}/{_repo_and_tag(category, index)}", category.name,
                                   category.expect,
                                   configs[category.creds] if category.creds else None,
                                   f"{url}/v2/"))
    return out


def push_bench_images(plain_url: str, repos: int = BENCH_REPOS,
                      tags: tuple[str, ...] = BENCH_TAGS) -> None:
    """Push ``bench/app-NN`` with every tag through the plain registry (storage is shared)."""
    import hashlib

    import httpx

    def sha(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    with httpx.Client(base_url=plain_url, timeout=10, trust_env=False) as client:
        for index in range(repos):
            repo = f"bench/app-{index:02d}"
            layer, config = f"layer of {repo}\n".encode(), b'{"architecture":"amd64","os":"linux"}'
            for blob in (layer, config):
                start = client.post(f"/v2/{repo}/blobs/uploads/")
                location = start.headers["location"]
                put = client.put(f"{location}{'&' if '?' in location else '?'}digest={sha(blob)}",
                                 content=blob)
                put.raise_for_status()
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": sha(config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": sha(layer), "size": len(layer)}]}).encode()
            for tag in tags:
                client.put(f"/v2/{repo}/manifests/{tag}", content=manifest, headers={
                    "content-type": "application/vnd.oci.image.manifest.v1+json"},
                ).raise_for_status()


def agent_config(fleet: Any, targets: list[BenchTarget], *, interval: float, concurrency: int,
                 workdir: Path, endpoint_interval: float = 900.0,
                 startup_spread: float = 30.0) -> dict[str, Any]:
    """The agent's YAML config as data: the fleet's node view, the targets as static targets."""
    return {
        "interval_seconds": interval, "endpoint_interval_seconds": endpoint_interval,
        "startup_spread_seconds": startup_spread, "jitter": 0.2, "probe_timeout_seconds": 10,
        "concurrency": concurrency, "listen_address": "127.0.0.1:0",
        "resolv_conf": str(fleet.resolv_conf), "hosts_file": str(fleet.hosts_file),
        "certs_dirs": [str(fleet.certs_dir)], "ca_bundles": [], "node_docker_configs": [],
        "credential_provider_config": None, "proxy_dropin_dirs": [],
        "crio_registries_conf": str(workdir / "no-registries.conf"),
        "crio_registries_dir": str(workdir / "no-registries.conf.d"),
        "host_root": str(workdir),
        "static_targets": [{"image": t.reference, **({"docker_config": str(t.docker_config)}
                                                     if t.docker_config else {})}
                           for t in targets],
    }


def write_config(data: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(data, indent=1))  # JSON is YAML
    return path


# --------------------------------------------------------------------------- request counting


class RequestCounter:
    """Requests the fleet saw since :meth:`mark`: registry access logs, token server, quirky."""

    def __init__(self, fleet: Any, agent_marker: str) -> None:
        self.fleet, self.marker = fleet, agent_marker
        self._offsets: dict[str, int] = {}

    def mark(self) -> None:
        for name, reg in self.fleet.registries.items():
            self._offsets[name] = reg.log.stat().st_size
        self.fleet.token_server.requests.clear()
        for server in self.fleet.quirky.values():
            server.requests.clear()

    def counts(self, settle: float = 0.3) -> dict[str, dict[str, int]]:
        """{endpoint: {"METHOD kind": n}} for requests whose user agent has the marker."""
        time.sleep(settle)  # the registries write their access lines asynchronously
        out: dict[str, dict[str, int]] = {}
        for name, reg in self.fleet.registries.items():
            with reg.log.open("rb") as log:
                log.seek(self._offsets.get(name, 0))
                text = log.read().decode("utf-8", "replace")
            counter: Counter[str] = Counter()
            for line in text.splitlines():
                match = _ACCESS.search(line)
                if match and self.marker in match.group("agent"):
                    counter[f"{match.group('method')} {_kind(match.group('path'))}"] += 1
            if counter:
                out[name] = dict(counter)
        tokens = Counter(f"{r.method} token" for r in self.fleet.token_server.requests)
        if tokens:
            out["token-server"] = dict(tokens)
        for name, server in self.fleet.quirky.items():
            quirky = Counter(f"{r.method} {_kind(r.path)}" for r in server.requests)
            if quirky:
                out[f"quirky-{name}"] = dict(quirky)
        return out


def _kind(path: str) -> str:
    path = path.split("?", 1)[0]
    if path in ("/v2", "/v2/"):
        return "/v2/"
    for part in ("manifests", "tags", "blobs"):
        if f"/{part}/" in path:
            return part
    return "other"


def total_requests(counts: dict[str, dict[str, int]]) -> int:
    return sum(sum(v.values()) for v in counts.values())


# --------------------------------------------------------------------------- child (measured)


def _child_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    env["PYTHONPATH"] = str(ROOT)
    return env


def child_main(config_path: Path) -> int:
    """The measured process: build the Agent as ``run_agent`` does; run cycles on command."""
    from prometheus_client import CollectorRegistry

    from agent.agent import Agent
    from agent.config import load_config
    from agent.logs import configure
    from agent.metrics import Metrics

    config = load_config(config_path)
    log = configure(stream=open(os.devnull, "w"), node="standalone")  # noqa: SIM115
    agent = Agent(config, node=None, kube=None, metrics=Metrics(CollectorRegistry(),
                                                                 version="bench"), log=log)
    _emit({"event": "ready", **proc_memory_kib()})
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command in ("cycle", "cold"):
            _emit(_child_cycle(agent, cold=command == "cold"))
        elif command == "unshared":
            _emit(_child_unshared(agent))
        elif command == "parts":
            _emit(_child_parts(agent))
        elif command.startswith("profile "):
            _emit(_child_profile(agent, Path(command.split(" ", 1)[1])))
    agent.close()
    return 0


def _emit(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


def _child_cycle(agent: Any, cold: bool) -> dict[str, Any]:
    if cold:
        from probes.cache import ProbeCache

        agent.cache = ProbeCache()  # nothing shared from earlier cycles: tokens fetched again
    elif agent.cycles:
        agent.cache.new_cycle()
    began, cpu = time.perf_counter(), time.process_time()
    agent.run_cycle()
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    codes = {d["image"]: d["code"] for d in agent.diagnoses() if d["kind"] == "probe"}
    kinds = Counter(i.kind for i in agent._targets.values())
    return {"event": "cycle", "wall": wall, "cpu": cpu, "codes": codes, "kinds": dict(kinds),
            "state": _child_state(agent), **proc_memory_kib()}


def _child_unshared(agent: Any) -> dict[str, Any]:
    """Every target with all seven layers of its own (no cache), on the agent's pool."""
    from probes.engine import run_probe

    def one(info: Any) -> str:
        plan = agent.view.plan(info.reference)
        options = agent.view.options(info.creds.keyring, credential_source=info.creds.source)
        code = "blocked"
        for endpoint in plan.endpoints:
            report = run_probe(endpoint.reference, endpoint.target, options)
            code = report.code.value
            if report.ok:
                break
        return code

    infos = [i for i in agent._targets.values() if i.kind == "image"]  # not endpoint checks
    began, cpu = time.perf_counter(), time.process_time()
    codes = list(agent.pool.map(one, infos))
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"event": "unshared", "wall": wall, "cpu": cpu, "probes": len(infos),
            "codes": {str(i.reference): c for i, c in zip(infos, codes)}, **proc_memory_kib()}


def _child_parts(agent: Any) -> dict[str, Any]:
    """Unprofiled CPU of the per-target steps around the probe, each run once per target.

    The agent's bookkeeping (``_set_registry_state``, which ``_record`` calls after every
    probe) and the node view's per-probe work (``plan``: the endpoint plan from certs.d;
    ``options``; the keyring lookup of the token layer). Each is timed alone, in this thread,
    on the targets of the last cycle, so its share of a cycle's CPU is plain.
    """
    infos = [i for i in agent._targets.values() if i.kind == "image"]
    steps: dict[str, Callable[[Any], Any]] = {
        "Agent._set_registry_state": lambda i: agent._set_registry_state(i.reference.registry),
        "NodeView.plan": lambda i: agent.view.plan(i.reference),
        "NodeView.options": lambda i: agent.view.options(i.creds.keyring),
        "Keyring.lookup": lambda i: i.creds.keyring.lookup(i.reference.name),
    }
    out: dict[str, float] = {}
    for name, step in steps.items():
        began = time.process_time()
        for info in infos:
            step(info)
        out[name] = time.process_time() - began
    return {"event": "parts", "cpu": out, "calls": len(infos)}


def _child_state(agent: Any) -> dict[str, str]:
    """The per-registry diagnosis the metrics export, to check a patched cycle against."""
    current = getattr(agent.metrics, "_current_code", {})
    return {registry: getattr(code, "value", str(code)) for registry, code in current.items()}


def _child_profile(agent: Any, out: Path) -> dict[str, Any]:
    """One steady cycle, probes run one after another in this thread under cProfile."""
    import cProfile
    import pstats

    agent.cache.new_cycle()
    keys = list(agent._targets)
    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the core is shared
    began = time.process_time()
    profiler.enable()
    for key in keys:
        agent.probe_target(key)
    profiler.disable()
    cpu = time.process_time() - began
    profiler.dump_stats(str(out))
    stream = open(out.with_suffix(".txt"), "w")  # noqa: SIM115
    stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
    stats.print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)
    stream.close()
    return {"event": "profile", "cpu": cpu, "probes": len(keys), "stats": str(out)}


class Child:
    """The measured child process and its line protocol."""

    def __init__(self, config: Path, workdir: Path, cpu: set[int]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(config)],
            cwd=ROOT, env=_child_env(workdir), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(workdir / "child.stderr", "w"), text=True,  # noqa: SIM115
            preexec_fn=lambda: os.sched_setaffinity(0, cpu))
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RunFailed(f"the agent child exited {self.proc.wait()}")
        data: dict[str, Any] = json.loads(line)
        return data

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RunFailed(Exception):
    """A run did not do what it was asked; no figures are reported."""


def check_codes(targets: list[BenchTarget], codes: dict[str, str], what: str) -> None:
    """Every target must have been diagnosed, each with its category's code."""
    wrong = [(t.reference, t.category, t.expect, codes.get(t.reference)) for t in targets
             if codes.get(t.reference) != t.expect]
    if wrong:
        sample = "; ".join(f"{r} ({c}): expected {e}, got {g}" for r, c, e, g in wrong[:5])
        raise RunFailed(f"{what}: {len(wrong)} of {len(targets)} diagnoses differ: {sample}")


# --------------------------------------------------------------------------- section: cycle


@dataclass
class CycleFigures:
    label: str
    wall: float
    cpu: float
    rss_kib: int
    hwm_kib: int
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)  # probes of the cycle: image, endpoint


def run_cycles(fleet: Any, targets: list[BenchTarget], config: Path, workdir: Path,
               cycles: int, cpu: set[int], profile: bool,
               between: Callable[[], None] = lambda: None
               ) -> tuple[list[CycleFigures], dict[str, Any], dict[str, Any] | None]:
    counter = RequestCounter(fleet, "pulldoctor/")
    child = Child(config, workdir, cpu)
    figures: list[CycleFigures] = []
    state: dict[str, str] | None = None
    try:
        for index in range(cycles + 2):
            command = "cycle" if index < cycles else ("cold" if index == cycles else "unshared")
            counter.mark()
            result = child.ask(command)
            label = ("1 (cold start)" if index == 0 else str(index + 1)) if index < cycles \
                else ("tokens dropped" if command == "cold" else "unshared probes")
            check_codes(targets, result["codes"], f"cycle {label}")
            state = result.get("state", state)
            figures.append(CycleFigures(label, result["wall"], result["cpu"], result["VmRSS"],
                                        result["VmHWM"], counter.counts(),
                                        result.get("kinds", {})))
            if 0 < index < cycles:
                between()  # a blackbox round right after each steady cycle: same load
        parts = child.ask("parts")
        prof = child.ask(f"profile {workdir / 'cycle.prof'}") if profile else None
    finally:
        child.close()
    return figures, parts, prof


def report_cycles(figures: list[CycleFigures], targets: int, cpu: set[int],
                  endpoints: int) -> dict[str, float]:
    print(f"\n== 1. Agent.run_cycle(): {targets} targets on {endpoints} endpoints, child pinned "
          f"to CPU {sorted(cpu)}, concurrency as configured")
    print(f"  {'cycle':<18}{'wall s':>8}{'CPU s':>8}{'CPU ms/target':>15}{'RSS MiB':>9}"
          f"{'peak MiB':>10}{'requests':>10}  by endpoint")
    for f in figures:
        by = ", ".join(f"{k} {sum(v.values())}" for k, v in sorted(f.requests.items()))
        print(f"  {f.label:<18}{f.wall:>8.2f}{f.cpu:>8.2f}{1000 * f.cpu / targets:>15.2f}"
              f"{_mib(f.rss_kib):>9.1f}{_mib(f.hwm_kib):>10.1f}"
              f"{total_requests(f.requests):>10}  {by}")
    steady = [f for f in figures[1:] if f.label[0].isdigit()]
    wall = statistics.median(f.wall for f in steady)
    cpu_s = statistics.median(f.cpu for f in steady)
    unshared = next(f for f in figures if f.label == "unshared probes")
    kinds = steady[0].kinds
    print(f"  probes per cycle: {kinds.get('image', 0)} image targets + "
          f"{kinds.get('endpoint', 0)} endpoint targets (one per registry, dns..challenge)")
    print(f"  steady cycles (median of {len(steady)}): wall {wall:.2f} s, CPU {cpu_s:.2f} s, "
          f"{1000 * cpu_s / targets:.2f} ms CPU per image target (endpoint checks included)")
    print(f"  unshared full probes: {1000 * unshared.cpu / targets:.2f} ms CPU per probe "
          f"(all seven layers each, no shared endpoint layers or tokens)")
    print("  every target got its category's diagnosis in every cycle")
    steady_req = statistics.median(total_requests(f.requests) for f in steady)
    print(f"  requests per steady cycle: {steady_req:.0f} ({steady_req / targets:.2f} per target)"
          f"; cold: {total_requests(figures[0].requests)}")
    return {"wall": wall, "cpu_per_target": cpu_s / targets,
            "cpu_per_unshared": unshared.cpu / targets,
            "peak_mib": _mib(max(f.hwm_kib for f in figures)),
            "cold_wall": figures[0].wall}


def print_request_table(figures: list[CycleFigures]) -> None:
    print("  requests by endpoint and kind, cold cycle / steady cycle:")
    cold, steady = figures[0].requests, figures[1].requests if len(figures) > 1 else {}
    for endpoint in sorted(set(cold) | set(steady)):
        kinds = sorted(set(cold.get(endpoint, {})) | set(steady.get(endpoint, {})))
        parts = [f"{k} {cold.get(endpoint, {}).get(k, 0)}/{steady.get(endpoint, {}).get(k, 0)}"
                 for k in kinds]
        print(f"    {endpoint:<20} " + ", ".join(parts))


# --------------------------------------------------------------------------- section: standalone


@dataclass
class Sampler:
    """Samples a process's RSS every ``period`` seconds in a thread."""

    pid: int
    period: float = 0.1
    rss: list[tuple[float, int]] = field(default_factory=list)
    hwm: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                mem = proc_memory_kib(self.pid)
            except (OSError, ValueError):
                return
            self.rss.append((time.monotonic(), mem["VmRSS"]))
            self.hwm = max(self.hwm, mem["VmHWM"])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


@contextmanager
def agent_process(config: Path, workdir: Path, cpu: set[int], name: str
                  ) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """The real ``pulldoctor agent --standalone`` process; yields it and its agent_started line."""
    out = open(workdir / f"{name}.log", "w+")  # noqa: SIM115
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "agent", "--standalone",
                             "--config", str(config)], cwd=ROOT, env=_child_env(workdir),
                            stdout=out, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, cpu))
    try:
        started = _wait_for_line(workdir / f"{name}.log", "agent_started", proc, 30)
        started["_began"] = began
        yield proc, started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()


def _wait_for_line(path: Path, event: str, proc: subprocess.Popen[str], timeout: float
                   ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            if f'"event": "{event}"' in line:
                data: dict[str, Any] = json.loads(line)
                return data
        if proc.poll() is not None:
            raise RunFailed(f"the agent exited {proc.returncode}: {path.read_text()[-600:]}")
        time.sleep(0.05)
    raise RunFailed(f"no {event} line from the agent within {timeout:g} s")


def _get(url: str) -> tuple[int, str]:
    import httpx

    try:
        response = httpx.get(url, timeout=5, trust_env=False)
    except httpx.HTTPError:
        return 0, ""
    return response.status_code, response.text


def _probe_runs(port: int) -> float:
    _, text = _get(f"http://127.0.0.1:{port}/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("pulldoctor_probe_runs_total{"))


@dataclass
class StandaloneFigures:
    ready_s: float
    first_cycle_cpu: float
    steady_seconds: float
    steady_probes: float
    steady_cpu: float
    hwm_kib: int
    rss_between_kib: int
    idle_rss_kib: int
    idle_cpu_per_s: float
    idle_hwm_kib: int


def run_standalone(config: Path, idle_config: Path, workdir: Path, cpu: set[int],
                   steady_seconds: float) -> StandaloneFigures:
    with agent_process(config, workdir, cpu, "standalone") as (proc, started):
        sampler = Sampler(proc.pid)
        port = int(started["port"])
        while _get(f"http://127.0.0.1:{port}/readyz")[0] != 200:
            if proc.poll() is not None or time.monotonic() - started["_began"] > 600:
                raise RunFailed("the standalone agent never became ready")
            time.sleep(0.05)
        ready = time.monotonic() - started["_began"]
        first_cpu = proc_cpu_seconds(proc.pid)
        probes0, cpu0, t0 = _probe_runs(port), proc_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(steady_seconds)
        probes1, cpu1 = _probe_runs(port), proc_cpu_seconds(proc.pid)
        seconds = time.monotonic() - t0
        sampler.stop()
        between = min((r for t, r in sampler.rss if t > t0), default=0)
    idle = run_idle(idle_config, workdir, cpu)
    return StandaloneFigures(ready, first_cpu, seconds, probes1 - probes0, cpu1 - cpu0,
                             sampler.hwm, between, *idle)


def run_idle(config: Path, workdir: Path, cpu: set[int], settle: float = 3.0,
             window: float = 20.0) -> tuple[int, float, int]:
    """RSS and CPU per second of an agent with nothing to probe."""
    with agent_process(config, workdir, cpu, "idle") as (proc, _started):
        time.sleep(settle)
        cpu0, t0 = proc_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(window)
        cpu_per_s = (proc_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        mem = proc_memory_kib(proc.pid)
    return mem["VmRSS"], cpu_per_s, mem["VmHWM"]


def report_standalone(s: StandaloneFigures, targets: int, interval: float) -> dict[str, float]:
    print(f"\n== 2. the real process: pulldoctor agent --standalone, {targets} static targets, "
          f"interval_seconds 1 (one image per registry per s), endpoint_interval_seconds "
          f"{interval:g}, startup_spread_seconds 0, jitter ±20 %")
    print(f"  time to /readyz (process start to the end of the first full cycle): "
          f"{s.ready_s:.2f} s, CPU {s.first_cycle_cpu:.2f} s (imports included)")
    per_probe = s.steady_cpu / s.steady_probes if s.steady_probes else float("nan")
    print(f"  steady window {s.steady_seconds:.0f} s: {s.steady_probes:.0f} probes "
          f"({s.steady_probes / s.steady_seconds:.1f}/s), CPU {s.steady_cpu:.2f} s = "
          f"{1000 * per_probe:.2f} ms per probe, {100 * s.steady_cpu / s.steady_seconds:.1f} % "
          "of one core")
    print(f"  RSS: peak {_mib(s.hwm_kib):.1f} MiB, lowest in the steady window "
          f"{_mib(s.rss_between_kib):.1f} MiB")
    print(f"  idle agent (no targets, 3 s after start): RSS {_mib(s.idle_rss_kib):.1f} MiB "
          f"(peak {_mib(s.idle_hwm_kib):.1f}), CPU {1000 * s.idle_cpu_per_s:.2f} ms per second "
          f"over 20 s (resolution {1000 / CLK_TCK / 20:.1f} ms/s)")
    return {"ready": s.ready_s, "cpu_per_probe": per_probe, "peak_mib": _mib(s.hwm_kib),
            "idle_mib": _mib(s.idle_rss_kib)}


# --------------------------------------------------------------------------- section: blackbox


BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"


def blackbox_config(ca_file: Path, path: Path) -> Path:
    path.write_text(
        "modules:\n"
        "  registry_v2:\n"
        "    prober: http\n"
        "    timeout: 10s\n"
        "    http:\n"
        "      valid_status_codes: [200, 401]\n"
        "      preferred_ip_protocol: ip4\n"
        f"      tls_config: {{ca_file: {ca_file}}}\n")
    return path


@dataclass
class BlackboxFigures:
    rounds: list[tuple[float, float]]  # (wall, cpu) per round of len(targets) probes
    successes: int
    rss_kib: int
    hwm_kib: int
    requests: int


class Blackbox:
    """A running blackbox_exporter pinned to the measured CPU; :meth:`round` probes every target.

    The first round is a warm-up and is not kept. Rounds can be interleaved with the agent's
    cycles, so both are measured under the same machine load.
    """

    def __init__(self, fleet: Any, targets: list[BenchTarget], workdir: Path, cpu: set[int],
                 concurrency: int) -> None:
        import httpx

        from tests.fleet.sockets import allocate_ports

        self.targets = targets
        self.counter = RequestCounter(fleet, "Blackbox")
        config = blackbox_config(fleet.ca_file, workdir / "blackbox.yml")
        self.port = allocate_ports(1)[0]
        self._log = open(workdir / "blackbox.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.level=warn"], stdout=self._log, stderr=subprocess.STDOUT,
            env=_child_env(workdir), preexec_fn=lambda: os.sched_setaffinity(0, cpu))
        self.client = httpx.Client(timeout=30, trust_env=False,
                                   limits=httpx.Limits(max_connections=concurrency))
        self.pool = ThreadPoolExecutor(concurrency)
        self.rounds: list[tuple[float, float]] = []
        self.successes = 0
        self.requests = 0
        _wait_http(f"http://127.0.0.1:{self.port}/-/healthy", self.proc)
        self.round(keep=False)

    def _probe(self, target: BenchTarget) -> bool:
        r = self.client.get(f"http://127.0.0.1:{self.port}/probe",
                            params={"module": "registry_v2", "target": target.v2_url})
        return "\nprobe_success 1" in "\n" + r.text

    def round(self, keep: bool = True) -> None:
        self.counter.mark()
        began, cpu0 = time.perf_counter(), proc_cpu_seconds(self.proc.pid)
        results = list(self.pool.map(self._probe, self.targets))
        wall, used = time.perf_counter() - began, proc_cpu_seconds(self.proc.pid) - cpu0
        if keep:
            self.rounds.append((wall, used))
        self.successes = sum(results)
        self.requests = total_requests(self.counter.counts())

    def close(self) -> BlackboxFigures:
        mem = proc_memory_kib(self.proc.pid)
        self.client.close()
        self.pool.shutdown()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        return BlackboxFigures(self.rounds, self.successes, mem["VmRSS"], mem["VmHWM"],
                               self.requests)


def _wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _get(url)[0] != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RunFailed(f"{url} did not answer")
        time.sleep(0.05)


def report_blackbox(b: BlackboxFigures, targets: list[BenchTarget], concurrency: int,
                    interleaved: bool) -> dict[str, float]:
    n = len(targets)
    walls = [w for w, _ in b.rounds]
    cpu = statistics.median(c for _, c in b.rounds)
    print(f"\n== 3. prometheus-blackbox-exporter: {n} http probes of the targets' /v2/ per round, "
          f"{concurrency} at a time through /probe, {len(b.rounds)} rounds after 1 warm-up "
          f"{'(each right after an agent cycle)' if interleaved else ''}")
    print(f"  wall per round: median {statistics.median(walls):.2f} s; CPU per round: median "
          f"{cpu:.2f} s = {1000 * cpu / n:.2f} ms per HTTP probe")
    print(f"  probe_success 1 in {b.successes} of {n} probes of the last round; requests seen "
          f"by the fleet in that round: {b.requests}")
    print(f"  RSS {_mib(b.rss_kib):.1f} MiB (peak {_mib(b.hwm_kib):.1f})")
    return {"cpu_per_probe": cpu / n, "wall": statistics.median(walls)}


# --------------------------------------------------------------------------- main


def machine_lines() -> list[str]:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    bb = subprocess.run([BLACKBOX, "--version"], capture_output=True, text=True, check=False)
    version = (bb.stdout or bb.stderr).splitlines()[0] if (bb.stdout or bb.stderr) else "?"
    return [f"machine: nproc {os.cpu_count()}, {platform.machine()}, {platform.system()} "
            f"{platform.release()}, load average {load}",
            f"python: {platform.python_version()} ({sys.executable})", f"blackbox: {version}"]


def verdicts(cycle: dict[str, float] | None, standalone: dict[str, float] | None,
             blackbox: dict[str, float] | None) -> bool:
    print("\n== targets")
    met = True

    def line(ok: bool, text: str) -> None:
        nonlocal met
        met = met and ok
        print(f"  {'met   ' if ok else 'MISSED'} {text}")

    if cycle:
        line(cycle["wall"] <= CYCLE_TARGET_S, f"steady {cycle['wall']:.2f} s per full cycle "
             f"(target <= {CYCLE_TARGET_S:g} s on one core; cold start {cycle['cold_wall']:.2f} s)")
    if standalone:
        line(standalone["ready"] <= CYCLE_TARGET_S, f"real process: first full cycle done "
             f"{standalone['ready']:.2f} s after start (target <= {CYCLE_TARGET_S:g} s)")
    if cycle and blackbox:
        for label, value in (("per target, steady cycle", cycle["cpu_per_target"]),
                             ("per unshared seven-layer probe", cycle["cpu_per_unshared"])):
            ratio = value / blackbox["cpu_per_probe"]
            line(ratio <= CPU_RATIO_TARGET, f"CPU {label}: {1000 * value:.2f} ms = {ratio:.2f}x "
                 f"blackbox's {1000 * blackbox['cpu_per_probe']:.2f} ms per HTTP probe "
                 f"(target <= {CPU_RATIO_TARGET:g}x)")
    if standalone and blackbox:
        ratio = standalone["cpu_per_probe"] / blackbox["cpu_per_probe"]
        line(ratio <= CPU_RATIO_TARGET, f"CPU per probe of the real process in steady state: "
             f"{1000 * standalone['cpu_per_probe']:.2f} ms = {ratio:.2f}x blackbox "
             f"(target <= {CPU_RATIO_TARGET:g}x)")
    peaks = [d["peak_mib"] for d in (cycle, standalone) if d]
    if peaks:
        line(max(peaks) <= RSS_TARGET_MIB, f"peak RSS with the targets {max(peaks):.1f} MiB "
             f"(target <= {RSS_TARGET_MIB:g} MiB)")
    if standalone:
        line(standalone["idle_mib"] <= IDLE_RSS_TARGET_MIB, f"idle RSS "
             f"{standalone['idle_mib']:.1f} MiB (target <= {IDLE_RSS_TARGET_MIB:g} MiB)")
    return met


def run(args: argparse.Namespace, workdir: Path) -> int:
    from tests.fleet import Fleet

    driver_cpus, measured_cpu = cpus()
    os.sched_setaffinity(0, driver_cpus)  # the fleet's processes inherit it
    print("\n".join(machine_lines()))
    print(f"pinning: driver and fleet on CPU {sorted(driver_cpus)}, measured process on "
          f"CPU {sorted(measured_cpu)}")
    results: dict[str, dict[str, float] | None] = {"cycle": None, "standalone": None,
                                                   "blackbox": None}
    with Fleet.start(workdir / "fleet") as fleet:
        push_bench_images(fleet.registries["plain"].url)
        targets = build_workload(fleet, args.targets, workdir)
        endpoints = len({t.v2_url for t in targets})
        print(f"workload: {len(targets)} targets on {endpoints} endpoints, "
              f"{len({t.reference.rsplit(':', 1)[0] for t in targets})} repositories; "
              f"{sum(t.expect == 'ok' for t in targets)} healthy")
        for category, count in Counter(t.category for t in targets).items():
            expect = next(t.expect for t in targets if t.category == category)
            print(f"  {count:>4}  {category:<22} -> {expect}")
        common = {"concurrency": args.concurrency, "workdir": workdir}
        blackbox = Blackbox(fleet, targets, workdir, measured_cpu, args.concurrency) \
            if args.section in ("all", "blackbox") else None
        interleave = blackbox is not None and args.section == "all"
        config = write_config(agent_config(fleet, targets, interval=300, **common),
                              workdir / "agent-cycle.yaml")
        if args.section in ("all", "cycle"):
            figures, parts, prof = run_cycles(
                fleet, targets, config, workdir, args.cycles, measured_cpu, args.profile,
                blackbox.round if interleave and blackbox else lambda: None)
            results["cycle"] = report_cycles(figures, len(targets), measured_cpu, endpoints)
            print_request_table(figures)
            if prof:
                print(f"  profile of one steady cycle run sequentially: {prof['cpu']:.2f} s CPU "
                      f"for {prof['probes']} probes; stats in {prof['stats']} and .txt")
            print(f"  per-target steps around the probe, each once per target "
                  f"({parts['calls']} calls, unprofiled CPU):")
            for name, seconds in parts["cpu"].items():
                print(f"    {name:<28}{seconds:>7.3f} s  ({1000 * seconds / parts['calls']:.3f} ms "
                      "per target)")
        if args.section in ("all", "standalone"):
            # one image per registry per second, the registry's endpoint every --interval, the
            # first cycle at once (see the module docstring)
            live = write_config(agent_config(fleet, targets, interval=1.0, **common,
                                             endpoint_interval=args.interval, startup_spread=0.0),
                                workdir / "agent-standalone.yaml")
            idle = write_config(agent_config(fleet, [], interval=args.interval, **common),
                                workdir / "agent-idle.yaml")
            figures_s = run_standalone(live, idle, workdir, measured_cpu,
                                       args.steady_seconds or 2.5 * args.interval)
            results["standalone"] = report_standalone(figures_s, len(targets), args.interval)
        if blackbox is not None:
            if not interleave:
                for _ in range(args.bb_rounds):
                    blackbox.round()
            results["blackbox"] = report_blackbox(blackbox.close(), targets, args.concurrency,
                                                  interleave)
    return 0 if verdicts(results["cycle"], results["standalone"], results["blackbox"]) else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_continuous.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, default=500)
    p.add_argument("--cycles", type=int, default=4, help="in-process cycles (first is cold)")
    p.add_argument("--concurrency", type=int, default=4, help="agent config and blackbox client")
    p.add_argument("--section", choices=("all", "cycle", "standalone", "blackbox"), default="all")
    p.add_argument("--interval", type=float, default=20.0,
                   help="endpoint_interval_seconds of the standalone process (default 20; its "
                   "interval_seconds is 1)")
    p.add_argument("--steady-seconds", type=float, default=0.0,
                   help="steady window of the standalone process (default 2.5 intervals)")
    p.add_argument("--bb-rounds", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="cProfile one sequential cycle")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child is not None:
        return child_main(args.child)
    if args.targets < len(CATEGORIES) or args.cycles < 2:
        print("bench_continuous: --targets must be >= 25 and --cycles >= 2", file=sys.stderr)
        return 2
    try:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            return run(args, args.workdir.resolve())
        with tempfile.TemporaryDirectory(prefix="pulldoctor-continuous-") as tmp:
            return run(args, Path(tmp))
    except RunFailed as exc:
        print(f"\nbench_continuous: a run failed, no figures reported: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
