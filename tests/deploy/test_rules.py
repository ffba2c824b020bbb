"""Tests for the alert rules: promtool check and unit tests, contract, runbook and sync."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from probes.codes import Code
from tests.deploy.promql import SCRAPE_LABELS, contract_series, label_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/pulldoctor/pulldoctor/blob/main/docs/runbook.md#"
ALERTS = ("PullDoctorRegistryUnreachable", "PullDoctorRegistryAuthFailing",
          "PullDoctorRegistryProbeFailing", "PullDoctorRegistryDown",
          "PullDoctorRegistryCertExpiringSoon", "PullDoctorPullFailures",
          "PullDoctorRateLimitLow", "PullDoctorAgentDown")
_BRANCH = re.compile(r'\{\{-? (?:else )?if eq \$labels\.code "([a-z_0-9]+)" \}\} ([^\n]*)')


@functools.cache
def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule(alert: str) -> dict[str, Any]:
    return next(r for r in rules() if r["alert"] == alert)


@functools.cache
def unit_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load((PROM / "rules_test.yml").read_text())["tests"]
    return tests


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_promtool_check_rules_passes() -> None:
    """promtool accepts the rules file (syntax, PromQL, templates) without complaint."""
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout
    assert "WARNING" not in (done.stdout + done.stderr).upper()


def test_promtool_unit_tests_pass() -> None:
    """Every unit test in rules_test.yml passes (expected labels and expanded annotations)."""
    done = promtool("test", "rules", str(PROM / "rules_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_unit_tests_fail_when_a_threshold_changes(tmp_path: Path) -> None:
    """The unit tests are sensitive: raising the pull-failure threshold makes them fail."""
    text = RULES.read_text()
    assert ") >= 3\n" in text
    (tmp_path / "rules.yml").write_text(text.replace(") >= 3\n", ") >= 30\n"))
    shutil.copy(PROM / "rules_test.yml", tmp_path / "rules_test.yml")
    done = promtool("test", "rules", str(tmp_path / "rules_test.yml"))
    assert done.returncode != 0
    assert "PullDoctorPullFailures" in done.stdout + done.stderr


def test_exactly_the_documented_alerts_exist() -> None:
    """The rules define exactly the eight alerts of the design, once each."""
    assert sorted(r["alert"] for r in rules()) == sorted(ALERTS)


@pytest.mark.parametrize("alert", ALERTS)
def test_each_alert_is_unit_tested_firing_and_not_firing(alert: str) -> None:
    """rules_test.yml has an evaluation where the alert fires and one where it does not."""
    cases = [case for test in unit_tests() for case in test.get("alert_rule_test", [])
             if case["alertname"] == alert]
    assert any(case["exp_alerts"] for case in cases), "never tested firing"
    assert any(not case["exp_alerts"] for case in cases), "never tested silent"


@pytest.mark.parametrize("alert", ALERTS)
def test_each_alert_has_summary_description_and_runbook(alert: str) -> None:
    """summary, description and a runbook_url pointing at an existing runbook section."""
    annotations = rule(alert)["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["runbook_url"] == RUNBOOK_URL + alert.lower()
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    assert alert in headings
    assert "Remediation:" in annotations["description"]


@pytest.mark.parametrize("alert", [a for a in ALERTS
                                   if a not in ("PullDoctorAgentDown", "PullDoctorRegistryDown")])
def test_each_diagnosis_alert_names_its_code(alert: str) -> None:
    """Alerts by code template the code into the description; the others name a real code.
    (PullDoctorRegistryDown is about any code: its description lists each node's.)"""
    r = rule(alert)
    description = r["annotations"]["description"]
    if "code" in label_names(r["expr"]):
        assert "{{ $labels.code }}" in description
    else:
        named = set(re.findall(r"diagnosis code ([a-z_]+)", description))
        assert named and named <= {c.value for c in Code}


def _codes_selected(expr: str) -> set[Code]:
    """The codes an expression's `code` matchers let through."""
    selected = set(Code)
    for op, value in re.findall(r'code\s*(=~|!=|=)\s*"([^"]*)"', expr):
        if op == "=~":
            selected = {c for c in selected if re.fullmatch(value, c.value)}
        elif op == "!=":
            selected = {c for c in selected if c.value != value}
        else:
            selected = {c for c in selected if c.value == value}
    return selected


@pytest.mark.parametrize("alert", ["PullDoctorRegistryUnreachable",
                                   "PullDoctorRegistryAuthFailing",
                                   "PullDoctorRegistryProbeFailing", "PullDoctorPullFailures"])
def test_remediation_branches_are_the_codes_remediations(alert: str) -> None:
    """Each code the alert can fire for has a branch whose text is that code's remediation
    in probes/codes.py, and no branch is unreachable."""
    r = rule(alert)
    branches = dict(_BRANCH.findall(r["annotations"]["description"]))
    expected = {c.value: c.remediation for c in _codes_selected(r["expr"]) - {Code.OK}}
    assert branches == expected, "\n".join(
        f'{{{{- else if eq $labels.code "{code}" }}}} {text}' for code, text in expected.items())


def test_unreachable_alert_covers_the_network_code_families() -> None:
    """dns_*, tcp_*, network_*, proxy_* and tls_* codes, and nothing else, trigger it."""
    selected = _codes_selected(rule("PullDoctorRegistryUnreachable")["expr"])
    prefixes = ("dns_", "tcp_", "network_", "proxy_", "tls_")
    assert selected == {c for c in Code if c.value.startswith(prefixes)}


def test_auth_alert_covers_the_auth_codes() -> None:
    """auth_missing, auth_invalid, access_denied and auth_failed trigger it."""
    selected = _codes_selected(rule("PullDoctorRegistryAuthFailing")["expr"])
    assert selected == {Code.AUTH_MISSING, Code.AUTH_INVALID, Code.ACCESS_DENIED,
                        Code.AUTH_FAILED}


def test_probe_failing_alert_covers_the_registry_level_codes() -> None:
    """Registry-level probe failures past the network trigger it (5xx, token endpoint, not
    v2, resets, timeouts, missing image, rate limiting), and no network or auth code."""
    selected = _codes_selected(rule("PullDoctorRegistryProbeFailing")["expr"])
    assert selected == {Code.REGISTRY_SERVER_ERROR, Code.TOKEN_ENDPOINT_UNREACHABLE,
                        Code.REGISTRY_NOT_V2, Code.EOF_OR_RESET, Code.TIMEOUT,
                        Code.IMAGE_NOT_FOUND, Code.RATE_LIMITED}


def test_registry_down_is_the_critical_alert() -> None:
    """Only PullDoctorRegistryDown (most nodes of a cluster failing) pages as critical."""
    assert {r["alert"] for r in rules() if r["labels"]["severity"] == "critical"} == {
        "PullDoctorRegistryDown"}


@pytest.mark.parametrize("alert", [a for a in ALERTS if a != "PullDoctorAgentDown"])
def test_registry_alerts_keep_the_cluster_label(alert: str) -> None:
    """Every aggregation groups by `cluster` too, so two clusters are never summed into one
    alert (a `cluster` target label is kept; an external label is added on sending)."""
    expr = rule(alert)["expr"]
    groupings = re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr)
    assert groupings and all("cluster" in g.split(", ") for g in groupings), groupings


@pytest.mark.parametrize("alert", ALERTS)
def test_rules_use_only_contract_metrics_and_labels(alert: str) -> None:
    """Every series and label an expression uses exists in agent.metrics (or is `up`)."""
    contract = contract_series()
    expr = rule(alert)["expr"]
    names = metric_names(expr)
    assert names and names <= set(contract) | {"up"}
    known_labels = set().union(*contract.values()) | SCRAPE_LABELS
    assert label_names(expr) <= known_labels


def test_prometheusrule_is_the_rules_file_wrapped() -> None:
    """deploy/prometheusrule.yaml is exactly what the sync script makes from rules.yml."""
    generated = ROOT / "deploy" / "prometheusrule.yaml"
    spec = yaml.safe_load(generated.read_text())["spec"]
    assert spec == yaml.safe_load(RULES.read_text())


def test_sync_script_reproduces_the_prometheusrule(tmp_path: Path) -> None:
    """Running the sync script on a copy yields the committed PrometheusRule byte for byte."""
    (tmp_path / "prometheus").mkdir()
    for name in ("rules.yml", "sync-prometheusrule.sh"):
        shutil.copy(PROM / name, tmp_path / "prometheus" / name)
    subprocess.run(["sh", str(tmp_path / "prometheus" / "sync-prometheusrule.sh")],
                   check=True, timeout=30)
    committed = (ROOT / "deploy" / "prometheusrule.yaml").read_text()
    assert (tmp_path / "prometheusrule.yaml").read_text() == committed, (
        "run deploy/prometheus/sync-prometheusrule.sh")


def test_runbook_documents_every_code() -> None:
    """docs/runbook.md lists every diagnosis code with its summary and remediation."""
    text = RUNBOOK.read_text()
    for code in Code:
        row = f"| `{code.value}` | {code.summary} | {code.remediation} |"
        assert row in text, row
