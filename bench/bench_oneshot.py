"""One-shot benchmark: ``pulldoctor probe`` against ``skopeo inspect``, and probe start-up imports.

Why: an operator runs ``pulldoctor probe`` by hand on a node, next to the tools they already
know; it should answer about as fast as ``skopeo inspect`` does for the same image. This script
measures whole processes, because start-up (interpreter plus imports) is most of a one-shot run.

Section ``oneshot`` starts the loopback fleet in-process and times, alternating, N runs each
(after W warm-ups each) on the healthy TLS + token-auth registry (``test/hello:v1``, alice):

* ``pulldoctor probe REF --format json --docker-config CFG --certs-dir CERTS_DIR`` (all seven
  layers), as ``.venv/bin/pulldoctor`` when it exists, else ``python -m agent.cli``;
* ``skopeo inspect --raw --retry-times 0 --cert-dir DIR --authfile CFG docker://REF``.

Every run must exit 0; pulldoctor's JSON must say ``ok`` with all seven layers, and skopeo's
output must be the pushed manifest (its sha256 is the image digest). Target: median ratio
pulldoctor/skopeo <= 1.0.

Section ``import`` runs ``python -X importtime -m agent.cli probe <closed port> --format json``
(the real probe path, which fails at the tcp layer) M times and sums the cumulative time of the
top-level imports. Target: median <= 150 ms. It lists the most expensive modules.

Bytecode: this sandbox sets PYTHONDONTWRITEBYTECODE=1, so without help every run would compile
the project's sources, which an installed pulldoctor never does (pip compiles at install time).
Child processes therefore get ``PYTHONPYCACHEPREFIX`` in the work directory (the repository is
not touched) unless ``--no-bytecode-cache`` is given; the warm-ups fill it. Proxy variables are
removed from both commands' environment. It refuses to report a figure from a failed run.

Usage: python bench/bench_oneshot.py [--runs 30] [--warmup 3] [--import-runs 10]
                                     [--section all|oneshot|import] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

__all__ = ["main", "parse_importtime", "summarize", "Stats"]

RATIO_TARGET = 1.0
IMPORT_TARGET_MS = 150.0
LAYER_COUNT = 7
COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class Stats:
    """Median, 90th percentile (nearest rank) and minimum of a sample, in milliseconds."""

    median: float
    p90: float
    minimum: float
    n: int

    def line(self, label: str) -> str:
        return (f"  {label:<12} median {self.median:8.1f} ms   p90 {self.p90:8.1f} ms   "
                f"min {self.minimum:8.1f} ms   (n={self.n})")


def summarize(samples_ms: Sequence[float]) -> Stats:
    ordered = sorted(samples_ms)
    rank = max(math.ceil(0.9 * len(ordered)), 1)
    return Stats(statistics.median(ordered), ordered[rank - 1], ordered[0], len(ordered))


@dataclass
class Env:
    """How child processes are started: interpreter, pulldoctor command, environment."""

    python: str
    pulldoctor: list[str]
    pulldoctor_kind: str
    env: dict[str, str] = field(default_factory=dict)
    bytecode: str = ""


def make_env(workdir: Path, bytecode_cache: bool) -> Env:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
        bytecode = f"cached (PYTHONPYCACHEPREFIX={workdir / 'pycache'})"
    else:
        bytecode = ("as inherited (PYTHONDONTWRITEBYTECODE="
                    f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")
    venv_cli = ROOT / ".venv" / "bin" / "pulldoctor"
    if venv_cli.exists():  # the installed entry point, and the interpreter it runs on
        python, command, kind = str(venv_cli.parent / "python"), [str(venv_cli)], str(venv_cli)
    else:
        python, command = sys.executable, [sys.executable, "-m", "agent.cli"]
        kind = f"{sys.executable} -m agent.cli (no {venv_cli})"
    return Env(python, command, kind, env, bytecode)


@dataclass(frozen=True)
class Timing:
    """One child process: wall-clock and CPU (user + system, all its threads) milliseconds."""

    wall_ms: float
    cpu_ms: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(argv: list[str], env: Env) -> tuple[Timing, subprocess.CompletedProcess[bytes]]:
    """Run ``argv`` to completion; its CPU time is the growth of the reaped children's usage."""
    cpu_before, began = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env.env, capture_output=True,
                          timeout=COMMAND_TIMEOUT, check=False)
    wall = time.perf_counter() - began
    return Timing(wall * 1000.0, (_children_cpu() - cpu_before) * 1000.0), done


class RunFailed(Exception):
    """A benchmarked command did not do what it was asked; no figure is reported."""


def _tail(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()[-600:]


def check_pulldoctor(done: subprocess.CompletedProcess[bytes]) -> None:
    if done.returncode != 0:
        raise RunFailed(f"pulldoctor exited {done.returncode}: {_tail(done.stderr or done.stdout)}")
    report = json.loads(done.stdout)
    layers = report.get("layers", [])
    if report.get("ok") is not True or len(layers) != LAYER_COUNT:
        raise RunFailed(f"pulldoctor report not ok or not {LAYER_COUNT} layers: "
                        f"{_tail(done.stdout)}")
    for name in ("tls", "challenge", "token", "manifest"):
        status = next((layer["status"] for layer in layers if layer["name"] == name), None)
        if status != "ok":
            raise RunFailed(f"pulldoctor layer {name} is {status!r}, expected ok")


def check_skopeo(done: subprocess.CompletedProcess[bytes], digest: str) -> None:
    if done.returncode != 0:
        raise RunFailed(f"skopeo exited {done.returncode}: {_tail(done.stderr)}")
    got = "sha256:" + hashlib.sha256(done.stdout).hexdigest()
    if got != digest:
        raise RunFailed(f"skopeo printed a manifest with digest {got}, expected {digest}")


# --------------------------------------------------------------------------- machine


def machine_lines(env: Env) -> list[str]:
    skopeo = subprocess.run(["skopeo", "--version"], capture_output=True, text=True, check=False)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine: nproc {len(os.sched_getaffinity(0))}, {platform.machine()}, "
        f"{platform.system()} {platform.release()}, load average {load}",
        f"python: {platform.python_version()} ({env.python})",
        f"pulldoctor command: {env.pulldoctor_kind}",
        f"bytecode: {env.bytecode}",
        f"skopeo: {skopeo.stdout.strip() or skopeo.stderr.strip()}",
        # both commands honour it; when set, pulldoctor loads the whole bundle eagerly
        f"SSL_CERT_FILE: {env.env.get('SSL_CERT_FILE', '(unset)')}, "
        f"SSL_CERT_DIR: {env.env.get('SSL_CERT_DIR', '(unset)')}",
    ]


# --------------------------------------------------------------------------- section 1


@dataclass(frozen=True)
class OneShotSetup:
    reference: str
    pulldoctor: list[str]
    skopeo: list[str]
    digest: str


def oneshot_setup(fleet: object, env: Env, workdir: Path) -> OneShotSetup:
    from tests.fleet import ALICE, Fleet

    assert isinstance(fleet, Fleet)
    registry = fleet.registries["token"]
    reference = f"{registry.host}/test/hello:v1"
    config = fleet.docker_config({registry.host: ALICE}, workdir / "bench-docker-config.json")
    skopeo_certs = workdir / "skopeo-certs"
    skopeo_certs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fleet.ca_file, skopeo_certs / "ca.crt")
    pulldoctor = [*env.pulldoctor, "probe", reference, "--format", "json",
                  "--docker-config", str(config), "--certs-dir", str(fleet.certs_dir)]
    skopeo = ["skopeo", "inspect", "--raw", "--retry-times", "0", "--cert-dir",
              str(skopeo_certs), "--authfile", str(config), f"docker://{reference}"]
    return OneShotSetup(reference, pulldoctor, skopeo, fleet.images["hello"].digest)


@dataclass
class OneShotResult:
    """Samples of the timed runs: per command wall and CPU, and pulldoctor's own layer times."""

    wall_ms: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)
    layer_ms: dict[str, list[float]] = field(default_factory=dict)
    probe_ms: list[float] = field(default_factory=list)
    import_ms: list[float] = field(default_factory=list)

    def add(self, name: str, timing: Timing) -> None:
        self.wall_ms.setdefault(name, []).append(timing.wall_ms)
        self.cpu_ms.setdefault(name, []).append(timing.cpu_ms)


def _record_layers(result: OneShotResult, stdout: bytes) -> None:
    report = json.loads(stdout)
    result.probe_ms.append(report["seconds"] * 1000.0)
    for layer in report["layers"]:
        result.layer_ms.setdefault(layer["name"], []).append(layer["seconds"] * 1000.0)


def run_oneshot(setup: OneShotSetup, env: Env, runs: int, warmup: int) -> OneShotResult:
    """Alternate the two commands; warm-ups are checked like every other run, then dropped."""
    result = OneShotResult()
    for index in range(warmup + runs):
        timing, done = timed_run(setup.pulldoctor, env)
        check_pulldoctor(done)
        if index >= warmup:
            result.add("pulldoctor", timing)
            _record_layers(result, done.stdout)
        timing, done = timed_run(setup.skopeo, env)
        check_skopeo(done, setup.digest)
        if index >= warmup:
            result.add("skopeo", timing)
    return result


def healthy_imports(setup: OneShotSetup, env: Env, runs: int) -> list[float]:
    """Import time (top-level cumulative sum) of the same healthy probe, for comparison."""
    argv = [env.python, "-X", "importtime", "-m", "agent.cli",
            *setup.pulldoctor[len(env.pulldoctor):]]
    totals = []
    for _ in range(runs):
        _timing, done = timed_run(argv, env)
        check_pulldoctor(done)
        lines = parse_importtime(done.stderr.decode("utf-8", "replace"))
        totals.append(sum(li.cumulative_us for li in lines if li.depth == 0) / 1000.0)
    return totals


def report_oneshot(setup: OneShotSetup, result: OneShotResult, warmup: int) -> bool:
    wall = {name: summarize(v) for name, v in result.wall_ms.items()}
    cpu = {name: summarize(v) for name, v in result.cpu_ms.items()}
    ratio = wall["pulldoctor"].median / wall["skopeo"].median
    print(f"\n== 1. one-shot probe vs skopeo inspect: {setup.reference} "
          f"(TLS + token auth, alice), {wall['skopeo'].n} runs each after {warmup} warm-ups, "
          "alternating")
    print(f"  pulldoctor: {' '.join(setup.pulldoctor)}")
    print(f"  skopeo:     {' '.join(setup.skopeo)}")
    print("  wall-clock:")
    print(wall["pulldoctor"].line("pulldoctor"))
    print(wall["skopeo"].line("skopeo"))
    verdict = "met" if ratio <= RATIO_TARGET else "MISSED"
    print(f"  median ratio pulldoctor/skopeo: {ratio:.2f} "
          f"(target <= {RATIO_TARGET:.1f}: {verdict})")
    print("  CPU time (user + system, all threads):")
    print(cpu["pulldoctor"].line("pulldoctor"))
    print(cpu["skopeo"].line("skopeo"))
    probe = summarize(result.probe_ms)
    layers = ", ".join(f"{name} {statistics.median(v):.1f}" for name, v in result.layer_ms.items())
    print(f"  pulldoctor's own layer time (report 'seconds'): median {probe.median:.1f} ms "
          f"({layers}); the rest of its wall time is start-up and exit")
    if result.import_ms:
        print(f"  import time of this healthy probe (-X importtime, top-level sum): median "
              f"{statistics.median(result.import_ms):.1f} ms over {len(result.import_ms)} runs")
    print("  every run exited 0; every pulldoctor report was ok with 7 layers; every skopeo "
          "manifest matched the pushed digest")
    return ratio <= RATIO_TARGET


# --------------------------------------------------------------------------- section 2


@dataclass(frozen=True)
class ImportLine:
    name: str
    self_us: int
    cumulative_us: int
    depth: int


def parse_importtime(stderr: str) -> list[ImportLine]:
    """The ``-X importtime`` lines of ``stderr`` (depth 0 = imported by the program itself)."""
    lines = []
    for raw in stderr.splitlines():
        if not raw.startswith("import time:"):
            continue
        fields = raw[len("import time:"):].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        label = fields[2][1:]  # one space, then two per nesting level
        depth = (len(label) - len(label.lstrip(" "))) // 2
        lines.append(ImportLine(label.strip(), int(fields[0]), int(fields[1]), depth))
    return lines


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, held until exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@dataclass
class ImportResult:
    totals_ms: list[float]
    wall_ms: list[float]
    cpu_ms: list[float]
    self_us: dict[str, list[int]]
    cumulative_us: dict[str, list[int]]
    top_level_us: dict[str, list[int]]


def _import_run(argv: list[str], env: Env, result: ImportResult, record: bool) -> None:
    timing, done = timed_run(argv, env)
    report = json.loads(done.stdout)
    code = report.get("diagnosis", {}).get("code")
    if done.returncode != 1 or code != "tcp_refused":
        raise RunFailed(f"closed-port probe gave exit {done.returncode}, code {code!r}: "
                        f"{_tail(done.stdout)}")
    lines = parse_importtime(done.stderr.decode("utf-8", "replace"))
    if not record:
        return
    result.wall_ms.append(timing.wall_ms)
    result.cpu_ms.append(timing.cpu_ms)
    result.totals_ms.append(sum(li.cumulative_us for li in lines if li.depth == 0) / 1000.0)
    for li in lines:
        result.self_us.setdefault(li.name, []).append(li.self_us)
        result.cumulative_us.setdefault(li.name, []).append(li.cumulative_us)
        if li.depth == 0:
            result.top_level_us.setdefault(li.name, []).append(li.cumulative_us)


def run_imports(env: Env, runs: int, warmup: int) -> tuple[str, ImportResult]:
    result = ImportResult([], [], [], {}, {}, {})
    with closed_port() as port:
        reference = f"127.0.0.1:{port}/test/hello:v1"
        argv = [env.python, "-X", "importtime", "-m", "agent.cli", "probe", reference,
                "--format", "json"]
        for index in range(warmup + runs):
            _import_run(argv, env, result, record=index >= warmup)
    return " ".join(argv), result


def _median_table(values: dict[str, list[int]], count: int) -> list[tuple[str, float]]:
    medians = {name: statistics.median(v) / 1000.0 for name, v in values.items()}
    return sorted(medians.items(), key=lambda item: -item[1])[:count]


def report_imports(command: str, result: ImportResult, warmup: int) -> bool:
    stats = summarize(result.totals_ms)
    print(f"\n== 2. import time of the probe path, {stats.n} runs after {warmup} warm-ups")
    print(f"  command: {command}")
    print(stats.line("imports"))
    print(summarize(result.wall_ms).line("wall"))
    print(summarize(result.cpu_ms).line("cpu"))
    verdict = "met" if stats.median <= IMPORT_TARGET_MS else "MISSED"
    print(f"  sum of top-level cumulative import time, median {stats.median:.1f} ms "
          f"(target <= {IMPORT_TARGET_MS:.0f} ms: {verdict})")
    print("  10 most expensive modules by self time (median ms; cumulative alongside):")
    for name, self_ms in _median_table(result.self_us, 10):
        cumulative = statistics.median(result.cumulative_us[name]) / 1000.0
        print(f"    {self_ms:7.1f}  (cumulative {cumulative:7.1f})  {name}")
    print("  top-level imports by cumulative time (median ms):")
    for name, ms in _median_table(result.top_level_us, 10):
        print(f"    {ms:7.1f}  {name}")
    return stats.median <= IMPORT_TARGET_MS


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_oneshot.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per command (30)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up runs per command (3)")
    parser.add_argument("--import-runs", type=int, default=10, help="import-time runs (10)")
    parser.add_argument("--section", choices=("all", "oneshot", "import"), default="all")
    parser.add_argument("--workdir", type=Path, help="fleet work directory (default: a temp dir)")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="do not give child processes a bytecode cache")
    return parser


def _oneshot_section(env: Env, workdir: Path, args: argparse.Namespace) -> bool:
    from tests.fleet import Fleet

    with Fleet.start(workdir / "fleet") as fleet:
        setup = oneshot_setup(fleet, env, workdir)
        result = run_oneshot(setup, env, args.runs, args.warmup)
        result.import_ms = healthy_imports(setup, env, args.import_runs)
    return report_oneshot(setup, result, args.warmup)


def run(args: argparse.Namespace, workdir: Path) -> int:
    env = make_env(workdir, bytecode_cache=not args.no_bytecode_cache)
    print("\n".join(machine_lines(env)))
    met = True
    try:
        if args.section in ("all", "oneshot"):
            met = _oneshot_section(env, workdir, args) and met
        if args.section in ("all", "import"):
            command, result = run_imports(env, args.import_runs, args.warmup)
            met = report_imports(command, result, args.warmup) and met
    except RunFailed as exc:
        print(f"\nbench_oneshot: a benchmarked command failed, no figures reported: {exc}",
              file=sys.stderr)
        return 2
    return 0 if met else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.runs < 1 or args.import_runs < 1 or args.warmup < 0:
        print("bench_oneshot: --runs and --import-runs must be >= 1, --warmup >= 0",
              file=sys.stderr)
        return 2
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return run(args, args.workdir.resolve())
    with tempfile.TemporaryDirectory(prefix="pulldoctor-bench-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    raise SystemExit(main())
