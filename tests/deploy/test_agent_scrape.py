"""The running agent against a real Prometheus: exposition, metric contract, dashboard, alerts.

Two real ``pulldoctor agent`` processes probe the loopback fleet every 2 s: one
``--standalone`` (static targets only, scraped as node ``node-s``) and one for node
``node-a`` watching the fake API server with the shared scenario's failing pods (so the
kubelet pull metrics exist too; standalone mode cannot produce them). Both have the same
static targets: a healthy token registry with a good docker config, an expired and an
untrusted certificate, a missing tag, a registry without credentials, a closed port and
the rate-limiting server. A real Prometheus scrapes both as job ``pulldoctor`` with a
``node`` target label, as the PodMonitor does, with the shipped rules loaded. Once it has
scraped, more pulls are reported (a Pulled and a Failed event on new pods), so rates and
increases see real change.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from probes.codes import Code
from tests.deploy.promql import SCRAPE_LABELS, contract_series
from tests.deploy.promserver import PromServer
from tests.deploy.test_dashboard import panels, queries
from tests.fakekube import FakeKube, make_event, make_pod
from tests.fleet import ALICE, Fleet
from tests.scenario import NODE, agent_settings, populate

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
STANDALONE = "node-s"
WINDOW = "1m"
PULL_SECONDS = 1.5
LATE_FAILURES = 3


@dataclass(frozen=True)
class Registries:
    """The registry label of each fleet member the agents probe."""

    healthy: str
    missing_tag: str
    expired: str
    untrusted: str
    no_credentials: str
    closed: str
    ratelimit: str

    @classmethod
    def of(cls, fleet: Fleet) -> Registries:
        r = fleet.registries
        return cls(r["token"].host, r["tls"].host, r["expired"].host, r["untrusted"].host,
                   r["basic"].host, f"127.0.0.1:{fleet.closed_port}", fleet.quirky["ratelimit"].host)

    def all(self) -> set[str]:
        return set(vars(self).values())


@dataclass
class World:
    """What the checks look at: the Prometheus that scraped the agents, and the agents."""

    prom: PromServer
    registries: Registries
    ports: dict[str, int]  # node -> agent HTTP port


# --- starting things ----------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    """Status and body of a GET to an agent (0 while it does not listen yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _static_targets(regs: Registries, good_config: Path) -> list[dict[str, str]]:
    return [
        {"image": f"{regs.healthy}/test/hello:v1", "docker_config": str(good_config)},
        {"image": f"{regs.missing_tag}/test/hello:nope"},
        {"image": f"{regs.expired}/test/hello:v1"},
        {"image": f"{regs.untrusted}/test/hello:v1"},
        {"image": f"{regs.no_credentials}/test/hello:v1"},
        {"image": f"{regs.closed}/test/hello:v1"},
        {"image": f"{regs.ratelimit}/test/hello:v1"},
    ]


def _write_config(path: Path, fleet: Fleet, port: int, targets: list[dict[str, str]]) -> Path:
    config = agent_settings(fleet, path.parent, interval_seconds=2, endpoint_interval_seconds=2,
                            jitter=0.0, secret_cache_seconds=5,
                            listen_address=f"127.0.0.1:{port}", static_targets=targets)
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _kubeconfig(path: Path, url: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
    return path


def _start_agent(work: Path, args: list[str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with (work / "agent.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "agent.cli", "agent", *args], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _until(what: str, check: Callable[[], bool], procs: list[subprocess.Popen[bytes]],
           timeout: float) -> None:
    """Poll ``check`` until true; fail early if an agent process died."""
    deadline = time.monotonic() + timeout
    while not check():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"the agent with {proc.args[-1]} exited (its agent.log is "
                                     f"beside the config) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.1)


def _pulls_counted(port: int, registry: str, ok: int, failed: int) -> bool:
    """Whether the agent's /metrics counts ``ok`` and ``failed`` pulls from ``registry``."""
    status, text = _get(port, "/metrics")
    counts = {s.labels["result"]: s.value for f in text_string_to_metric_families(text)
              for s in f.samples if s.name == "pulldoctor_image_pulls_total"
              and s.labels["registry"] == registry} if status == 200 else {}
    return counts == {"ok": ok, "failed": failed}


def _pulled_message(image: str) -> str:
    return (f'Successfully pulled image "{image}" in {PULL_SECONDS}s '
            f"({PULL_SECONDS}s including waiting). Image size: 1234 bytes.")


def _failed_message(image: str) -> str:
    return (f'Failed to pull image "{image}": rpc error: code = Unknown desc = failed to pull '
            f'and unpack image "{image}": failed to resolve reference "{image}": failed to '
            "authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized")


def _report_more_pulls(fake: FakeKube, image: str) -> None:
    """A pod that pulled fine and one whose pulls keep failing, as the kubelet reports them."""
    ok = make_pod("late-ok", "shop", NODE, [image], image_pull_secrets=["good"])
    fake.add_event(make_event(ok, reason="Pulled", type="Normal", message=_pulled_message(image)))
    fake.add_pod(ok)
    failed = make_pod("late-fail", "shop", NODE, [image], image_pull_secrets=["wrongpw"],
                      waiting={"app": ("ImagePullBackOff", f'Back-off pulling image "{image}"')})
    fake.add_event(make_event(failed, count=LATE_FAILURES, message=_failed_message(image)))
    fake.add_pod(failed)


def _start_agents(stack: contextlib.ExitStack, fleet: Fleet, work: Path, kube_url: str,
                  ports: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    regs = Registries.of(fleet)
    good = fleet.docker_config({regs.healthy: ALICE}, work / "good-config.json")
    targets = _static_targets(regs, good)
    kubeconfig = _kubeconfig(work / "kubeconfig", kube_url)
    procs = []
    for node, mode in ((STANDALONE, ["--standalone"]),
                       (NODE, ["--node", NODE, "--kubeconfig", str(kubeconfig)])):
        (work / node).mkdir()
        config = _write_config(work / node / "config.yaml", fleet, ports[node], targets)
        proc = _start_agent(work / node, [*mode, "--config", str(config)])
        stack.callback(_stop, proc)
        procs.append(proc)
    return procs


@pytest.fixture(scope="module")
def world(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    regs = Registries.of(fleet)
    work = tmp_path_factory.mktemp("agent-scrape")
    ports = {STANDALONE: _free_port(), NODE: _free_port()}
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeKube())
        images = populate(fake, fleet)
        fake.add_event(make_event(fake.get("pods", "shop", "healthy"), reason="Pulled",
                                  type="Normal", message=_pulled_message(images["multi"])))
        procs = _start_agents(stack, fleet, work, fake.url, ports)
        # The scenario's failed pulls (3) must be counted before the first scrape, so that
        # increase() over the run sees exactly the pulls reported later. The healthy pod's
        # Pulled event predates the agent (the pod was already running when it started): it is
        # history and is not counted, so an agent restart never counts a pull twice.
        _until("scenario pulls counted", lambda: _pulls_counted(
            ports[NODE], regs.healthy, ok=0, failed=3), procs, timeout=20)
        # one pull that happens while the agent watches, so both counters start non-zero
        # (increase() extrapolates a counter that starts at 0 differently)
        early = make_pod("early-ok", "shop", NODE, [images["hello"]], image_pull_secrets=["good"])
        fake.add_event(make_event(early, reason="Pulled", type="Normal",
                                  message=_pulled_message(images["hello"])))
        fake.add_pod(early)
        _until("early pull counted", lambda: _pulls_counted(
            ports[NODE], regs.healthy, ok=1, failed=3), procs, timeout=10)
        prom = stack.enter_context(PromServer.start(
            work / "prom", [(f"127.0.0.1:{port}", {"node": node}) for node, port in ports.items()],
            rule_files=[RULES]))
        _until("readiness", lambda: all(_get(p, "/readyz")[0] == 200 for p in ports.values()),
               procs, timeout=20)
        prom.wait_for(f'count_over_time(pulldoctor_pull_failures_total{{node="{NODE}"}}[1m]) '
                      ">= 2", timeout=20)
        _report_more_pulls(fake, images["hello"])
        _until("late pulls counted", lambda: _pulls_counted(
            ports[NODE], regs.healthy, ok=2, failed=3 + LATE_FAILURES), procs, timeout=10)
        for counter in ("pulldoctor_pull_failures_total", "pulldoctor_image_pulls_total"):
            prom.wait_for(f'increase({counter}{{node="{NODE}"}}[1m]) > 0', timeout=10)
        yield World(prom, regs, ports)


# --- helpers for the checks --------------------------------------------------------------

def _exposition(port: int) -> str:
    """The agent's /metrics in the classic text format (what promtool reads)."""
    status, body = _get(port, "/metrics")
    assert status == 200
    return body


def _samples(text: str) -> list[tuple[str, dict[str, str]]]:
    return [(s.name, s.labels) for f in text_string_to_metric_families(text) for s in f.samples]


def _scraped(prom: PromServer) -> list[tuple[str, dict[str, str]]]:
    """Every pulldoctor_* series Prometheus stored from the agents, stale ones included."""
    return [(s["__name__"], s) for s in prom.series('{job="pulldoctor"}')
            if s["__name__"].startswith("pulldoctor_")]


def _contract_problems(series: list[tuple[str, dict[str, str]]],
                       scrape_labels: frozenset[str]) -> tuple[set[str], set[str]]:
    """(names the contract lacks, 'name: labels' of series whose labels differ from it)."""
    contract = contract_series()
    extra, wrong = set(), set()
    for name, labels in series:
        if name not in contract:
            extra.add(name)
        elif set(labels) - scrape_labels != contract[name]:
            wrong.add(f"{name}: {sorted(set(labels) - scrape_labels)}")
    return extra, wrong


def _expand(expr: str, node: str = ".*") -> str:
    """A panel query as Grafana sends it with All registries, ``node`` and a 1m window."""
    return (expr.replace("$registry", ".*").replace("$node", node)
            .replace("$__rate_interval", WINDOW).replace("$window", WINDOW))


def _panel(title: str) -> str:
    [expr] = [p["targets"][0]["expr"] for p in panels() if p["title"] == title]
    return _expand(expr)


def _values(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s["metric"][k] for k in labels): float(s["value"][1]) for s in result}


def _expected_codes(regs: Registries, node: str) -> dict[str, str]:
    """The diagnosis each registry must have on ``node``, from its fault in the fleet."""
    return {
        # node-a's scenario pods use the token registry with a wrong password: the token
        # layer's failure is more fundamental than the static target's success
        regs.healthy: Code.AUTH_INVALID if node == NODE else Code.OK,
        regs.missing_tag: Code.IMAGE_NOT_FOUND,
        regs.expired: Code.TLS_EXPIRED,
        regs.untrusted: Code.TLS_UNKNOWN_AUTHORITY,
        regs.no_credentials: Code.AUTH_MISSING,
        regs.closed: Code.TCP_REFUSED,
        regs.ratelimit: Code.RATE_LIMITED,
    }


# --- the checks ---------------------------------------------------------------------------

@pytest.mark.slow
def test_prometheus_scrapes_both_agents_as_the_podmonitor_does(world: World) -> None:
    """Both agent processes are healthy targets of job ``pulldoctor``, each with its node."""
    targets = {t["labels"]["node"]: (t["health"], t["labels"]["job"])
               for t in world.prom.targets()}
    assert targets == {STANDALONE: ("up", "pulldoctor"), NODE: ("up", "pulldoctor")}


@pytest.mark.slow
def test_exposition_passes_promtool_check_metrics(world: World) -> None:
    """``promtool check metrics`` accepts each agent's real /metrics without a lint problem."""
    for node, port in world.ports.items():
        result = subprocess.run(["promtool", "check", "metrics"], capture_output=True,
                                input=_exposition(port).encode(), timeout=10, check=False)
        assert (node, result.returncode, result.stdout + result.stderr) == (node, 0, b"")


@pytest.mark.slow
def test_label_sets_match_the_contract_exactly(world: World) -> None:
    """Every exposed sample and every series Prometheus stored (stale ones too) has exactly
    its metric's contract labels, plus job, instance and node from the scrape; every
    contract metric is there (pull failures only where a kubelet reports them)."""
    exposed: dict[str, set[str]] = {}
    for node, port in world.ports.items():
        samples = _samples(_exposition(port))
        _, wrong = _contract_problems(samples, frozenset())
        assert wrong == set(), node
        exposed[node] = set(contract_series()) - {name for name, _ in samples}
    assert exposed == {NODE: set(), STANDALONE: {"pulldoctor_pull_failures_total"}}
    scraped = _scraped(world.prom)
    _, wrong = _contract_problems(scraped, SCRAPE_LABELS | {"__name__"})
    assert wrong == set()
    assert {(s["job"], s["node"]) for _, s in scraped} == {("pulldoctor", n) for n in world.ports}
    assert set(contract_series()) <= {name for name, _ in scraped}
    registries = {s["registry"] for _, s in scraped if "registry" in s}
    assert registries == world.registries.all()


@pytest.mark.slow
def test_no_metric_names_beyond_the_contract(world: World) -> None:
    """Neither the exposition nor Prometheus holds a pulldoctor_* name the contract lacks."""
    extra = set()
    for port in world.ports.values():
        extra |= _contract_problems(_samples(_exposition(port)), frozenset())[0]
    extra |= _contract_problems(_scraped(world.prom), SCRAPE_LABELS | {"__name__"})[0]
    assert extra == set()


@pytest.mark.slow
def test_one_diagnosis_series_per_registry_with_the_fault_s_code(world: World) -> None:
    """Each agent exports exactly one diagnosis series per probed registry, value 1, and
    Prometheus sees the same: the code each fleet member's fault calls for."""
    for node, port in world.ports.items():
        rows = [(s["registry"], s["code"]) for name, s in _samples(_exposition(port))
                if name == "pulldoctor_probe_diagnosis"]
        assert len(rows) == len({registry for registry, _ in rows}), (node, rows)
        assert dict(rows) == _expected_codes(world.registries, node)
    counts = world.prom.query("count by (node, registry) (pulldoctor_probe_diagnosis)")
    assert {float(s["value"][1]) for s in counts} == {1.0}
    assert len(counts) == len(world.ports) * len(world.registries.all())
    matrix = world.prom.query(_panel("Registry × node health (diagnosis code)"))
    got = {(s["metric"]["node"], s["metric"]["registry"]): (s["metric"]["code"], s["value"][1])
           for s in matrix}
    assert got == {(node, registry): (code, "1") for node in world.ports
                   for registry, code in _expected_codes(world.registries, node).items()}


@pytest.mark.slow
def test_every_panel_query_returns_series(world: World) -> None:
    """With All selected and a 1m window, every query of every panel returns series."""
    empty = [where for where, expr in queries() if not world.prom.query(_expand(expr))]
    assert empty == []


@pytest.mark.slow
def test_variable_queries_list_the_probed_registries_and_both_nodes(world: World) -> None:
    """label_values() of the registry and node variables finds what the agents export."""
    assert set(world.prom.label_values("registry", "pulldoctor_probe_diagnosis")) == \
        world.registries.all()
    assert world.prom.label_values("node", 'pulldoctor_probe_diagnosis{registry=~".*"}') == \
        sorted(world.ports)


@pytest.mark.slow
def test_pull_panels_reflect_the_kubelet_events(world: World) -> None:
    """After one more good pull and three more failed ones on the token registry, the pull
    panels show a 1-in-4 success rate, a p95 in the 1-2.5 s bucket and the failures under
    the probe's root cause."""
    healthy = world.registries.healthy
    rates = _values(world.prom.query(_panel("Pull success rate per registry")), "registry")
    assert rates[(healthy,)] == pytest.approx(1 / (1 + LATE_FAILURES))
    p95 = _values(world.prom.query(_panel("Pull duration p95 per registry")), "registry")
    assert 1.0 < p95[(healthy,)] <= 2.5
    failures = _values(world.prom.query(_panel("Pull failures by root cause")),
                       "registry", "code")
    assert set(failures) == {(healthy, Code.AUTH_INVALID.value)}
    assert failures[(healthy, Code.AUTH_INVALID.value)] >= LATE_FAILURES


@pytest.mark.slow
def test_standalone_agent_alone_lacks_only_kubelet_pull_data(world: World) -> None:
    """With the node variable set to the standalone agent, only the three image-pull panels
    lack values (no kubelet reports pulls there): two give NaN, one no series at all."""
    def what(expr: str) -> str:
        result = world.prom.query(_expand(expr, STANDALONE))
        if not result:
            return "no series"
        return "data" if any(s["value"][1] != "NaN" for s in result) else "NaN"
    lacking = {where: found for where, expr in queries() if (found := what(expr)) != "data"}
    assert lacking == {"Pull success rate per registry / A": "NaN",
                       "Pull duration p95 per registry / A": "NaN",
                       "Pull failures by root cause / A": "no series"}


@pytest.mark.slow
def test_alert_rules_evaluate_cleanly_and_follow_the_faults(world: World) -> None:
    """Every shipped rule evaluates without error on the scraped series, and exactly the
    alerts the fleet's faults call for are pending: the expired certificate (already past)
    but not the good ones, the auth, network and rate-limit faults, and the pull failures."""
    regs = world.registries
    expected_states = {
        "PullDoctorRegistryUnreachable": "pending", "PullDoctorRegistryAuthFailing": "pending",
        "PullDoctorRegistryProbeFailing": "pending", "PullDoctorRegistryDown": "pending",
        "PullDoctorRegistryCertExpiringSoon": "pending", "PullDoctorPullFailures": "pending",
        "PullDoctorRateLimitLow": "pending", "PullDoctorAgentDown": "inactive"}
    deadline = time.monotonic() + 30
    while True:  # rules run every second, scrapes too; a loaded machine needs a few rounds
        rules = {r["name"]: r for r in world.prom.rules()}
        if {n: r["state"] for n, r in rules.items()} == expected_states or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {n: (r["health"], r.get("lastError", "")) for n, r in rules.items()} == {
        n: ("ok", "") for n in rules}

    def alerts(name: str) -> set[tuple[str, ...]]:
        assert {a["state"] for a in rules[name]["alerts"]} <= {"pending"}, name
        return {tuple(v for k, v in sorted(a["labels"].items()) if k in ("registry", "code"))
                for a in rules[name]["alerts"]}

    assert alerts("PullDoctorRegistryUnreachable") == {
        (Code.TCP_REFUSED.value, regs.closed), (Code.TLS_EXPIRED.value, regs.expired),
        (Code.TLS_UNKNOWN_AUTHORITY.value, regs.untrusted)}
    assert {float(a["value"]) for a in rules["PullDoctorRegistryUnreachable"]["alerts"]} == {2.0}
    assert alerts("PullDoctorRegistryAuthFailing") == {
        (Code.AUTH_INVALID.value, regs.healthy), (Code.AUTH_MISSING.value, regs.no_credentials)}
    assert alerts("PullDoctorRegistryProbeFailing") == {
        (Code.IMAGE_NOT_FOUND.value, regs.missing_tag), (Code.RATE_LIMITED.value, regs.ratelimit)}
    # Both nodes fail on every faulty registry but `healthy` (auth rejected on one of two).
    assert alerts("PullDoctorRegistryDown") == {
        (r,) for r in (regs.missing_tag, regs.expired, regs.untrusted, regs.no_credentials,
                       regs.closed, regs.ratelimit)}
    assert alerts("PullDoctorRegistryCertExpiringSoon") == {(regs.expired,)}
    assert alerts("PullDoctorPullFailures") == {(Code.AUTH_INVALID.value, regs.healthy)}
    assert alerts("PullDoctorRateLimitLow") == {(regs.ratelimit,)}
    assert alerts("PullDoctorAgentDown") == set()
    assert {n: r["state"] for n, r in rules.items()} == expected_states
