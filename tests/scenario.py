"""A small cluster's worth of failing pulls, shared by the end-to-end tests and the demo.

Pods on node ``node-a`` (and one on ``node-b``) fail to pull with the words
containerd really uses (infra-recipes.md, ctr captures, wrapped as the kubelet
wraps them), with Secrets of every shape. :func:`populate` loads them into a
fake API server and returns what the agent should conclude for each pod.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, parse_config
from tests.fakekube import FakeKube, make_event, make_pod
from tests.fleet import ALICE, BOB, Fleet

__all__ = ["populate", "dockerconfig", "EXPECTED", "NODE", "OTHER_NODE", "agent_settings",
           "agent_config"]

NODE, OTHER_NODE = "node-a", "node-b"
RPC = ('rpc error: code = Unknown desc = failed to pull and unpack image "{img}": '
       'failed to resolve reference "{img}": ')
WORDS = {
    "oauth401": "failed to authorize: failed to fetch oauth token: unexpected status: 401 "
                "Unauthorized",
    "denied": "pull access denied, repository does not exist or may require authorization: "
              "server message: insufficient_scope: authorization failed",
    "notfound": "{img}: not found",
    "expired": 'failed to do request: Head "https://{host}/v2/test/hello/manifests/v1": '
               "tls: failed to verify certificate: x509: certificate has expired or is not yet "
               "valid: current time 2026-11-26T19:00:00Z is after 2026-11-25T19:00:00Z",
    "basic401": "pulling from host {host} failed with status code [manifests v1]: 401 "
                "Unauthorized",
}

#: pod -> (code, verdict) the agent must report
EXPECTED = {
    "wrongpw": ("auth_invalid", "agree"),
    "nosecret": ("secret_not_found", "refine"),
    "otherkey": ("auth_missing", "refine"),
    "broken": ("secret_malformed", "refine"),
    "opaque": ("secret_malformed", "refine"),
    "missingtag": ("image_not_found", "agree"),
    "expired": ("tls_expired", "agree"),
    "viasa": ("access_denied", "refine"),
    "basic": ("auth_missing", "refine"),
    "backoff": ("auth_invalid", "agree"),
    # the same image pulls on this node with another pod's Secret
    "otherpod": ("auth_invalid", "node-specific"),
}


def dockerconfig(entries: dict[str, tuple[str, str]]) -> bytes:
    auths = {k: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()}
             for k, (u, p) in entries.items()}
    return json.dumps({"auths": auths}).encode()


def _failing(name: str, image: str, words: str, host: str, node: str = NODE,
             **kw: Any) -> dict[str, Any]:
    message = RPC.format(img=image) + words.format(img=image, host=host)
    return make_pod(name, "shop", node, [image], waiting={"app": ("ErrImagePull", message)}, **kw)


def images(fleet: Fleet) -> dict[str, str]:
    token, expired = fleet.registries["token"].host, fleet.registries["expired"].host
    return {"hello": f"{token}/test/hello:v1", "missing": f"{token}/test/hello:nope",
            "expired": f"{expired}/test/hello:v1",
            "basic": f"{fleet.registries['basic'].host}/test/hello:v1",
            "multi": f"{token}/test/multi:v1"}


def populate(fake: FakeKube, fleet: Fleet, *, wrong_password: str = "not-it") -> dict[str, str]:
    """Load Secrets, service accounts, pods and events; return the images used."""
    img = images(fleet)
    token, expired = fleet.registries["token"].host, fleet.registries["expired"].host
    basic = fleet.registries["basic"].host
    fake.add_secret("shop", "good", {".dockerconfigjson": dockerconfig({token: ALICE})})
    fake.add_secret("shop", "wrongpw", {".dockerconfigjson": dockerconfig(
        {token: (ALICE[0], wrong_password)})})
    fake.add_secret("shop", "otherkey", {".dockerconfigjson": dockerconfig(
        {"elsewhere.example.com": ALICE})})
    fake.add_secret("shop", "broken", {".dockerconfigjson": b'{"auths": {"x": {"auth": '
                                       b'"%%%not-base64"}}}'})
    fake.add_secret("shop", "opaque", {"username": b"alice"}, type="Opaque")
    fake.add_secret("shop", "bob", {".dockerconfigjson": dockerconfig({token: BOB})})
    fake.add_service_account("shop", "builder", ["bob"])
    fake.add_service_account("shop", "default")
    pods = [
        make_pod("healthy", "shop", NODE, [img["multi"]], image_pull_secrets=["good"]),
        _failing("otherpod", img["multi"], WORDS["oauth401"], token,
                 image_pull_secrets=["wrongpw"]),
        _failing("wrongpw", img["hello"], WORDS["oauth401"], token,
                 image_pull_secrets=["wrongpw"]),
        _failing("nosecret", img["hello"], WORDS["denied"], token, image_pull_secrets=["missing"]),
        _failing("otherkey", img["hello"], WORDS["denied"], token,
                 image_pull_secrets=["otherkey"]),
        _failing("broken", img["hello"], WORDS["denied"], token, image_pull_secrets=["broken"]),
        _failing("opaque", img["hello"], WORDS["denied"], token, image_pull_secrets=["opaque"]),
        _failing("missingtag", img["missing"], WORDS["notfound"], token,
                 image_pull_secrets=["good"]),
        _failing("expired", img["expired"], WORDS["expired"], expired),
        _failing("viasa", img["hello"], WORDS["denied"], token, service_account="builder"),
        _failing("basic", img["basic"], WORDS["basic401"], basic),
        make_pod("backoff", "shop", NODE, [img["hello"]], image_pull_secrets=["wrongpw"],
                 waiting={"app": ("ImagePullBackOff", f'Back-off pulling image "{img["hello"]}"')}),
        _failing("node-b-pod", img["expired"], WORDS["expired"], expired, node=OTHER_NODE),
    ]
    for pod in pods:
        fake.add_pod(pod)
    backoff = fake.get("pods", "shop", "backoff")
    fake.add_event(make_event(backoff, reason="Failed", message=f'Failed to pull image '
                              f'"{img["hello"]}": ' + RPC.format(img=img["hello"])
                              + WORDS["oauth401"], count=3))
    return img


def agent_settings(fleet: Fleet, workdir: Path, **extra: Any) -> dict[str, Any]:
    """The agent's config file as a dict (YAML-ready): the fleet's node view, nothing from
    this host, and timings short enough for tests."""
    return {
        "interval_seconds": 60, "endpoint_interval_seconds": 60, "startup_spread_seconds": 0.5,
        "probe_timeout_seconds": 5, "secret_cache_seconds": 0.5, "concurrency": 4,
        "listen_address": "127.0.0.1:0", "events": {"enabled": True, "min_interval_seconds": 0},
        "failure_probe_min_interval_seconds": 0,
        "resolv_conf": str(fleet.resolv_conf), "hosts_file": str(fleet.hosts_file),
        "certs_dirs": [str(fleet.certs_dir)], "ca_bundles": [], "node_docker_configs": [],
        "credential_provider_config": None, "proxy_dropin_dirs": [],
        "crio_registries_conf": str(workdir / "no-crio.conf"),
        "crio_registries_dir": str(workdir / "no-crio.d"), **extra}


def agent_config(fleet: Fleet, workdir: Path, **extra: Any) -> AgentConfig:
    """:func:`agent_settings` loaded as the agent loads its file."""
    return parse_config(agent_settings(fleet, workdir, **extra), "test config")
