"""The kubelet-message classifier agrees with a real container runtime and with the live probe.

For every loopback fault the fleet offers, a real ``ctr images pull`` (containerd 1.6,
client-side pull) fails; its last stderr line, without ctr's own ``ctr: `` prefix, is
wrapped the way containerd's CRI service and the kubelet wrap it, and classified. The
layered probe then looks at the same reference with the same credentials and the same
``certs.d`` view. Where ctr's words carry the cause, the classifier's code is the probe's
code and the injected fault's. Where they cannot (an htpasswd 401 looks the same with a
wrong password and with none; "pull access denied ... insufficient_scope" is the same for
no credentials, an account without rights and a missing repository), the classifier must
say so (``auth_failed``, ``ambiguous_not_found_or_auth``) and the probe must name the
real cause. The 60 s blackhole case is left out on purpose: it tests ctr's dial timeout,
not the wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.classify import Classification, classify
from probes import probe
from probes.codes import Code
from probes.result import ProbeReport
from tests.fleet import ALICE, BOB, Containerd, CtrResult, Fleet
from tests.probes.conftest import options_for

#: A password the fleet's accounts do not have (same user as ALICE).
WRONG = (ALICE[0], ALICE[1] + "-wrong")
#: Pull modes: ``plain`` = ``--plain-http``; ``certs`` = the fleet's certs.d (CA trusted);
#: ``noca`` = a certs.d that forces HTTPS but names no CA (system roots only).
MODES = ("plain", "certs", "noca")
#: The codes the classifier may give when the runtime's text cannot name the cause.
VAGUE = {Code.AUTH_FAILED, Code.AMBIGUOUS_NOT_FOUND_OR_AUTH}


@dataclass(frozen=True)
class Case:
    """One pull: where, how, as whom, the fault it hits, and the kubelet's code if it is vaguer."""

    id: str
    registry: str  # a fleet registry name, or "closed" for the fleet's refusing port
    image: str  # repository:tag
    mode: str  # one of MODES
    creds: tuple[str, str] | None
    cause: Code  # what is really wrong (ok: the pull works)
    kubelet: Code | None = None  # None: the runtime's text carries the cause


CASES: tuple[Case, ...] = (
    # Pulls that work: the kubelet's "Successfully pulled" and the probe both say ok.
    Case("plain-ok", "plain", "test/hello:v1", "plain", None, Code.OK),
    Case("tls-ok", "tls", "test/hello:v1", "certs", None, Code.OK),
    Case("basic-alice-ok", "basic", "test/hello:v1", "certs", ALICE, Code.OK),
    Case("token-alice-ok", "token", "test/hello:v1", "certs", ALICE, Code.OK),
    Case("token-public-anonymous-ok", "token", "public/hello:v1", "certs", None, Code.OK),
    # TLS: Go's x509 text names the cause.
    Case("expired", "expired", "test/hello:v1", "certs", None, Code.TLS_EXPIRED),
    Case("notyet", "notyet", "test/hello:v1", "certs", None, Code.TLS_NOT_YET_VALID),
    Case("mismatch", "mismatch", "test/hello:v1", "certs", None, Code.TLS_HOSTNAME_MISMATCH),
    Case("untrusted", "untrusted", "test/hello:v1", "certs", None, Code.TLS_UNKNOWN_AUTHORITY),
    Case("tls-without-ca", "tls", "test/hello:v1", "noca", None, Code.TLS_UNKNOWN_AUTHORITY),
    # Transport.
    Case("closed-port-http", "closed", "test/hello:v1", "plain", None, Code.TCP_REFUSED),
    Case("closed-port-https", "closed", "test/hello:v1", "noca", None, Code.TCP_REFUSED),
    Case("https-to-plain-port", "plain", "test/hello:v1", "noca", None, Code.TLS_PLAIN_HTTP),
    # A TLS port answers plain HTTP with 400: neither side can say more than "not a v2
    # registry" by code (the probe's detail adds that the port speaks TLS).
    Case("plain-http-to-tls-port", "tls", "test/hello:v1", "plain", None, Code.REGISTRY_NOT_V2),
    # Content.
    Case("missing-tag", "plain", "test/hello:nope", "plain", None, Code.IMAGE_NOT_FOUND),
    Case("missing-repo", "plain", "nope/nope:v1", "plain", None, Code.IMAGE_NOT_FOUND),
    Case("missing-tag-tls", "tls", "test/hello:nope", "certs", None, Code.IMAGE_NOT_FOUND),
    Case("missing-repo-token-alice", "token", "nope/nope:v1", "certs", ALICE,
         Code.IMAGE_NOT_FOUND),
    Case("missing-repo-token-public", "token", "public/nope:v1", "certs", None,
         Code.IMAGE_NOT_FOUND),
    Case("otherarch", "plain", "test/otherarch:v1", "plain", None, Code.PLATFORM_MISMATCH),
    # Token auth: containerd uses the oauth flow only with credentials, so a 401 there
    # names rejected credentials; "insufficient_scope" cannot tell none from no rights.
    Case("token-wrong-password", "token", "test/hello:v1", "certs", WRONG, Code.AUTH_INVALID),
    Case("token-no-credentials", "token", "test/hello:v1", "certs", None, Code.AUTH_MISSING,
         Code.AMBIGUOUS_NOT_FOUND_OR_AUTH),
    Case("token-bob-no-rights", "token", "test/hello:v1", "certs", BOB, Code.ACCESS_DENIED,
         Code.AMBIGUOUS_NOT_FOUND_OR_AUTH),
    # htpasswd: a bare 401 either way.
    Case("basic-wrong-password", "basic", "test/hello:v1", "certs", WRONG, Code.AUTH_INVALID,
         Code.AUTH_FAILED),
    Case("basic-no-credentials", "basic", "test/hello:v1", "certs", None, Code.AUTH_MISSING,
         Code.AUTH_FAILED),
)


def _hosts_toml(server: str) -> str:
    """A containerd 1.6 hosts.toml forcing ``server`` (HTTPS) and naming no CA."""
    return (f'server = "{server}"\n\n[host."{server}"]\n'
            '  capabilities = ["pull", "resolve"]\n')


@pytest.fixture(scope="module")
def ctrd(fleet: Fleet) -> Containerd:
    """The fleet's private containerd (started once; it stops with the fleet)."""
    return fleet.start_containerd()


@pytest.fixture(scope="module")
def noca_dir(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certs.d that forces HTTPS to the tls, plain and closed ports without trusting the CA.

    Without a hosts.toml, ctr talks plain HTTP to 127.0.0.1 (infra-recipes §2), so the
    HTTPS-only faults need one.
    """
    root = tmp_path_factory.mktemp("certs-noca.d")
    for hostport in (fleet.registries["tls"].host, fleet.registries["plain"].host,
                     f"127.0.0.1:{fleet.closed_port}"):
        (root / hostport).mkdir()
        (root / hostport / "hosts.toml").write_text(_hosts_toml(f"https://{hostport}"))
    return root


def _host(fleet: Fleet, case: Case) -> str:
    if case.registry == "closed":
        return f"127.0.0.1:{fleet.closed_port}"
    return fleet.registries[case.registry].host


def _pull(ctrd: Containerd, fleet: Fleet, noca: Path, case: Case, ref: str) -> CtrResult:
    user = f"{case.creds[0]}:{case.creds[1]}" if case.creds else None
    if case.mode == "plain":
        return ctrd.pull(ref, plain_http=True, user=user, timeout=20)
    hosts_dir = fleet.certs_dir if case.mode == "certs" else noca
    return ctrd.pull(ref, hosts_dir=hosts_dir, user=user, timeout=20)


def _probe(fleet: Fleet, noca: Path, case: Case, ref: str, host: str) -> ProbeReport:
    creds = {host: case.creds} if case.creds else None
    if case.mode == "plain":
        return probe(ref, options_for(fleet, creds=creds, plain_http=True))
    if case.mode == "noca":
        return probe(ref, options_for(fleet, creds=creds, certs_dirs=(noca,)))
    return probe(ref, options_for(fleet, creds=creds))


def kubelet_messages(ref: str, result: CtrResult) -> list[tuple[str, str]]:
    """(message, reason) pairs the kubelet would write for this pull: waiting message and Event.

    containerd's CRI service wraps the resolver's error as ``failed to pull and unpack image
    "REF": …`` and maps it to a gRPC status with ``errdefs.ToGRPC`` (an ``ErrNotFound``
    chain, whose text ends in ``: not found``, becomes ``NotFound``; the rest ``Unknown``);
    the kubelet puts that in the container's waiting message and prefixes the Event with
    ``Failed to pull image "REF": ``.
    """
    if result.returncode == 0:
        millis = max(1, round(result.seconds * 1000))
        pulled = (f'Successfully pulled image "{ref}" in {millis}ms '
                  f"({millis}ms including waiting)")
        return [(pulled, "Pulled")]
    cause = result.last_line.removeprefix("ctr: ")
    grpc = "NotFound" if cause.endswith(": not found") else "Unknown"
    rpc = f'rpc error: code = {grpc} desc = failed to pull and unpack image "{ref}": {cause}'
    return [(rpc, "ErrImagePull"), (f'Failed to pull image "{ref}": {rpc}', "Failed")]


def _explain(case: Case, result: CtrResult, said: list[Classification],
             report: ProbeReport) -> str:
    return (f"{case.id}: ctr rc={result.returncode} {result.last_line!r}; classifier "
            f"{[c.code.value for c in said]}; probe {report.code.value} "
            f"({report.diagnosis.detail if report.diagnosis else 'ok'})")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_classifier_agrees_with_ctr_and_probe(case: Case, fleet: Fleet, ctrd: Containerd,
                                             noca_dir: Path) -> None:
    """ctr's words, wrapped as the kubelet does, classify to the probe's code or a vaguer one."""
    host = _host(fleet, case)
    ref = f"{host}/{case.image}"
    result = _pull(ctrd, fleet, noca_dir, case, ref)
    report = _probe(fleet, noca_dir, case, ref, host)
    said = [classify(message, reason) for message, reason in kubelet_messages(ref, result)]
    why = _explain(case, result, said, report)
    assert not result.timed_out, why
    assert (result.returncode == 0) is (case.cause is Code.OK), why
    assert report.code is case.cause, why
    expected = case.kubelet or case.cause
    assert [c.code for c in said] == [expected] * len(said), why
    if case.kubelet is None:
        assert all(c.code is report.code for c in said), why  # agree
    else:
        assert case.kubelet in VAGUE and report.code is not case.kubelet, why  # refine
    for classification in said:
        assert classification.image == ref, why
        assert classification.registry == host, why
        if case.cause is not Code.OK:
            assert classification.runtime == "containerd", why


def test_no_credential_reaches_ctr_output_or_classification(fleet: Fleet, ctrd: Containerd,
                                                            noca_dir: Path) -> None:
    """A wrong password given to ctr appears neither in its stderr nor in the classification."""
    host = fleet.registries["token"].host
    ref = f"{host}/test/hello:v1"
    result = ctrd.pull(ref, hosts_dir=fleet.certs_dir, user=f"{WRONG[0]}:{WRONG[1]}", timeout=20)
    assert result.returncode != 0
    for message, reason in kubelet_messages(ref, result):
        text = str(classify(message, reason).to_dict())
        assert WRONG[1] not in text and WRONG[1] not in result.stderr
