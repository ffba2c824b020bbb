"""The agent's own view of the few Kubernetes objects it reads: pods, events, secrets, accounts.

Why: the Kubernetes client's models are heavy, lenient in the wrong places and strict in
others, and would tie every module of ``agent/`` to the client library. ``agent.kube`` is
the only module that talks to the API; it turns API JSON into these frozen dataclasses and
nothing else leaves it.

What it refuses to do: this module imports nothing from ``kubernetes``, performs no I/O and
holds no parsing logic; a :class:`SecretData` never shows its values in ``repr``/``str``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = [
    "ContainerKind",
    "ContainerState",
    "Pod",
    "PodEvent",
    "SecretData",
    "ServiceAccount",
]

#: Which list of the pod spec a container comes from.
ContainerKind = Literal["init", "container", "ephemeral"]


@dataclass(frozen=True, slots=True)
class ContainerState:
    """One container of a pod: its spec image joined with its status by name."""

    name: str
    image: str
    kind: ContainerKind
    waiting_reason: str | None = None
    waiting_message: str | None = None
    image_id: str | None = None
    running: bool = False
    restart_count: int = 0


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod as the agent needs it: identity, node, pull credentials' names and containers."""

    namespace: str
    name: str
    uid: str
    node_name: str | None
    service_account: str | None
    image_pull_secrets: tuple[str, ...]
    containers: tuple[ContainerState, ...]
    resource_version: str
    phase: str | None
    deleted: bool = False

    @property
    def key(self) -> str:
        """``namespace/name``, the usual way to name a pod in logs."""
        return f"{self.namespace}/{self.name}"

    def container(self, name: str) -> ContainerState | None:
        """The container called ``name`` (of any kind), or None."""
        return next((c for c in self.containers if c.name == name), None)


@dataclass(frozen=True, slots=True)
class PodEvent:
    """A core/v1 Event about a pod (usually written by the kubelet)."""

    namespace: str
    name: str
    reason: str
    type: str
    message: str
    count: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    field_path: str | None  # involvedObject.fieldPath, e.g. "spec.containers{app}"
    involved_uid: str | None


@dataclass(frozen=True, slots=True)
class SecretData:
    """A Secret's decoded data; ``repr`` shows only the keys, never the values."""

    namespace: str
    name: str
    type: str
    data: Mapping[str, bytes] = field(repr=False, hash=False, compare=True)

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.data))
        return (
            f"SecretData(namespace={self.namespace!r}, name={self.name!r}, "
            f"type={self.type!r}, keys=[{keys}])"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A ServiceAccount's name and the names of its image pull secrets."""

    namespace: str
    name: str
    image_pull_secrets: tuple[str, ...]
