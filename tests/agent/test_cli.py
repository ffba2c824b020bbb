"""The `pulldoctor probe` command line: exit codes, JSON contract, text output, usage errors."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from probes.result import LAYERS
from tests.fleet import ALICE, Fleet

ROOT = Path(__file__).resolve().parents[2]


def pulldoctor(*args: str, timeout: float = 60, prefix: tuple[str, ...] = ()
               ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run([*prefix, sys.executable, "-m", "agent.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def node_args(fleet: Fleet) -> list[str]:
    return ["--certs-dir", str(fleet.certs_dir), "--resolv-conf", str(fleet.resolv_conf),
            "--hosts-file", str(fleet.hosts_file)]


def test_healthy_probe_exits_zero_with_json_contract(fleet: Fleet) -> None:
    """A passing probe exits 0 and prints one JSON object with every layer in order."""
    token = fleet.registries["token"].host
    config = fleet.docker_config({token: ALICE})
    done = pulldoctor("probe", f"{token}/test/hello:v1", "--docker-config", str(config),
                      "--format", "json", *node_args(fleet))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"reference", "registry", "ok", "layers"} <= report.keys() and report["ok"] is True
    assert "diagnosis" not in report
    assert [layer["name"] for layer in report["layers"]] == list(LAYERS)
    for layer in report["layers"]:
        assert {"name", "status", "seconds", "detail"} <= layer.keys()
        assert layer["status"] in ("ok", "skipped")


def test_failing_probe_exits_one_with_diagnosis(fleet: Fleet) -> None:
    """A failing probe exits 1 and its JSON carries code, layer, summary and remediation."""
    done = pulldoctor("probe", f"{fleet.registries['expired'].host}/test/hello:v1",
                      "--format", "json", *node_args(fleet))
    assert done.returncode == 1, done.stderr
    diagnosis = json.loads(done.stdout)["diagnosis"]
    assert (diagnosis["code"], diagnosis["layer"]) == ("tls_expired", "tls")
    assert diagnosis["summary"] and diagnosis["remediation"]


def test_text_output_is_a_table_then_the_fix(fleet: Fleet) -> None:
    """The default text output lists each layer and ends with the diagnosis and its fix."""
    done = pulldoctor("probe", f"{fleet.registries['basic'].host}/test/hello:v1",
                      *node_args(fleet))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["token", "failed"] for line in lines if line.strip())
    assert "DIAGNOSIS  auth_missing" in done.stdout and "fix " in done.stdout


@pytest.mark.parametrize("reference", ["Not/Valid", "a//b", "nginx:", ""])
def test_bad_reference_is_a_usage_error(reference: str) -> None:
    """An invalid reference exits 2 with a message on stderr."""
    done = pulldoctor("probe", reference)
    assert done.returncode == 2 and "invalid reference" in done.stderr


def test_missing_docker_config_names_the_file(tmp_path: Path) -> None:
    """An unreadable docker config exits 2 naming the file."""
    path = tmp_path / "nope.json"
    done = pulldoctor("probe", "127.0.0.1:1/a/b:v1", "--docker-config", str(path))
    assert done.returncode == 2 and str(path) in done.stderr


@pytest.mark.parametrize("content", [
    '{"auths": {"r.example": {"auth": "%s"}}}',
    '{"auths": {"r.example": {"auth": "%s!!notbase64"}}}',
    '{"auths": "%s"',
])
def test_malformed_docker_config_never_shows_secret(tmp_path: Path, content: str) -> None:
    """A malformed docker config exits 2, names the file, and never echoes its content."""
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    payload = base64.b64encode(secret.encode()).decode()  # no ':' → invalid auth
    path = tmp_path / "config.json"
    path.write_text(content % payload)
    done = pulldoctor("probe", "127.0.0.1:1/a/b:v1", "--docker-config", str(path))
    assert done.returncode == 2 and str(path) in done.stderr
    assert secret not in done.stderr + done.stdout and payload not in done.stderr + done.stdout


def test_timeout_bounds_the_whole_probe(fleet: Fleet) -> None:
    """--timeout bounds the probe: a black-holed port ends within it (plus start-up)."""
    began = time.monotonic()
    done = pulldoctor("probe", f"127.0.0.1:{fleet.blackhole_port}/test/hello:v1",
                      "--timeout", "1", "--format", "json")
    elapsed = time.monotonic() - began
    assert json.loads(done.stdout)["diagnosis"]["code"] == "tcp_timeout"
    assert elapsed < 1 + 2.0


def test_probe_path_never_imports_kubernetes(fleet: Fleet) -> None:
    """`pulldoctor probe` does not load the Kubernetes client (start-up time)."""
    done = pulldoctor("probe", f"{fleet.registries['tls'].host}/test/hello:v1",
                      *node_args(fleet), prefix=())
    assert done.returncode == 0
    check = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agent.cli", "probe",
         f"{fleet.registries['tls'].host}/test/hello:v1", *node_args(fleet)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    imported = {line.split("|")[-1].strip() for line in check.stderr.splitlines()}
    assert "kubernetes" not in imported and "agent.kube" not in imported


def test_network_unreachable_from_a_namespace_without_routes() -> None:
    """In a network namespace whose loopback is down, connect fails with network_unreachable."""
    ns = f"pd-unreach-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        done = pulldoctor("probe", "127.0.0.1:5000/test/hello:v1", "--plain-http",
                          "--format", "json", prefix=("ip", "netns", "exec", ns))
        assert json.loads(done.stdout)["diagnosis"]["code"] == "network_unreachable", done.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_version() -> None:
    """--version prints the version."""
    done = pulldoctor("--version")
    assert done.returncode == 0 and done.stdout.startswith("pulldoctor ")


def test_explicit_proxy_flag(fleet: Fleet) -> None:
    """--proxy tunnels even to a loopback registry, and --no-proxy exempts a host."""
    tls = fleet.registries["tls"].host
    proxy = f"http://127.0.0.1:{fleet.proxies['auth'].port}"
    done = pulldoctor("probe", f"{tls}/test/hello:v1", "--proxy", proxy, "--format", "json",
                      *node_args(fleet))
    report = json.loads(done.stdout)
    assert report["diagnosis"]["code"] == "proxy_auth_required", done.stderr
    assert "proxyuser" not in done.stdout
    exempt = pulldoctor("probe", f"{tls}/test/hello:v1", "--proxy", proxy, "--no-proxy",
                        "127.0.0.1", "--format", "json", *node_args(fleet))
    assert json.loads(exempt.stdout)["ok"] is True, exempt.stdout


def test_classify_command_reads_stdin_lines() -> None:
    """`pulldoctor classify` without MESSAGE classifies each stdin line (JSON or plain)."""
    lines = ('{"message": "Back-off pulling image \\"nginx\\"", "reason": "BackOff"}\n'
             'x509: certificate signed by unknown authority\n')
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    done = subprocess.run([sys.executable, "-m", "agent.cli", "classify"], input=lines, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    codes = [json.loads(line)["code"] for line in done.stdout.splitlines()]
    assert done.returncode == 0 and codes == ["backoff", "tls_unknown_authority"]


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-1", "0", "1e9", "ten"])
def test_out_of_range_timeout_is_a_usage_error(value: str) -> None:
    """--timeout outside (0, 600] (or not a finite number) exits 2 with the probe usage."""
    done = pulldoctor("probe", "127.0.0.1:1/a/b:v1", "--timeout", value)
    assert done.returncode == 2, done.stdout
    assert "usage: pulldoctor probe" in done.stderr and "argument --timeout" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_states_the_timeout_maximum() -> None:
    """`pulldoctor probe --help` says how large --timeout may be."""
    done = pulldoctor("probe", "--help")
    assert done.returncode == 0 and "at most 600" in " ".join(done.stdout.split())


@pytest.mark.parametrize("value", ["dns.example", "localhost:53", "10.0.0.1:dns", "1.2.3.4:0"])
def test_dns_server_must_be_an_ip(value: str) -> None:
    """--dns-server NAME (or a bad port) exits 2 with a usage error, never a traceback."""
    done = pulldoctor("probe", "127.0.0.1:1/a/b:v1", "--dns-server", value)
    assert done.returncode == 2, done.stdout
    assert "argument --dns-server" in done.stderr and "Traceback" not in done.stderr


def test_unknown_flag_after_probe_shows_probe_usage() -> None:
    """An unknown flag after `probe` prints the probe subcommand's usage, not the top level's."""
    done = pulldoctor("probe", "127.0.0.1:1/a/b:v1", "--no-such-flag")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: pulldoctor probe ") and "--no-such-flag" in done.stderr


def test_standalone_once_without_config_is_an_error(tmp_path: Path) -> None:
    """`agent --standalone --once` with nothing to probe exits 2 instead of passing silently."""
    done = pulldoctor("agent", "--standalone", "--once")
    assert done.returncode == 2 and "static_targets" in done.stderr and "--config" in done.stderr
    empty = tmp_path / "agent.yaml"
    empty.write_text("static_targets: []\n")
    done = pulldoctor("agent", "--standalone", "--once", "--config", str(empty))
    assert done.returncode == 2 and str(empty) in done.stderr


@pytest.mark.parametrize("kind", ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"])
def test_docker_config_may_be_a_whole_secret(fleet: Fleet, tmp_path: Path, kind: str) -> None:
    """`kubectl get secret -o json` output is decoded as the docker config it holds."""
    token = fleet.registries["token"].host
    config = json.loads(fleet.docker_config({token: ALICE}).read_text())
    key, inner = ((".dockerconfigjson", config) if kind.endswith("dockerconfigjson")
                  else (".dockercfg", config["auths"]))
    blob = base64.b64encode(json.dumps(inner).encode()).decode()
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"apiVersion": "v1", "kind": "Secret", "type": kind,
                                  "metadata": {"name": "pull", "namespace": "shop"},
                                  "data": {key: blob}}))
    done = pulldoctor("probe", f"{token}/test/hello:v1", "--docker-config", str(secret),
                      "--format", "json", *node_args(fleet))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    userpass = base64.b64encode(":".join(ALICE).encode()).decode()
    for text in (blob, userpass, ":".join(ALICE)):
        assert text not in done.stdout + done.stderr


@pytest.mark.parametrize("secret", [
    {"kind": "Secret", "type": "Opaque", "data": {"x": "eA=="}},
    {"kind": "Secret", "type": "kubernetes.io/dockerconfigjson", "data": {}},
    {"kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
     "data": {".dockerconfigjson": "s3cr3t!!not-base64"}},
])
def test_unusable_secret_is_a_usage_error(tmp_path: Path, secret: dict[str, object]) -> None:
    """A Secret of the wrong type, without the key, or not base64 exits 2 naming the file."""
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(secret))
    done = pulldoctor("probe", "127.0.0.1:1/a/b:v1", "--docker-config", str(path))
    assert done.returncode == 2 and str(path) in done.stderr, done.stderr
    assert "s3cr3t" not in done.stdout + done.stderr and "Traceback" not in done.stderr
