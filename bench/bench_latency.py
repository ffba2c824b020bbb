"""Event-to-report latency: from a pod status update showing a pull failure to ``pull_diagnosed``.

Why: the agent's promise to an operator is that a failing pull gets its root cause within
seconds, not at the next probe cycle. This bench runs the real agent process (``pulldoctor agent
--node bench-node --kubeconfig K --config C``, default configuration except the node paths) against
``tests/fakekube.py`` and the loopback fleet, and for each of ``--failures`` pods updates the
pod's status to ``ErrImagePull`` with the words containerd really uses, then waits for the
agent's ``pull_diagnosed`` log line naming that pod. The latency is the time from just before
the update is stored in the fake API server to the arrival of that line on the agent's stdout
(read line by line as it is written; the line's own ``timestamp`` is checked against it).

Failures cycle through three kinds, each on an image no other failure uses (so every one gets a
forced probe of its own, not the rate-limited answer from the last one):

* ``missing tag`` on the token registry with a Secret that pulls (``image_not_found``);
* ``wrong password`` in the pod's Secret on the token registry (``auth_invalid``);
* ``expired cert`` registry (``tls_expired``).

Two phases: ``known`` pods existed (``ContainerCreating``) before the agent became ready, so
their images were probed in the first cycle; ``new`` pods are created during the run and fail
1 to 2 s later. Gaps between failures are random (0.2 to 1.2 s) so they fall on every phase of
the agent's 0.5 s loop. 30 healthy running pods keep ordinary targets busy meanwhile.

Every diagnosis must carry the expected code, or no figure is printed (exit 2).

Usage: python bench/bench_latency.py [--failures 50] [--seed 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

__all__ = ["Failure", "LineReader", "percentile", "main"]

NODE = "bench-node"
NAMESPACE = "shop"
HEALTHY_PODS = 30
KINDS = ("missing tag", "wrong password", "expired cert")
EXPECT = {"missing tag": "image_not_found", "wrong password": "auth_invalid",
          "expired cert": "tls_expired"}
WORDS = {"missing tag": "notfound", "wrong password": "oauth401", "expired cert": "expired"}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


@dataclass
class Failure:
    """One pull failure the bench causes, and when its report arrived."""

    pod: str
    kind: str
    phase: str
    image: str
    secret: str
    uid: str = ""
    started: float = 0.0  # monotonic, just before the status update
    started_wall: float = 0.0
    reported: float | None = None
    reported_stamp: float | None = None
    code: str | None = None

    @property
    def latency(self) -> float:
        assert self.reported is not None
        return self.reported - self.started


@dataclass
class LineReader:
    """Reads the agent's stdout line by line in a thread; notes each ``pull_diagnosed`` first."""

    stream: Any
    copy: Path
    first: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.copy.open("w") as out:
            for line in iter(self.stream.readline, ""):
                arrived = time.monotonic()
                out.write(line)
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("event") == "pull_diagnosed":
                    with self._cond:
                        self.first.setdefault(str(record.get("pod")), (arrived, record))
                        self._cond.notify_all()

    def wait(self, pod: str, timeout: float) -> tuple[float, dict[str, Any]] | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while pod not in self.first:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self.first[pod]


class RunFailed(Exception):
    """The run did not do what it was asked; no figures are reported."""


def _kubeconfig(url: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": url}}],
            "users": [{"name": "bench", "user": {}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}


def _agent_config(fleet: Any, workdir: Path, port: int) -> dict[str, Any]:
    """Defaults, except the node paths (the fleet's) and the listen address."""
    return {"listen_address": f"127.0.0.1:{port}", "resolv_conf": str(fleet.resolv_conf),
            "hosts_file": str(fleet.hosts_file), "certs_dirs": [str(fleet.certs_dir)],
            "ca_bundles": [], "node_docker_configs": [], "credential_provider_config": None,
            "proxy_dropin_dirs": [], "crio_registries_conf": str(workdir / "absent"),
            "crio_registries_dir": str(workdir / "absent.d"), "host_root": str(workdir)}


def _populate(fake: Any, fleet: Any) -> None:
    from tests.fakekube import make_pod
    from tests.fleet import ALICE
    from tests.scenario import dockerconfig

    token = fleet.registries["token"].host
    fake.add_secret(NAMESPACE, "regcred", {".dockerconfigjson": dockerconfig({token: ALICE})})
    fake.add_secret(NAMESPACE, "wrongpw", {".dockerconfigjson": dockerconfig(
        {token: (ALICE[0], "not-it")})})
    fake.add_service_account(NAMESPACE, "default")
    for index in range(HEALTHY_PODS):
        image = f"{token}/bench/app-{index % 60:02d}:v{1 + index % 3}"
        fake.add_pod(make_pod(f"healthy-{index}", NAMESPACE, NODE, [image],
                              image_pull_secrets=["regcred"]))


def plan_failures(fleet: Any, count: int) -> list[Failure]:
    token, expired = fleet.registries["token"].host, fleet.registries["expired"].host
    out = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        phase = "known" if index < count // 2 else "new"
        repo = f"bench/app-{index % 60:02d}"
        image = {"missing tag": f"{token}/{repo}:gone-{index}",
                 "wrong password": f"{token}/bench/latency-{index}:v1",
                 "expired cert": f"{expired}/{repo}:lat-{index}"}[kind]
        secret = "wrongpw" if kind == "wrong password" else "regcred"
        out.append(Failure(f"fail-{index}", kind, phase, image, secret))
    return out


def _create(fake: Any, failure: Failure) -> None:
    from tests.fakekube import make_pod

    pod = make_pod(failure.pod, NAMESPACE, NODE, [failure.image],
                   image_pull_secrets=[failure.secret],
                   waiting={"app": ("ContainerCreating", "")})
    failure.uid = pod["metadata"]["uid"]
    fake.add_pod(pod)


def _fail(fake: Any, fleet: Any, failure: Failure) -> None:
    from tests.fakekube import make_pod
    from tests.scenario import RPC
    from tests.scenario import WORDS as CONTAINERD

    host = failure.image.split("/", 1)[0]
    message = RPC.format(img=failure.image) + CONTAINERD[WORDS[failure.kind]].format(
        img=failure.image, host=host)
    pod = make_pod(failure.pod, NAMESPACE, NODE, [failure.image], uid=failure.uid,
                   image_pull_secrets=[failure.secret],
                   waiting={"app": ("ErrImagePull", message)})
    failure.started, failure.started_wall = time.monotonic(), time.time()
    fake.update_pod(pod)


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=str(workdir / "pycache"))
    return env


def _wait_ready(port: int, proc: subprocess.Popen[str], timeout: float) -> float:
    import httpx

    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if proc.poll() is not None:
            raise RunFailed(f"the agent exited {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2,
                         trust_env=False).status_code == 200:
                return time.monotonic() - began
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RunFailed(f"the agent was not ready within {timeout:g} s")


def run(args: argparse.Namespace, workdir: Path) -> list[Failure]:
    from bench.bench_continuous import push_bench_images
    from tests.fakekube import FakeKube
    from tests.fleet import Fleet
    from tests.fleet.sockets import allocate_ports

    rng = random.Random(args.seed)
    with Fleet.start(workdir / "fleet") as fleet, FakeKube() as fake:
        push_bench_images(fleet.registries["plain"].url)
        _populate(fake, fleet)
        failures = plan_failures(fleet, args.failures)
        for failure in failures:
            if failure.phase == "known":
                _create(fake, failure)
        port = allocate_ports(1)[0]
        (workdir / "kubeconfig").write_text(json.dumps(_kubeconfig(fake.url)))
        (workdir / "config.yaml").write_text(json.dumps(_agent_config(fleet, workdir, port)))
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "agent", "--node", NODE, "--kubeconfig",
             str(workdir / "kubeconfig"), "--config", str(workdir / "config.yaml")],
            cwd=ROOT, env=_env(workdir), stdout=subprocess.PIPE,
            stderr=open(workdir / "agent.stderr", "w"), text=True)  # noqa: SIM115
        reader = LineReader(proc.stdout, workdir / "agent.stdout")
        try:
            ready = _wait_ready(port, proc, 120)
            print(f"agent ready {ready:.1f} s after start ({HEALTHY_PODS} healthy pods, "
                  f"{sum(f.phase == 'known' for f in failures)} pods waiting to be created)")
            for failure in failures:
                time.sleep(rng.uniform(0.2, 1.2))
                if failure.phase == "new":
                    _create(fake, failure)
                    time.sleep(rng.uniform(1.0, 2.0))
                _fail(fake, fleet, failure)
                got = reader.wait(failure.pod, 30)
                if got is None:
                    raise RunFailed(f"no pull_diagnosed for {failure.pod} within 30 s")
                failure.reported, record = got
                failure.code = str(record.get("code"))
                failure.reported_stamp = datetime.fromisoformat(
                    str(record["timestamp"]).replace("Z", "+00:00")).timestamp()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    wrong = [f for f in failures if f.code != EXPECT[f.kind]]
    if wrong:
        raise RunFailed("; ".join(f"{f.pod} ({f.kind}): expected {EXPECT[f.kind]}, got {f.code}"
                                  for f in wrong[:5]))
    return failures


def _line(label: str, values: list[float]) -> str:
    ms = [1000 * v for v in values]
    return (f"  {label:<22} n={len(ms):<4} p50 {percentile(ms, 50):7.0f} ms   "
            f"p90 {percentile(ms, 90):7.0f} ms   p99 {percentile(ms, 99):7.0f} ms   "
            f"max {max(ms):7.0f} ms   mean {statistics.mean(ms):7.0f} ms")


def report(failures: list[Failure]) -> None:
    print(f"\n== event-to-report latency: pod status update (ErrImagePull) -> pull_diagnosed "
          f"line, {len(failures)} failures")
    print(_line("all", [f.latency for f in failures]))
    for phase in ("known", "new"):
        print(_line(f"phase {phase}", [f.latency for f in failures if f.phase == phase]))
    for kind in KINDS:
        print(_line(kind, [f.latency for f in failures if f.kind == kind]))
    skew = [f.reported_stamp - f.started_wall - f.latency for f in failures
            if f.reported_stamp is not None]
    print(f"  check: the lines' own timestamps agree with the arrival times within "
          f"{1000 * max(abs(s) for s in skew):.0f} ms (log write to read)")
    print("  every diagnosis carried the expected code (image_not_found, auth_invalid, "
          "tls_expired)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_latency.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failures", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if args.failures < 2:
        print("bench_latency: --failures must be >= 2", file=sys.stderr)
        return 2
    try:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            failures = run(args, args.workdir.resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="pulldoctor-latency-") as tmp:
                failures = run(args, Path(tmp))
    except RunFailed as exc:
        print(f"\nbench_latency: the run failed, no figures reported: {exc}", file=sys.stderr)
        return 2
    report(failures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
