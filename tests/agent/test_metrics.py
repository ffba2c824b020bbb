"""Tests for agent.metrics: the metric contract, label hygiene and promtool-clean exposition."""

from __future__ import annotations

import subprocess
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.metrics import Metrics
from probes.codes import Code
from probes.result import LAYERS, LayerResult, ProbeReport, Status

REG = "registry.example.com:5000"
OTHER = "mirror.example.net"

#: The public contract, written out independently of the module under test.
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "pulldoctor_probe_success": ("gauge", frozenset({"registry"})),
    "pulldoctor_probe_layer_duration_seconds": ("histogram", frozenset({"registry", "layer"})),
    "pulldoctor_probe_diagnosis": ("gauge", frozenset({"registry", "code"})),
    "pulldoctor_probe_runs": ("counter", frozenset({"registry", "result"})),
    "pulldoctor_tls_cert_expiry_timestamp_seconds": ("gauge", frozenset({"registry"})),
    "pulldoctor_registry_rate_limit_remaining": ("gauge", frozenset({"registry"})),
    "pulldoctor_registry_rate_limit_limit": ("gauge", frozenset({"registry"})),
    "pulldoctor_image_pulls": ("counter", frozenset({"registry", "result"})),
    "pulldoctor_image_pull_duration_seconds": ("histogram", frozenset({"registry"})),
    "pulldoctor_pull_failures": ("counter", frozenset({"registry", "code"})),
    "pulldoctor_build_info": ("gauge", frozenset({"version"})),
    "pulldoctor_kube_watch_healthy": ("gauge", frozenset()),
    "pulldoctor_targets": ("gauge", frozenset()),
}


Evidence = dict[str, object]


def layer(name: str, status: Status = Status.OK, seconds: float = 0.01,
          code: Code | None = None, *, evidence: Evidence | None = None) -> LayerResult:
    return LayerResult(name, status, seconds, detail=f"{name} detail", code=code,
                       evidence=dict(evidence or {}))


def passing(registry: str = REG, *, tls: Evidence | None = None) -> ProbeReport:
    layers = tuple(layer(n, evidence=tls if n == "tls" else None) for n in LAYERS)
    return ProbeReport(f"{registry}/team/app:v1", registry, layers)


def failing_at(name: str, code: Code, registry: str = REG, *,
               evidence: Evidence | None = None) -> ProbeReport:
    index = LAYERS.index(name)
    layers = [layer(n) for n in LAYERS[:index]]
    layers.append(layer(name, Status.FAILED, 0.5, code, evidence=evidence))
    layers += [layer(n, Status.SKIPPED, 0.0) for n in LAYERS[index + 1:]]
    return ProbeReport(f"{registry}/team/app:v1", registry, tuple(layers))


@pytest.fixture()
def reg() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture()
def metrics(reg: CollectorRegistry) -> Metrics:
    return Metrics(reg, version="1.2.3")


def series(reg: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``name`` as {sorted label items: value}."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in reg.collect() for s in family.samples if s.name == name
    }


def test_metric_names_types_and_label_names_are_the_contract(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """Every exported family has exactly the contract's name, type and label names."""
    metrics.observe_probe(failing_at("manifest", Code.RATE_LIMITED,
                                     evidence={"rate_limit_remaining": 0, "rate_limit_limit": 100}))
    metrics.observe_probe(passing(OTHER, tls={"not_after_timestamp": 2_000_000_000.0}))
    metrics.observe_pull(REG, ok=True, seconds=4.0)
    metrics.observe_pull_failure(REG, Code.AUTH_MISSING)
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for family in reg.collect():
        names: set[str] = set()
        for sample in family.samples:
            names |= set(sample.labels) - {"le"}
        found[family.name] = (family.type, frozenset(names))
    assert found == CONTRACT


def test_all_layers_are_created_up_front_and_only_run_layers_are_observed(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """A probe that fails at DNS still shows every layer, with counts only for layers that ran."""
    metrics.observe_probe(failing_at("dns", Code.DNS_NXDOMAIN))
    name = "pulldoctor_probe_layer_duration_seconds_count"
    counts = {layer_name: reg.get_sample_value(name, {"registry": REG, "layer": layer_name})
              for layer_name in LAYERS}
    assert counts == {n: (1.0 if n == "dns" else 0.0) for n in LAYERS}


def test_layer_histogram_buckets_span_a_millisecond_to_ten_seconds(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """A 0.5 ms layer lands in the first bucket (1 ms) and a 9 s layer in the last finite one."""
    report = ProbeReport("r", REG, (layer("dns", seconds=0.0005), layer("tcp", seconds=9.0)))
    metrics.observe_probe(report)
    name = "pulldoctor_probe_layer_duration_seconds_bucket"
    assert reg.get_sample_value(name, {"registry": REG, "layer": "dns", "le": "0.001"}) == 1.0
    assert reg.get_sample_value(name, {"registry": REG, "layer": "tcp", "le": "5.0"}) == 0.0
    assert reg.get_sample_value(name, {"registry": REG, "layer": "tcp", "le": "10.0"}) == 1.0


def test_success_gauge_and_run_counter_follow_each_probe(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """probe_success is 1 after a passing probe, 0 after a failing one; runs_total counts both."""
    metrics.observe_probe(passing())
    assert reg.get_sample_value("pulldoctor_probe_success", {"registry": REG}) == 1.0
    metrics.observe_probe(failing_at("tcp", Code.TCP_REFUSED))
    metrics.observe_probe(failing_at("tcp", Code.TCP_REFUSED))
    assert reg.get_sample_value("pulldoctor_probe_success", {"registry": REG}) == 0.0
    runs = "pulldoctor_probe_runs_total"
    assert reg.get_sample_value(runs, {"registry": REG, "result": "ok"}) == 1.0
    assert reg.get_sample_value(runs, {"registry": REG, "result": "failed"}) == 2.0


def test_run_counter_has_both_results_from_the_first_probe(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """The failed series exists (at 0) after one passing probe, so rate() works from the start."""
    metrics.observe_probe(passing())
    runs = "pulldoctor_probe_runs_total"
    assert reg.get_sample_value(runs, {"registry": REG, "result": "failed"}) == 0.0


def test_diagnosis_keeps_exactly_one_series_per_registry(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """A new code replaces the previous code's series instead of leaving it at 0."""
    metrics.observe_probe(failing_at("tls", Code.TLS_UNKNOWN_AUTHORITY))
    metrics.observe_probe(failing_at("token", Code.AUTH_INVALID))
    metrics.observe_probe(passing(OTHER))
    assert series(reg, "pulldoctor_probe_diagnosis") == {
        (("code", "auth_invalid"), ("registry", REG)): 1.0,
        (("code", "ok"), ("registry", OTHER)): 1.0,
    }
    metrics.observe_probe(passing())
    assert reg.get_sample_value("pulldoctor_probe_diagnosis",
                                {"registry": REG, "code": "auth_invalid"}) is None
    assert reg.get_sample_value("pulldoctor_probe_diagnosis",
                                {"registry": REG, "code": "ok"}) == 1.0


def test_failed_layer_without_code_is_diagnosed_unknown(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """A failed layer that carries no code shows up as code=unknown, never as free text."""
    report = ProbeReport("r", REG, (layer("dns"), layer("tcp", Status.FAILED, code=None)))
    metrics.observe_probe(report)
    assert series(reg, "pulldoctor_probe_diagnosis") == {
        (("code", "unknown"), ("registry", REG)): 1.0}


def test_certificate_expiry_comes_from_tls_evidence(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """The expiry gauge is set from the tls layer, kept when TLS did not run, dropped when it
    ran without a certificate."""
    name = "pulldoctor_tls_cert_expiry_timestamp_seconds"
    metrics.observe_probe(passing(tls={"not_after_timestamp": 1_900_000_000.5}))
    assert reg.get_sample_value(name, {"registry": REG}) == 1_900_000_000.5
    metrics.observe_probe(failing_at("dns", Code.DNS_TIMEOUT))
    assert reg.get_sample_value(name, {"registry": REG}) == 1_900_000_000.5
    metrics.observe_probe(failing_at("tls", Code.TLS_EXPIRED,
                                    evidence={"not_after_timestamp": 1_600_000_000.0}))
    assert reg.get_sample_value(name, {"registry": REG}) == 1_600_000_000.0
    metrics.observe_probe(failing_at("tls", Code.TLS_PLAIN_HTTP))
    assert reg.get_sample_value(name, {"registry": REG}) is None


def test_rate_limit_gauges_take_the_last_layer_that_saw_headers(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """RateLimit evidence of the latest layer wins; absent headers leave the gauges absent."""
    metrics.observe_probe(passing(OTHER))
    assert reg.get_sample_value("pulldoctor_registry_rate_limit_remaining",
                                {"registry": OTHER}) is None
    layers = (layer("dns"), layer("challenge", evidence={"rate_limit_remaining": 90, "rate_limit_limit": 100}),
              layer("manifest", evidence={"rate_limit_remaining": 7, "rate_limit_limit": 100}))
    metrics.observe_probe(ProbeReport("r", REG, layers))
    assert reg.get_sample_value("pulldoctor_registry_rate_limit_remaining",
                                {"registry": REG}) == 7.0
    assert reg.get_sample_value("pulldoctor_registry_rate_limit_limit",
                                {"registry": REG}) == 100.0


def test_pulls_are_counted_by_result_and_timed_when_successful(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """observe_pull counts ok/failed and observes only successful pulls with a duration."""
    metrics.observe_pull(REG, ok=True, seconds=42.0)
    metrics.observe_pull(REG, ok=True, seconds=None)
    metrics.observe_pull(REG, ok=False, seconds=3.0)
    pulls = "pulldoctor_image_pulls_total"
    assert reg.get_sample_value(pulls, {"registry": REG, "result": "ok"}) == 2.0
    assert reg.get_sample_value(pulls, {"registry": REG, "result": "failed"}) == 1.0
    duration = "pulldoctor_image_pull_duration_seconds"
    assert reg.get_sample_value(duration + "_count", {"registry": REG}) == 1.0
    assert reg.get_sample_value(duration + "_bucket", {"registry": REG, "le": "30.0"}) == 0.0
    assert reg.get_sample_value(duration + "_bucket", {"registry": REG, "le": "60.0"}) == 1.0
    assert reg.get_sample_value(duration + "_bucket", {"registry": REG, "le": "600.0"}) == 1.0


def test_pull_failures_are_counted_by_code(reg: CollectorRegistry, metrics: Metrics) -> None:
    """Each root cause gets its own series of pull_failures_total."""
    metrics.observe_pull_failure(REG, Code.AUTH_MISSING)
    metrics.observe_pull_failure(REG, Code.AUTH_MISSING)
    metrics.observe_pull_failure(REG, Code.IMAGE_NOT_FOUND)
    assert series(reg, "pulldoctor_pull_failures_total") == {
        (("code", "auth_missing"), ("registry", REG)): 2.0,
        (("code", "image_not_found"), ("registry", REG)): 1.0,
    }


@pytest.mark.parametrize("bad", [
    "registry.example.com/team/app:v1",      # an image reference
    "registry.example.com:5000/app@sha256:" + "a" * 64,
    "my-pod-7d9f8 (default)",               # a pod
    "dial tcp 10.0.0.1:443: i/o timeout",    # error text
    "",
    "registry.example.com:notaport",
    "x" * 300,
])
def test_registry_label_rejects_anything_but_host_and_port(metrics: Metrics, bad: str) -> None:
    """A registry label that is not host[:port] is refused by every entry point."""
    with pytest.raises(ValueError):
        metrics.observe_pull(bad, ok=True, seconds=1.0)
    with pytest.raises(ValueError):
        metrics.observe_pull_failure(bad, Code.UNKNOWN)
    with pytest.raises(ValueError):
        metrics.observe_probe(passing(bad))


@pytest.mark.parametrize("good", [
    "registry.example.com", "127.0.0.1:5000", "[::1]:5000", "localhost", "registry-1.docker.io",
])
def test_registry_label_accepts_host_and_port_forms(
        reg: CollectorRegistry, metrics: Metrics, good: str) -> None:
    """DNS names, IPv4 and bracketed IPv6 with optional port are valid registry labels."""
    metrics.observe_probe(passing(good))
    assert reg.get_sample_value("pulldoctor_probe_success", {"registry": good}) == 1.0


def test_code_label_only_accepts_the_closed_vocabulary(metrics: Metrics) -> None:
    """A plain string, even one equal to a code value, is refused as a pull-failure code."""
    with pytest.raises(TypeError):
        metrics.observe_pull_failure(REG, "auth_missing")  # type: ignore[arg-type]


def test_unknown_layer_name_is_a_programming_error(metrics: Metrics) -> None:
    """A layer outside probes.result.LAYERS is refused rather than exported."""
    with pytest.raises(ValueError):
        metrics.observe_probe(ProbeReport("r", REG, (layer("ping"),)))


def test_no_label_value_ever_comes_from_free_text(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """Details, evidence strings, references and credential sources never reach the exposition,
    and every label value is from a closed set or the registry."""
    secret_ish = "s3cr3t-detail-text"
    report = ProbeReport(
        reference=f"{REG}/team/secret-app:v9", registry=REG, credential="secret/ns/pull-secret",
        layers=(layer("dns", evidence={"answer": secret_ish}),
                LayerResult("tcp", Status.FAILED, 0.2, detail=secret_ish,
                            code=Code.TCP_TIMEOUT, evidence={"peer": secret_ish})),
    )
    metrics.observe_probe(report)
    metrics.observe_pull(REG, ok=False, seconds=None)
    metrics.observe_pull_failure(REG, Code.ACCESS_DENIED)
    text = generate_latest(reg).decode()
    for needle in (secret_ish, "secret-app", "pull-secret", "v9"):
        assert needle not in text
    allowed = {
        "registry": {REG}, "layer": set(LAYERS), "code": {c.value for c in Code},
        "result": {"ok", "failed"}, "version": {"1.2.3"},
    }
    for family in reg.collect():
        for sample in family.samples:
            for key, value in sample.labels.items():
                if key != "le":
                    assert value in allowed[key], (sample.name, key, value)


def test_forget_drops_every_series_of_a_registry_only(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """After forget(), no sample mentions the registry; other registries are untouched."""
    metrics.observe_probe(failing_at("manifest", Code.RATE_LIMITED,
                                     evidence={"rate_limit_remaining": 0, "rate_limit_limit": 10}))
    metrics.observe_probe(passing(REG, tls={"not_after_timestamp": 2e9}))
    metrics.observe_pull(REG, ok=True, seconds=2.0)
    metrics.observe_pull_failure(REG, Code.BACKOFF)
    metrics.observe_probe(passing(OTHER))
    assert reg.get_sample_value("pulldoctor_targets") == 2.0
    metrics.forget(REG)
    metrics.forget("never-seen.example")
    remaining = [s for f in reg.collect() for s in f.samples
                 if s.labels.get("registry") == REG]
    assert remaining == []
    assert reg.get_sample_value("pulldoctor_probe_success", {"registry": OTHER}) == 1.0
    assert reg.get_sample_value("pulldoctor_targets") == 1.0


def test_build_info_and_watch_health(reg: CollectorRegistry, metrics: Metrics) -> None:
    """build_info carries the version with value 1; the watch gauge starts at 0 and follows."""
    assert reg.get_sample_value("pulldoctor_build_info", {"version": "1.2.3"}) == 1.0
    assert reg.get_sample_value("pulldoctor_kube_watch_healthy") == 0.0
    metrics.set_watch_healthy(True)
    assert reg.get_sample_value("pulldoctor_kube_watch_healthy") == 1.0
    metrics.set_watch_healthy(False)
    assert reg.get_sample_value("pulldoctor_kube_watch_healthy") == 0.0


def test_concurrent_probes_leave_one_diagnosis_series_per_registry(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """Threads racing to change a registry's code never leave two diagnosis series behind."""
    codes = [Code.DNS_TIMEOUT, Code.TCP_REFUSED, Code.AUTH_INVALID, Code.OK]

    def work(i: int) -> None:
        for j in range(200):
            code = codes[(i + j) % len(codes)]
            metrics.observe_probe(passing() if code is Code.OK else failing_at("tcp", code))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(series(reg, "pulldoctor_probe_diagnosis")) == 1
    runs = sum(series(reg, "pulldoctor_probe_runs_total").values())
    assert runs == 800


def test_exposition_passes_promtool_check_metrics(
        reg: CollectorRegistry, metrics: Metrics) -> None:
    """promtool's linter accepts the full exposition with no warning at all."""
    metrics.observe_probe(failing_at("manifest", Code.RATE_LIMITED,
                                     evidence={"rate_limit_remaining": 0, "rate_limit_limit": 100}))
    metrics.observe_probe(passing(OTHER, tls={"not_after_timestamp": 2_000_000_000.0}))
    metrics.observe_pull(REG, ok=True, seconds=12.0)
    metrics.observe_pull_failure(REG, Code.AUTH_MISSING)
    metrics.set_watch_healthy(True)
    done = subprocess.run(["promtool", "check", "metrics"], input=generate_latest(reg),
                          capture_output=True, timeout=30, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


@pytest.mark.parametrize("image", [
    "nginx", "library/nginx:1.27", "ghcr.io/org/app:v1", "localhost:5000/x",
    "[::1]:5000/team/app:v2", "127.0.0.1:5000/a@sha256:" + "a" * 64,
    "Registry.Example.COM/x", "xn--bcher-kva.example/a", "registry-1.docker.io/library/busybox",
])
def test_registry_of_any_parsed_reference_is_a_valid_label(
        reg: CollectorRegistry, metrics: Metrics, image: str) -> None:
    """The registry probes.reference derives from an image is always accepted as a label."""
    from probes.reference import parse_reference

    registry = parse_reference(image).registry
    metrics.observe_pull(registry, ok=True, seconds=1.0)
    assert reg.get_sample_value("pulldoctor_image_pulls_total",
                                {"registry": registry, "result": "ok"}) == 1.0
