"""Every Prometheus metric pulldoctor exports, defined in one place.

Why it exists: metric names and label sets are a public contract (alerts, the
Grafana dashboard and users' own queries depend on them), so they are declared
once here and registered into a ``CollectorRegistry`` the caller passes in; no
global registry is touched.

What it refuses to do:

* take a label value from free text. ``registry`` must look like ``host[:port]``,
  ``layer`` must be one of ``probes.result.LAYERS`` and ``code`` must be a
  ``probes.codes.Code``; anything else is a programming error and raises
  ``ValueError``/``TypeError``. Image names, tags, pods, nodes and error messages
  never become labels (the node is added by the scraper from pod metadata).
* keep series for registries it was told to forget: ``forget()`` drops every
  series of a registry so the caller can keep the label sets bounded.

``pulldoctor_probe_diagnosis`` keeps exactly one series per registry, with value
1 and the current code as its ``code`` label (``ok`` when healthy); the previous
code's series is removed, not set to 0. Counting series then counts nodes, and
an alert on a code resolves as soon as the code changes, without ``== 1``
filters or an ever-growing set of zero-valued series.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from probes.codes import Code
from probes.result import LAYERS, LayerResult, ProbeReport, Status

__all__ = [
    "LAYER_BUCKETS",
    "METRIC_LABELS",
    "PULL_BUCKETS",
    "RESULTS",
    "Metrics",
]

# The contract is exactly METRIC_LABELS: no ``*_created`` series next to each counter and
# histogram (Prometheus 2.x stores them as separate metrics, ~8% more series for nothing).
disable_created_metrics()

#: Probe layers take from well under a millisecond (loopback DNS) to the probe timeout.
LAYER_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: Image pulls take from a second (small, cached layers) to many minutes (large images).
PULL_BUCKETS: tuple[float, ...] = (
    0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0,
)
#: Values of the ``result`` label.
RESULTS: tuple[str, ...] = ("ok", "failed")

#: The public contract: metric name -> label names (histograms as their base name).
METRIC_LABELS: dict[str, tuple[str, ...]] = {
    "pulldoctor_probe_success": ("registry",),
    "pulldoctor_probe_layer_duration_seconds": ("registry", "layer"),
    "pulldoctor_probe_diagnosis": ("registry", "code"),
    "pulldoctor_probe_runs_total": ("registry", "result"),
    "pulldoctor_tls_cert_expiry_timestamp_seconds": ("registry",),
    "pulldoctor_registry_rate_limit_remaining": ("registry",),
    "pulldoctor_registry_rate_limit_limit": ("registry",),
    "pulldoctor_image_pulls_total": ("registry", "result"),
    "pulldoctor_image_pull_duration_seconds": ("registry",),
    "pulldoctor_pull_failures_total": ("registry", "code"),
    "pulldoctor_build_info": ("version",),
    "pulldoctor_kube_watch_healthy": (),
    "pulldoctor_targets": (),
}

# host[:port] as the probes name a registry: DNS name, IPv4, or bracketed IPv6.
_REGISTRY_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
_RAN = (Status.OK, Status.FAILED)


def _check_registry(registry: str) -> str:
    """Return ``registry`` if it is a ``host[:port]``; raise otherwise (never free text)."""
    if not isinstance(registry, str) or len(registry) > 253 or not _REGISTRY_RE.match(registry):
        raise ValueError("registry label must be host[:port]")
    return registry


def _check_code(code: Code) -> Code:
    if not isinstance(code, Code):
        raise TypeError("code must be a probes.codes.Code")
    return code


class _Definitions:
    """The metric objects themselves, registered into one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, METRIC_LABELS[name], registry=registry)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, METRIC_LABELS[name], registry=registry)

        def histogram(name: str, doc: str, buckets: Iterable[float]) -> Histogram:
            return Histogram(name, doc, METRIC_LABELS[name], registry=registry,
                             buckets=tuple(buckets))

        self.success = gauge("pulldoctor_probe_success",
                             "1 when the last probe of the registry passed every layer, else 0.")
        self.layer_seconds = histogram("pulldoctor_probe_layer_duration_seconds",
                                       "Time spent in each probe layer that ran.", LAYER_BUCKETS)
        self.diagnosis = gauge("pulldoctor_probe_diagnosis",
                               "1 for the registry's current diagnosis code (ok when healthy); "
                               "one series per registry.")
        self.runs = counter("pulldoctor_probe_runs_total", "Probes run, by result.")
        self.cert_expiry = gauge("pulldoctor_tls_cert_expiry_timestamp_seconds",
                                 "notAfter of the registry's TLS certificate, as a Unix time.")
        self.rate_remaining = gauge("pulldoctor_registry_rate_limit_remaining",
                                    "Requests left in the registry's rate-limit window "
                                    "(RateLimit-Remaining).")
        self.rate_limit = gauge("pulldoctor_registry_rate_limit_limit",
                                "Requests allowed in the registry's rate-limit window "
                                "(RateLimit-Limit).")
        self.pulls = counter("pulldoctor_image_pulls_total",
                             "Image pulls the kubelet reported on this node, by result.")
        self.pull_seconds = histogram("pulldoctor_image_pull_duration_seconds",
                                      "Duration of successful image pulls the kubelet reported.",
                                      PULL_BUCKETS)
        self.pull_failures = counter("pulldoctor_pull_failures_total",
                                     "Image pull failures on this node, by root-cause code.")
        self.build_info = gauge("pulldoctor_build_info", "Always 1; the version label says which.")
        self.watch_healthy = gauge("pulldoctor_kube_watch_healthy",
                                   "1 while the watch of this node's pods is established.")
        self.targets = gauge("pulldoctor_targets", "Registries this agent has series for.")


class Metrics:
    """pulldoctor's metrics, fed with probe reports and kubelet pull outcomes.

    Thread-safe: probes of different registries may report concurrently.
    """

    def __init__(self, registry: CollectorRegistry, *, version: str) -> None:
        self._m = _Definitions(registry)
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._current_code: dict[str, Code] = {}
        self._failure_codes: dict[str, set[Code]] = {}
        self._m.build_info.labels(version).set(1)
        self._m.watch_healthy.set(0)
        self._m.targets.set(0)

    def observe_probe(self, report: ProbeReport, *, state: bool = True) -> None:
        """Record one probe: success, per-layer timing, diagnosis, TLS expiry, rate limit.

        With ``state=False`` only counters and timings are recorded; the caller then sets
        the registry's success and diagnosis from all its images with :meth:`set_state`.
        Layers a probe reused from an earlier one (evidence ``shared``) are not timed again.
        """
        registry = _check_registry(report.registry)
        code = _check_code(report.code)
        layers = [lr for lr in report.layers if lr.status in _RAN]
        for lr in layers:
            if lr.name not in LAYERS:
                raise ValueError(f"unknown layer {lr.name!r}")
        with self._lock:
            self._see(registry)
            m = self._m
            if state:
                m.success.labels(registry).set(1 if report.ok else 0)
                self._set_diagnosis(registry, code)
            m.runs.labels(registry, "ok" if report.ok else "failed").inc()
            for lr in layers:
                if not lr.evidence.get("shared"):
                    m.layer_seconds.labels(registry, lr.name).observe(max(lr.seconds, 0.0))
            self._set_cert_expiry(registry, report.layer("tls"))
            self._set_rate_limit(registry, layers)

    def set_state(self, registry: str, *, ok: bool, code: Code) -> None:
        """Set a registry's current success and diagnosis (one code per registry)."""
        registry = _check_registry(registry)
        code = _check_code(code)
        with self._lock:
            self._see(registry)
            self._m.success.labels(registry).set(1 if ok else 0)
            self._set_diagnosis(registry, code)

    def observe_pull(self, registry: str, *, ok: bool, seconds: float | None) -> None:
        """Record a kubelet pull outcome (Pulled/Failed event) for an image of ``registry``."""
        registry = _check_registry(registry)
        with self._lock:
            self._see(registry)
            self._m.pulls.labels(registry, "ok" if ok else "failed").inc()
            if ok and seconds is not None and seconds >= 0:
                self._m.pull_seconds.labels(registry).observe(seconds)

    def observe_pull_failure(self, registry: str, code: Code) -> None:
        """Count one pull failure on this node by its diagnosed root cause."""
        registry = _check_registry(registry)
        code = _check_code(code)
        with self._lock:
            self._see(registry)
            self._m.pull_failures.labels(registry, code.value).inc()
            self._failure_codes.setdefault(registry, set()).add(code)

    def set_watch_healthy(self, healthy: bool) -> None:
        """Say whether the Kubernetes watch of this node's pods is established."""
        self._m.watch_healthy.set(1 if healthy else 0)

    def forget(self, registry: str) -> None:
        """Drop every series of ``registry`` (it is no longer a target)."""
        with self._lock:
            if registry not in self._known:
                return
            m = self._m
            for metric in (m.success, m.cert_expiry, m.rate_remaining, m.rate_limit):
                _remove(metric, registry)
            for layer in LAYERS:
                _remove(m.layer_seconds, registry, layer)
            for result in RESULTS:
                _remove(m.runs, registry, result)
                _remove(m.pulls, registry, result)
            _remove(m.pull_seconds, registry)
            code = self._current_code.pop(registry, None)
            if code is not None:
                _remove(m.diagnosis, registry, code.value)
            for failure in self._failure_codes.pop(registry, set()):
                _remove(m.pull_failures, registry, failure.value)
            self._known.discard(registry)
            m.targets.set(len(self._known))

    def _see(self, registry: str) -> None:
        """Create a new registry's fixed series up front so absent values still show."""
        if registry in self._known:
            return
        self._known.add(registry)
        m = self._m
        for layer in LAYERS:
            m.layer_seconds.labels(registry, layer)
        for result in RESULTS:
            m.runs.labels(registry, result)
            m.pulls.labels(registry, result)
        m.pull_seconds.labels(registry)
        m.targets.set(len(self._known))

    def _set_diagnosis(self, registry: str, code: Code) -> None:
        previous = self._current_code.get(registry)
        if previous is not None and previous is not code:
            _remove(self._m.diagnosis, registry, previous.value)
        self._m.diagnosis.labels(registry, code.value).set(1)
        self._current_code[registry] = code

    def _set_cert_expiry(self, registry: str, tls: LayerResult | None) -> None:
        # A probe that stopped before TLS says nothing about the certificate: keep the
        # last value. A TLS layer that ran but saw no certificate (plain HTTP) drops it.
        if tls is None or tls.status not in _RAN:
            return
        not_after = tls.evidence.get("not_after_timestamp")
        if isinstance(not_after, (int, float)) and not isinstance(not_after, bool):
            self._m.cert_expiry.labels(registry).set(float(not_after))
        else:
            _remove(self._m.cert_expiry, registry)

    def _set_rate_limit(self, registry: str, layers: list[LayerResult]) -> None:
        # The last layer that saw RateLimit headers is the freshest reading.
        for lr in reversed(layers):
            remaining = lr.evidence.get("rate_limit_remaining")
            if isinstance(remaining, int) and not isinstance(remaining, bool):
                self._m.rate_remaining.labels(registry).set(remaining)
                limit = lr.evidence.get("rate_limit_limit")
                if isinstance(limit, int) and not isinstance(limit, bool):
                    self._m.rate_limit.labels(registry).set(limit)
                return


def _remove(metric: Gauge | Counter | Histogram, *labelvalues: str) -> None:
    """Remove one child series if it exists (``remove`` raises KeyError otherwise)."""
    try:
        metric.remove(*labelvalues)
    except KeyError:
        pass
