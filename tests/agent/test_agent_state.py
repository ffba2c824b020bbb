"""One diagnosis per registry: the most fundamental current failure, and recovery shows."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.agent import ENDPOINT, Agent, TargetKey
from agent.config import AgentConfig, StaticTarget
from agent.metrics import Metrics
from probes.codes import Code
from tests.agent.recorder import RecordingLog

IMAGES = ("r.example/a:v1", "r.example/b:v1")


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path) -> tuple[Agent, CollectorRegistry, Clock]:
    registry, clock = CollectorRegistry(), Clock()
    config = AgentConfig(static_targets=tuple(StaticTarget(image=i) for i in IMAGES),
                         resolv_conf=tmp_path / "resolv.conf", hosts_file=tmp_path / "hosts",
                         certs_dirs=(), ca_bundles=(), node_docker_configs=(),
                         credential_provider_config=None, proxy_dropin_dirs=(),
                         crio_registries_conf=tmp_path / "x", crio_registries_dir=tmp_path / "y")
    agent = Agent(config, node=None, kube=None, metrics=Metrics(registry, version="t"),
                  log=RecordingLog(), clock=clock)
    agent.step()
    return agent, registry, clock


def state(registry: CollectorRegistry) -> tuple[float | None, list[str]]:
    codes = [s.labels["code"] for m in registry.collect() if m.name == "pulldoctor_probe_diagnosis"
             for s in m.samples]
    return registry.get_sample_value("pulldoctor_probe_success", {"registry": "r.example"}), codes


def put(agent: Agent, key: TargetKey, ok: bool, rank: int, code: Code, at: float) -> None:
    agent._targets[key].summary = (ok, rank, code, at)
    agent._set_registry_state("r.example")


def test_most_fundamental_failure_wins(tmp_path: Path) -> None:
    """A TLS failure outranks a missing tag on another image of the same registry."""
    agent, registry, _ = make(tmp_path)
    a, b = (TargetKey(f"{i}", "node") for i in IMAGES)
    put(agent, a, False, 6, Code.IMAGE_NOT_FOUND, 1.0)
    put(agent, b, False, 3, Code.TLS_EXPIRED, 2.0)
    assert state(registry) == (0.0, ["tls_expired"])
    agent.close()


def test_registry_back_clears_old_endpoint_failures(tmp_path: Path) -> None:
    """After an outage, a passing endpoint check clears images' older endpoint-layer failures,
    but not a later image failure nor one at the manifest layer."""
    agent, registry, _ = make(tmp_path)
    a, b = (TargetKey(f"{i}", "node") for i in IMAGES)
    endpoint = TargetKey("r.example", ENDPOINT)
    put(agent, a, False, 1, Code.TCP_REFUSED, 10.0)     # during the outage
    put(agent, b, False, 6, Code.IMAGE_NOT_FOUND, 11.0)  # a real image problem
    assert state(registry) == (0.0, ["tcp_refused"])
    put(agent, endpoint, True, len(Code), Code.OK, 20.0)  # the registry is back
    assert state(registry) == (0.0, ["image_not_found"])
    put(agent, b, True, 7, Code.OK, 21.0)
    assert state(registry) == (1.0, ["ok"])
    put(agent, a, False, 1, Code.TCP_REFUSED, 30.0)     # down again, seen after the check
    assert state(registry) == (0.0, ["tcp_refused"])
    agent.close()
