"""End to end: the agent for node A, the fake API with pods on two nodes, the real registry fleet.

Pods fail to pull with the words containerd really uses (infra-recipes.md, ctr
captures), Secrets come in every shape (good, wrong password, wrong registry
key, malformed, missing, via the service account), and the registries are the
real loopback fleet. The agent must name the right root cause for each of node
A's pods, never touch node B's pods, and move a pod whose Secret is fixed
mid-test to ``stale``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.agent import Agent
from agent.kube import KubeClient
from tests.agent.recorder import RecordingLog
from tests.agent.running import running_agent
from tests.fakekube import FakeKube, wait_for
from tests.fleet import ALICE, Fleet
from tests.scenario import EXPECTED, agent_config, dockerconfig, populate


@dataclass
class World:
    fake: FakeKube
    agent: Agent
    log: RecordingLog
    registry: CollectorRegistry
    fleet: Fleet
    images: dict[str, str]

    def diagnosis(self, pod: str) -> dict[str, Any] | None:
        found = [d for d in self.log.events("pull_diagnosed") if d["pod"] == pod]
        return found[-1] if found else None


@pytest.fixture
def world(fleet: Fleet, tmp_path: Path) -> Iterator[World]:
    with FakeKube(bookmark_interval=0.5) as fake:
        images = populate(fake, fleet)
        config = agent_config(fleet, tmp_path)
        log, registry = RecordingLog(), CollectorRegistry()
        with KubeClient(fake.url) as kube, \
                running_agent(config, kube, log=log, registry=registry) as (agent, _, _):
            yield World(fake, agent, log, registry, fleet, images)


def test_root_cause_for_each_pod_of_node_a(world: World) -> None:
    """Every failing pod on node A gets the right code and verdict, node B's pod none."""
    def got() -> dict[str, tuple[str, str] | None]:
        found = {p: world.diagnosis(p) for p in EXPECTED}
        return {p: (d["code"], d["verdict"]) if d else None for p, d in found.items()}
    assert wait_for(lambda: got() == EXPECTED, timeout=20), got()
    assert world.diagnosis("node-b-pod") is None and world.diagnosis("healthy") is None
    assert not any(r.get("pod") == "node-b-pod" for r in world.log.records)


def test_report_line_names_everything_but_secrets(world: World) -> None:
    """A report line carries pod, container, image, registry, code, layer, evidence, fix."""
    assert wait_for(lambda: world.diagnosis("wrongpw") is not None, timeout=20)
    line = world.diagnosis("wrongpw")
    assert line is not None
    assert {"message", "namespace", "pod", "container", "image", "registry", "code", "layer",
            "evidence", "remediation", "verdict"} <= line.keys()
    assert line["layer"] == "token" and "shop/wrongpw" in line["evidence"]["credentials"]
    for needle in ("not-it", base64.b64encode(b"alice:not-it").decode(),
                   base64.b64encode(f"alice:{ALICE[1]}".encode()).decode(), f"alice:{ALICE[1]}"):
        leaked = [r for r in world.log.records if needle in json.dumps(r)]
        assert not leaked, (needle, leaked)


def test_warning_event_posted_on_the_pod(world: World) -> None:
    """A PullDiagnosis Warning Event lands on the failing pod."""
    def posted() -> list[dict[str, Any]]:
        return [e for e in world.fake.objects("events", "shop")
                if e.get("reason") == "PullDiagnosis"]
    assert wait_for(lambda: any(e["involvedObject"]["name"] == "expired" for e in posted()),
                    timeout=20)
    event = next(e for e in posted() if e["involvedObject"]["name"] == "expired")
    assert event["type"] == "Warning" and "tls_expired" in event["message"]
    assert all(e["involvedObject"]["name"] != "node-b-pod" for e in posted())


def test_fixed_secret_moves_to_stale(world: World) -> None:
    """When the Secret is corrected mid-test, the next probe passes and the verdict is stale."""
    assert wait_for(lambda: world.diagnosis("wrongpw") is not None, timeout=20)
    secret = world.fake.get("secrets", "shop", "wrongpw")
    secret["data"][".dockerconfigjson"] = base64.b64encode(
        dockerconfig({world.fleet.registries["token"].host: ALICE})).decode()
    world.fake._update("secrets", secret)
    assert wait_for(lambda: world.diagnosis("wrongpw")["verdict"] == "stale",  # type: ignore[index]
                    timeout=20), world.diagnosis("wrongpw")


def test_metrics_for_registries_and_pull_failures(world: World) -> None:
    """Probe metrics per registry and pull failures by root cause are exported."""
    expired = world.fleet.registries["expired"].host
    assert wait_for(lambda: world.registry.get_sample_value(
        "pulldoctor_probe_diagnosis", {"registry": expired, "code": "tls_expired"}) == 1,
        timeout=20)
    token = world.fleet.registries["token"].host
    assert wait_for(lambda: (world.registry.get_sample_value(
        "pulldoctor_image_pulls_total", {"registry": token, "result": "failed"}) or 0) >= 3,
        timeout=20)


def test_readiness_follows_first_cycle_and_watch(world: World) -> None:
    """/readyz turns ready once the watch is up and every target was probed once."""
    assert wait_for(lambda: world.agent.ready()[0], timeout=20), world.agent.ready()


def test_api_requests_are_node_scoped(world: World) -> None:
    """The agent watches only its node's pods and never lists or watches Secrets or Events."""
    assert wait_for(lambda: world.diagnosis("expired") is not None, timeout=20)
    for request in world.fake.requests:
        if request.kind in ("list", "watch") and request.resource == "pods":
            assert "spec.nodeName=node-a" in request.query.get("fieldSelector", "")
        assert not (request.resource == "secrets" and request.kind in ("list", "watch"))
        if request.resource == "events" and request.kind == "list":
            assert request.query.get("fieldSelector", "").startswith("involvedObject.uid=")
