"""Tests for the Grafana dashboard, and for dashboard and rules against a real Prometheus.

The live test starts two agent HTTP servers (two "nodes") fed with hand-built probe
reports, lets a real Prometheus scrape them, and runs every panel query, every
variable query and the alert rules there.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.http import Server, serve
from agent.metrics import Metrics
from probes.codes import Code
from probes.result import LAYERS, LayerResult, ProbeReport, Status
from tests.deploy.promql import SCRAPE_LABELS, contract_series, label_names, metric_names
from tests.deploy.promserver import PromServer

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "pulldoctor-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

BROKEN = "registry.example.com:5000"    # NXDOMAIN from both nodes
HUB = "registry-1.docker.io"             # fine, certificate expiring, rate limit low
PRIVATE = "private.example.net"          # credentials rejected, node n1 only


@functools.cache
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    """(panel title / refId, expr) for every query of every panel."""
    return [(f"{p['title']} / {t['refId']}", t["expr"]) for p in panels() for t in p["targets"]]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def substitute(expr: str) -> str:
    """Expand the dashboard variables the way Grafana does with 'All' selected."""
    window = variables()["window"]["current"]["value"]
    return (expr.replace("$registry", ".*").replace("$node", ".*")
            .replace("$window", window))


# --- static checks ------------------------------------------------------------------------

def test_dashboard_is_recent_grafana_json_with_a_datasource_variable() -> None:
    """Valid JSON with a stable uid, a recent schemaVersion and a Prometheus datasource
    variable that every panel and query uses."""
    d = dashboard()
    assert d["uid"] == "pulldoctor" and d["schemaVersion"] >= 36
    ds = variables()["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for p in panels():
        assert p["datasource"] == DATASOURCE, p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE, p["title"]


def test_registry_and_node_variables_come_from_the_diagnosis_metric() -> None:
    """`registry` and `node` are multi-value query variables with All, node filtered by
    registry."""
    v = variables()
    for name in ("registry", "node"):
        assert v[name]["type"] == "query" and v[name]["multi"] and v[name]["includeAll"]
        assert v[name]["datasource"] == DATASOURCE
    assert v["registry"]["definition"] == "label_values(pulldoctor_probe_diagnosis, registry)"
    assert v["node"]["definition"] == (
        'label_values(pulldoctor_probe_diagnosis{registry=~"$registry"}, node)')


def test_every_panel_has_a_query_and_a_unique_id_and_place() -> None:
    """Each panel has at least one non-empty query, ids are unique, panels do not overlap."""
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine
    for p in panels():
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]


@pytest.mark.parametrize(("where", "expr"), queries())
def test_queries_use_only_contract_metrics_and_labels(where: str, expr: str) -> None:
    """Every query selects only metrics of agent.metrics (or `up`) and known labels."""
    contract = contract_series()
    names = metric_names(expr)
    assert names and names <= set(contract) | {"up"}, where
    known = set().union(*contract.values()) | SCRAPE_LABELS
    assert label_names(expr) <= known, where


def test_dashboard_has_the_promised_views() -> None:
    """Matrix, latency p50/p95, current diagnoses, pull success and p95 duration,
    certificate days left and rate-limit headroom are all there."""
    by_title = {p["title"]: p for p in panels()}
    matrix = by_title["Registry × node health (diagnosis code)"]
    assert matrix["transformations"][0]["id"] == "groupingToMatrix"
    assert matrix["transformations"][0]["options"].items() >= {
        "rowField": "registry", "columnField": "node", "valueField": "code"}.items()
    for title, fragment in {
        "Layer latency p50": "histogram_quantile(0.5,",
        "Layer latency p95": "histogram_quantile(0.95,",
        "Current diagnoses": 'code!="ok"',
        "Pull success rate per registry": 'result="ok"',
        "Pull duration p95 per registry": "pulldoctor_image_pull_duration_seconds_bucket",
        "Certificate days left": "pulldoctor_tls_cert_expiry_timestamp_seconds",
        "Rate-limit headroom": "pulldoctor_registry_rate_limit_remaining",
    }.items():
        assert fragment in by_title[title]["targets"][0]["expr"], title


# --- the live test ------------------------------------------------------------------------

def _report(registry: str, *, fail: tuple[str, Code] | None = None,
            tls: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None
            ) -> ProbeReport:
    layers = []
    for name in LAYERS:
        evidence = {"tls": tls or {}, "manifest": manifest or {}}.get(name, {})
        if fail and name == fail[0]:
            layers.append(LayerResult(name, Status.FAILED, 0.02, code=fail[1]))
            layers += [LayerResult(n, Status.SKIPPED) for n in LAYERS[LAYERS.index(name) + 1:]]
            break
        layers.append(LayerResult(name, Status.OK, 0.004, evidence=evidence))
    return ProbeReport(f"{registry}/team/app:v1", registry, tuple(layers))


def _agent(node: str) -> Server:
    registry = CollectorRegistry()
    m = Metrics(registry, version="0.1.0")
    m.set_watch_healthy(True)
    m.observe_probe(_report(BROKEN, fail=("dns", Code.DNS_NXDOMAIN)))
    m.observe_probe(_report(HUB, tls={"not_after_timestamp": time.time() + 5 * 86400},
                            manifest={"rate_limit_remaining": 5 if node == "n1" else 60,
                                      "rate_limit_limit": 100}))
    if node == "n1":
        m.observe_probe(_report(PRIVATE, fail=("token", Code.AUTH_INVALID)))
    m.observe_pull(HUB, ok=True, seconds=12.5)
    m.observe_pull(BROKEN, ok=False, seconds=None)
    m.observe_pull_failure(BROKEN, Code.DNS_NXDOMAIN)
    return serve(host="127.0.0.1", port=0, registry=registry, healthy=lambda: True,
                 ready=lambda: (True, ""), diagnoses=list)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromServer]:
    agents = [_agent("n1"), _agent("n2")]
    targets = [(f"127.0.0.1:{a.port}", {"node": f"n{i}"}) for i, a in enumerate(agents, 1)]
    try:
        with PromServer.start(tmp_path_factory.mktemp("prom"), targets,
                              rule_files=[RULES]) as prom:
            # Two scrapes, so that rate() and increase() have something to work with.
            prom.wait_for('count_over_time(pulldoctor_build_info{node="n2"}[1m]) >= 2',
                          timeout=20)
            yield prom
    finally:
        for a in agents:
            a.close()


@pytest.mark.slow
def test_prometheus_scrapes_both_agents(prometheus: PromServer) -> None:
    """Both agent servers are healthy scrape targets of job pulldoctor."""
    targets = prometheus.targets()
    assert sorted(t["labels"]["node"] for t in targets) == ["n1", "n2"]
    assert {(t["health"], t["labels"]["job"]) for t in targets} == {("up", "pulldoctor")}


@pytest.mark.slow
def test_every_panel_query_returns_series(prometheus: PromServer) -> None:
    """Each panel query, with All selected, returns at least one series from the agents."""
    empty = [where for where, expr in queries() if not prometheus.query(substitute(expr))]
    assert empty == []


@pytest.mark.slow
def test_panel_values_reflect_the_reports(prometheus: PromServer) -> None:
    """The matrix has a code per registry and node, the diagnoses table lists the failures,
    certificate days and rate-limit headroom are what the reports said."""
    exprs = {p["title"]: substitute(p["targets"][0]["expr"]) for p in panels()}
    matrix = {(s["metric"]["registry"], s["metric"]["node"], s["metric"]["code"])
              for s in prometheus.query(exprs["Registry × node health (diagnosis code)"])}
    assert matrix == {(BROKEN, "n1", "dns_nxdomain"), (BROKEN, "n2", "dns_nxdomain"),
                      (HUB, "n1", "ok"), (HUB, "n2", "ok"), (PRIVATE, "n1", "auth_invalid")}
    failing = {(s["metric"]["registry"], s["metric"]["node"], s["metric"]["code"])
               for s in prometheus.query(exprs["Current diagnoses"])}
    assert failing == {t for t in matrix if t[2] != "ok"}
    days = prometheus.query(exprs["Certificate days left"])
    assert [s["metric"]["registry"] for s in days] == [HUB]
    assert 4.9 < float(days[0]["value"][1]) <= 5.0
    headroom = prometheus.query(exprs["Rate-limit headroom"])
    assert [(s["metric"]["registry"], float(s["value"][1])) for s in headroom] == [(HUB, 0.05)]
    assert float(prometheus.query(exprs["Registries failing"])[0]["value"][1]) == 2.0


@pytest.mark.slow
def test_variable_queries_list_registries_and_nodes(prometheus: PromServer) -> None:
    """label_values() of the registry and node variables finds what the agents export."""
    assert sorted(prometheus.label_values("registry", "pulldoctor_probe_diagnosis")) == sorted(
        [BROKEN, HUB, PRIVATE])
    assert prometheus.label_values("node", 'pulldoctor_probe_diagnosis{registry=~".*"}') == [
        "n1", "n2"]


@pytest.mark.slow
def test_alert_rules_evaluate_cleanly_on_real_series(prometheus: PromServer) -> None:
    """Every rule evaluates without error on the scraped series (vector matching included),
    and the alerts the data calls for are pending, the others inactive."""
    expected = {
        "PullDoctorRegistryUnreachable": "pending",
        "PullDoctorRegistryAuthFailing": "pending",
        "PullDoctorRegistryProbeFailing": "inactive",
        "PullDoctorRegistryDown": "pending",
        "PullDoctorRegistryCertExpiringSoon": "pending",
        "PullDoctorPullFailures": "inactive",
        "PullDoctorRateLimitLow": "pending",
        "PullDoctorAgentDown": "inactive",
    }
    deadline = time.monotonic() + 30
    while True:  # wait for every expected state: a loaded machine needs a few rule rounds
        rules = {r["name"]: r for r in prometheus.rules()}
        states = {name: r["state"] for name, r in rules.items()}
        if states == expected or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert {name: (r["health"], r.get("lastError", "")) for name, r in rules.items()} == {
        name: ("ok", "") for name in rules}
    assert states == expected
    pending = {(a["labels"].get("registry"), a["labels"].get("code"))
               for a in rules["PullDoctorRegistryUnreachable"]["alerts"]}
    assert pending == {(BROKEN, "dns_nxdomain")}
