"""Pod credentials as the kubelet builds them, Secret problems named, reads cached."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from agent.credentials import CredentialResolver
from agent.model import ContainerState, Pod, SecretData, ServiceAccount
from probes.codes import Code
from probes.credentials import Keyring, parse_docker_config


class NotFound(Exception):
    status = 404


class Forbidden(Exception):
    status = 403


class Source:
    """An in-memory stand-in for agent.kube.KubeClient's get_secret/get_service_account."""

    def __init__(self, secrets: dict[str, Any], accounts: dict[str, tuple[str, ...]]) -> None:
        self.secrets, self.accounts, self.reads = secrets, accounts, 0

    def get_secret(self, *, namespace: str, name: str) -> SecretData:
        self.reads += 1
        value = self.secrets.get(name)
        if isinstance(value, Exception):
            raise value
        if value is None:
            raise NotFound(name)
        return value

    def get_service_account(self, *, namespace: str, name: str) -> ServiceAccount:
        self.reads += 1
        if name not in self.accounts:
            raise NotFound(name)
        return ServiceAccount(namespace, name, self.accounts[name])


def config(host: str, user: str, password: str) -> bytes:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": auth}}}).encode()


def secret(name: str, data: dict[str, bytes], kind: str = "kubernetes.io/dockerconfigjson"
           ) -> SecretData:
    return SecretData("shop", name, kind, data)


def pod(secrets: tuple[str, ...] = (), account: str = "default") -> Pod:
    return Pod("shop", "web", "uid", "node-a", account, secrets,
               (ContainerState("app", "r.example/a:v1", "container"),), "1", "Running")


SECRETS: dict[str, Any] = {
    "good": secret("good", {".dockerconfigjson": config("r.example", "alice", "pw1")}),
    "second": secret("second", {".dockerconfigjson": config("r.example/a", "carol", "pw3")}),
    "legacy": secret("legacy", {".dockercfg": json.dumps(
        {"r.example": {"auth": base64.b64encode(b"dave:pw4").decode()}}).encode()},
        "kubernetes.io/dockercfg"),
    "opaque": secret("opaque", {"password": b"x"}, "Opaque"),
    "nokey": secret("nokey", {"other": b"x"}),
    "badjson": secret("badjson", {".dockerconfigjson": b"{not json"}),
    "forbidden": Forbidden("no"),
}


def test_pod_secrets_then_node_credentials() -> None:
    """Pod Secrets come first (merged, most specific path first), then the node's config."""
    node = parse_docker_config(config("r.example", "node", "pwn"), source="node config")
    resolver = CredentialResolver(Source(SECRETS, {}), node)
    found = resolver.resolve(pod(("good", "second")))
    users = [c.username for c in found.keyring.lookup("r.example/a")]
    assert users == ["carol", "alice", "node"] and not found.problems
    assert found.secrets == ("shop/good", "shop/second")


def test_service_account_secrets_when_pod_has_none() -> None:
    """A pod without imagePullSecrets uses its service account's."""
    resolver = CredentialResolver(Source(SECRETS, {"builder": ("legacy",)}), Keyring())
    found = resolver.resolve(pod(account="builder"))
    assert found.from_service_account and [c.username for c in found.keyring.lookup(
        "r.example/a")] == ["dave"]


@pytest.mark.parametrize(("name", "code", "words"), [
    ("missing", Code.SECRET_NOT_FOUND, "does not exist"),
    ("opaque", Code.SECRET_MALFORMED, "Opaque"),
    ("nokey", Code.SECRET_MALFORMED, "no .dockerconfigjson key"),
    ("badjson", Code.SECRET_MALFORMED, ""),
    ("forbidden", Code.UNKNOWN, "RBAC"),
])
def test_secret_problems_are_named_not_shown(name: str, code: Code, words: str) -> None:
    """A Secret the kubelet would skip is skipped and named, with what is wrong."""
    found = CredentialResolver(Source(SECRETS, {}), Keyring()).resolve(pod((name,)))
    (problem,) = found.problems
    assert (problem.code, problem.name) == (code, name) and words in problem.detail
    assert len(found.keyring.lookup("r.example/a")) == 0


def test_reads_are_cached() -> None:
    """Secrets are read by name once per TTL, however many pods use them."""
    now = [0.0]
    source = Source(SECRETS, {})
    resolver = CredentialResolver(source, Keyring(), ttl=60, clock=lambda: now[0])
    for _ in range(20):
        resolver.resolve(pod(("good",)))
    assert source.reads == 1
    now[0] = 61
    resolver.resolve(pod(("good",)))
    assert source.reads == 2


def test_fingerprint_separates_credential_sets_without_content() -> None:
    """Different Secrets give different fingerprints; same content gives the same one."""
    resolver = CredentialResolver(Source(SECRETS, {}), Keyring())
    a, b = resolver.resolve(pod(("good",))), resolver.resolve(pod(("second",)))
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == resolver.resolve(pod(("good",))).fingerprint
    assert "pw1" not in a.fingerprint and "pw1" not in repr(a)
