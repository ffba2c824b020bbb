"""Run the fleet as a long-lived process: ``python -m tests.fleet WORKDIR [--containerd]``.

For the benchmarks and the demo: it starts the fleet in WORKDIR, prints one
JSON summary (hosts, ports, paths, start-up seconds; no credentials) on
stdout, then waits until SIGTERM or SIGINT and stops everything it started.
With ``--containerd`` the private containerd is started too. It refuses to
daemonize itself: the caller owns the process and signals its PID.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tests.fleet import Fleet, FleetError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fleet", description=__doc__)
    parser.add_argument("workdir", type=Path, help="directory for configs, certificates, logs")
    parser.add_argument("--containerd", action="store_true", help="also start containerd")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        with Fleet.start(args.workdir) as fleet:
            if args.containerd:
                fleet.start_containerd()
            print(json.dumps(fleet.summary(), indent=2), flush=True)
            while not stop.wait(0.5):
                pass
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
