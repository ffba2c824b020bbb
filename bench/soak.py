"""Soak: the real agent probing a mixed healthy/faulty fleet every 2 s for N minutes.

Why: leaks show only with time. A per-cycle token cache, a connection that is
never closed, a failure record never dropped or a thread per probe would each
grow the agent's memory or file descriptors a little every cycle; at a 300 s
interval that takes days to see, at 2 s it takes minutes. This runs
``pulldoctor agent`` as a subprocess against the fake API (``tests/fakekube.py``,
the failing pods of ``tests/scenario.py`` plus churn: a pod flipping between
running and ErrImagePull, a pod replaced, watches dropped, history compacted)
and the real registry fleet, with static targets on healthy registries and on
every kind of faulty endpoint (silent, black hole, reset, refused, 500, rate
limited). It prints RSS, open fds and threads from ``/proc/PID`` at start, every
minute and at the end, with the growth, then stops the agent with SIGTERM.

What it refuses to do: run in CI (it takes minutes: run it by hand), or talk to
anything but loopback.

Run from the repository root: ``/tmp/venv/bin/python bench/soak.py --minutes 10``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.agent.test_process import AgentProcess
from tests.fakekube import FakeKube, make_pod
from tests.fleet import ALICE, Fleet
from tests.scenario import NODE, RPC, WORDS, populate

__all__ = ["Sample", "main", "soak"]

_RUNS = re.compile(r"^pulldoctor_probe_runs_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    """The agent's footprint at one moment."""

    minute: float
    rss_kib: int
    fds: int
    threads: int
    probe_runs: int


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return -1


def sample(agent: AgentProcess, began: float) -> Sample:
    pid = agent.proc.pid
    runs = sum(float(v) for v in _RUNS.findall(agent.get("/metrics")[1]))
    return Sample(round((time.monotonic() - began) / 60, 2), _status(pid, "VmRSS"),
                  len(list(Path(f"/proc/{pid}/fd").iterdir())), _status(pid, "Threads"),
                  int(runs))


def _static_targets(fleet: Fleet) -> list[dict[str, str]]:
    """Healthy registries and every kind of faulty endpoint, probed every cycle."""
    regs, quirky = fleet.registries, fleet.quirky
    good = fleet.docker_config({regs["basic"].host: ALICE})
    return [
        {"image": f"{regs['plain'].host}/test/hello:v1"},
        {"image": f"{regs['tls'].host}/test/hello:v1"},
        {"image": f"{regs['basic'].host}/test/hello:v1", "docker_config": str(good)},
        {"image": f"{regs['notyet'].host}/test/hello:v1"},
        {"registry": f"127.0.0.1:{fleet.silent_port}"},
        {"registry": f"127.0.0.1:{fleet.blackhole_port}"},
        {"registry": f"127.0.0.1:{fleet.reset_port}"},
        {"registry": f"127.0.0.1:{fleet.closed_port}"},
        {"registry": quirky["error500"].host},
        {"registry": quirky["ratelimit"].host},
    ]


class Churn:
    """Changes the cluster while the agent runs: flips, replacements, dropped watches."""

    def __init__(self, fake: FakeKube, image: str) -> None:
        self.fake, self.image, self.stop = fake, image, threading.Event()
        self.steps = 0
        self.thread = threading.Thread(target=self._run, name="churn", daemon=True)

    def _pod(self, name: str, failing: bool, uid: str | None = None) -> dict[str, Any]:
        waiting = {"app": ("ErrImagePull", RPC.format(img=self.image) + WORDS["oauth401"])}
        return make_pod(name, "shop", NODE, [self.image], image_pull_secrets=["wrongpw"],
                        waiting=waiting if failing else None, uid=uid)

    def _run(self) -> None:
        self.fake.add_pod(self._pod("flipper", False))
        self.fake.add_pod(self._pod("replaced-0", True))
        while not self.stop.wait(5):
            self.steps += 1
            uid = self.fake.get("pods", "shop", "flipper")["metadata"]["uid"]
            self.fake.update_pod(self._pod("flipper", self.steps % 2 == 1, uid))
            self.fake.delete_pod("shop", f"replaced-{self.steps - 1}")
            self.fake.add_pod(self._pod(f"replaced-{self.steps}", True))
            if self.steps % 12 == 0:  # every minute
                self.fake.drop_watches()
            if self.steps % 36 == 18:  # every three minutes
                self.fake.compact()
                self.fake.drop_watches()


def soak(minutes: float, interval: float, workdir: Path) -> list[Sample]:
    with Fleet.start(workdir / "fleet") as fleet, FakeKube(bookmark_interval=5) as fake:
        images = populate(fake, fleet, wrong_password="soak-wrong-password")
        churn = Churn(fake, images["hello"])
        agent = AgentProcess.start(
            fleet, fake.url, workdir / "agent", interval_seconds=interval, jitter=0.2,
            endpoint_interval_seconds=interval, startup_spread_seconds=0,
            probe_timeout_seconds=3, secret_cache_seconds=5,
            events={"enabled": True, "min_interval_seconds": 60},
            static_targets=_static_targets(fleet))
        try:
            agent.wait_ready(60)
            churn.thread.start()
            began = time.monotonic()
            samples = [sample(agent, began)]
            _print(samples[-1])
            for minute in range(1, int(minutes) + 1):
                time.sleep(max(0.0, began + 60 * minute - time.monotonic()))
                assert agent.proc.poll() is None, agent.output()[-3000:]
                samples.append(sample(agent, began))
                _print(samples[-1])
            stopped = agent.terminate()
            print(f"SIGTERM -> exit {agent.proc.returncode} in {stopped:.2f}s; churn steps "
                  f"{churn.steps}; log lines {len(agent.records())}", flush=True)
        finally:
            churn.stop.set()
            agent.kill()
        return samples


def _print(s: Sample) -> None:
    print(f"minute {s.minute:5.2f}  RSS {s.rss_kib / 1024:7.1f} MiB  fds {s.fds:4d}  "
          f"threads {s.threads:3d}  probes run {s.probe_runs:6d}", flush=True)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: agent killed, fleet stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=2.0, help="probe interval, seconds")
    parser.add_argument("--json", action="store_true", help="also print the samples as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pulldoctor-soak-") as tmp:
        samples = soak(args.minutes, args.interval, Path(tmp))
    first, second, last = samples[0], samples[min(1, len(samples) - 1)], samples[-1]
    print(f"growth start->end: RSS {(last.rss_kib - first.rss_kib) / 1024:+.1f} MiB, fds "
          f"{last.fds - first.fds:+d}, threads {last.threads - first.threads:+d}; after the "
          f"first minute: RSS {(last.rss_kib - second.rss_kib) / 1024:+.1f} MiB, fds "
          f"{last.fds - second.fds:+d}; {last.probe_runs} probes")
    if args.json:
        print(json.dumps([asdict(s) for s in samples]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
