"""A fake Kubernetes API server over real HTTP on loopback, for tests and the API-cost bench.

Why: kmock ignores field selectors, ``timeoutSeconds`` and resourceVersions, which are the
very things pulldoctor's pod watch depends on (see infra-recipes §8). This server speaks the
JSON shapes of the core/v1 API for pods, events, secrets and service accounts, with a
monotonic resourceVersion, field selectors, bookmarks, watch timeouts, compaction (410 Gone)
and fault injection, and logs every request so tests can count API cost.

What it refuses to do: pretend. Anything it does not implement (label selectors, paginated
or Exact lists of past versions, other resources or verbs) is answered with an error Status,
never silently ignored. Listing or watching Secrets is answered 403, as the agent's RBAC would.
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import hashlib
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "FakeKube",
    "Request",
    "make_pod",
    "make_event",
    "now_rfc3339",
    "pull_failed_message",
    "wait_for",
]

JSON = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_KINDS = {
    "pods": "Pod",
    "events": "Event",
    "secrets": "Secret",
    "serviceaccounts": "ServiceAccount",
}
#: Field selector labels the real API accepts (pkg/registry/core/{pod,event}/strategy.go).
_FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset({
        "metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
        "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
        "status.podIP", "status.nominatedNodeName",
    }),
    "events": frozenset({
        "metadata.name", "metadata.namespace", "involvedObject.kind",
        "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.resourceVersion",
        "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
    }),
    "secrets": frozenset({"metadata.name", "metadata.namespace", "type"}),
    "serviceaccounts": frozenset({"metadata.name", "metadata.namespace"}),
}  # fmt: skip
_FIELD_ALIASES = {"source": "source.component"}
_COLLECTION = re.compile(r"^/api/v1/(?:namespaces/(?P<ns>[^/]+)/)?(?P<res>[a-z]+)$")
_OBJECT = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<res>[a-z]+)/(?P<name>[^/]+)$")


def now_rfc3339(moment: datetime | None = None) -> str:
    """An RFC 3339 timestamp with second precision, as the API writes metav1.Time."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Request:
    """One request the fake answered (never a header value: no credential is kept)."""

    method: str
    path: str
    query: dict[str, str]
    verb: str  # list, watch, get, create, or "other"
    resource: str
    namespace: str | None
    authenticated: bool  # an Authorization header was sent
    started: float = field(default_factory=time.monotonic)
    status: int | None = None

    @property
    def kind(self) -> str:
        """``"<verb> <resource>"``, e.g. ``"watch pods"``."""
        return f"{self.verb} {self.resource}"


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    kind: str | None


@dataclass(frozen=True)
class _Change:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED, or RAW (a verbatim line, for hostile-input tests)
    resource: str
    namespace: str | None
    new: JSON | None
    old: JSON | None
    raw: bytes = b""


class _Selector:
    """A parsed field selector: terms of ``field=value``, ``field==value``, ``field!=value``."""

    def __init__(self, text: str, resource: str) -> None:
        self.terms: list[tuple[str, bool, str]] = []
        for term in _split_unescaped(text, ","):
            if not term:
                continue
            match = re.match(r"^(?P<f>[^!=]+)(?P<op>!=|==|=)(?P<v>.*)$", term)
            if match is None:
                raise _ApiError(400, f"invalid field selector term: {term!r}")
            name = match["f"].strip()
            if name not in _FIELDS.get(resource, frozenset()):
                raise _ApiError(400, f"field label not supported: {name}")
            self.terms.append((name, match["op"] != "!=", _unescape(match["v"])))

    def matches(self, obj: JSON | None) -> bool:
        return obj is not None and all(
            (_field_value(obj, name) == value) is equal for name, equal, value in self.terms
        )


def _split_unescaped(text: str, sep: str) -> list[str]:
    return [part for part in re.split(rf"(?<!\\){re.escape(sep)}", text)]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _field_value(obj: JSON, name: str) -> str:
    """The string a field selector compares: missing or non-scalar fields are ""."""
    value: Any = obj
    for part in _FIELD_ALIASES.get(name, name).split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, str | int) else ""


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        retry_after: int | None = None,
        name: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after
        self.name, self.kind = name, kind


def _status(code: int, message: str, *, name: str | None = None, kind: str | None = None) -> JSON:
    """A metav1.Status failure object as the API server writes it."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if name is not None or kind is not None:
        body["details"] = {k: v for k, v in (("name", name), ("kind", kind)) if v is not None}
    return body


class FakeKube:
    """The fake API server: state, test controls and the request log. Use as a context manager."""

    def __init__(
        self,
        *,
        bookmark_interval: float = 1.0,
        default_watch_timeout: float = 1800.0,
        first_resource_version: int = 1000,
    ) -> None:
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.latency = 0.0
        self.hang_watches = False  # watches send nothing and ignore timeoutSeconds (like kmock)
        self._cond = threading.Condition()
        self._rv = first_resource_version
        self._compacted = 0
        self._objects: dict[tuple[str, str, str], JSON] = {}
        self._history: list[_Change] = []
        self._history_rvs: list[int] = []
        self._failures: list[_Failure] = []
        self._requests: list[Request] = []
        self._generation = 0  # bumped by drop_watches() and stop(): live watches end abruptly
        self._open_watches = 0
        self.max_open_watches = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeKube:
        """Listen on 127.0.0.1 (the same port again after :meth:`stop`)."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: close the listener, every connection and every live watch."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        server.shutdown()
        server.server_close()
        for conn in list(self._connections):
            _hard_close(conn)
        if self._thread is not None:
            self._thread.join(5)

    close = stop

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (valid before start() only after a first start())."""
        return f"http://127.0.0.1:{self._port}"

    # ------------------------------------------------------------------ state controls

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        return self._rv

    def add_pod(self, pod: JSON) -> JSON:
        """Create a pod (any dict with metadata.name/namespace; the rest may be hostile)."""
        return self._create("pods", pod)

    def update_pod(self, pod: JSON) -> JSON:
        """Replace a pod; uid and creationTimestamp stay those of the stored pod, as in the API."""
        return self._update("pods", pod)

    def delete_pod(self, namespace: str, name: str) -> JSON:
        """Delete a pod; watchers get DELETED with a new resourceVersion."""
        return self._delete("pods", namespace, name)

    def add_event(self, event: JSON) -> JSON:
        """Store a core/v1 Event (see :func:`make_event`)."""
        return self._create("events", event)

    def add_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        *,
        type: str = "kubernetes.io/dockerconfigjson",  # noqa: A002 - the API's field name
    ) -> JSON:
        """Store a Secret; ``data`` values are base64-encoded like the API does."""
        encoded = {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}
        return self._create(
            "secrets",
            {"metadata": {"name": name, "namespace": namespace}, "type": type, "data": encoded},
        )

    def add_service_account(
        self, namespace: str, name: str, image_pull_secrets: Sequence[str] = ()
    ) -> JSON:
        """Store a ServiceAccount with the given image pull secret names."""
        body: JSON = {"metadata": {"name": name, "namespace": namespace}}
        if image_pull_secrets:
            body["imagePullSecrets"] = [{"name": n} for n in image_pull_secrets]
        return self._create("serviceaccounts", body)

    def add_object(self, resource: str, obj: JSON) -> JSON:
        """Store any object of a served resource verbatim (for hostile-input tests)."""
        return self._create(resource, obj)

    def inject_watch_line(self, line: bytes) -> None:
        """Send ``line`` verbatim to every pod watch open now (it is never replayed)."""
        with self._cond:
            self._rv += 1
            self._append(_Change(self._rv, "RAW", "pods", None, None, None, raw=line))

    def objects(self, resource: str, namespace: str | None = None) -> list[JSON]:
        """Copies of the stored objects of ``resource`` (optionally in one namespace)."""
        with self._cond:
            return [
                copy.deepcopy(obj)
                for (res, ns, _), obj in sorted(self._objects.items())
                if res == resource and namespace in (None, ns)
            ]

    def get(self, resource: str, namespace: str, name: str) -> JSON:
        """A copy of one stored object (KeyError if absent)."""
        with self._cond:
            return copy.deepcopy(self._objects[(resource, namespace, name)])

    def compact(self) -> int:
        """Forget history: watches and Exact lists from older resourceVersions get 410 Gone."""
        with self._cond:
            self._compacted = self._rv
            cut = bisect.bisect_right(self._history_rvs, self._compacted)
            del self._history[:cut], self._history_rvs[:cut]
            return self._compacted

    def drop_watches(self) -> None:
        """Close every live watch stream abruptly, mid-stream."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def fail_next(
        self, n: int = 1, status: int = 500, retry_after: int | None = None, kind: str | None = None
    ) -> None:
        """Answer the next ``n`` requests (of ``kind``, e.g. "watch pods") with ``status``."""
        with self._cond:
            self._failures.extend(_Failure(status, retry_after, kind) for _ in range(n))

    def set_latency(self, seconds: float) -> None:
        """Delay every request's answer by ``seconds``."""
        self.latency = seconds

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[Request]:
        """A copy of the request log, oldest first."""
        with self._cond:
            return list(self._requests)

    def count(self, kind: str | None = None, *, status: int | None = None) -> int:
        """Requests of ``kind`` ("list pods", "watch pods", "get secrets", …), maybe by status."""
        return sum(
            1
            for r in self.requests
            if (kind is None or r.kind == kind) and (status is None or r.status == status)
        )

    def counts(self) -> dict[str, int]:
        """Requests per kind."""
        out: dict[str, int] = {}
        for r in self.requests:
            out[r.kind] = out.get(r.kind, 0) + 1
        return out

    @property
    def open_watches(self) -> int:
        """Watch streams open right now."""
        return self._open_watches

    def reset_log(self) -> None:
        """Forget logged requests and the open-watch high-water mark."""
        with self._cond:
            self._requests.clear()
            self.max_open_watches = self._open_watches

    # ------------------------------------------------------------------ internals: storage

    def _append(self, change: _Change) -> None:
        self._history.append(change)
        self._history_rvs.append(change.rv)
        self._cond.notify_all()

    def _stamp(self, resource: str, obj: JSON) -> JSON:
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = "v1", _KINDS[resource]
        self._rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        return obj

    @staticmethod
    def _key(resource: str, obj: JSON) -> tuple[str, str, str]:
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name") or not meta.get("namespace"):
            raise ValueError("fakekube objects need metadata.name and metadata.namespace")
        return resource, str(meta["namespace"]), str(meta["name"])

    def _create(self, resource: str, obj: JSON) -> JSON:
        key = self._key(resource, obj)
        with self._cond:
            if key in self._objects:
                raise _ApiError(409, f'{resource} "{key[2]}" already exists')
            obj = self._stamp(resource, obj)
            meta = obj["metadata"]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_rfc3339())
            self._objects[key] = obj
            self._append(_Change(self._rv, "ADDED", resource, key[1], obj, None))
            return copy.deepcopy(obj)

    def _update(self, resource: str, obj: JSON) -> JSON:
        key = self._key(resource, obj)
        with self._cond:
            old = self._objects.get(key)
            if old is None:
                raise KeyError(f"no {resource} {key[1]}/{key[2]} to update")
            obj = self._stamp(resource, obj)
            for immutable in ("uid", "creationTimestamp"):
                if immutable in old["metadata"]:
                    obj["metadata"][immutable] = old["metadata"][immutable]
            self._objects[key] = obj
            self._append(_Change(self._rv, "MODIFIED", resource, key[1], obj, old))
            return copy.deepcopy(obj)

    def _delete(self, resource: str, namespace: str, name: str) -> JSON:
        with self._cond:
            old = self._objects.pop((resource, namespace, name), None)
            if old is None:
                raise KeyError(f"no {resource} {namespace}/{name} to delete")
            gone = self._stamp(resource, old)
            self._append(_Change(self._rv, "DELETED", resource, namespace, gone, old))
            return copy.deepcopy(gone)

    # ------------------------------------------------------------------ internals: serving

    def _begin(self, handler: _Handler, verb: str, resource: str, ns: str | None) -> Request:
        url = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        record = Request(
            method=handler.command,
            path=url.path,
            query=query,
            verb=verb,
            resource=resource,
            namespace=ns,
            authenticated=bool(handler.headers.get("Authorization")),
        )
        with self._cond:
            self._requests.append(record)
        return record

    def _take_failure(self, record: Request) -> _ApiError | None:
        """The injected failure this request must answer with, if any."""
        with self._cond:
            for i, failure in enumerate(self._failures):
                if failure.kind in (None, record.kind):
                    del self._failures[i]
                    return _ApiError(
                        failure.status, "injected failure", retry_after=failure.retry_after
                    )
        return None

    def _list(self, resource: str, ns: str | None, query: Mapping[str, str]) -> JSON:
        if query.get("labelSelector"):
            raise _ApiError(400, "fakekube does not implement labelSelector")
        if query.get("continue"):
            raise _ApiError(400, "fakekube never issues continue tokens")
        selector = _Selector(query.get("fieldSelector", ""), resource)
        with self._cond:
            self._check_list_version(query)
            items = [
                {k: v for k, v in copy.deepcopy(obj).items() if k not in ("apiVersion", "kind")}
                for (res, obj_ns, _), obj in sorted(self._objects.items())
                if res == resource and ns in (None, obj_ns) and selector.matches(obj)
            ]
            rv = self._rv
        return {
            "kind": f"{_KINDS[resource]}List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }

    def _check_list_version(self, query: Mapping[str, str]) -> None:
        rv_text = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        rv = _parse_rv(rv_text) if rv_text else None
        if match == "Exact":
            if rv is None:
                raise _ApiError(400, "resourceVersionMatch=Exact needs a resourceVersion")
            if rv < self._compacted:
                raise _ApiError(410, f"too old resource version: {rv} ({self._compacted})")
            if rv != self._rv:
                raise _ApiError(500, "fakekube cannot serve Exact lists of past versions")
        # Unset, "0" and NotOlderThan are all satisfied by the current state.

    def _get(self, resource: str, ns: str, name: str) -> JSON:
        with self._cond:
            obj = self._objects.get((resource, ns, name))
            if obj is None:
                raise _ApiError(404, f'{resource} "{name}" not found', name=name, kind=resource)
            return copy.deepcopy(obj)

    def _create_from_request(self, resource: str, ns: str, body: object) -> JSON:
        if not isinstance(body, dict):
            raise _ApiError(400, "request body is not a JSON object")
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise _ApiError(400, "metadata is not an object")
        if meta.setdefault("namespace", ns) != ns:
            raise _ApiError(400, "the namespace of the object does not match the request URL")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if not meta.get("name"):
            raise _ApiError(400, "name or generateName is required")
        return self._create(resource, body)

    def _watch_start(
        self, resource: str, ns: str | None, selector: _Selector, rv_text: str
    ) -> tuple[list[_Change], int, int, int] | JSON:
        """Initial changes, cursor, generation and the RV at opening; or the ERROR for a
        compacted RV."""
        with self._cond:
            if rv_text in ("", "0"):
                initial = [
                    _Change(self._rv, "ADDED", resource, obj_ns, obj, None)
                    for (res, obj_ns, _), obj in sorted(self._objects.items())
                    if res == resource and ns in (None, obj_ns) and selector.matches(obj)
                ]
                return initial, self._rv, self._generation, self._rv
            rv = _parse_rv(rv_text)
            if rv < self._compacted:
                return _status(410, f"too old resource version: {rv} ({self._compacted})")
            return [], rv, self._generation, self._rv

    def _watch_wait(self, cursor: int, generation: int, timeout: float) -> list[_Change] | None:
        """Changes after ``cursor`` (waiting up to ``timeout``), or None when dropped."""
        with self._cond:
            if self._generation == generation and self._rv <= cursor:
                self._cond.wait(max(timeout, 0.0))
            if self._generation != generation:
                return None
            start = bisect.bisect_right(self._history_rvs, cursor)
            return self._history[start:]

    def _watch_opened(self, delta: int) -> None:
        with self._cond:
            self._open_watches += delta
            self.max_open_watches = max(self.max_open_watches, self._open_watches)


def _parse_rv(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _ApiError(400, f"invalid resource version: {text!r}") from None


def _watch_event(change: _Change, selector: _Selector) -> bytes | None:
    """The watch line a change becomes for this selector (None: not visible to it)."""
    if change.type == "RAW":
        return change.raw
    was, now = selector.matches(change.old), selector.matches(change.new)
    if change.type == "DELETED":
        kind = "DELETED" if was else None
    elif was and now:
        kind = "MODIFIED"
    elif now:
        kind = "ADDED"
    else:
        kind = "DELETED" if was else None  # moved out of the selector
    if kind is None:
        return None
    return json.dumps({"type": kind, "object": change.new}).encode()


def _bookmark(resource: str, rv: int) -> bytes:
    obj = {"kind": _KINDS[resource], "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}}
    return json.dumps({"type": "BOOKMARK", "object": obj}).encode()


def _hard_close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients resetting keep-alive connections are normal here; anything else is printed."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakekube"

    @property
    def fake(self) -> FakeKube:
        return self.server.fake  # type: ignore[attr-defined, no-any-return]

    def setup(self) -> None:
        super().setup()
        self.fake._connections.add(self.connection)

    def finish(self) -> None:
        self.fake._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the request log is FakeKube.requests

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> object:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise _ApiError(400, "request body is not JSON") from None

    def _route(self) -> tuple[str, str, str | None, str | None]:
        """(verb, resource, namespace, name) for the request path."""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if match := _OBJECT.match(url.path):
            verb = "get" if self.command == "GET" else "other"
            return verb, match["res"], match["ns"], match["name"]
        if match := _COLLECTION.match(url.path):
            if self.command == "POST":
                return "create", match["res"], match["ns"], None
            watching = query.get("watch", [""])[-1] in ("true", "1")
            verb = ("watch" if watching else "list") if self.command == "GET" else "other"
            return verb, match["res"], match["ns"], None
        return "other", url.path, None, None

    def _dispatch(self) -> None:
        verb, resource, ns, name = self._route()
        record = self.fake._begin(self, verb, resource, ns)
        try:
            body = self._read_body() if self.command in ("POST", "PUT", "PATCH") else None
            if self.fake.latency:
                time.sleep(self.fake.latency)
            failure = self.fake._take_failure(record)
            if failure is not None:
                raise failure
            record.status = self._serve(record, body, name)
        except _ApiError as exc:
            record.status = exc.status
            self._send_error(exc)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _serve(self, record: Request, body: object, name: str | None) -> int:
        resource, ns, verb = record.resource, record.namespace, record.verb
        if resource not in _KINDS:
            raise _ApiError(404, "the server could not find the requested resource")
        if resource == "secrets" and verb in ("list", "watch"):
            raise _ApiError(403, "secrets is forbidden: fakekube allows get of single secrets only")
        if verb == "get" and ns and name:
            return self._send_json(200, self.fake._get(resource, ns, name))
        if verb == "list":
            return self._send_json(200, self.fake._list(resource, ns, record.query))
        if verb == "create" and ns:
            return self._send_json(201, self.fake._create_from_request(resource, ns, body))
        if verb == "watch":
            return self._watch(resource, ns, record.query)
        raise _ApiError(405, f"fakekube does not implement {self.command} {record.path}")

    def _send_json(self, code: int, obj: object, headers: Iterable[tuple[str, str]] = ()) -> int:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        return code

    def _send_error(self, exc: _ApiError) -> None:
        headers = [("Retry-After", str(exc.retry_after))] if exc.retry_after is not None else []
        try:
            self._send_json(
                exc.status, _status(exc.status, exc.message, name=exc.name, kind=exc.kind), headers
            )
        except OSError:
            self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        payload = data + b"\n"
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")

    def _watch(self, resource: str, ns: str | None, query: Mapping[str, str]) -> int:
        fake = self.fake
        selector = _Selector(query.get("fieldSelector", ""), resource)
        start = fake._watch_start(resource, ns, selector, query.get("resourceVersion", ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        fake._watch_opened(+1)
        try:
            if isinstance(start, dict):  # the API answers a compacted RV with an ERROR event
                self._chunk(json.dumps({"type": "ERROR", "object": start}).encode())
            else:
                self._stream(resource, selector, query, *start)
            self.wfile.write(b"0\r\n\r\n")
        except _Dropped:
            _hard_close(self.connection)
            self.close_connection = True
        finally:
            fake._watch_opened(-1)
        return 200

    def _stream(
        self,
        resource: str,
        selector: _Selector,
        query: Mapping[str, str],
        initial: list[_Change],
        cursor: int,
        generation: int,
        opened_at: int,
    ) -> None:
        fake = self.fake
        timeout = float(query.get("timeoutSeconds") or fake.default_watch_timeout)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        deadline = time.monotonic() + (1e9 if fake.hang_watches else timeout)
        next_bookmark = time.monotonic() + fake.bookmark_interval
        self._send_changes(initial, selector, resource, opened_at)
        while True:
            now = time.monotonic()
            wake = min(deadline, next_bookmark if bookmarks else deadline)
            changes = fake._watch_wait(cursor, generation, min(wake - now, 0.5))
            if changes is None:
                raise _Dropped
            if changes:
                if not fake.hang_watches:
                    self._send_changes(changes, selector, resource, opened_at)
                cursor = changes[-1].rv
            now = time.monotonic()
            if fake.hang_watches:
                continue
            if bookmarks and (now >= next_bookmark or now >= deadline):
                self._chunk(_bookmark(resource, max(cursor, fake.resource_version)))
                cursor = max(cursor, fake.resource_version)
                next_bookmark = now + fake.bookmark_interval
            if now >= deadline:
                return

    def _send_changes(
        self, changes: Sequence[_Change], selector: _Selector, resource: str, opened_at: int
    ) -> None:
        for change in changes:
            if change.resource != resource or (change.type == "RAW" and change.rv <= opened_at):
                continue  # injected lines go to watches live when injected, never to replays
            line = _watch_event(change, selector)
            if line is not None:
                self._chunk(line)


class _Dropped(Exception):
    """The watch was dropped by drop_watches() or stop()."""


# ---------------------------------------------------------------------- realistic objects

_FAKE_DIGEST = "sha256:{}"


def _image_id(image: str) -> str:
    repo = image.rsplit("@", 1)[0]
    repo = repo.rsplit(":", 1)[0] if "/" not in repo.rsplit(":", 1)[-1] else repo
    digest = hashlib.sha256(image.encode()).hexdigest()
    return f"{repo}@{_FAKE_DIGEST.format(digest)}"


def _names(prefix: str, images: Sequence[str] | Mapping[str, str]) -> list[tuple[str, str]]:
    if isinstance(images, Mapping):
        return list(images.items())
    return [(prefix if i == 0 else f"{prefix}-{i + 1}", image) for i, image in enumerate(images)]


def _container_status(name: str, image: str, waiting: tuple[str, str] | None, started: str) -> JSON:
    if waiting is not None:
        reason, message = waiting
        return {
            "name": name,
            "image": image,
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {"waiting": {"reason": reason, "message": message}},
            "lastState": {},
        }
    return {
        "name": name,
        "image": image,
        "imageID": _image_id(image),
        "containerID": f"containerd://{hashlib.sha256(name.encode()).hexdigest()}",
        "ready": True,
        "restartCount": 0,
        "started": True,
        "state": {"running": {"startedAt": started}},
        "lastState": {},
    }


def make_pod(
    name: str,
    namespace: str = "default",
    node: str | None = "node-a",
    images: Sequence[str] | Mapping[str, str] = ("registry.example.com/team/app:1.0",),
    *,
    image_pull_secrets: Sequence[str] = (),
    service_account: str = "default",
    waiting: Mapping[str, tuple[str, str]] | None = None,
    init_images: Sequence[str] | Mapping[str, str] = (),
    uid: str | None = None,
) -> JSON:
    """A Pod as the API returns it; containers are named app, app-2, … unless ``images`` maps
    names to images; ``waiting`` maps a container name to its (reason, message)."""
    waiting = waiting or {}
    started = now_rfc3339()
    containers = _names("app", images)
    inits = _names("init", init_images)
    spec: JSON = {
        "containers": [
            {"name": n, "image": i, "imagePullPolicy": "IfNotPresent", "resources": {}}
            for n, i in containers
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": service_account,
        "serviceAccount": service_account,
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
        "priority": 0,
    }
    if node:
        spec["nodeName"] = node
    if inits:
        spec["initContainers"] = [{"name": n, "image": i} for n, i in inits]
    if image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in image_pull_secrets]
    pending = any(n in waiting for n, _ in [*containers, *inits])
    status: JSON = {
        "phase": "Pending" if pending or not node else "Running",
        "hostIP": "192.0.2.10",
        "podIP": "198.51.100.7",
        "qosClass": "BestEffort",
        "startTime": started,
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True" if node else "False",
                "lastTransitionTime": started,
            },
            {
                "type": "Ready",
                "status": "False" if pending else "True",
                "lastTransitionTime": started,
            },
        ],  # fmt: skip
    }
    if node:
        status["containerStatuses"] = [
            _container_status(n, i, waiting.get(n), started) for n, i in containers
        ]
        if inits:
            status["initContainerStatuses"] = [
                _container_status(n, i, waiting.get(n), started) for n, i in inits
            ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "creationTimestamp": started,
            "labels": {"app": name},
        },
        "spec": spec,
        "status": status,
    }


def pull_failed_message(image: str) -> str:
    """The kubelet's message for a pull that containerd answered with an auth-looking error."""
    return (
        f'Failed to pull image "{image}": rpc error: code = Unknown desc = failed to pull and '
        f'unpack image "{image}": failed to resolve reference "{image}": pull access denied, '
        "repository does not exist or may require authorization: server message: "
        "insufficient_scope: authorization failed"
    )


def make_event(
    pod: JSON,
    *,
    reason: str = "Failed",
    message: str | None = None,
    type: str = "Warning",  # noqa: A002 - the API's field name
    container: str = "app",
    count: int = 1,
    first: datetime | None = None,
    last: datetime | None = None,
    component: str = "kubelet",
) -> JSON:
    """A core/v1 Event about one container of ``pod`` as the kubelet writes it."""
    meta, spec = pod["metadata"], pod.get("spec", {})
    containers = {
        c["name"]: ("spec.containers", c.get("image", "")) for c in spec.get("containers", [])
    }
    containers |= {
        c["name"]: ("spec.initContainers", c.get("image", ""))
        for c in spec.get("initContainers", [])
    }
    list_name, image = containers.get(container, ("spec.containers", ""))
    node = spec.get("nodeName", "")
    first_stamp = now_rfc3339(first)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{time.time_ns():x}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta.get("uid", ""),
            "apiVersion": "v1",
            "resourceVersion": meta.get("resourceVersion", ""),
            "fieldPath": f"{list_name}{{{container}}}",
        },
        "reason": reason,
        "message": message if message is not None else pull_failed_message(image),
        "source": {"component": component, "host": node},
        "firstTimestamp": first_stamp,
        "lastTimestamp": now_rfc3339(last) if last else first_stamp,
        "count": count,
        "type": type,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": node,
    }


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
