"""No credential leaves the agent or the CLI: not in output, endpoints, Events, or files on disk.

The real ``pulldoctor agent`` runs as a subprocess over every failure mode of
``tests/scenario.py`` plus working credentials (so the fleet's token server
really issues tokens and the basic registry really sees a password), with
distinctive secrets everywhere a credential can enter: pod Secrets, a static
target's docker config, the node's docker config, the runtime's proxy drop-in
and the agent's own API token. Everything it emits is then scanned: stdout,
stderr (its JSON log), ``/metrics``, ``/diagnoses``, ``/readyz`` (also during an
API outage), ``/healthz``, the Events it posted and the API paths it asked for.
Also scanned are the files it could write: every path it opened for writing
(a Python audit hook records them), its cwd, HOME and TMPDIR, and new entries
in /tmp. A needle is any password, any ``user:password`` and its base64 (the
value of an ``auth`` field and of a Basic header), the API token, and any
JWT-shaped string (the fleet does not record the tokens it issues, by design).
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.agent.test_process import ROOT, AgentProcess
from tests.fakekube import FakeKube, wait_for
from tests.fleet import ALICE, PROXY_USER, Fleet
from tests.fleet.accounts import TOKEN_SERVICE
from tests.scenario import EXPECTED, populate

RUN = uuid.uuid4().hex
PW_POD = f"pw-pod-{RUN}"
PW_STATIC = f"pw-static-{RUN}"
PW_NODE = f"pw-node-{RUN}"
PW_PROXY = f"pw-proxy-{RUN}"
PW_CLI = f"pw-cli-{RUN}"
API_TOKEN = f"kube-token-{RUN}"
#: A JWT (three base64url parts, the first a JSON header) or an Authorization header value.
SHAPES = (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
          # a value, not prose: it has a digit or base64 punctuation ("Bearer authentication")
          re.compile(r"(?i)\b(?:basic|bearer)\s+(?=[A-Za-z0-9+/_.~-]*[0-9+/=])"
                     r"[A-Za-z0-9+/_.~-]{12,}=*"))

#: Python run with ``-c``: records every path the process opens for writing in ``argv[1]``.
AUDIT_HOOK = """
import sys
_writes = open(sys.argv.pop(1), "a", buffering=1)
def _hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        mode, flags = args[1], args[2]
        if (isinstance(mode, str) and set(mode) & set("wax+")) or (
                isinstance(flags, int) and flags & 3):
            _writes.write(f"{args[0]!s}\\n")
sys.addaudithook(_hook)
"""
#: The real CLI under that hook.
AUDITED = (sys.executable, "-c", AUDIT_HOOK + "from agent.cli import main\nsys.exit(main())\n")


def _forms(user: str, password: str, *, bare: bool = True) -> set[str]:
    """Every way a credential pair could show up: itself, ``user:pass``, its base64s."""
    pair = f"{user}:{password}".encode()
    encoded = {base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()}
    return ({password} if bare else set()) | {pair.decode()} | encoded | {
        e.rstrip("=") for e in encoded}


NEEDLES = sorted(
    _forms(ALICE[0], PW_POD) | _forms(ALICE[0], PW_STATIC) | _forms("node", PW_NODE)
    | _forms(PROXY_USER, PW_PROXY) | _forms(ALICE[0], PW_CLI)
    # the fleet's real password is the word "secret", which the agent rightly uses in prose
    | _forms(*ALICE, bare=False) | {API_TOKEN})


def leaks(where: str, text: str) -> list[str]:
    """Needles and credential shapes found in ``text``, each named with ``where``."""
    found = [f"{where}: {needle!r}" for needle in NEEDLES if needle in text]
    for shape in SHAPES:
        found += [f"{where}: {m.group(0)[:40]!r}..." for m in shape.finditer(text)]
    return found


def _files(root: Path, skip: Iterable[Path] = ()) -> Iterator[Path]:
    skipped = {p.resolve() for p in skip}
    for path in root.rglob("*"):
        if path.is_file() and path.resolve() not in skipped and not path.is_symlink():
            yield path


def _read(path: Path, limit: int = 4 * 1024 * 1024) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


@dataclass
class Run:
    agent: AgentProcess
    fake: FakeKube
    surfaces: dict[str, str]
    inputs: list[Path]
    writes: list[str]
    new_in_tmp: list[Path]
    issued_before: int
    issued_after: int
    rejected_after: int


def _inputs(fleet: Fleet, workdir: Path) -> tuple[list[Path], dict[str, object]]:
    """Credential-bearing input files (static and node docker configs, a proxy drop-in) and
    the config keys that use them."""
    token, basic = fleet.registries["token"].host, fleet.registries["basic"].host
    good = fleet.docker_config({basic: ALICE}, workdir / "inputs" / "static-good.json")
    wrong = fleet.docker_config({token: (ALICE[0], PW_STATIC)},
                                workdir / "inputs" / "static-wrong.json")
    node = fleet.docker_config({basic: ("node", PW_NODE)}, workdir / "inputs" / "node.json")
    dropins = workdir / "inputs" / "containerd.service.d"
    dropins.mkdir(parents=True)
    proxy_port = fleet.proxies["auth"].port
    (dropins / "http-proxy.conf").write_text(
        "[Service]\nEnvironment=\"HTTPS_PROXY=http://"
        f"{PROXY_USER}:{PW_PROXY}@127.0.0.1:{proxy_port}\"\n")
    tls = fleet.registries["tls"].port
    config: dict[str, object] = {
        "node_docker_configs": [str(node)], "proxy_dropin_dirs": [str(dropins)],
        "static_targets": [
            {"image": f"{basic}/test/hello:v1", "docker_config": str(good)},
            {"image": f"{token}/test/hello:v1", "docker_config": str(wrong)},
            {"image": f"registry.test:{tls}/test/hello:v1"},  # through the proxy
        ]}
    return [good, wrong, node, dropins / "http-proxy.conf"], config


def _issued(fleet: Fleet, status: int) -> int:
    return sum(1 for r in fleet.token_server.requests
               if r.username == ALICE[0] and r.status == status)


def _outage_readyz(agent: AgentProcess, fake: FakeKube) -> str:
    """/readyz while the API is down (its reason quotes the watch's error)."""
    fake.stop()
    try:
        assert wait_for(lambda: agent.get("/readyz")[0] == 503, timeout=15, interval=0.1)
        return agent.get("/readyz")[1]
    finally:
        fake.start()


@pytest.fixture(scope="module")
def run(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One agent run over the whole scenario; every surface captured before SIGTERM."""
    workdir = tmp_path_factory.mktemp("noleaks")
    tmp_before = set(Path("/tmp").iterdir())
    issued_before = _issued(fleet, 200)
    with FakeKube(bookmark_interval=0.5) as fake:
        populate(fake, fleet, wrong_password=PW_POD)
        inputs, config = _inputs(fleet, workdir)
        agent = AgentProcess.start(fleet, fake.url, workdir, token=API_TOKEN,
                                   command=(*AUDITED, str(workdir / "writes.log")), **config)
        try:
            surfaces = {"/readyz at start": agent.get("/readyz")[1]}
            agent.wait_ready(40)
            assert wait_for(lambda: {r.get("pod") for r in agent.events("pull_diagnosed")}
                            >= EXPECTED.keys(), timeout=40), agent.output()[-3000:]
            surfaces["/readyz during an API outage"] = _outage_readyz(agent, fake)
            agent.wait_ready(30)
            for path in ("/metrics", "/diagnoses", "/readyz", "/healthz"):
                surfaces[path] = agent.get(path)[1]
            agent.terminate()
        finally:
            agent.kill()
        surfaces["Events posted"] = json.dumps(
            [e for e in fake.objects("events") if e.get("reportingComponent") == "pulldoctor"])
        surfaces["API requests"] = json.dumps([[r.path, r.query] for r in fake.requests])
        surfaces["stdout+stderr"] = agent.output()
        writes = (workdir / "writes.log").read_text().splitlines()
        new_in_tmp = sorted(set(Path("/tmp").iterdir()) - tmp_before)
        yield Run(agent, fake, surfaces, inputs, writes, new_in_tmp, issued_before,
                  _issued(fleet, 200), _issued(fleet, 401))


def test_the_scan_is_not_blind(fleet: Fleet, tmp_path: Path) -> None:
    """The scanner finds a token the fleet really issued, a Basic header and every needle, and
    the audit hook records a file opened for writing."""
    trust = ssl.create_default_context(cafile=str(fleet.ca_file))
    answer = httpx.get(fleet.token_server.url, auth=ALICE, verify=trust,
                       params={"service": TOKEN_SERVICE, "scope": "repository:test/hello:pull"})
    token = answer.json()["token"]
    assert leaks("t", f"answer {token} end") and leaks("t", json.dumps({"token": token}))
    header = "Basic " + base64.b64encode(f"alice:{PW_POD}".encode()).decode()
    assert leaks("h", f"Authorization: {header}")
    assert all(leaks("n", f"x{needle}x") for needle in NEEDLES)
    log = tmp_path / "writes.log"
    subprocess.run([sys.executable, "-c", AUDIT_HOOK + "open('made.txt', 'w').close()",
                    str(log)], cwd=tmp_path, check=True, timeout=30)
    assert log.read_text().splitlines() == ["made.txt"]


def test_the_run_exercised_every_credential_path(run: Run) -> None:
    """The scan is meaningful: tokens were issued, wrong passwords rejected, the Basic and
    proxy targets probed, Events posted, and every API request carried the agent's token."""
    assert run.issued_after > run.issued_before and run.rejected_after >= 1
    probes = [d for d in json.loads(run.surfaces["/diagnoses"]) if d["kind"] == "probe"]
    assert any(d["ok"] and "static-good.json" in d["credentials"] for d in probes), probes
    assert any(d["layer"] == "proxy" and d["image"].startswith("registry.test:")
               for d in probes), probes
    assert json.loads(run.surfaces["Events posted"])
    assert all(r.authenticated for r in run.fake.requests)
    assert run.surfaces["/readyz during an API outage"].startswith(
        "the watch of this node's pods is not established: ")


@pytest.mark.parametrize("surface", [
    "stdout+stderr", "/metrics", "/diagnoses", "/readyz", "/readyz at start",
    "/readyz during an API outage", "/healthz", "Events posted", "API requests"])
def test_no_credential_in_what_the_agent_emits(run: Run, surface: str) -> None:
    """No password, user:password, base64 auth, Authorization value, API token or JWT."""
    assert run.surfaces[surface], f"{surface} is empty: nothing was scanned"
    assert not leaks(surface, run.surfaces[surface])


def test_no_credential_written_to_disk(run: Run) -> None:
    """The agent opens no file for writing, and its cwd, HOME, TMPDIR and new /tmp entries
    hold no credential or token."""
    assert run.writes == [], run.writes
    workdir = run.agent.workdir
    ours = [*run.inputs, workdir / "kubeconfig", workdir / "config.yaml", workdir / "stdout",
            workdir / "stderr", workdir / "writes.log"]
    found = [hit for path in _files(workdir, ours) for hit in leaks(str(path), _read(path))]
    for entry in run.new_in_tmp:
        paths = [entry] if entry.is_file() else list(_files(entry)) if entry.is_dir() else []
        found += [hit for path in paths for hit in leaks(str(path), _read(path))]
    assert not found, found
    created = [p for p in _files(workdir, ours)]
    assert created == [], created


# --------------------------------------------------------------------------- the CLI


def _probe(fleet: Fleet, image: str, config: Path, fmt: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "probe", image, "--docker-config", str(config),
         "--certs-dir", str(fleet.certs_dir), "--resolv-conf", str(fleet.resolv_conf),
         "--hosts-file", str(fleet.hosts_file), "--format", fmt],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("registry", ["token", "basic"])
def test_probe_cli_prints_no_credential(fleet: Fleet, tmp_path: Path, registry: str,
                                        fmt: str) -> None:
    """``pulldoctor probe`` with a wrong then a right password prints none of it, nor a token."""
    host = fleet.registries[registry].host
    wrong = fleet.docker_config({host: (ALICE[0], PW_CLI)}, tmp_path / "wrong.json")
    right = fleet.docker_config({host: ALICE}, tmp_path / "right.json")
    issued = _issued(fleet, 200)
    failed, passed = (_probe(fleet, f"{host}/test/hello:v1", c, fmt) for c in (wrong, right))
    assert (failed.returncode, passed.returncode) == (1, 0), (failed.stdout, passed.stderr)
    if registry == "token":
        assert _issued(fleet, 200) > issued  # a real token was issued to the right password
    for name, done in (("wrong", failed), ("right", passed)):
        assert not leaks(f"{name} {fmt} stdout", done.stdout)
        assert not leaks(f"{name} {fmt} stderr", done.stderr)
