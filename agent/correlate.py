"""Join the kubelet's words about a failed pull with a live probe, and decide the root cause.

The kubelet's message (classified by :mod:`agent.classify`) says what the
runtime saw, often ambiguously; the live probe, run with the credentials the
kubelet would use and the node's own network view, says what is true now.
The verdicts:

``agree``
    the probe confirms the kubelet's cause.
``refine``
    the probe tells apart what the message could not (``auth_missing`` vs
    ``auth_invalid``, ``image_not_found`` vs ``access_denied``), or names the
    Secret problem behind an auth failure.
``stale``
    the probe now passes (the Secret was fixed, the registry recovered); the
    kubelet will succeed at its next retry.
``node-specific``
    this pod's credentials fail, but the image pulls on this node with
    another credential source.
``kubelet``
    a cause a registry probe cannot see (pull policy Never, an invalid name,
    unpacking or disk): the kubelet's words are the diagnosis.

Pure logic: no I/O, no clock, no Kubernetes import; easy to test by table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.classify import Classification
from agent.credentials import PodCredentials
from probes.codes import Code
from probes.result import ProbeReport

__all__ = ["PullFailure", "Outcome", "RootCause", "correlate", "KUBELET_ONLY", "BACKOFF_MAX"]

#: Causes only the kubelet can see; a registry probe has nothing to add.
KUBELET_ONLY = {Code.IMAGE_NEVER_PULL, Code.INVALID_IMAGE_NAME, Code.DISK_PRESSURE_OR_UNPACK}
#: Codes that leave the cause open for the probe to decide.
_VAGUE = {Code.AUTH_FAILED, Code.AMBIGUOUS_NOT_FOUND_OR_AUTH, Code.BACKOFF, Code.UNKNOWN,
          Code.REGISTRY_NOT_V2}
_AUTH = {Code.AUTH_MISSING, Code.AUTH_INVALID, Code.AUTH_FAILED, Code.ACCESS_DENIED,
         Code.AMBIGUOUS_NOT_FOUND_OR_AUTH}
#: The kubelet's image pull back-off: 10 s doubling up to this many seconds.
BACKOFF_MAX = 300


@dataclass(frozen=True, slots=True)
class PullFailure:
    """One failing pull as the kubelet reports it for a container of a pod on this node."""

    namespace: str
    pod: str
    uid: str
    container: str
    image: str
    reason: str  # waiting reason or event reason (ErrImagePull, ImagePullBackOff, Failed, ...)
    message: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """Probing an image through every endpoint the runtime would try, in order."""

    reference: str
    registry: str
    reports: tuple[ProbeReport, ...]
    blocked: bool = False
    runtime: str = "containerd"

    @property
    def final(self) -> ProbeReport | None:
        """The report that decides: the first endpoint that passed, else the last tried."""
        passing = next((r for r in self.reports if r.ok), None)
        return passing or (self.reports[-1] if self.reports else None)

    @property
    def ok(self) -> bool:
        final = self.final
        return bool(final and final.ok) and not self.blocked

    @property
    def code(self) -> Code:
        if self.blocked:
            return Code.REGISTRY_BLOCKED
        final = self.final
        return final.code if final else Code.UNKNOWN

    def fallbacks(self) -> list[dict[str, str]]:
        """Endpoints that failed before the deciding one (mirrors the runtime fell back from)."""
        final = self.final
        return [{"endpoint": r.endpoint, "code": r.code.value} for r in self.reports
                if r is not final and not r.ok]


@dataclass(frozen=True, slots=True)
class RootCause:
    """The decided root cause of one pull failure."""

    verdict: str
    code: Code
    layer: str | None
    kubelet_code: Code
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def remediation(self) -> str:
        return self.code.remediation


def _layer_detail(report: ProbeReport | None) -> tuple[str | None, str]:
    if report is None or report.diagnosis is None:
        return None, ""
    return report.diagnosis.layer, report.diagnosis.detail


def correlate(failure: PullFailure, kubelet: Classification, outcome: Outcome | None,
              creds: PodCredentials, *, provider: str | None = None,
              works_with: str | None = None) -> RootCause:
    """Decide the root cause of ``failure``.

    ``provider`` names a kubelet credential provider matching the image;
    ``works_with`` names another credential source that pulls this image on this node.
    """
    who = f"Pod {failure.namespace}/{failure.pod} container {failure.container}"
    said = kubelet.code
    evidence: dict[str, Any] = {"kubelet_code": said.value, "credentials": creds.source}
    if creds.problems:
        evidence["secret_problems"] = [p.describe() for p in creds.problems]
    if said in KUBELET_ONLY or outcome is None:
        return RootCause("kubelet", said, None, said,
                         f"{who} cannot use image {failure.image}: {said.summary}", evidence)
    report = outcome.final
    layer, detail = _layer_detail(report)
    evidence.update(probe_code=outcome.code.value, endpoint=report.endpoint if report else None,
                    probe_detail=detail)
    if outcome.fallbacks():
        evidence["failed_endpoints"] = outcome.fallbacks()
    if outcome.ok:
        return RootCause(
            "stale", said, None, said,
            f"{who} failed to pull {failure.image} ({said.value}), but a live probe with the same "
            f"credentials now passes every layer; the kubelet succeeds at its next retry "
            f"(back-off at most {BACKOFF_MAX}s)", evidence)
    code, verdict = outcome.code, "agree" if outcome.code is said else "refine"
    if code in (Code.AUTH_MISSING, Code.AUTH_INVALID):
        secret = next((p for p in creds.problems if p.code in
                       (Code.SECRET_NOT_FOUND, Code.SECRET_MALFORMED)), None)
        if secret is not None:
            code, verdict = secret.code, "refine"
            detail = f"{secret.describe()}; the registry then answered {outcome.code.value}"
        elif provider is not None and code is Code.AUTH_MISSING:
            code, verdict = Code.CREDENTIAL_PROVIDER, "refine"
            detail = (f"the kubelet gets credentials for this image from provider {provider!r}, "
                      "which pulldoctor cannot run; check the provider")
    if works_with is not None and works_with != creds.source and \
            code in _AUTH | {Code.SECRET_NOT_FOUND, Code.SECRET_MALFORMED}:
        verdict = "node-specific"
        evidence["works_with"] = works_with
        detail += f"; the same image pulls on this node with {works_with}"
    if verdict == "refine" and said not in _VAGUE and said not in _AUTH:
        evidence["changed_since_kubelet"] = True
    sentence = (f"{who} cannot pull {failure.image}: {code.summary[0].lower()}"
                f"{code.summary[1:].rstrip('.')} ({code.value}"
                f"{f' at the {layer} layer' if layer else ''}; {verdict}"
                f"{'' if verdict == 'agree' else f', kubelet said {said.value}'}). "
                f"{detail[:1].upper()}{detail[1:]}")
    return RootCause(verdict, code, layer, said, sentence.strip(), evidence)
