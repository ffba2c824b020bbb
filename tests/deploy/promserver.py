"""A real Prometheus server on loopback for tests: scrape targets, load rules, query.

Why it exists: the dashboard's queries and the alert rules must work against what a
real Prometheus makes of the agent's exposition (scrape labels, staleness, rule
evaluation), which promtool's unit tests alone do not show. Uses Debian's
``prometheus`` binary (2.42); its first scrape comes about 6 s after start (the target
discovery manager pushes updates on a fixed 5 s tick), so budget ~7 s per server.

What it refuses to do: listen anywhere but 127.0.0.1, or outlive its ``with`` block
(the process is stopped by its own PID and its data directory is the caller's).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

__all__ = ["PromError", "PromServer", "Target"]

#: A scrape target: "host:port", or ("host:port", {extra target labels}).
Target = str | tuple[str, Mapping[str, str]]


class PromError(RuntimeError):
    """Prometheus did not start, or answered a query with an error."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(targets: Sequence[Target], job: str, interval: str,
            rule_files: Iterable[Path]) -> dict[str, Any]:
    static = []
    for target in targets:
        address, labels = (target, {}) if isinstance(target, str) else target
        static.append({"targets": [address], "labels": dict(labels)})
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": static}],
    }


class PromServer:
    """One running ``prometheus`` process; use :meth:`start` as a context manager."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self._proc = proc
        self.url = url
        self.log = log
        self._client = httpx.Client(base_url=url, timeout=10, trust_env=False)

    @classmethod
    def start(cls, workdir: Path, targets: Sequence[Target], *, job: str = "pulldoctor",
              scrape_interval: str = "1s", rule_files: Iterable[Path] = (),
              ready_timeout: float = 15.0) -> PromServer:
        """Write a config scraping ``targets`` as ``job``, start Prometheus, wait until ready."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise PromError("prometheus binary not found (apt-get install prometheus)")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(_config(targets, job, scrape_interval, rule_files)))
        port = _free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT)
        server = cls(proc, f"http://127.0.0.1:{port}", log)
        try:
            server._wait_ready(ready_timeout)
        except BaseException:
            server.close()
            raise
        return server

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PromError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                if self._client.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise PromError("prometheus not ready in time")

    def _api(self, path: str, params: Mapping[str, str | list[str]]) -> Any:
        response = self._client.get(path, params=params)
        body = response.json()
        if body.get("status") != "success":
            raise PromError(f"{path}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant query now; return the result vector ([] when no series)."""
        data = self._api("/api/v1/query", {"query": expr})
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        """Values of ``label`` on series matching ``match`` (Grafana's label_values())."""
        values: list[str] = self._api(f"/api/v1/label/{label}/values", {"match[]": [match]})
        return values

    def series(self, match: str) -> list[dict[str, str]]:
        """Label sets (``__name__`` included) of every series matching ``match`` that has a
        sample in the TSDB, also series that have since gone stale."""
        found: list[dict[str, str]] = self._api("/api/v1/series",
                                                {"match[]": [match], "start": "0"})
        return found

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its health, state and last error."""
        groups = self._api("/api/v1/rules", {})["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health."""
        active: list[dict[str, Any]] = self._api("/api/v1/targets", {})["activeTargets"]
        return active

    def wait_for(self, expr: str, *, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns at least one series; raise on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise PromError(f"no series for {expr!r} after {timeout} s")
            time.sleep(0.2)

    def close(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s)."""
        self._client.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
