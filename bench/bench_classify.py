"""Throughput benchmark for agent.classify: messages per second over the real-message table.

Classifies N messages (default 100,000) drawn round-robin from tests/data/runtime_messages.jsonl
(the real messages, not synthetic ones) and prints the rate. The classifier keeps no cache, so
repeated messages cost as much as new ones. Target: >= 50,000 messages/s.

Usage: python bench/bench_classify.py [N]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.classify import classify

__all__ = ["main"]

TABLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "runtime_messages.jsonl"
TARGET_PER_SECOND = 50_000


def _messages() -> list[tuple[str, str | None]]:
    rows = [json.loads(line) for line in TABLE.read_text(encoding="utf-8").splitlines() if line]
    return [(row["message"], row.get("reason")) for row in rows]


def main(argv: list[str]) -> int:
    total = int(argv[0]) if argv else 100_000
    table = _messages()
    batch = [table[i % len(table)] for i in range(total)]
    for message, reason in table:  # warm up regex caches and imports
        classify(message, reason)
    start, cpu_start = time.perf_counter(), time.process_time()
    for message, reason in batch:
        classify(message, reason)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rate, cpu_rate = total / elapsed, total / cpu
    mean_chars = sum(len(m) for m, _ in batch) / total
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"classified {total} messages (mean {mean_chars:.0f} chars, {len(table)} distinct) "
          f"in {elapsed:.3f} s wall / {cpu:.3f} s CPU: {rate:,.0f} messages/s wall, "
          f"{cpu_rate:,.0f} messages/s CPU (target {TARGET_PER_SECOND:,}; "
          f"1-min load average {load:.2f} on {os.cpu_count()} CPUs)")
    return 0 if rate >= TARGET_PER_SECOND else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
