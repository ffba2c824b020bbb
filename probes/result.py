"""Plain result types shared by every layer, the engine, the CLI and the agent.

Frozen dataclasses, no behaviour beyond rendering to JSON-ready dicts: a layer
describes what it saw; deciding what to do about it is the caller's business.
Evidence values are strings, numbers, booleans or lists of those, never a
credential.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from probes.codes import Code

__all__ = ["Status", "LayerResult", "Diagnosis", "ProbeReport", "LAYERS"]

#: Layer names in the order they run; also the ``layer`` label values.
LAYERS: tuple[str, ...] = ("dns", "tcp", "proxy", "tls", "challenge", "token", "manifest")


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class LayerResult:
    """What one layer saw: its status, time spent, a one-line detail and evidence."""

    name: str
    status: Status
    seconds: float = 0.0
    detail: str = ""
    code: Code | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "seconds": round(self.seconds, 6),
            "detail": self.detail,
            "code": self.code.value if self.code else None,
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The root cause of a failed probe: the code, the layer it failed at, and the fix."""

    code: Code
    layer: str
    detail: str = ""

    @property
    def summary(self) -> str:
        return self.code.summary

    @property
    def remediation(self) -> str:
        return self.code.remediation

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "layer": self.layer,
            "summary": self.summary,
            "remediation": self.remediation,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """The outcome of one layered probe of one reference through one endpoint."""

    reference: str
    registry: str
    layers: tuple[LayerResult, ...]
    endpoint: str = ""
    credential: str | None = None  # where the credential came from: never its content

    @property
    def ok(self) -> bool:
        return all(layer.status is not Status.FAILED for layer in self.layers)

    @property
    def failed_layer(self) -> LayerResult | None:
        return next((lr for lr in self.layers if lr.status is Status.FAILED), None)

    @property
    def diagnosis(self) -> Diagnosis | None:
        failed = self.failed_layer
        if failed is None:
            return None
        return Diagnosis(failed.code or Code.UNKNOWN, failed.name, failed.detail)

    @property
    def code(self) -> Code:
        diagnosis = self.diagnosis
        return diagnosis.code if diagnosis else Code.OK

    def layer(self, name: str) -> LayerResult | None:
        return next((lr for lr in self.layers if lr.name == name), None)

    @property
    def seconds(self) -> float:
        return sum(lr.seconds for lr in self.layers)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reference": self.reference,
            "registry": self.registry,
            "endpoint": self.endpoint,
            "credential": self.credential,
            "ok": self.ok,
            "seconds": round(self.seconds, 6),
            "layers": [lr.to_dict() for lr in self.layers],
        }
        diagnosis = self.diagnosis
        if diagnosis is not None:
            out["diagnosis"] = diagnosis.to_dict()
        return out
