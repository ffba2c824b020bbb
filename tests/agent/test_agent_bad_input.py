"""The node agent survives bad input from the cluster and still diagnoses what it can.

The agent runs as in production (fake API over HTTP, the real ``KubeClient`` and
``PodWatcher``, the agent loop in its own thread, the real loopback fleet) and is fed
what a cluster can really contain: image names that do not parse, hostile pull Secrets,
a pod with a hundred failing containers, 1 MB and binary Event and waiting messages,
garbage on the watch stream, and pods with fields missing or of the wrong type. Every
test then checks the same things: the loop still ticks (its heartbeat advances and
``healthy()`` holds), no exception escaped into a thread or a worker, each problem
became a diagnosis or a named log line, and a normal failing pod added afterwards is
still diagnosed.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.agent import Agent
from agent.config import AgentConfig
from agent.kube import KubeClient, PodWatcher
from tests.agent.recorder import RecordingLog
from tests.agent.running import running_agent
from tests.fakekube import FakeKube, make_event, make_pod, wait_for
from tests.fleet import ALICE, Fleet
from tests.scenario import NODE, RPC, WORDS, agent_config

NS = "shop"
#: Log events that mean an exception was caught somewhere it should not have been raised.
BUG_EVENTS = {"worker_error", "pod_callback_failed", "pod_watch_bug"}
ONE_MB = 1024 * 1024
#: JSON nested deeper than the parser's recursion limit: json.loads raises RecursionError.
DEEP_JSON = b"[" * 100_000


@dataclass
class World:
    """The running agent, its inputs and everything it said."""

    fake: FakeKube
    agent: Agent
    watcher: PodWatcher
    log: RecordingLog
    kube_log: list[dict[str, Any]]  # structlog records (agent.kube's watcher and client)
    fleet: Fleet
    threads: list[threading.Thread]
    thread_errors: list[BaseException] = field(default_factory=list)

    def diagnoses(self, pod: str) -> list[dict[str, Any]]:
        return [d for d in self.log.events("pull_diagnosed") if d["pod"] == pod]

    def diagnosis(self, pod: str, container: str = "app") -> dict[str, Any] | None:
        found = [d for d in self.diagnoses(pod) if d["container"] == container]
        return found[-1] if found else None

    def code(self, pod: str, container: str = "app") -> str | None:
        found = self.diagnosis(pod, container)
        return found["code"] if found else None

    def kube_events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in list(self.kube_log) if r.get("event") == name]

    def expired_image(self, repository: str = "test/hello:v1") -> str:
        return f"{self.fleet.registries['expired'].host}/{repository}"

    def token_image(self) -> str:
        return f"{self.fleet.registries['token'].host}/test/hello:v1"


def _rpc(image: str, words: str, host: str) -> str:
    """A container's waiting message as the kubelet writes it for a containerd failure."""
    return RPC.format(img=image) + words.format(img=image, host=host)


def expired_message(world: World, image: str) -> str:
    return _rpc(image, WORDS["expired"], world.fleet.registries["expired"].host)


def failing_pod(world: World, name: str, image: str, message: str, *,
                reason: str = "ErrImagePull", **kw: Any) -> dict[str, Any]:
    return make_pod(name, NS, NODE, [image], waiting={"app": (reason, message)}, **kw)


def _config(fleet: Fleet, tmp_path: Path) -> AgentConfig:
    """The end-to-end test's config: the fleet's node view, fast Secret refresh, Events on."""
    return agent_config(fleet, tmp_path)


@pytest.fixture
def world(fleet: Fleet, tmp_path: Path) -> Iterator[World]:
    """Agent + watcher threads against a fresh fake API; structlog and thread errors captured."""
    errors: list[BaseException] = []
    previous_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        errors.append(args.exc_value or RuntimeError(str(args.exc_type)))
        previous_hook(args)

    threading.excepthook = hook
    try:
        with structlog.testing.capture_logs() as captured, \
                FakeKube(bookmark_interval=0.5) as fake, KubeClient(fake.url) as kube:
            log = RecordingLog()
            # join long: a step a test stalled ends before the next test starts
            with running_agent(_config(fleet, tmp_path), kube, log=log, join=15) as (
                    agent, watcher, threads):
                yield World(fake, agent, watcher, log, captured, fleet, threads, errors)
    finally:
        threading.excepthook = previous_hook


def assert_survived(world: World, name: str = "after") -> None:
    """The loop ticks, nothing escaped, and a normal failing pod added now is diagnosed."""
    beat = world.agent._heartbeat
    assert wait_for(lambda: world.agent._heartbeat > beat, timeout=3), "agent loop stopped"
    assert world.agent.healthy()
    assert all(t.is_alive() for t in world.threads)
    assert world.thread_errors == []
    bugs = [r for r in world.log.records if r["event"] in BUG_EVENTS]
    bugs += [r for r in list(world.kube_log) if r.get("event") in BUG_EVENTS]
    assert bugs == [], bugs
    image = world.expired_image(f"test/{name}:v1")
    world.fake.add_pod(failing_pod(world, name, image, expired_message(world, image)))
    assert wait_for(lambda: world.code(name) == "tls_expired", timeout=10), \
        world.diagnoses(name)


def assert_no_line_larger_than(world: World, limit: int) -> None:
    """Every agent log record, as JSON, stays below ``limit`` bytes."""
    sizes = [(r["event"], len(json.dumps(r, default=str))) for r in world.log.records]
    assert all(size < limit for _, size in sizes), [s for s in sizes if s[1] >= limit]


# --------------------------------------------------------------------------- image names

INVALID_IMAGES = {
    "uppercase": "Nginx:Latest",
    "space": "my image:1",
    "empty-tag": "nginx:",
    "five-kb": "registry.example.com/" + "a" * 5000 + ":v1",
}


def _invalid_name_pod(world: World, name: str, image: str) -> dict[str, Any]:
    message = (f'Failed to apply default image tag "{image}": couldn\'t parse image name '
               f'"{image}": invalid reference format')
    return failing_pod(world, name, image, message, reason="InvalidImageName")


def test_invalid_image_names_do_not_hurt_the_agent(world: World) -> None:
    """Pods whose images do not parse are taken in without an exception or a stall."""
    for name, image in INVALID_IMAGES.items():
        world.fake.add_pod(_invalid_name_pod(world, name, image))
    world.fake.add_pod(make_pod("mixed", NS, NODE, {"bad": "UPPER/Case:1",
                                                  "ok": world.expired_image()}))
    assert wait_for(lambda: len(world.agent._pods) >= len(INVALID_IMAGES) + 1, timeout=5)
    assert_survived(world)
    assert_no_line_larger_than(world, 16 * 1024)


def test_invalid_image_names_are_diagnosed(world: World) -> None:
    """Each container with an image that does not parse gets pull_diagnosed invalid_image_name."""
    for name, image in INVALID_IMAGES.items():
        world.fake.add_pod(_invalid_name_pod(world, name, image))
    assert wait_for(lambda: all(world.code(n) == "invalid_image_name" for n in INVALID_IMAGES),
                    timeout=3), {n: world.code(n) for n in INVALID_IMAGES}


# --------------------------------------------------------------------------- Secrets

def _auths(host: str, auth: bytes) -> bytes:
    return json.dumps({"auths": {host: {"auth": base64.b64encode(auth).decode()}}}).encode()


def _denied(world: World) -> str:
    """containerd's words for a token registry that gave no pull right (cause unknown)."""
    return _rpc(world.token_image(), WORDS["denied"], world.fleet.registries["token"].host)


def _hostile_secrets(world: World) -> dict[str, tuple[str, dict[str, bytes]]]:
    """Secret name -> (type, data) for pull Secrets the kubelet would skip as malformed."""
    token = world.fleet.registries["token"].host
    return {
        "notjson": ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b"not json {"}),
        "array": ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b"[1, 2, 3]"}),
        "nocolon": ("kubernetes.io/dockerconfigjson",
                    {".dockerconfigjson": _auths(token, (ALICE[0] + ALICE[1]).encode())}),
        "notbase64": ("kubernetes.io/dockerconfigjson",
                      {".dockerconfigjson": json.dumps({"auths": {token: {
                          "auth": "%%" + ALICE[1]}}}).encode()}),
        "wrongtype": ("kubernetes.io/tls", {"tls.crt": b"-----BEGIN", "tls.key": b"-----BEGIN"}),
        "missingkey": ("kubernetes.io/dockerconfigjson", {".dockercfg": b"{}"}),
        "binary": ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": bytes(range(256))}),
        "deep": ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": DEEP_JSON}),
        "dockercfgarray": ("kubernetes.io/dockercfg", {".dockercfg": b'[{"auth": 1}]'}),
    }


def test_hostile_secrets_become_secret_diagnoses(world: World) -> None:
    """Malformed, foreign-typed, binary and deeply nested pull Secrets end in secret_malformed."""
    image, denied = world.token_image(), _denied(world)
    hostile = _hostile_secrets(world)
    for name, (kind, data) in hostile.items():
        world.fake.add_secret(NS, name, data, type=kind)
        world.fake.add_pod(failing_pod(world, name, image, denied, image_pull_secrets=[name]))

    def codes() -> dict[str, str | None]:
        return {name: world.code(name) for name in hostile}
    assert wait_for(lambda: all(codes().values()), timeout=8), codes()
    assert codes() == dict.fromkeys(hostile, "secret_malformed"), \
        {n: world.diagnosis(n) for n in hostile}
    assert_no_line_larger_than(world, 16 * 1024)
    dumped = json.dumps(world.log.records, default=str) + json.dumps(world.kube_log, default=str)
    for needle in (ALICE[0] + ALICE[1], "%%" + ALICE[1],
                   base64.b64encode((ALICE[0] + ALICE[1]).encode()).decode()):
        assert needle not in dumped
    assert_survived(world)


def test_secret_object_of_the_wrong_shape_is_named(world: World) -> None:
    """A Secret whose data value is not a base64 string is reported with its name.

    (A real API server cannot store such a Secret; the agent must still not crash on it.)
    """
    world.fake.add_object("secrets", {"metadata": {"name": "badvalue", "namespace": NS},
                                      "type": "kubernetes.io/dockerconfigjson",
                                      "data": {".dockerconfigjson": 12345}})
    world.fake.add_pod(failing_pod(world, "badvalue", world.token_image(), _denied(world),
                                   image_pull_secrets=["badvalue"]))
    assert wait_for(lambda: world.code("badvalue") is not None, timeout=8)
    line = world.diagnosis("badvalue")
    assert line is not None
    assert any("shop/badvalue" in p for p in line["evidence"].get("secret_problems", [])), line
    assert_survived(world)


def _one_mb_config(entries: int = 6800) -> bytes:
    """A valid docker config just under 1 MiB (the API's Secret size limit), for other hosts."""
    auth = base64.b64encode(b"someone:" + b"p" * 64).decode()
    return json.dumps({"auths": {f"r{i}.registry{i % 97}.example.com:5000": {"auth": auth}
                                 for i in range(entries)}}).encode()


def _largest_stall(world: World, seconds: float, done: Callable[[], bool],
                   limit: float) -> float:
    """Watch the loop until ``done()``, ``seconds`` pass or a gap reaches ``limit``.

    Returns the longest heartbeat gap seen. The loop ticks every 0.5 s, so a gap of seconds
    means one step() held it that long.
    """
    began = time.monotonic()
    last_beat, last_change, stall = world.agent._heartbeat, began, 0.0
    while time.monotonic() - began < seconds and not done() and stall < limit:
        beat, now = world.agent._heartbeat, time.monotonic()
        if beat != last_beat:
            last_beat, last_change = beat, now
        stall = max(stall, now - last_change)
        time.sleep(0.02)
    return round(max(stall, time.monotonic() - last_change), 2)


def test_one_megabyte_secret_does_not_stall_the_loop(world: World) -> None:
    """Pods sharing a valid 1 MiB pull Secret are diagnosed while the loop stays healthy."""
    world.fake.add_secret(NS, "onemb", {".dockerconfigjson": _one_mb_config()})
    pods = [f"big-{i}" for i in range(3)]
    for name in pods:
        world.fake.add_pod(failing_pod(world, name, world.token_image(), _denied(world),
                                       image_pull_secrets=["onemb"]))

    def codes() -> dict[str, str | None]:
        return {name: world.code(name) for name in pods}
    stall = _largest_stall(world, 5.0, lambda: all(codes().values()), limit=1.5)
    healthy = world.agent.healthy()
    assert stall < 1.5 and healthy and codes() == dict.fromkeys(pods, "auth_missing"), \
        (stall, healthy, codes())
    assert_survived(world)


def test_huge_credential_is_never_logged(world: World) -> None:
    """A 300 KB password in a pull Secret is diagnosed without ever reaching a log line.

    The code is not pinned here: the probe sends it as a Basic header, which the token server
    refuses (431) by closing the connection, so the probe sees auth_invalid or an unreachable
    token endpoint depending on the race (see the report).
    """
    token = world.fleet.registries["token"].host
    password = "h" * 300_000
    world.fake.add_secret(NS, "hugeauth", {".dockerconfigjson": _auths(
        token, f"{ALICE[0]}:{password}".encode())})
    world.fake.add_pod(failing_pod(world, "hugeauth", world.token_image(), _denied(world),
                                   image_pull_secrets=["hugeauth"]))
    assert wait_for(lambda: world.code("hugeauth") is not None, timeout=8)
    assert_no_line_larger_than(world, 16 * 1024)
    dumped = json.dumps(world.log.records, default=str) + json.dumps(world.kube_log, default=str)
    assert password[:32] not in dumped
    assert_survived(world)


# --------------------------------------------------------------------------- many containers

#: registry -> what the probe finds there (the kubelet's back-off words do not say)
TLS_FAULTS = {"expired": "tls_expired", "notyet": "tls_not_yet_valid",
              "mismatch": "tls_hostname_mismatch", "untrusted": "tls_unknown_authority"}


def _wide_pod(world: World, name: str, images: dict[str, str]) -> dict[str, Any]:
    """A pod whose containers named c* and init containers named i* all back off."""
    waiting = {n: ("ImagePullBackOff", f'Back-off pulling image "{i}"') for n, i in images.items()}
    return make_pod(name, NS, NODE, {n: i for n, i in images.items() if n.startswith("c")},
                    init_images={n: i for n, i in images.items() if n.startswith("i")},
                    waiting=waiting)


def test_hundred_failing_containers_are_each_diagnosed(world: World) -> None:
    """100 containers and 5 init containers on four broken registries get 105 right diagnoses."""
    registries = list(TLS_FAULTS)
    where = {f"c{i}": registries[i % 4] for i in range(100)}
    where |= {f"i{i}": registries[i % 4] for i in range(5)}
    images = {n: f"{world.fleet.registries[r].host}/test/hello:v1" for n, r in where.items()}
    world.fake.add_pod(_wide_pod(world, "wide", images))
    expected = {n: TLS_FAULTS[r] for n, r in where.items()}

    def codes() -> dict[str, str]:
        return {d["container"]: d["code"] for d in world.diagnoses("wide")}
    assert wait_for(lambda: codes() == expected, timeout=8), \
        {n: (c, expected[n]) for n, c in codes().items() if c != expected[n]}
    assert wait_for(lambda: len([e for e in world.fake.objects("events", NS)
                                 if e.get("reason") == "PullDiagnosis"]) == len(expected),
                    timeout=5)
    assert_no_line_larger_than(world, 16 * 1024)
    assert_survived(world)


def test_hundred_distinct_failing_images_are_diagnosed_promptly(world: World) -> None:
    """105 containers with 105 distinct failing images are all diagnosed within 5 s."""
    names = [f"c{i}" for i in range(100)] + [f"i{i}" for i in range(5)]
    images = {n: world.expired_image(f"test/{n}:v1") for n in names}
    world.fake.add_pod(_wide_pod(world, "distinct", images))

    def diagnosed() -> int:
        return len({d["container"] for d in world.diagnoses("distinct")})
    assert wait_for(lambda: diagnosed() == len(names), timeout=5), diagnosed()


# --------------------------------------------------------------------------- messages

JUNK = "".join(chr(c) for c in range(0x300)) + "\ud800\udfff\ufffe\U0010ffff" + "\x00" * 16


def test_huge_and_binary_event_messages(world: World) -> None:
    """1 MB, binary and mistyped pull Events of a backing-off pod leave its diagnosis intact."""
    image = world.expired_image()
    pod = world.fake.add_pod(failing_pod(world, "noisy", image,
                                         f'Back-off pulling image "{image}"',
                                         reason="ImagePullBackOff"))
    failed = f'Failed to pull image "{image}": ' + expired_message(world, image)
    for message in (failed + " " + "x" * ONE_MB, f'Failed to pull image "{image}": ' + JUNK,
                    JUNK * 1000, "x" * ONE_MB):
        world.fake.add_event(make_event(pod, message=message, count=3))
    mistyped = make_event(pod, message=failed)
    mistyped["count"] = "many"
    world.fake.add_event(mistyped)
    world.fake.add_event(make_event(pod, reason="Pulled", count=10**12,
                                    message=f'Successfully pulled image "{image}" in 1.5s'))
    assert wait_for(lambda: world.code("noisy") == "tls_expired", timeout=8), \
        world.diagnoses("noisy")
    assert wait_for(lambda: bool(world.kube_events("kube_object_malformed")), timeout=5)
    assert any("count" in r["error"] for r in world.kube_events("kube_object_malformed"))
    assert_no_line_larger_than(world, 16 * 1024)
    assert_survived(world)


def test_pulled_event_with_a_bad_duration_is_skipped(world: World) -> None:
    """A Pulled Event whose duration does not parse is skipped, not fatal to the pod's events."""
    image = world.expired_image()
    pod = world.fake.add_pod(failing_pod(world, "baddur", image,
                                         f'Back-off pulling image "{image}"',
                                         reason="ImagePullBackOff"))
    world.fake.add_event(make_event(pod, reason="Pulled",
                                    message=f'Successfully pulled image "{image}" in 1.2.3s'))
    assert wait_for(lambda: world.code("baddur") is not None, timeout=8)
    assert_survived(world)


def test_one_megabyte_waiting_message(world: World) -> None:
    """A 1 MB waiting message is classified from its head, and nothing big is logged or posted."""
    head = world.expired_image("test/head:v1")
    tail = world.expired_image("test/tail:v1")
    world.fake.add_pod(failing_pod(world, "head", head,
                                   expired_message(world, head) + " " + "x" * ONE_MB))
    world.fake.add_pod(failing_pod(world, "tail", tail,
                                   "x" * ONE_MB + " " + expired_message(world, tail)))
    assert wait_for(lambda: world.code("head") == "tls_expired" == world.code("tail"),
                    timeout=8), (world.diagnoses("head"), world.diagnoses("tail"))
    head_line, tail_line = world.diagnosis("head"), world.diagnosis("tail")
    assert head_line is not None and tail_line is not None
    assert (head_line["verdict"], head_line["kubelet_code"]) == ("agree", "tls_expired")
    # the classifier reads only the first 64 KiB: the tail's words are past that
    assert tail_line["verdict"] == "refine"
    assert_no_line_larger_than(world, 16 * 1024)
    def posted() -> list[dict[str, Any]]:
        return [e for e in world.fake.objects("events", NS) if e.get("reason") == "PullDiagnosis"]
    assert wait_for(lambda: len(posted()) == 2, timeout=5), posted()
    assert all(len(e["message"].encode()) <= 1024 for e in posted())
    assert all(len(d["message"]) <= 4096 for d in world.agent.diagnoses() if d["kind"] == "pull")
    assert_survived(world)


# --------------------------------------------------------------------------- the watch stream

#: Lines no API server should send; each must be counted and logged, none may stop the watch.
GARBAGE_LINES = (
    b"not json",
    b"\xff\xfe\x00\x01 binary junk \x80\x81",
    b"[]",
    b"null",
    b'{"type": "ADDED"}',
    b'{"type": "ADDED", "object": [1, 2]}',
    b'{"type": "ADDED", "object": {"metadata": {"name": "nons"}}}',
    (b'{"type": "MODIFIED", "object": {"metadata": {"namespace": "shop", "name": "nouid"},'
     b' "spec": {"nodeName": "node-a"}}}'),
    (b'{"type": "ADDED", "object": {"metadata": {"namespace": "shop", "name": "x", "uid": "u"},'
     b' "spec": {"nodeName": "node-a", "containers": "nope"}}}'),
    b'{"type": "SURPRISE", "object": {}}',
    b'{"type": ["ADDED"], "object": {}}',
    b"z" * (2 * ONE_MB),
)


def test_garbage_watch_lines_are_counted_and_skipped(world: World) -> None:
    """Non-JSON, non-events and malformed pods on the watch are logged; the watch goes on."""
    assert wait_for(lambda: world.fake.open_watches >= 1 and world.watcher.healthy, timeout=5)
    bad_before, watches_before = world.watcher.bad_objects, world.watcher.watches
    for line in GARBAGE_LINES:
        world.fake.inject_watch_line(line)
    assert wait_for(lambda: world.watcher.bad_objects - bad_before >= len(GARBAGE_LINES),
                    timeout=5), world.watcher.bad_objects - bad_before
    assert world.watcher.bad_objects - bad_before == len(GARBAGE_LINES)
    assert world.watcher.watches == watches_before  # the same stream carried on
    logged = world.kube_events("kube_watch_event_malformed") + \
        world.kube_events("kube_object_malformed")
    assert len(logged) >= len(GARBAGE_LINES)
    assert any("nouid" in r.get("error", "") for r in logged)
    assert_survived(world)


def test_deeply_nested_watch_line_is_skipped(world: World) -> None:
    """A watch line nested past the parser's recursion limit is counted as bad, like garbage."""
    assert wait_for(lambda: world.fake.open_watches >= 1 and world.watcher.healthy, timeout=5)
    bad, watches = world.watcher.bad_objects, world.watcher.watches
    world.fake.inject_watch_line(DEEP_JSON)
    world.fake.inject_watch_line(b"not json")
    assert wait_for(lambda: world.watcher.bad_objects - bad == 2, timeout=2)
    assert world.watcher.watches == watches
    assert_survived(world)


def test_watch_error_event_restarts_the_watch(world: World) -> None:
    """A malformed ERROR event ends the watch with a logged failure; a new watch follows."""
    assert wait_for(lambda: world.fake.open_watches >= 1 and world.watcher.healthy, timeout=5)
    watches = world.watcher.watches
    world.fake.inject_watch_line(b'{"type": "ERROR", "object": {"code": "teapot"}}')
    assert wait_for(lambda: world.watcher.watches > watches and world.fake.open_watches >= 1,
                    timeout=5)
    assert any("watch ERROR" in r["error"] for r in world.kube_events("pod_watch_failed"))
    assert_survived(world)


def test_seventeen_megabyte_watch_line(world: World) -> None:
    """A line past the watcher's 16 MiB bound is skipped or ends the watch, never fatal."""
    assert wait_for(lambda: world.fake.open_watches >= 1 and world.watcher.healthy, timeout=5)
    bad, watches = world.watcher.bad_objects, world.watcher.watches
    world.fake.inject_watch_line(b"y" * (17 * ONE_MB))
    assert wait_for(lambda: world.watcher.bad_objects > bad or world.watcher.watches > watches,
                    timeout=5)
    assert_survived(world)


# --------------------------------------------------------------------------- missing fields

def _raw_pod(name: str, spec: dict[str, Any], status: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name, "namespace": NS},
                            "spec": {"nodeName": NODE, **spec}}
    if status is not None:
        body["status"] = status
    return body


def test_pods_with_missing_or_mistyped_fields(world: World) -> None:
    """Sparse pods are taken as they are, mistyped ones are named in a log line and skipped."""
    image = world.expired_image()
    waiting_only = {"containerStatuses": [{"name": "app", "state": {"waiting": {
        "reason": "ErrImagePull"}}}]}
    sparse = {
        "nocontainers": ({}, None),
        "nostatus": ({"containers": [{"name": "app", "image": image}]}, None),
        "nullstate": ({"containers": [{"name": "app", "image": image}]},
                      {"containerStatuses": [{"name": "app", "state": None}]}),
        "orphanstatus": ({"containers": [{"name": "app", "image": image}]},
                         {"containerStatuses": [{"name": "ghost", "state": {"waiting": {
                             "reason": "ErrImagePull", "message": "x"}}}]}),
        "noimage": ({"containers": [{"name": "app"}]}, waiting_only),
        "nomessage": ({"containers": [{"name": "app", "image": image}]}, waiting_only),
    }
    mistyped = {
        "statusdict": ({"containers": [{"name": "app", "image": image}]},
                       {"containerStatuses": {"name": "app"}}),
        "noname": ({"containers": [{"image": image}]}, None),
        "restartword": ({"containers": [{"name": "app", "image": image}]},
                        {"containerStatuses": [{"name": "app", "restartCount": "three"}]}),
        "imagenumber": ({"containers": [{"name": "app", "image": 42}]}, None),
        "secretsstring": ({"containers": [{"name": "app", "image": image}],
                           "imagePullSecrets": "regcred"}, None),
    }
    for name, (spec, status) in {**sparse, **mistyped}.items():
        world.fake.add_object("pods", _raw_pod(name, spec, status))
    # a pod that is waiting on a pull with no message at all is still diagnosed by its probe
    assert wait_for(lambda: world.code("nomessage") == "tls_expired", timeout=8), \
        world.diagnoses("nomessage")

    def named() -> set[str]:
        errors = " ".join(r.get("error", "") for r in world.kube_events("kube_object_malformed"))
        return {name for name in mistyped if f"pod {NS}/{name}" in errors}
    assert wait_for(lambda: named() == set(mistyped), timeout=5), named()
    assert {p.name for p in world.agent._pods.values()} >= set(sparse) - {"noimage"}
    assert all(world.diagnoses(name) == [] for name in sparse
               if name not in ("nomessage", "noimage"))
    # a container without an image that waits on a pull: its image field is the fault
    assert world.code("noimage") in (None, "invalid_image_name")
    assert_survived(world)
