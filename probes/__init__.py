"""pulldoctor's layered registry probes: see a registry the way a node's runtime does.

Public API: :func:`probe` walks dns → tcp → proxy → tls → challenge → token →
manifest against one image reference and returns a :class:`ProbeReport` whose
diagnosis names the first failing layer, its code, evidence and fix. This
package never imports the Kubernetes client or ``agent``: it works on a laptop
with no cluster. Names are loaded lazily so importing one submodule (say, the
diagnosis codes) does not pull in the network stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probes.reference import Reference
    from probes.result import ProbeReport
    from probes.state import ProbeOptions

__all__ = [
    "probe", "Code", "Reference", "ReferenceError", "parse_reference", "LAYERS", "Diagnosis",
    "LayerResult", "ProbeReport", "Status", "Platform", "ProbeOptions", "Target",
    "endpoint_targets", "upstream_target", "run_probe",
]

_LAZY = {
    "Code": "probes.codes", "Reference": "probes.reference", "ReferenceError": "probes.reference",
    "parse_reference": "probes.reference", "LAYERS": "probes.result", "Diagnosis": "probes.result",
    "LayerResult": "probes.result", "ProbeReport": "probes.result", "Status": "probes.result",
    "Platform": "probes.state", "ProbeOptions": "probes.state", "Target": "probes.state",
    "endpoint_targets": "probes.targets", "upstream_target": "probes.targets",
    "run_probe": "probes.engine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'probes' has no attribute {name!r}")


def probe(reference: Reference | str, options: ProbeOptions | None = None) -> ProbeReport:
    """Probe the registry endpoint of ``reference`` (its ``server``, not a mirror)."""
    from probes.engine import run_probe
    from probes.reference import parse_reference
    from probes.state import ProbeOptions
    from probes.targets import upstream_target

    options = options or ProbeOptions()
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    return run_probe(ref, upstream_target(ref, options), options)
