"""Correlation verdicts by table: kubelet words × live probe × the pod's credentials."""

from __future__ import annotations

import pytest

from agent.classify import classify
from agent.correlate import Outcome, PullFailure, correlate
from agent.credentials import PodCredentials, SecretProblem
from probes.codes import Code
from probes.credentials import Keyring
from probes.result import LayerResult, ProbeReport, Status

FAILURE = PullFailure("shop", "web", "uid-1", "app", "r.example/team/app:v1", "ErrImagePull",
                      "")
RPC = 'rpc error: code = Unknown desc = failed to pull and unpack image "r.example/team/app:v1": '
WORDS = {
    "denied": RPC + "pull access denied, repository does not exist or may require "
                    "authorization: server message: insufficient_scope: authorization failed",
    "oauth401": RPC + "failed to authorize: failed to fetch oauth token: unexpected status: 401 "
                      "Unauthorized",
    "notfound": RPC + "r.example/team/app:v1: not found",
    "backoff": 'Back-off pulling image "r.example/team/app:v1"',
    "never": 'Container image "r.example/team/app:v1" is not present with pull policy of Never',
    "x509": RPC + 'failed to do request: Head "https://r.example/v2/team/app/manifests/v1": '
                  "x509: certificate signed by unknown authority",
}


def report(code: Code | None, layer: str = "token", endpoint: str = "https://r.example"
           ) -> ProbeReport:
    layers = (LayerResult(layer, Status.FAILED, detail=f"{code} seen", code=code),) if code \
        else (LayerResult("manifest", Status.OK),)
    return ProbeReport("r.example/team/app:v1", "r.example", layers, endpoint=endpoint)


def creds(*problems: SecretProblem) -> PodCredentials:
    return PodCredentials(Keyring(), ("shop/regcred",), False, problems, "fp")


MISSING = SecretProblem(Code.SECRET_NOT_FOUND, "shop", "regcred", "does not exist")
BROKEN = SecretProblem(Code.SECRET_MALFORMED, "shop", "regcred", "bad base64")

# (id, kubelet words, probe code or None for ok, secret problems, provider, works_with,
#  expected code, expected verdict)
CASES = [
    ("agree-auth-invalid", "oauth401", Code.AUTH_INVALID, (), None, None,
     Code.AUTH_INVALID, "agree"),
    ("refine-ambiguous-to-missing", "denied", Code.AUTH_MISSING, (), None, None,
     Code.AUTH_MISSING, "refine"),
    ("refine-ambiguous-to-not-found", "denied", Code.IMAGE_NOT_FOUND, (), None, None,
     Code.IMAGE_NOT_FOUND, "refine"),
    ("refine-ambiguous-to-access-denied", "denied", Code.ACCESS_DENIED, (), None, None,
     Code.ACCESS_DENIED, "refine"),
    ("secret-not-found-behind-auth-missing", "denied", Code.AUTH_MISSING, (MISSING,), None, None,
     Code.SECRET_NOT_FOUND, "refine"),
    ("secret-malformed-behind-auth-missing", "denied", Code.AUTH_MISSING, (BROKEN,), None, None,
     Code.SECRET_MALFORMED, "refine"),
    ("credential-provider", "denied", Code.AUTH_MISSING, (), "ecr-credential-provider", None,
     Code.CREDENTIAL_PROVIDER, "refine"),
    ("stale-after-fix", "oauth401", None, (), None, None, Code.AUTH_INVALID, "stale"),
    ("backoff-refined", "backoff", Code.AUTH_INVALID, (), None, None, Code.AUTH_INVALID,
     "refine"),
    ("backoff-stale", "backoff", None, (), None, None, Code.BACKOFF, "stale"),
    ("never-pull-is-kubelet-only", "never", None, (), None, None, Code.IMAGE_NEVER_PULL,
     "kubelet"),
    ("node-specific-credentials", "oauth401", Code.AUTH_INVALID, (), None, "secrets shop/good",
     Code.AUTH_INVALID, "node-specific"),
    ("tls-agree", "x509", Code.TLS_UNKNOWN_AUTHORITY, (), None, "secrets shop/good",
     Code.TLS_UNKNOWN_AUTHORITY, "agree"),
    ("changed-since-kubelet", "x509", Code.TCP_REFUSED, (), None, None, Code.TCP_REFUSED,
     "refine"),
    ("not-found-agree", "notfound", Code.IMAGE_NOT_FOUND, (), None, None, Code.IMAGE_NOT_FOUND,
     "agree"),
]


@pytest.mark.parametrize(("case", "words", "probe", "problems", "provider", "works_with", "code",
                          "verdict"), CASES, ids=[c[0] for c in CASES])
def test_verdict(case: str, words: str, probe: Code | None, problems: tuple[SecretProblem, ...],
                 provider: str | None, works_with: str | None, code: Code, verdict: str) -> None:
    """Each combination of words, probe result and credentials gives one root cause."""
    outcome = Outcome("r.example/team/app:v1", "r.example", (report(probe),))
    cause = correlate(FAILURE, classify(WORDS[words]), outcome, creds(*problems),
                      provider=provider, works_with=works_with)
    assert (cause.code, cause.verdict) == (code, verdict)
    assert cause.message.startswith("Pod shop/web container app") and cause.remediation


def test_mirror_fallback_is_evidence() -> None:
    """A failing mirror before a passing server is named in the evidence; the pull works."""
    outcome = Outcome("r.example/team/app:v1", "r.example", (
        report(Code.TCP_REFUSED, "tcp", "https://mirror.example"), report(None)))
    cause = correlate(FAILURE, classify(WORDS["oauth401"]), outcome, creds())
    assert cause.verdict == "stale"
    assert cause.evidence["failed_endpoints"] == [
        {"endpoint": "https://mirror.example", "code": "tcp_refused"}]


def test_blocked_registry() -> None:
    """A registry blocked in registries.conf is the root cause, whatever the words."""
    outcome = Outcome("r.example/team/app:v1", "r.example", (), blocked=True, runtime="cri-o")
    cause = correlate(FAILURE, classify(WORDS["denied"]), outcome, creds())
    assert cause.code is Code.REGISTRY_BLOCKED


def test_sentence_never_contains_secret_content() -> None:
    """The message names Secrets by name only."""
    cause = correlate(FAILURE, classify(WORDS["denied"]),
                      Outcome("r", "r.example", (report(Code.AUTH_MISSING),)), creds(MISSING))
    assert "shop/regcred" in cause.message and "does not exist" in cause.message
