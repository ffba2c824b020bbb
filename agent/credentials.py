"""The credentials the kubelet would use for a pod's images, and what is wrong with them.

Mirrors the kubelet: the pod's ``imagePullSecrets``, else its service
account's, unioned with the node's docker configs (pod Secrets first, as the
kubelet tries them first). Secrets are read with ``get`` by name only — never
listed or watched — and cached briefly. A Secret that is missing, of the wrong
type, or malformed is skipped just as the kubelet skips it, and recorded as a
:class:`SecretProblem` so the root cause can name it. Nothing here logs or
returns secret content: problems carry the Secret's name and what is wrong.

The API being slow or down must not change what the agent concludes: an
answer that is no answer (no connection, a timeout, 429, 5xx) never replaces
the last real one, and such a problem is marked ``transient`` so the agent
waits instead of blaming the Secret. With ``refresh_in_background`` an expired
entry is served while one worker thread re-reads it, so a slow API never
stalls the caller (only a Secret's very first read is made in line).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agent.model import Pod, SecretData, ServiceAccount
from probes.codes import Code
from probes.credentials import DockerConfigError, Keyring, parse_docker_config

__all__ = ["SecretSource", "SecretProblem", "PodCredentials", "CredentialResolver",
           "SECRET_KEYS"]

#: Secret type -> the data key holding the docker config.
SECRET_KEYS = {"kubernetes.io/dockerconfigjson": ".dockerconfigjson",
               "kubernetes.io/dockercfg": ".dockercfg"}
#: Secret type -> how its docker config is shaped.
SECRET_FORMATS: dict[str, Literal["dockerconfigjson", "dockercfg"]] = {
    "kubernetes.io/dockerconfigjson": "dockerconfigjson", "kubernetes.io/dockercfg": "dockercfg"}


#: Seconds during which a Secret read counts as current (see CredentialResolver.invalidate).
FRESH_ENOUGH = 5.0


class SecretSource(Protocol):
    """What the resolver needs from the Kubernetes client (``agent.kube.KubeClient``)."""

    def get_secret(self, *, namespace: str, name: str) -> SecretData: ...

    def get_service_account(self, *, namespace: str, name: str) -> ServiceAccount: ...


@dataclass(frozen=True, slots=True)
class SecretProblem:
    """A pull Secret the kubelet would skip, and why (never its content)."""

    code: Code  # secret_not_found | secret_malformed
    namespace: str
    name: str
    detail: str
    transient: bool = False  # the API did not answer: says nothing about the Secret

    def describe(self) -> str:
        return f"secret {self.namespace}/{self.name}: {self.detail}"


@dataclass(frozen=True, slots=True)
class PodCredentials:
    """The keyring for a pod's pulls, the Secrets it came from, and their problems."""

    keyring: Keyring
    secrets: tuple[str, ...]  # "namespace/name" of the pull Secrets considered
    from_service_account: bool
    problems: tuple[SecretProblem, ...]
    fingerprint: str  # identity of the credential set for de-duplication (no content)

    @property
    def source(self) -> str:
        if not self.secrets:
            return "node credentials only"
        via = " (from the service account)" if self.from_service_account else ""
        return "secrets " + ", ".join(self.secrets) + via


def _fingerprint(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


class CredentialResolver:
    """Resolve pods' pull credentials with a short per-Secret cache."""

    def __init__(self, source: SecretSource | None, node_keyring: Keyring, *,
                 ttl: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 refresh_in_background: bool = False) -> None:
        self._source = source
        self._node = node_keyring
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], Any] = {}
        # (namespace, name) -> (the fetched Secret object, its parse result)
        self._parse_cache: dict[tuple[str, str], tuple[object, Any]] = {}
        self._merged: dict[str, Keyring] = {}  # credential fingerprint -> merged keyring
        self._accounts: dict[tuple[str, str], Any] = {}
        # one thread: re-reads are rare, and its queue holds each cached name at most once
        self._refresher = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pulldoctor-secrets") if refresh_in_background \
            else None
        self._refreshing: set[tuple[int, tuple[str, str]]] = set()
        self.api_reads = 0

    def close(self) -> None:
        """Drop queued background re-reads (one in flight ends with its request timeout)."""
        if self._refresher is not None:
            self._refresher.shutdown(wait=False, cancel_futures=True)

    def node_only(self) -> PodCredentials:
        return PodCredentials(self._node, (), False, (), "node")

    def invalidate(self, pod: Pod) -> None:
        """Forget the cached Secrets and service account of ``pod`` (its pull just failed:
        the next resolve reads them as they are now)."""
        now = self._clock()

        def drop(table: dict[tuple[str, str], Any], key: tuple[str, str]) -> Any:
            # a read of the last few seconds is as good as a new one (many containers of a
            # pod fail together)
            hit = table.get(key)
            if hit is not None and now - hit[0] >= FRESH_ENOUGH:
                del table[key]
            return hit

        with self._lock:
            for name in pod.image_pull_secrets:
                drop(self._secrets, (pod.namespace, name))
            if pod.service_account:
                account = drop(self._accounts, (pod.namespace, pod.service_account))
                if account is not None and isinstance(account[1], ServiceAccount):
                    for name in account[1].image_pull_secrets:
                        drop(self._secrets, (pod.namespace, name))

    def resolve(self, pod: Pod) -> PodCredentials:
        """The credentials the kubelet would use for ``pod``'s image pulls."""
        names, from_sa = self._secret_names(pod)
        rings: list[Keyring] = []
        problems: list[SecretProblem] = []
        material: list[bytes] = []
        for name in names:
            ring, problem, digest = self._parsed(pod.namespace, name)
            if ring is not None:
                rings.append(ring)
                material.append(digest)
            if problem is not None:
                problems.append(problem)
        fingerprint = _fingerprint(material) if material else "node"
        # the kubelet folds every pull Secret of a pod into one keyring, then chains the node's
        with self._lock:
            keyring = self._merged.get(fingerprint)
        if keyring is None:
            keyring = Keyring.union(Keyring.merge(*rings), self._node) if rings else self._node
            with self._lock:
                if len(self._merged) > 4096:
                    self._merged.clear()
                self._merged[fingerprint] = keyring
        return PodCredentials(keyring, tuple(f"{pod.namespace}/{n}" for n in names), from_sa,
                              tuple(problems), fingerprint)

    def _secret_names(self, pod: Pod) -> tuple[tuple[str, ...], bool]:
        if pod.image_pull_secrets or self._source is None or not pod.service_account:
            return pod.image_pull_secrets, False
        account = self._cached(self._accounts, (pod.namespace, pod.service_account),
                               lambda: self._source.get_service_account(  # type: ignore[union-attr]
                                   namespace=pod.namespace, name=pod.service_account or ""))
        if isinstance(account, ServiceAccount):
            return account.image_pull_secrets, bool(account.image_pull_secrets)
        return (), False

    def _cached(self, table: dict[tuple[str, str], Any], key: tuple[str, str],
                fetch: Callable[[], object]) -> object:
        now = self._clock()
        with self._lock:
            hit = table.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
            if hit is not None and self._refresher is not None:
                self._refresh_later(table, key, fetch)
                return hit[1]  # stale while it is re-read: a slow API never stalls the caller
        return self._fetch(table, key, fetch)

    def _refresh_later(self, table: dict[tuple[str, str], Any], key: tuple[str, str],
                       fetch: Callable[[], object]) -> None:
        """Queue one re-read of ``key`` (called with the lock held)."""
        tag = (id(table), key)
        if tag in self._refreshing or self._refresher is None:
            return
        self._refreshing.add(tag)

        def refresh() -> None:
            try:
                self._fetch(table, key, fetch)
            finally:
                with self._lock:
                    self._refreshing.discard(tag)
        try:
            self._refresher.submit(refresh)
        except RuntimeError:  # shut down: the stale value stays
            self._refreshing.discard(tag)

    def _fetch(self, table: dict[tuple[str, str], Any], key: tuple[str, str],
               fetch: Callable[[], object]) -> object:
        now = self._clock()
        try:
            value: object = fetch()
        except Exception as exc:  # noqa: BLE001 - any API failure is recorded, not raised
            value = _detached(exc)
        with self._lock:
            self.api_reads += 1
            old = table.get(key)
            if old is not None and _is_transient(value):
                value = old[1]  # no answer is not an answer: keep the last one until the next
            table[key] = (now, value)
        return value

    def _parsed(self, namespace: str, name: str
                ) -> tuple[Keyring | None, SecretProblem | None, bytes]:
        """:meth:`_load`, parsed once per fetched Secret (a 1 MiB Secret takes ~1 s to parse);
        the third value is a digest of the Secret's docker config."""
        if self._source is None:
            return None, None, b""
        secret = self._cached(self._secrets, (namespace, name),
                              lambda: self._source.get_secret(  # type: ignore[union-attr]
                                  namespace=namespace, name=name))
        with self._lock:
            hit = self._parse_cache.get((namespace, name))
        if hit is not None and hit[0] is secret:
            return hit[1]
        ring, problem, raw = self._load(namespace, name, secret)
        result = (ring, problem, hashlib.sha256(raw).digest() if raw else b"")
        with self._lock:
            self._parse_cache[(namespace, name)] = (secret, result)
        return result

    def _load(self, namespace: str, name: str, secret: object
              ) -> tuple[Keyring | None, SecretProblem | None, bytes]:
        if isinstance(secret, Exception):
            return None, _problem_for_error(namespace, name, secret), b""
        assert isinstance(secret, SecretData)
        key = SECRET_KEYS.get(secret.type)
        if key is None:
            return None, SecretProblem(
                Code.SECRET_MALFORMED, namespace, name,
                f"type {secret.type!r} is not kubernetes.io/dockerconfigjson or "
                "kubernetes.io/dockercfg; the kubelet ignores it"), b""
        raw = secret.data.get(key)
        if raw is None:
            return None, SecretProblem(Code.SECRET_MALFORMED, namespace, name,
                                       f"type {secret.type} but no {key} key"), b""
        try:
            ring = parse_docker_config(raw, source=f"secret {namespace}/{name}",
                                       format=SECRET_FORMATS[secret.type])
        except DockerConfigError as exc:
            return None, SecretProblem(Code.SECRET_MALFORMED, namespace, name,
                                       _without_source(str(exc), namespace, name)), b""
        return ring, None, raw


def _without_source(message: str, namespace: str, name: str) -> str:
    prefix = f"secret {namespace}/{name}"
    return message[len(prefix):].lstrip(": ") if message.startswith(prefix) else message


def _detached(exc: Exception) -> Exception:
    """``exc`` without traceback, cause or context, fit to be cached.

    A cached error that kept its traceback kept the frame of :meth:`_fetch` that caught it,
    whose ``old`` was the previous cached error with its own traceback: a chain that grew by
    one error and one HTTP response at every re-read of a missing or forbidden Secret.
    """
    exc.__traceback__ = None
    exc.__cause__ = exc.__context__ = None
    return exc


def _is_transient(value: object) -> bool:
    """An API failure that says nothing about the object: no answer, 429 or 5xx.

    ``agent.kube.KubeUnavailable`` (the only error with ``retry_after``) is exactly that;
    duck-typed so that this module stays free of the Kubernetes client.
    """
    if not isinstance(value, Exception):
        return False
    status = getattr(value, "status", None)
    return hasattr(value, "retry_after") or (isinstance(status, int) and (
        status == 429 or status >= 500))


def _problem_for_error(namespace: str, name: str, exc: Exception) -> SecretProblem:
    status = getattr(exc, "status", None)  # agent.kube errors carry the HTTP status
    if status == 404:
        return SecretProblem(Code.SECRET_NOT_FOUND, namespace, name,
                             "does not exist; the kubelet pulls without it")
    if status == 403:
        detail = "pulldoctor may not read it (RBAC: secrets get)"
    else:
        detail = f"could not be read: {type(exc).__name__}"
    return SecretProblem(Code.UNKNOWN, namespace, name, detail, transient=_is_transient(exc))
