"""The node's own view: containerd mirrors in order, CRI-O blocks and mirrors, runtime proxy."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.agent import Agent, TargetKey
from agent.config import AgentConfig, StaticTarget
from agent.metrics import Metrics
from agent.nodeview import NodeView
from probes.codes import Code
from probes.reference import parse_reference
from tests.agent.recorder import RecordingLog
from tests.fleet import Fleet
from tests.scenario import agent_config


def node_config(fleet: Fleet, tmp: Path, **overrides: object) -> AgentConfig:
    config = agent_config(fleet, tmp, probe_timeout_seconds=3)
    return AgentConfig(**{**{f: getattr(config, f) for f in config.__slots__}, **overrides})


def probe_static(config: AgentConfig, image: str) -> tuple[Agent, object]:
    config = AgentConfig(**{**{f: getattr(config, f) for f in config.__slots__},
                            "static_targets": (StaticTarget(image=image),)})
    agent = Agent(config, node=None, kube=None, metrics=Metrics(CollectorRegistry(), version="t"),
                  log=RecordingLog())
    agent.run_cycle()
    ref = str(parse_reference(image))
    outcome = agent.probe_target(TargetKey(ref, "node"))
    agent.close()
    return agent, outcome


def test_dead_mirror_falls_back_to_the_server(fleet: Fleet, tmp_path: Path) -> None:
    """containerd tries the mirror first; it is dead, the server works: the pull works and the
    failed mirror is reported."""
    tls = fleet.registries["tls"]
    certs = tmp_path / "certs.d" / tls.host
    certs.mkdir(parents=True)
    (certs / "hosts.toml").write_text(
        f'server = "https://{tls.host}"\nca = "{fleet.ca_file}"\n\n'
        f'[host."https://127.0.0.1:{fleet.closed_port}"]\n  capabilities = ["pull", "resolve"]\n'
        f'  ca = "{fleet.ca_file}"\n')
    agent, outcome = probe_static(node_config(fleet, tmp_path,
                                              certs_dirs=(tmp_path / "certs.d",)),
                                  f"{tls.host}/test/hello:v1")
    assert outcome.ok  # type: ignore[attr-defined]
    assert outcome.fallbacks() == [  # type: ignore[attr-defined]
        {"endpoint": f"https://127.0.0.1:{fleet.closed_port}", "code": "tcp_refused"}]
    lines = agent.log.events("endpoint_fallback")  # type: ignore[attr-defined]
    (line,) = [r for r in lines if r["image"] == f"{tls.host}/test/hello:v1"]
    assert f"127.0.0.1:{fleet.closed_port} tcp_refused" in line["message"]


def test_working_mirror_is_used_first(fleet: Fleet, tmp_path: Path) -> None:
    """A healthy mirror answers before the (broken) server is ever tried."""
    expired = fleet.registries["expired"]
    tls = fleet.registries["tls"]
    certs = tmp_path / "certs.d" / expired.host
    certs.mkdir(parents=True)
    (certs / "hosts.toml").write_text(
        f'server = "https://{expired.host}"\n\n[host."https://{tls.host}"]\n'
        f'  capabilities = ["pull", "resolve"]\n  ca = "{fleet.ca_file}"\n')
    _, outcome = probe_static(node_config(fleet, tmp_path, certs_dirs=(tmp_path / "certs.d",)),
                              f"{expired.host}/test/hello:v1")
    assert outcome.ok and len(outcome.reports) == 1  # type: ignore[attr-defined]
    assert outcome.reports[0].endpoint == tls.url  # type: ignore[attr-defined]


def test_crio_blocked_registry(fleet: Fleet, tmp_path: Path) -> None:
    """A registry blocked in CRI-O's registries.conf is diagnosed as registry_blocked."""
    tls = fleet.registries["tls"]
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nprefix = "{tls.host}"\nlocation = "{tls.host}"\n'
                    "blocked = true\n")
    config = node_config(fleet, tmp_path, certs_dirs=(tmp_path / "no-containerd",),
                         crio_registries_conf=conf)
    assert NodeView(config).runtime == "cri-o"
    _, outcome = probe_static(config, f"{tls.host}/test/hello:v1")
    assert outcome.code is Code.REGISTRY_BLOCKED  # type: ignore[attr-defined]


def test_runtime_proxy_from_systemd_dropin(fleet: Fleet, tmp_path: Path) -> None:
    """The runtime's HTTPS_PROXY drop-in is what the probe uses (names are proxied; loopback
    IPs are not, as in Go)."""
    dropins = tmp_path / "containerd.service.d"
    dropins.mkdir()
    proxy = fleet.proxies["auth"]
    (dropins / "http-proxy.conf").write_text(
        f'[Service]\nEnvironment="HTTPS_PROXY=http://127.0.0.1:{proxy.port}" '
        '"NO_PROXY=localhost,10.0.0.0/8"\n')
    config = node_config(fleet, tmp_path, proxy_dropin_dirs=(dropins,))
    view = NodeView(config, environ={})
    assert view.proxy.proxy_for("https", "registry.test", 443) == f"http://127.0.0.1:{proxy.port}"
    assert view.proxy.proxy_for("https", "127.0.0.1", 443) is None
    _, outcome = probe_static(config, f"registry.test:{fleet.registries['tls'].port}/test/hello:v1")
    assert outcome.code is Code.PROXY_AUTH_REQUIRED  # type: ignore[attr-defined]


def test_agent_environment_proxy_when_no_dropin(fleet: Fleet, tmp_path: Path) -> None:
    """Without runtime drop-ins the agent's own environment is the fallback."""
    view = NodeView(node_config(fleet, tmp_path), environ={"HTTPS_PROXY": "http://p.example:3128"})
    assert view.proxy.proxy_for("https", "r.example", 443) == "http://p.example:3128"
    assert "environment" in view.proxy.source


def test_node_docker_config_first_valid_wins(fleet: Fleet, tmp_path: Path) -> None:
    """The kubelet uses the first valid node config in its search order, skipping broken ones."""
    broken, good, later = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    broken.write_text("{not json")
    good.write_text('{"auths": {"r.example": {"username": "u1", "password": "p1"}}}')
    later.write_text('{"auths": {"r.example": {"username": "u2", "password": "p2"}}}')
    view = NodeView(node_config(fleet, tmp_path, node_docker_configs=(
        tmp_path / "missing.json", broken, good, later)), environ={})
    assert [c.username for c in view.node_keyring.lookup("r.example/x")] == ["u1"]
    assert any(str(broken) in p for p in view.problems)
