"""The only module of pulldoctor that talks to the Kubernetes API.

Why it exists: everything the agent needs from the cluster (the pods on its node, the
events of one pod, one Secret or ServiceAccount by name, posting an Event) goes through
here, over the official ``kubernetes`` client, and comes back as the frozen dataclasses of
:mod:`agent.model`. API JSON is parsed by hand, not by the client's models: a missing field
becomes a default, a field of the wrong type becomes :class:`KubeMalformed` naming the
field, and neither can take the pod watch down.

What it refuses to do: list or watch Secrets (one get by name, when a pull failed); watch
events cluster- or node-wide (``source.host`` is not a selectable field, so such a watch
would be evaluated against every event of the cluster: events are listed per pod uid);
let a Kubernetes client type or exception escape; log or repr a token or secret value.

Errors (each raised ``from`` the client's exception)::

    KubeError                 anything that went wrong talking to or understanding the API
    ├── KubeNotFound          404: the object does not exist
    ├── KubeForbidden         401/403: our identity is unknown or lacks an RBAC permission
    ├── KubeGone              410: the resourceVersion was compacted away: relist
    ├── KubeUnavailable       no answer, broken stream, 5xx, or 429 (``retry_after`` seconds)
    └── KubeMalformed         an answer or object that is not what the API documents
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.utils
import http.client
import json
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TypeVar

import structlog
import urllib3
import yaml  # type: ignore[import-untyped]
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from agent.model import ContainerKind, ContainerState, Pod, PodEvent, SecretData, ServiceAccount

__all__ = [
    "KubeClient",
    "KubeError",
    "KubeNotFound",
    "KubeForbidden",
    "KubeGone",
    "KubeUnavailable",
    "KubeMalformed",
    "PodWatcher",
    "OnPod",
    "SYNC",
    "RELISTED",
    "ADDED",
    "MODIFIED",
    "DELETED",
    "parse_pod",
    "parse_event",
    "parse_secret",
    "parse_service_account",
    "EVENT_MESSAGE_LIMIT",
    "DEFAULT_TIMEOUT",
    "full_jitter",
    "parse_retry_after",
]

_log = structlog.get_logger("agent.kube")

DEFAULT_TIMEOUT: Final = 10.0
#: Bytes of an Event message we post; longer messages are cut and end with "...".
EVENT_MESSAGE_LIMIT: Final = 1024
#: A single watch line longer than this is treated as a broken stream, not buffered forever.
_MAX_LINE_BYTES: Final = 16 * 1024 * 1024
_RETRY_AFTER_CAP: Final = 600.0
_STATUS_MESSAGE_LIMIT: Final = 300

# What PodWatcher passes to its callback as the first argument.
SYNC: Final = "SYNC"  # a pod from a (re)list
RELISTED: Final = "RELISTED"  # end of a (re)list; pods not SYNCed since the last one are gone
ADDED: Final = "ADDED"
MODIFIED: Final = "MODIFIED"
DELETED: Final = "DELETED"  # the Pod has deleted=True

#: ``on_pod(kind, pod)``; ``pod`` is None only for :data:`RELISTED`.
OnPod = Callable[[str, Pod | None], None]


# --------------------------------------------------------------------------- errors


class KubeError(Exception):
    """Something went wrong talking to, or understanding, the Kubernetes API."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeNotFound(KubeError):
    """404: the object does not exist."""


class KubeForbidden(KubeError):
    """401 or 403: the API does not know our identity or RBAC does not allow the request."""


class KubeGone(KubeError):
    """410: the resourceVersion we asked for was compacted; list again."""


class KubeUnavailable(KubeError):
    """No usable answer: connection error, broken stream, timeout, 5xx or 429."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class KubeMalformed(KubeError):
    """The API answered something that does not have the documented shape."""


#: HTTP status → our type; 5xx is handled by range, everything else is plain KubeError.
_STATUS_ERRORS: Final[Mapping[int, type[KubeError]]] = {
    0: KubeUnavailable,  # the client's own code for TLS failures
    401: KubeForbidden,
    403: KubeForbidden,
    404: KubeNotFound,
    410: KubeGone,
    429: KubeUnavailable,
}

#: Foreign exceptions → our type, most specific first (ApiException is handled by status).
_FOREIGN_ERRORS: Final[tuple[tuple[type[BaseException], type[KubeError]], ...]] = (
    (urllib3.exceptions.HTTPError, KubeUnavailable),  # connect, read timeout, broken stream, TLS
    (http.client.HTTPException, KubeUnavailable),  # IncompleteRead and friends, if unwrapped
    (OSError, KubeUnavailable),  # socket errors a stream read can raise directly
    (ValueError, KubeMalformed),  # JSONDecodeError, UnicodeDecodeError: not JSON we understand
    (ConfigException, KubeError),
)


def _error_for_status(status: int) -> type[KubeError]:
    if status >= 500:
        return KubeUnavailable
    return _STATUS_ERRORS.get(status, KubeError)


def _status_message(body: object) -> str:
    """The ``message`` of a Status body, shortened; never the raw body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if not isinstance(text, str):
        return ""
    try:
        status = json.loads(text)
    except ValueError:
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return message[:_STATUS_MESSAGE_LIMIT] if isinstance(message, str) else ""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), _RETRY_AFTER_CAP)


def _from_api_exception(exc: ApiException, operation: str) -> KubeError:
    status = int(exc.status or 0)
    detail = _status_message(exc.body)
    message = f"{operation}: HTTP {status} {exc.reason or ''}".rstrip()
    if detail:
        message = f"{message}: {detail}"
    kind = _error_for_status(status)
    if kind is KubeUnavailable:
        headers = exc.headers or {}
        retry_after = parse_retry_after(headers.get("Retry-After")) if status == 429 else None
        return KubeUnavailable(message, status=status, retry_after=retry_after)
    return kind(message, status=status)


def _map_error(exc: BaseException, operation: str) -> KubeError | None:
    """Our error for a foreign exception, or None when it is not one we translate."""
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException):
        return _from_api_exception(exc, operation)
    for foreign, ours in _FOREIGN_ERRORS:
        if isinstance(exc, foreign):
            return ours(f"{operation}: {type(exc).__name__}: {_describe(exc)}")
    return None


def _describe(exc: BaseException) -> str:
    """str(exc), shortened; some urllib3 errors cannot even render themselves when half-built."""
    try:
        return str(exc)[:_STATUS_MESSAGE_LIMIT]
    except Exception:  # noqa: BLE001 - an error message must not raise
        return "(no description)"


@contextmanager
def _translate(operation: str) -> Iterator[None]:
    """Re-raise foreign exceptions as ours, ``from`` the original; let bugs through."""
    try:
        yield
    except KubeError:
        raise
    except Exception as exc:
        ours = _map_error(exc, operation)
        if ours is None:
            raise
        raise ours from exc


# --------------------------------------------------------------------------- parsing

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _View:
    """Typed, path-aware access to one JSON object: absent/null → default, wrong type → error."""

    data: Mapping[str, Any]
    path: str

    @classmethod
    def root(cls, raw: object, what: str) -> _View:
        if not isinstance(raw, dict):
            raise KubeMalformed(f"{what}: expected a JSON object, got {type(raw).__name__}")
        return cls(raw, what)

    def _typed(self, key: str, kind: type[_T], label: str) -> _T | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise KubeMalformed(f"{self.path}.{key}: expected {label}, got {type(value).__name__}")
        return value

    def child(self, key: str) -> _View:
        value = self._typed(key, dict, "an object")
        return _View(value or {}, f"{self.path}.{key}")

    def children(self, key: str) -> list[_View]:
        items = self._typed(key, list, "a list") or []
        return [_View.root(item, f"{self.path}.{key}[{i}]") for i, item in enumerate(items)]

    def text(self, key: str) -> str | None:
        return self._typed(key, str, "a string")

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise KubeMalformed(f"{self.path}.{key}: missing")
        return value

    def integer(self, key: str) -> int | None:
        return self._typed(key, int, "an integer")

    def timestamp(self, key: str) -> datetime | None:
        value = self.text(key)
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise KubeMalformed(
                f"{self.path}.{key}: not an RFC 3339 time: {value[:40]!r}"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _secret_names(view: _View, key: str) -> tuple[str, ...]:
    """Names from a list of LocalObjectReference, empty names dropped, order kept, deduplicated."""
    names = (item.text("name") for item in view.children(key))
    return tuple(dict.fromkeys(name for name in names if name))


_CONTAINER_LISTS: Final[tuple[tuple[ContainerKind, str, str], ...]] = (
    ("init", "initContainers", "initContainerStatuses"),
    ("container", "containers", "containerStatuses"),
    ("ephemeral", "ephemeralContainers", "ephemeralContainerStatuses"),
)


def _container(kind: ContainerKind, spec: _View, status: _View | None) -> ContainerState:
    status = status or _View({}, spec.path)
    state = status.child("state")
    waiting = state.child("waiting")
    return ContainerState(
        name=spec.required_text("name"),
        image=spec.text("image") or "",
        kind=kind,
        waiting_reason=waiting.text("reason") or None,
        waiting_message=waiting.text("message") or None,
        image_id=status.text("imageID") or None,
        running=state.data.get("running") is not None,
        restart_count=status.integer("restartCount") or 0,
    )


def _containers(spec: _View, status: _View) -> tuple[ContainerState, ...]:
    out: list[ContainerState] = []
    for kind, spec_key, status_key in _CONTAINER_LISTS:
        statuses = {s.text("name"): s for s in status.children(status_key)}
        out.extend(
            _container(kind, c, statuses.get(c.text("name"))) for c in spec.children(spec_key)
        )
    return tuple(out)


def parse_pod(raw: object) -> Pod:
    """A :class:`Pod` from API JSON; :class:`KubeMalformed` names the first bad field."""
    top = _View.root(raw, "pod")
    meta = top.child("metadata")
    namespace, name = meta.required_text("namespace"), meta.required_text("name")
    top = _View(top.data, f"pod {namespace}/{name}")
    meta, spec, status = top.child("metadata"), top.child("spec"), top.child("status")
    return Pod(
        namespace=namespace,
        name=name,
        uid=meta.required_text("uid"),
        node_name=spec.text("nodeName") or None,
        service_account=spec.text("serviceAccountName") or None,
        image_pull_secrets=_secret_names(spec, "imagePullSecrets"),
        containers=_containers(spec, status),
        resource_version=meta.text("resourceVersion") or "",
        phase=status.text("phase") or None,
    )


def parse_event(raw: object) -> PodEvent:
    """A :class:`PodEvent` from a core/v1 Event (series and eventTime forms included)."""
    top = _View.root(raw, "event")
    meta, involved, series = top.child("metadata"), top.child("involvedObject"), top.child("series")
    first = (
        top.timestamp("firstTimestamp")
        or top.timestamp("eventTime")
        or meta.timestamp("creationTimestamp")
    )
    last = top.timestamp("lastTimestamp") or series.timestamp("lastObservedTime")
    return PodEvent(
        namespace=meta.required_text("namespace"),
        name=meta.required_text("name"),
        reason=top.text("reason") or "",
        type=top.text("type") or "",
        message=top.text("message") or "",
        count=series.integer("count") or top.integer("count") or 1,
        first_timestamp=first,
        last_timestamp=last or first,
        field_path=involved.text("fieldPath") or None,
        involved_uid=involved.text("uid") or None,
    )


def _decode_secret_data(view: _View) -> dict[str, bytes]:
    data = view.child("data")
    out: dict[str, bytes] = {}
    for key in data.data:
        encoded = data.text(key) or ""
        try:
            out[key] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            # Name the key, never the value: it is a credential.
            raise KubeMalformed(f"{data.path}.{key}: not valid base64") from None
    return out


def parse_secret(raw: object) -> SecretData:
    """A :class:`SecretData` with base64-decoded values; errors never quote a value."""
    top = _View.root(raw, "secret")
    meta = top.child("metadata")
    return SecretData(
        namespace=meta.required_text("namespace"),
        name=meta.required_text("name"),
        type=top.text("type") or "Opaque",
        data=MappingProxyType(_decode_secret_data(top)),
    )


def parse_service_account(raw: object) -> ServiceAccount:
    """A :class:`ServiceAccount` with the names of its image pull secrets."""
    top = _View.root(raw, "serviceaccount")
    meta = top.child("metadata")
    return ServiceAccount(
        namespace=meta.required_text("namespace"),
        name=meta.required_text("name"),
        image_pull_secrets=_secret_names(top, "imagePullSecrets"),
    )


def _parse_items(items: Sequence[object], parse: Callable[[object], _T], what: str) -> list[_T]:
    """Parse every item of a list answer, logging and skipping the malformed ones."""
    out: list[_T] = []
    for item in items:
        try:
            out.append(parse(item))
        except KubeMalformed as exc:
            _log.warning("kube_object_malformed", kind=what, error=str(exc))
    return out


def _list_body(raw: object, what: str) -> tuple[list[object], str]:
    """The items and resourceVersion of a *List answer."""
    top = _View.root(raw, what)
    items = top._typed("items", list, "a list") or []
    return list(items), top.child("metadata").text("resourceVersion") or ""


def _resource_version_of(raw: object) -> str | None:
    """metadata.resourceVersion of a watched object when it is a non-empty string."""
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv if isinstance(rv, str) and rv else None


def _selector_value(value: str) -> str:
    """Escape a field selector value the way apimachinery's fields.EscapeValue does."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _segment(value: str) -> str:
    """A path segment, percent-encoded (names are DNS labels, but never trust input)."""
    return urllib.parse.quote(value, safe="")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truncate(message: str, limit: int = EVENT_MESSAGE_LIMIT) -> str:
    raw = message.encode("utf-8")
    if len(raw) <= limit:
        return message
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


# --------------------------------------------------------------------------- client


class KubeClient:
    """A thin, thread-safe wrapper of the official client returning :mod:`agent.model` types."""

    def __init__(
        self,
        host: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        configuration: k8s.Configuration | None = None,
    ) -> None:
        if configuration is None:
            if not host:
                raise ValueError("KubeClient needs a host URL or a configuration")
            configuration = k8s.Configuration()
            configuration.host = host.rstrip("/")
        # One quick retry for a stale pooled connection; real backoff is the caller's job.
        configuration.retries = urllib3.Retry(total=1, redirect=0, status=0, raise_on_status=False)
        configuration.keep_alive = True  # long watches through idle-dropping load balancers
        self.host: str = configuration.host
        self.timeout = timeout
        self._api_client = k8s.ApiClient(configuration)
        self._api_client.user_agent = "pulldoctor"

    @classmethod
    def from_config(
        cls, kubeconfig: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> KubeClient:
        """From a kubeconfig file, or from the pod's service account when ``kubeconfig`` is None."""
        configuration = k8s.Configuration()
        where = kubeconfig or "in-cluster service account"
        try:
            if kubeconfig is None:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, client_configuration=configuration
                )
        except (ConfigException, OSError) as exc:
            raise KubeError(f"cannot load Kubernetes configuration from {where}: {exc}") from exc
        except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
            # Parser messages quote the offending line, which may hold a token: name the type.
            raise KubeError(
                f"cannot load Kubernetes configuration from {where}: {type(exc).__name__}"
            ) from exc
        return cls(configuration=configuration, timeout=timeout)

    def __repr__(self) -> str:
        return f"KubeClient(host={self.host!r})"

    def close(self) -> None:
        """Close pooled connections."""
        self._api_client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | None] | None = None,
        body: object = None,
        read_timeout: float | None = None,
    ) -> Any:
        """One request through the client's auth and transport; the unread urllib3 response.

        Paths are built here rather than through the generated ``CoreV1Api``: it would cost
        ~2 s and ~20 MB per agent at import, and would re-serialise our bodies through models.
        """
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        with _translate(operation):
            request = self._api_client.param_serialize(
                method=method,
                resource_path=path,
                query_params=params,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            timeouts = (self.timeout, read_timeout or self.timeout)
            response = self._api_client.call_api(*request, _request_timeout=timeouts)
            if not 200 <= response.status <= 299:
                response.read()  # type: ignore[no-untyped-call]
                raise ApiException.from_response(http_resp=response, body=None, data=None)
            return response.response

    def _call_json(self, operation: str, method: str, path: str, **kwargs: Any) -> object:
        """One request; the parsed JSON answer."""
        response = self._send(operation, method, path, **kwargs)
        with _translate(operation):
            try:
                return json.loads(response.data)
            finally:
                response.release_conn()

    def get_secret(self, *, namespace: str, name: str) -> SecretData:
        """One Secret by name (never a list or watch of Secrets)."""
        raw = self._call_json(
            f"get secret {namespace}/{name}",
            "GET",
            f"/api/v1/namespaces/{_segment(namespace)}/secrets/{_segment(name)}",
        )
        return parse_secret(raw)

    def get_service_account(self, *, namespace: str, name: str) -> ServiceAccount:
        """One ServiceAccount by name."""
        raw = self._call_json(
            f"get serviceaccount {namespace}/{name}",
            "GET",
            f"/api/v1/namespaces/{_segment(namespace)}/serviceaccounts/{_segment(name)}",
        )
        return parse_service_account(raw)

    def list_pod_events(self, *, namespace: str, pod_uid: str) -> list[PodEvent]:
        """The events about one pod, oldest first, selected by ``involvedObject.uid``."""
        raw = self._call_json(
            f"list events of pod uid {pod_uid} in {namespace}",
            "GET",
            f"/api/v1/namespaces/{_segment(namespace)}/events",
            query={"fieldSelector": f"involvedObject.uid={_selector_value(pod_uid)}"},
        )
        items, _ = _list_body(raw, "EventList")
        events = _parse_items(items, parse_event, "event")
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(events, key=lambda e: e.last_timestamp or oldest)

    def create_event(
        self,
        pod: Pod,
        *,
        reason: str,
        message: str,
        type: str = "Warning",  # noqa: A002 - the API's field name
        component: str = "pulldoctor",
        host: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Post a core/v1 Event about ``pod``; ``host`` defaults to the pod's node."""
        body = _event_body(
            pod,
            reason=reason,
            message=message,
            type=type,
            component=component,
            host=host or pod.node_name or "",
            now=now or datetime.now(UTC),
        )
        self._call_json(
            f"create event {reason} for pod {pod.key}",
            "POST",
            f"/api/v1/namespaces/{_segment(pod.namespace)}/events",
            body=body,
        )

    def list_pods_on_node(
        self, *, node: str, resource_version: str | None = None
    ) -> tuple[list[Pod], str]:
        """Every pod bound to ``node`` and the list's resourceVersion (malformed pods skipped)."""
        items, rv = self._list_pod_items(node=node, resource_version=resource_version)
        return _parse_items(items, parse_pod, "pod"), rv

    def _list_pod_items(
        self, *, node: str, resource_version: str | None
    ) -> tuple[list[object], str]:
        raw = self._call_json(
            f"list pods on node {node}",
            "GET",
            "/api/v1/pods",
            query={
                "fieldSelector": f"spec.nodeName={_selector_value(node)}",
                "resourceVersion": resource_version,
            },
        )
        items, rv = _list_body(raw, "PodList")
        if not rv:
            raise KubeMalformed(f"list pods on node {node}: PodList without resourceVersion")
        return items, rv

    def _open_pod_watch(
        self, *, node: str, resource_version: str, timeout_seconds: int, read_timeout: float
    ) -> Any:
        """The raw streaming response of a pod watch on ``node`` (caller closes it)."""
        return self._send(
            f"watch pods on node {node}",
            "GET",
            "/api/v1/pods",
            query={
                "watch": "true",
                "fieldSelector": f"spec.nodeName={_selector_value(node)}",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(timeout_seconds),
            },
            read_timeout=read_timeout,
        )


def _event_body(
    pod: Pod,
    *,
    reason: str,
    message: str,
    type: str,  # noqa: A002 - the API's field name
    component: str,
    host: str,
    now: datetime,
) -> dict[str, Any]:
    """A core/v1 Event in the shape client-go's event recorder writes."""
    stamp = _rfc3339(now)
    involved = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod.name,
        "namespace": pod.namespace,
        "uid": pod.uid,
        "resourceVersion": pod.resource_version,
    }
    involved = {key: value for key, value in involved.items() if value}
    source = {"component": component} | ({"host": host} if host else {})
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod.name}.{time.time_ns():x}", "namespace": pod.namespace},
        "involvedObject": involved,
        "reason": reason,
        "message": _truncate(message),
        "type": type,
        "source": source,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "reportingComponent": component,
    }
    if host:
        body["reportingInstance"] = host
    return body


# --------------------------------------------------------------------------- pod watch


def _iter_lines(response: Any, *, limit: int = _MAX_LINE_BYTES) -> Iterator[bytes]:
    """Non-empty lines of a streamed watch response as they arrive."""
    buffer = bytearray()
    for chunk in response.stream(amt=None, decode_content=True):
        buffer.extend(chunk)
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                yield line
        if len(buffer) > limit:
            raise KubeMalformed(f"watch line longer than {limit} bytes")
    if buffer.strip():
        yield bytes(buffer)


def _abort(response: Any) -> None:
    """Unblock a thread reading ``response`` (called from another thread)."""
    try:
        response.shutdown()  # urllib3 >= 2.3
    except Exception:  # noqa: BLE001 - best effort; the read timeout is the backstop
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _watch_error(raw: object, operation: str) -> KubeError:
    """Our error for a watch ERROR event (its object is a Status)."""
    status = raw if isinstance(raw, dict) else {}
    code = status.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    reason, message = status.get("reason"), status.get("message")
    text = f"{operation}: watch ERROR {code} {reason if isinstance(reason, str) else ''}".rstrip()
    if isinstance(message, str) and message:
        text = f"{text}: {message[:_STATUS_MESSAGE_LIMIT]}"
    if code == 0:
        return KubeMalformed(text)
    kind = _error_for_status(code)
    return kind(text, status=code)


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * (2 ** min(attempt, 30))))


class PodWatcher:
    """One list+watch of the pods bound to one node, delivered to ``on_pod``.

    A list delivers every pod as ``(SYNC, pod)`` then ``(RELISTED, None)``; the watch then
    delivers ``ADDED``/``MODIFIED``/``DELETED``. The watch resumes from the newest
    resourceVersion seen (objects and bookmarks); 410 Gone leads to a relist; any other error
    to a backoff with full jitter, then a re-watch (or a relist if the list failed).
    Each watch asks for ``timeoutSeconds`` drawn from [watch_timeout, 2*watch_timeout) and
    gives up on a silent stream ``read_grace`` seconds after that. ``stop`` is noticed within
    a second even mid-watch (another thread shuts the stream down); a list in flight can take
    up to the client's timeout. Counters (``lists``, ``watches``, ``errors``, ``gone``,
    ``bad_objects``, ``callback_errors``, ``events``) are written by the watcher thread only;
    ``last_error`` keeps the most recent error after recovery (``healthy`` says whether it
    still applies).

    ``on_pod`` runs on the watcher thread and must return quickly (enqueue, do not probe):
    while it runs the stream is not read, and the API server drops watchers that lag.
    """

    def __init__(
        self,
        client: KubeClient,
        node: str,
        on_pod: OnPod,
        *,
        stop: threading.Event,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        watch_timeout: float = 300.0,
        read_grace: float = 15.0,
        rng: random.Random | None = None,
    ) -> None:
        self._client, self.node, self._on_pod, self._stop = client, node, on_pod, stop
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.watch_timeout, self.read_grace = watch_timeout, read_grace
        self._rng = rng or random.Random()
        self.lists = self.watches = self.errors = self.gone = 0
        self.bad_objects = self.callback_errors = self.events = 0
        self.last_error: str | None = None
        self._rv: str | None = None
        self._ok = False
        self._last_ok: float | None = None
        self._lock = threading.Lock()
        self._response: Any = None

    @property
    def resource_version(self) -> str | None:
        """The newest resourceVersion seen (from a list, an object or a bookmark)."""
        return self._rv

    @property
    def healthy(self) -> bool:
        """The last list/watch step succeeded, and recently enough to trust the pod view."""
        last = self._last_ok
        stale_after = 2 * self.watch_timeout + self.read_grace + self.backoff_max
        return self._ok and last is not None and time.monotonic() - last <= stale_after

    def run(self) -> None:
        """List and watch until ``stop`` is set; never raises."""
        threading.Thread(target=self._abort_on_stop, name=f"podwatch-stop-{self.node}",
                         daemon=True).start()  # fmt: skip
        need_list, consistent, attempt = True, False, 0
        while not self._stop.is_set():
            try:
                if need_list:
                    # "0": served from the API server's cache; None after 410: a consistent read.
                    self._relist(None if consistent else (self._rv or "0"))
                    need_list = consistent = False
                if self._watch_once():
                    attempt = 0
                    continue
                delay = self._delay(attempt)  # an empty watch that ended at once: do not spin
            except KubeGone as exc:
                self.gone += 1
                _log.info("pod_watch_gone", node=self.node, error=str(exc))
                need_list = consistent = True
                delay = self._delay(attempt) if attempt else 0.0
            except Exception as exc:  # noqa: BLE001 - the watch loop must survive anything
                if self._stop.is_set():
                    break
                delay = self._failed(exc, attempt)
            attempt += 1
            self._stop.wait(delay)

    def _delay(self, attempt: int, retry_after: float | None = None) -> float:
        delay = full_jitter(attempt, base=self.backoff_base, cap=self.backoff_max, rng=self._rng)
        return max(delay, retry_after or 0.0)

    def _failed(self, exc: Exception, attempt: int) -> float:
        self.errors += 1
        self._ok = False
        self.last_error = str(exc) or type(exc).__name__
        retry_after = exc.retry_after if isinstance(exc, KubeUnavailable) else None
        delay = self._delay(attempt, retry_after)
        fields = {"node": self.node, "error": self.last_error, "attempt": attempt + 1,
                  "delay_seconds": round(delay, 3)}  # fmt: skip
        if isinstance(exc, KubeError):
            _log.warning("pod_watch_failed", **fields)
        else:
            _log.exception("pod_watch_bug", **fields)
        return delay

    def _mark_ok(self) -> None:
        self._ok = True
        self._last_ok = time.monotonic()

    def _deliver(self, kind: str, pod: Pod | None) -> None:
        try:
            self._on_pod(kind, pod)
        except Exception:  # noqa: BLE001 - a consumer bug must not stop the watch
            self.callback_errors += 1
            _log.exception("pod_callback_failed", node=self.node, kind=kind)

    def _relist(self, resource_version: str | None) -> None:
        self.lists += 1
        items, rv = self._client._list_pod_items(node=self.node, resource_version=resource_version)
        pods = [pod for item in items if (pod := self._parse(item)) is not None]
        self._rv = rv
        self._mark_ok()
        for pod in pods:
            self._deliver(SYNC, pod)
        self._deliver(RELISTED, None)

    def _parse(self, raw: object) -> Pod | None:
        try:
            return parse_pod(raw)
        except KubeMalformed as exc:
            self.bad_objects += 1
            _log.warning("kube_object_malformed", kind="pod", node=self.node, error=str(exc))
            return None

    def _watch_once(self) -> bool:
        """One watch request; True when it ended normally after being useful."""
        self.watches += 1
        started, delivered = time.monotonic(), self.events
        # Like client-go's reflector: between 1x and 2x the minimum, so that the agents of a
        # whole DaemonSet, started together, do not all re-watch in the same second.
        timeout = max(1, round(self.watch_timeout * (1.0 + self._rng.random())))
        response = self._client._open_pod_watch(
            node=self.node,
            resource_version=self._rv or "0",
            timeout_seconds=timeout,
            read_timeout=timeout + self.read_grace,
        )
        self._mark_ok()
        with self._tracked(response), _translate(f"watch pods on node {self.node}"):
            for line in _iter_lines(response):
                if self._stop.is_set():
                    return True
                self._handle_line(line)
        useful = self.events > delivered or time.monotonic() - started >= 1.0
        if useful:
            self._mark_ok()
        return useful

    @contextmanager
    def _tracked(self, response: Any) -> Iterator[None]:
        """Make ``response`` abortable by :meth:`_abort_on_stop`; close or reuse it after."""
        with self._lock:
            self._response = response
        if self._stop.is_set():
            _abort(response)
        clean = False
        try:
            yield
            clean = not self._stop.is_set()
        finally:
            with self._lock:
                self._response = None
            if not clean:
                response.close()
            response.release_conn()

    def _abort_on_stop(self) -> None:
        self._stop.wait()
        with self._lock:
            response = self._response
        if response is not None:
            _abort(response)

    def _handle_line(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):  # nested past the parser's depth: garbage too
            event = None
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if kind == "ERROR":
            raise _watch_error(obj, f"watch pods on node {self.node}")
        rv = _resource_version_of(obj)
        if kind == "BOOKMARK" and rv:
            self._rv = rv
        elif kind in (ADDED, MODIFIED, DELETED):
            self._handle_object(str(kind), obj, rv)
        else:
            self.bad_objects += 1
            _log.warning("kube_watch_event_malformed", node=self.node, type=str(kind)[:40])
        self._mark_ok()

    def _handle_object(self, kind: str, obj: object, rv: str | None) -> None:
        pod = self._parse(obj)
        if rv:
            self._rv = rv  # even a malformed object moved the stream forward
        if pod is None:
            return
        self.events += 1
        self._deliver(kind, dataclasses.replace(pod, deleted=True) if kind == DELETED else pod)
