"""The node agent: probe what this node pulls, and turn its pull failures into root causes.

Data flow: the pod watcher (``agent.kube``) reports this node's pods; their
images plus the config's static targets become probe targets, one per
(image, credential set); the scheduler says when each is due; a bounded pool
probes them through the node's endpoint plan (mirrors first, as the runtime
does) with a shared :class:`~probes.cache.ProbeCache`; results feed the
metrics. A container waiting on a pull failure is classified from the
kubelet's words, its target probed at once, and the two correlated into a
root cause that is logged (``pull_diagnosed``) and posted as a Warning Event.

It refuses to crash: every callback and worker catches and logs what goes
wrong, a bad pod or Secret is reported and skipped, and the API being down
only makes ``/readyz`` say so (with the watch's last error). It refuses to
lose a failure to an API fault: pod changes wait coalesced per pod (bounded
memory however many updates arrive), a relist settles what a broken watch
missed, a Secret read that got no answer defers the verdict instead of
blaming the Secret, and an Event the API refused is posted again later. Work
for the pool is queued at most once per pod or failure. It never logs or
exports a credential.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from agent.classify import Classification, classify
from agent.config import AgentConfig, StaticTarget
from agent.correlate import Outcome, PullFailure, RootCause, correlate
from agent.credentials import CredentialResolver, PodCredentials
from agent.logs import Log, scrub
from agent.metrics import Metrics
from agent.model import Pod, PodEvent
from agent.nodeview import NodeView
from agent.scheduler import Scheduler
from probes.cache import ProbeCache
from probes.codes import Code
from probes.credentials import DockerConfigError, Keyring, parse_docker_config
from probes.engine import run_probe
from probes.hostsconfig import parse_go_duration
from probes.reference import Reference, ReferenceError, parse_reference
from probes.result import LAYERS

__all__ = ["Agent", "KubeApi", "PULL_WAITING_REASONS"]

#: Container waiting reasons that mean an image pull failed or will not be attempted.
PULL_WAITING_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                        "ErrImageNeverPull", "RegistryUnavailable"}
# the kubelet prints a Go time.Duration: "1.2s", "450ms", "2m3.5s"
_PULLED = re.compile(r'Successfully pulled image "(?P<image>[^"]{1,512})" in '
                     r"(?P<duration>[0-9][0-9.hmsuµμn]{0,40})")
_FAILED_PULL = re.compile(r'Failed to pull image "(?P<image>[^"]{1,512})"')
TICK = 0.5
#: DNS answers and endpoint locks are renewed this often (seconds).
CACHE_REFRESH = 60.0
#: Rank (index in LAYERS) of "challenge", the last layer of an endpoint check.
_ENDPOINT_RANK = LAYERS.index("challenge")
#: Pods whose latest change may wait for the loop at once. A node runs a few hundred pods
#: at most; beyond this a flood's new pods are dropped (and counted) rather than buffered.
MAX_PENDING_PODS = 10_000
#: First wait before posting an Event the API refused again; doubles up to the maximum.
EVENT_RETRY_SECONDS, EVENT_RETRY_MAX_SECONDS = 2.0, 120.0


class KubeApi(Protocol):
    """The slice of ``agent.kube.KubeClient`` the agent uses (a fake in logic tests)."""

    def get_secret(self, *, namespace: str, name: str) -> Any: ...
    def get_service_account(self, *, namespace: str, name: str) -> Any: ...
    def list_pod_events(self, *, namespace: str, pod_uid: str) -> list[PodEvent]: ...
    def create_event(self, pod: Pod, *, reason: str, message: str, type: str = ...,
                     component: str = ..., host: str | None = ...) -> None: ...


@dataclass(frozen=True, slots=True)
class TargetKey:
    reference: str
    credentials: str  # PodCredentials.fingerprint, or ENDPOINT for a registry's cheap check


#: The credentials field of a registry's endpoint check (dns → challenge, no credentials).
ENDPOINT = "endpoint"


@dataclass
class TargetInfo:
    reference: Reference
    creds: PodCredentials
    outcome: Outcome | None = None
    kind: str = "image"  # "image": every layer; "endpoint": the registry's cheap check
    # (ok, failing layer rank, code, when), set by each probe
    summary: tuple[bool, int, Code, float] | None = None


@dataclass
class FailureRecord:
    failure: PullFailure
    key: TargetKey | None
    classification: Classification
    pod: Pod
    cause: RootCause | None = None
    last_event_at: float | None = None
    event_failed_at: float | None = None  # the last post of its Event failed then
    event_attempts: int = 0
    seen_at: float = field(default_factory=time.monotonic)


class Agent:
    """Owns the agent's state; :meth:`run` drives it until :attr:`stop` is set."""

    def __init__(self, config: AgentConfig, *, node: str | None, kube: KubeApi | None,
                 metrics: Metrics, log: Log, node_view: NodeView | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.node, self.kube, self.metrics, self.log = config, node, kube, metrics, log
        self.view = node_view or NodeView(config)
        self.clock = clock
        self.stop = threading.Event()
        self._wake = threading.Event()  # set when a probe ends or one is forced
        # endpoint results live until the next endpoint check, so hourly image probes reuse it
        self.cache = ProbeCache(ok_ttl=config.endpoint_interval_seconds * 1.2)
        self.creds = CredentialResolver(kube, self.view.node_keyring,
                                        ttl=config.secret_cache_seconds, clock=clock,
                                        refresh_in_background=kube is not None)
        self.scheduler = Scheduler(interval=config.interval_seconds, jitter=config.jitter,
                                   min_forced_interval=config.failure_probe_min_interval_seconds,
                                   clock=clock)
        self.pool = ThreadPoolExecutor(max_workers=config.concurrency,
                                       thread_name_prefix="pulldoctor-probe")
        self._lock = threading.RLock()
        self._pods: dict[str, Pod] = {}
        self._targets: dict[TargetKey, TargetInfo] = {}
        self._failures: dict[tuple[str, str, str], FailureRecord] = {}
        self._seen_events: dict[tuple[str, str], int] = {}
        # pod changes from the watcher thread, coalesced: uid -> (sequence, kind, latest pod)
        self._pending_lock = threading.Lock()
        self._pending: dict[str, tuple[int, str, Pod]] = {}
        self._seq = 0
        self._listing: set[str] = set()  # uids SYNCed by the relist being delivered
        self._relist: tuple[int, set[str]] | None = None  # last relist not yet applied
        self._dropped_changes = 0
        self._jobs: set[tuple[str, ...]] = set()  # pool jobs queued or running (not probes)
        self._running: dict[TargetKey, Future[None]] = {}
        self._dirty = True
        self._static = self._static_targets()
        self._heartbeat = clock()
        self._rebuilt_at = clock()
        self._synced_once = False
        self._listed_once = False  # the first full list of this node's pods was applied
        self._by_registry: dict[str, list[TargetKey]] = {}
        self._forced: set[TargetKey] = set()
        self._dropped_registries: set[str] = set()
        self.watch_healthy: Callable[[], bool] = lambda: kube is None
        self.watch_error: Callable[[], str | None] = lambda: None
        self.cycles = 0
        for problem in self.view.problems:
            self.log.warning("node_config_problem", problem=problem)

    # ----------------------------------------------------------------- inputs

    def on_pod(self, kind: str, pod: Pod | None) -> None:
        """Pod watcher callback: keep the pod's latest change for the loop (never blocks).

        Changes are coalesced per pod, so memory is bounded by the number of pods, not of
        updates. A relist (``SYNC``... ``RELISTED``) is remembered as the set of uids it
        listed: any pod it did not list and that did not change after it is gone.
        """
        with self._pending_lock:
            self._seq += 1
            if kind == "RELISTED":
                self._relist, self._listing = (self._seq, self._listing), set()
                return
            if pod is None or (self.node and pod.node_name not in (None, self.node)):
                return  # never act on another node's pods
            if pod.uid not in self._pending and len(self._pending) >= MAX_PENDING_PODS:
                self._dropped_changes += 1
                return
            if kind == "SYNC" and len(self._listing) < MAX_PENDING_PODS:
                self._listing.add(pod.uid)
            self._pending[pod.uid] = (self._seq, kind, pod)
        if pod is not None and any(c.waiting_reason in PULL_WAITING_REASONS
                                   for c in pod.containers):
            self._wake.set()  # a pull failure: diagnose now, not at the next tick

    def _take_pending(self) -> tuple[dict[str, tuple[int, str, Pod]],
                                     tuple[int, set[str]] | None, int]:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            relist, self._relist = self._relist, None
            dropped, self._dropped_changes = self._dropped_changes, 0
        return pending, relist, dropped

    def _drain(self) -> None:
        pending, relist, dropped = self._take_pending()
        if dropped:
            self.log.warning("pod_queue_full", dropped=dropped, max_pods=MAX_PENDING_PODS)
        changed: dict[str, Pod | None] = {
            uid: None if kind == "DELETED" or pod.deleted else pod
            for uid, (_, kind, pod) in pending.items()}
        with self._lock:
            if relist is not None:  # pods that vanished while we were not watching
                at, listed = relist
                for uid in {*self._pods, *changed} - listed:
                    if uid not in pending or pending[uid][0] < at:
                        changed[uid] = None
            for uid, pod in changed.items():
                previous = self._pods.pop(uid, None)
                if pod is not None:
                    self._pods[uid] = pod
                self._dirty = True
                self._pod_changed(previous, pod)
            if relist is not None:
                self._listed_once = True

    def _pod_changed(self, previous: Pod | None, pod: Pod | None) -> None:
        if pod is None:
            uid = previous.uid if previous else ""
            for key in [k for k in self._failures if k[0] == uid]:
                self._resolve_failure(key, "pod deleted")
            for seen in [k for k in self._seen_events if k[0] == uid]:
                del self._seen_events[seen]  # event counts die with their pod
            return
        waiting = {(pod.uid, c.name, c.image): c for c in pod.containers
                   if c.waiting_reason in PULL_WAITING_REASONS}
        for key in [k for k in self._failures if k[0] == pod.uid and k not in waiting]:
            self._resolve_failure(key, "the container is no longer waiting on its image")
        started = any(c.running and (previous is None or not _was_running(previous, c.name))
                      for c in pod.containers)
        # a pod already running when the agent first listed the node pulled before the agent
        # started: its events are history (re-counting them would count pulls twice on every
        # restart, and cost one API request per pod at start-up)
        if waiting or (started and self._listed_once):
            self._submit_once(("read_events", pod.uid), self._read_events, pod)
        for key, container in waiting.items():
            if key not in self._failures:
                self._new_failure(pod, container)

    # ----------------------------------------------------------------- failures

    def _new_failure(self, pod: Pod, container: Any) -> None:
        message = container.waiting_message or container.waiting_reason or ""
        failure = PullFailure(pod.namespace, pod.name, pod.uid, container.name, container.image,
                              container.waiting_reason or "", message[:4096])
        classification = classify(message, container.waiting_reason)
        self.creds.invalidate(pod)  # a pull just failed: use the Secrets as they are now
        target = self._target_key_for(pod, container.image)
        record = FailureRecord(failure, target, classification, pod)
        self._failures[(pod.uid, container.name, container.image)] = record
        if target is None:
            # nothing to probe: the image field itself is the fault, whatever the words say
            if classification.code is not Code.INVALID_IMAGE_NAME:
                record.classification = replace(classification, code=Code.INVALID_IMAGE_NAME)
            self._decide(record, None)
            return
        self.scheduler.sync(self._targets, intervals=self._intervals())  # the slot exists
        if self.scheduler.force(target):
            self._forced.add(target)
            self._wake.set()
        else:
            self._decide_from_last(target)

    def _target_key_for(self, pod: Pod, image: str) -> TargetKey | None:
        try:
            reference = parse_reference(image)
        except ReferenceError:
            return None
        creds = self.creds.resolve(pod)
        key = TargetKey(str(reference), creds.fingerprint)
        self._targets.setdefault(key, TargetInfo(reference, creds))
        return key

    def _resolve_failure(self, key: tuple[str, str, str], why: str) -> None:
        record = self._failures.pop(key, None)
        if record is not None and record.cause is not None:
            f = record.failure
            self.log.info("pull_resolved", message=f"Pod {f.namespace}/{f.pod} container "
                          f"{f.container} no longer fails to pull {f.image}: {why}",
                          namespace=f.namespace, pod=f.pod, container=f.container, image=f.image,
                          registry=_registry_of(f.image), code=record.cause.code.value)

    def _read_events(self, pod: Pod) -> None:
        """Read the pod's events (only now: a failure or a start) for pull facts and timings."""
        if self.kube is None:
            return
        events = self.kube.list_pod_events(namespace=pod.namespace, pod_uid=pod.uid)
        with self._lock:
            for event in events:
                self._count_pull_event(pod, event)
            for key, record in self._failures.items():
                if key[0] == pod.uid:
                    self._use_event_words(record, events)

    def _count_pull_event(self, pod: Pod, event: PodEvent) -> None:
        seen_key = (pod.uid, event.name)
        new = event.count - self._seen_events.get(seen_key, 0)
        if new <= 0:
            return
        self._seen_events[seen_key] = event.count
        if event.reason == "Pulled":
            match = _PULLED.search(event.message or "")
            seconds = _go_duration(match.group("duration")) if match else None
            if match and seconds is not None:
                for _ in range(min(new, 100)):
                    self.metrics.observe_pull(_registry_of(match.group("image")), ok=True,
                                              seconds=seconds)
        elif event.reason == "Failed":
            match = _FAILED_PULL.search(event.message or "")
            if match:
                registry = _registry_of(match.group("image"))
                code = self._failure_code(pod.uid, match.group("image"), event.message or "")
                for _ in range(min(new, 100)):
                    self.metrics.observe_pull(registry, ok=False, seconds=None)
                    self.metrics.observe_pull_failure(registry, code)

    def _failure_code(self, uid: str, image: str, message: str) -> Code:
        for key, record in self._failures.items():
            if key[0] == uid and key[2] == image and record.cause is not None:
                return record.cause.code
        return classify(message, "Failed").code

    def _use_event_words(self, record: FailureRecord, events: list[PodEvent]) -> None:
        """Back-off messages hide the cause; the kubelet's last Failed event still has it."""
        field_path = f"{{{record.failure.container}}}"
        for event in reversed(events):
            if event.reason == "Failed" and "Failed to pull image" in (event.message or "") and \
                    (event.field_path is None or event.field_path.endswith(field_path)):
                better = classify(event.message or "", "Failed")
                if better.code is not Code.UNKNOWN:
                    record.classification = better
                    record.failure = replace(record.failure, message=(event.message or "")[:4096])
                break

    # ----------------------------------------------------------------- targets

    def _static_targets(self) -> list[TargetInfo]:
        out = []
        for static in self.config.static_targets:
            try:
                reference = parse_reference(static.reference)
            except ReferenceError as exc:
                self.log.warning("static_target_invalid", target=static.reference, error=str(exc))
                continue
            out.append(TargetInfo(reference, self._static_creds(static)))
        return out

    def _static_creds(self, static: StaticTarget) -> PodCredentials:
        base = self.creds.node_only()
        if static.docker_config is None:
            return base
        try:
            ring = parse_docker_config(static.docker_config.read_bytes(),
                                       source=str(static.docker_config))
        except (OSError, DockerConfigError) as exc:
            self.log.warning("static_docker_config_invalid", path=str(static.docker_config),
                             error=str(exc) if isinstance(exc, DockerConfigError) else
                             exc.strerror or type(exc).__name__)
            return base
        return PodCredentials(Keyring.union(ring, base.keyring), (str(static.docker_config),),
                              False, (), f"static:{static.docker_config}")

    def _rebuild_targets(self) -> None:
        wanted: dict[TargetKey, TargetInfo] = {}
        for info in self._static:
            wanted.setdefault(TargetKey(str(info.reference), info.creds.fingerprint), info)
        for pod in list(self._pods.values()):
            creds = self.creds.resolve(pod)
            for container in pod.containers:
                try:
                    reference = parse_reference(container.image)
                except ReferenceError:
                    continue
                key = TargetKey(str(reference), creds.fingerprint)
                old = self._targets.get(key)
                wanted.setdefault(key, TargetInfo(reference, creds,
                                                  old.outcome if old else None))
        wanted = self._cap_registries(wanted)
        images: dict[str, int] = {}
        for info in wanted.values():
            images[info.reference.registry] = images.get(info.reference.registry, 0) + 1
        for registry in images:  # one cheap endpoint check per registry
            try:
                bare = parse_reference(registry)
            except ReferenceError:
                continue
            wanted[TargetKey(registry, ENDPOINT)] = TargetInfo(
                bare, self.creds.node_only(), kind="endpoint")
        for key, info in wanted.items():
            old = self._targets.get(key)
            if old is not None:
                info.outcome, info.summary = old.outcome, old.summary
        removed = {i.reference.registry for i in self._targets.values()} - \
            {i.reference.registry for i in wanted.values()}
        self._targets = wanted
        self._by_registry = {}
        for key, info in wanted.items():
            self._by_registry.setdefault(info.reference.registry, []).append(key)
        self._rekey_failures()
        intervals = self._intervals()
        # the start-up phase spread applies once the node's pods are known (or with no cluster)
        first = not self._synced_once and (self._listed_once or self.kube is None)
        self._synced_once = self._synced_once or first
        self.scheduler.sync(wanted, intervals=intervals,
                            spread=min(self.config.startup_spread_seconds,
                                       self.config.endpoint_interval_seconds) if first else 2.0)
        for registry in removed:
            self.metrics.forget(registry)

    def _intervals(self) -> dict[TargetKey, float]:
        """Each registry: its endpoint every endpoint interval, and one of its images per image
        interval, in turn (so a registry's load per node does not grow with its image count)."""
        images: dict[str, int] = {}
        for info in self._targets.values():
            if info.kind == "image":
                images[info.reference.registry] = images.get(info.reference.registry, 0) + 1
        return {key: (self.config.endpoint_interval_seconds if info.kind == "endpoint" else
                      self.config.interval_seconds * images[info.reference.registry])
                for key, info in self._targets.items()}

    def _rekey_failures(self) -> None:
        """Point each failure at the target of its pod's current credentials (Secrets change)."""
        for (uid, _, image), record in self._failures.items():
            pod = self._pods.get(uid)
            if pod is None:
                continue
            key = self._target_key_for(pod, image)
            if key is not None and key != record.key:
                record.key = key
                self.scheduler.sync(self._targets, intervals=self._intervals())
                self.scheduler.force(key)
            elif record.cause is None and record.key is not None:
                self._decide_from_last(record.key)  # deferred while a Secret read got no answer

    def _cap_registries(self, wanted: dict[TargetKey, TargetInfo]) -> dict[TargetKey, TargetInfo]:
        registries: list[str] = []
        for info in wanted.values():
            if info.reference.registry not in registries:
                registries.append(info.reference.registry)
        allowed = set(registries[:self.config.max_registries])
        dropped = set(registries) - allowed - self._dropped_registries
        if dropped:
            self._dropped_registries |= dropped
            self.log.warning("registry_cap_reached", max_registries=self.config.max_registries,
                             dropped=len(dropped))
        return {k: v for k, v in wanted.items() if v.reference.registry in allowed}

    # ----------------------------------------------------------------- probing

    def probe_target(self, key: TargetKey, *, fresh: bool = False) -> Outcome | None:
        """Probe one target through the node's endpoint plan, mirrors first; ``fresh`` does
        not reuse cached endpoint results (a pull just failed)."""
        with self._lock:
            info = self._targets.get(key)
        if info is None:
            return None
        plan = self.view.plan(info.reference)
        options = self.view.options(info.creds.keyring, credential_source=info.creds.source)
        if info.kind == "endpoint":
            options = replace(options, stop_after="challenge")
        reports = []
        if not plan.blocked:
            for endpoint in plan.endpoints:
                report = run_probe(endpoint.reference, endpoint.target, options, cache=self.cache,
                                   fresh=fresh)
                reports.append(report)
                if report.ok:
                    break
        outcome = Outcome(str(info.reference), info.reference.registry, tuple(reports),
                          blocked=plan.blocked, runtime=plan.runtime)
        self._record(key, info, outcome)
        return outcome

    def _record(self, key: TargetKey, info: TargetInfo, outcome: Outcome) -> None:
        final = outcome.final
        summary = (outcome.ok, _layer_rank(outcome), outcome.code, self.clock())
        with self._lock:
            # a rebuild during the probe replaced ``info`` (copying the outcome it had then):
            # store on the current one, or the result is lost until the next probe
            info = self._targets.get(key, info)
            previous = info.outcome
            info.outcome, info.summary = outcome, summary
        if final is not None:
            self.metrics.observe_probe(final, state=False)
        self._set_registry_state(outcome.registry)
        was = previous.code if previous else None
        fallbacks = outcome.fallbacks()
        if outcome.ok and fallbacks and fallbacks != (previous.fallbacks() if previous else []):
            self.log.warning("endpoint_fallback", message=(
                f"{outcome.reference} pulls, but only after {len(fallbacks)} endpoint(s) failed: "
                + "; ".join(f"{f['endpoint']} {f['code']}" for f in fallbacks)),
                registry=outcome.registry, image=outcome.reference, failed_endpoints=fallbacks,
                endpoint=final.endpoint if final else None)
        if outcome.code is not was:
            fields = {"registry": outcome.registry, "image": outcome.reference,
                      "code": outcome.code.value, "credentials": info.creds.source}
            if final is not None and final.diagnosis is not None:
                fields.update(layer=final.diagnosis.layer, evidence=final.diagnosis.detail,
                              endpoint=final.endpoint, remediation=outcome.code.remediation)
            if outcome.ok:
                if was is not None:
                    self.log.info("probe_recovered", message=f"{outcome.reference} pulls again "
                                  f"from this node (was {was.value})", **fields)
            else:
                self.log.warning("probe_failed", message=f"This node cannot pull "
                                 f"{outcome.reference}: {outcome.code.summary}", **fields)
        with self._lock:
            for record in self._failures.values():
                if record.key == key:
                    self._decide(record, outcome)
                elif record.key is not None and record.key.reference == key.reference and \
                        outcome.ok:
                    self._decide_from_last(record.key)  # another credential set now works

    def _set_registry_state(self, registry: str) -> None:
        """One diagnosis per registry: the most fundamental current failure among its targets.

        An image that failed at an endpoint layer (dns .. challenge) before the registry's
        endpoint check last passed is not current: the registry is back, and that image's own
        next probe may be an hour away.
        """
        with self._lock:
            keys = self._by_registry.get(registry, [])
            summaries = [(k.credentials == ENDPOINT, s) for k, s in (
                (k, self._targets[k].summary) for k in keys if k in self._targets)
                if s is not None]
        if not summaries:
            return
        back = max((s[3] for is_endpoint, s in summaries if is_endpoint and s[0]),
                   default=None)
        failing = [(rank, code.value, code) for is_endpoint, (ok, rank, code, at) in summaries
                   if not ok and not (back is not None and at < back and rank <= _ENDPOINT_RANK)]
        if not failing:
            self.metrics.set_state(registry, ok=True, code=Code.OK)
            return
        self.metrics.set_state(registry, ok=False, code=min(failing)[2])

    def _decide_from_last(self, key: TargetKey) -> None:
        info = self._targets.get(key)
        if info is not None and info.outcome is not None:
            for record in self._failures.values():
                if record.key == key:
                    self._decide(record, info.outcome)

    def _works_with(self, record: FailureRecord) -> str | None:
        """Another credential set that pulls the same image on this node, if any."""
        if record.key is None:
            return None
        for key, info in self._targets.items():
            if key.reference == record.key.reference and key != record.key and \
                    info.outcome is not None and info.outcome.ok:
                return info.creds.source
        return None

    def _decide(self, record: FailureRecord, outcome: Outcome | None) -> None:
        provider = self._provider_for(record)
        # the pod's own view of its Secrets (several pods may share one credential set)
        creds = self.creds.resolve(self._pods.get(record.failure.uid, record.pod))
        if any(problem.transient for problem in creds.problems):
            return  # the API did not answer for a Secret: decide once it does, not blame it
        cause = correlate(record.failure, record.classification, outcome, creds,
                          provider=provider, works_with=self._works_with(record))
        previous = record.cause
        record.cause = cause
        if previous is not None and \
                (previous.code, previous.verdict) == (cause.code, cause.verdict):
            return
        f = record.failure
        self.log.error("pull_diagnosed", message=cause.message, namespace=f.namespace, pod=f.pod,
                       container=f.container, image=f.image, registry=_registry_of(f.image),
                       code=cause.code.value, verdict=cause.verdict, layer=cause.layer,
                       kubelet_code=cause.kubelet_code.value, evidence=cause.evidence,
                       remediation=cause.remediation)
        self._post_event(record)

    def _provider_for(self, record: FailureRecord) -> str | None:
        providers = self.view.providers
        if providers is None or record.key is None:
            return None
        try:
            return providers.matching_provider(parse_reference(record.failure.image).name)
        except ReferenceError:
            return None

    def _post_event(self, record: FailureRecord) -> None:
        if self.kube is None or not self.config.events.enabled or record.cause is None:
            return
        now = self.clock()
        if record.last_event_at is not None and \
                now - record.last_event_at < self.config.events.min_interval_seconds:
            return
        record.last_event_at = now
        cause, f = record.cause, record.failure
        message = f"{cause.message} Fix: {cause.remediation}"
        # one post per failure and cause: a new cause is posted even while the last one is
        self._submit_once(("post_event", f.uid, f.container, f.image, cause.code.value,
                           cause.verdict), self._send_event, record, message)

    def _send_event(self, record: FailureRecord, message: str) -> None:
        """Post the Event; when the API refuses, leave it for :meth:`_retry_events`."""
        assert self.kube is not None
        try:
            self.kube.create_event(record.pod, reason="PullDiagnosis", message=message,
                                   type="Warning", component="pulldoctor", host=self.node)
        except Exception as exc:  # noqa: BLE001 - an API fault must not lose the Event
            with self._lock:
                record.event_attempts += 1
                record.event_failed_at = self.clock()
            f = record.failure
            self.log.warning("event_post_failed", namespace=f.namespace, pod=f.pod,
                             container=f.container, attempt=record.event_attempts,
                             error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        with self._lock:
            record.event_attempts, record.event_failed_at = 0, None

    def _retry_events(self) -> None:
        """Post again the Events the API refused, backing off per failure."""
        now = self.clock()
        for record in self._failures.values():
            failed = record.event_failed_at
            wait = min(EVENT_RETRY_SECONDS * 2 ** max(record.event_attempts - 1, 0),
                       EVENT_RETRY_MAX_SECONDS)
            if failed is not None and now - failed >= wait:
                record.event_failed_at = record.last_event_at = None
                self._post_event(record)

    # ----------------------------------------------------------------- loop

    def _submit_once(self, job: tuple[str, ...], fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn`` on the pool unless the same job is already queued or running."""
        with self._lock:
            if job in self._jobs:
                return
            self._jobs.add(job)

        def run() -> None:
            try:
                self._safely(fn, *args)
            finally:
                with self._lock:
                    self._jobs.discard(job)
        try:
            self.pool.submit(run)
        except RuntimeError:  # the pool is shut down: the agent is stopping
            with self._lock:
                self._jobs.discard(job)

    def _safely(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a worker must never take the agent down
            self.log.warning("worker_error", action=getattr(fn, "__name__", "task"),
                             error=f"{type(exc).__name__}: {str(exc)[:200]}")

    def _probe_job(self, key: TargetKey) -> None:
        with self._lock:
            fresh = key in self._forced
            self._forced.discard(key)
        try:
            self._safely(self.probe_target, key, fresh=fresh)
        finally:
            self.scheduler.done(key)
            self._wake.set()  # a worker is free: start the next due probe now, not next tick

    def step(self) -> None:
        """One tick: apply pod changes, refresh targets, start what is due."""
        self._heartbeat = self.clock()
        self._drain()
        with self._lock:
            if self.clock() - self._rebuilt_at > max(self.config.secret_cache_seconds, 1.0):
                self._dirty = True  # Secrets and service accounts change without pod events
            if self._dirty:
                self._rebuilt_at = self.clock()
                self._dirty = False
                self._rebuild_targets()
            self._retry_events()
        self.metrics.set_watch_healthy(self.watch_healthy())
        busy = sum(1 for f in self._running.values() if not f.done())
        self._running = {k: f for k, f in self._running.items() if not f.done()}
        for key in self.scheduler.due(self.config.concurrency - busy):
            self._running[key] = self.pool.submit(self._probe_job, key)
        if self.scheduler.all_ran_once() and self._targets:
            self.cycles = max(self.cycles, 1)

    def run_cycle(self) -> None:
        """Probe every target once, now (``--once`` and tests)."""
        self._drain()
        with self._lock:
            self._rebuild_targets()
            keys = list(self._targets)
        list(self.pool.map(lambda k: self._safely(self.probe_target, k), keys))
        self.cycles += 1

    def run(self) -> None:
        """Tick until :attr:`stop` is set."""
        last_cycle = self.clock()
        while not self.stop.is_set():
            self._wake.clear()
            self._safely(self.step)
            if self.clock() - last_cycle > CACHE_REFRESH:
                self.cache.new_cycle()
                last_cycle = self.clock()
            self._wake.wait(TICK)

    def close(self) -> None:
        self.stop.set()
        self._wake.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.creds.close()

    # ----------------------------------------------------------------- status

    def healthy(self) -> bool:
        return self.clock() - self._heartbeat < max(10 * TICK, 5.0)

    def ready(self) -> tuple[bool, str]:
        if not self.watch_healthy():
            reason = "the watch of this node's pods is not established"
            error = self.watch_error()
            return False, f"{reason}: {scrub(error)[:400]}" if error else reason
        if self.cycles < 1:
            return False, "the first probe cycle has not finished"
        return True, "ok"

    def diagnoses(self) -> list[dict[str, Any]]:
        with self._lock:
            out: list[dict[str, Any]] = []
            for record in self._failures.values():
                f, cause = record.failure, record.cause
                out.append({"kind": "pull", "namespace": f.namespace, "pod": f.pod,
                            "container": f.container, "image": f.image,
                            "registry": _registry_of(f.image),
                            "code": (cause.code if cause else record.classification.code).value,
                            "verdict": cause.verdict if cause else "pending",
                            "layer": cause.layer if cause else None,
                            "message": cause.message if cause else f.message[:300],
                            "remediation": (cause.code if cause else
                                            record.classification.code).remediation})
            for info in self._targets.values():
                outcome = info.outcome
                if outcome is None:
                    continue
                final = outcome.final
                out.append({"kind": "probe", "image": outcome.reference,
                            "registry": outcome.registry, "code": outcome.code.value,
                            "ok": outcome.ok, "credentials": info.creds.source,
                            "layer": final.diagnosis.layer if final and final.diagnosis else None,
                            "detail": final.diagnosis.detail if final and final.diagnosis else "",
                            "failed_endpoints": outcome.fallbacks()})
            return out


def _layer_rank(outcome: Outcome) -> int:
    """How early the decisive probe failed: earlier layers are more fundamental."""
    final = outcome.final
    layer = final.diagnosis.layer if final is not None and final.diagnosis else None
    return LAYERS.index(layer) if layer in LAYERS else len(LAYERS)


def _go_duration(text: str) -> float | None:
    """Seconds of a Go duration, or None when the text is not one (never raises)."""
    try:
        return parse_go_duration(text.rstrip("."))
    except ValueError:
        return None


def _was_running(pod: Pod, name: str) -> bool:
    return any(c.name == name and c.running for c in pod.containers)


def _registry_of(image: str) -> str:
    """The registry label of an image; unparseable names share one bounded value."""
    try:
        return parse_reference(image).registry
    except ReferenceError:
        return "invalid-reference"

