"""agent.kube against the fake API server in tests/fakekube.py, with the real kubernetes client."""

from __future__ import annotations

import base64
import http.client
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import urllib3
from kubernetes.client.exceptions import ApiException
from structlog.testing import capture_logs

from agent.kube import (
    EVENT_MESSAGE_LIMIT,
    RELISTED,
    SYNC,
    KubeClient,
    KubeError,
    KubeForbidden,
    KubeGone,
    KubeMalformed,
    KubeNotFound,
    KubeUnavailable,
    PodWatcher,
    _map_error,
    full_jitter,
    parse_event,
    parse_pod,
    parse_retry_after,
)
from agent.model import Pod, SecretData
from tests.fakekube import FakeKube, make_event, make_pod, wait_for

NODE = "node-a"
PULL_BACKOFF = ("ImagePullBackOff", 'Back-off pulling image "registry.example.com/team/app:1.0"')


# --------------------------------------------------------------------------- fixtures


class Recorder:
    """Collects on_pod calls and replays them into the pod view a consumer would hold."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Pod | None]] = []
        self._lock = threading.Lock()

    def __call__(self, kind: str, pod: Pod | None) -> None:
        with self._lock:
            self.calls.append((kind, pod))

    def kinds(self) -> list[str]:
        with self._lock:
            return [kind for kind, _ in self.calls]

    def names(self, kind: str) -> list[str]:
        with self._lock:
            return [pod.name for k, pod in self.calls if k == kind and pod is not None]

    def view(self) -> dict[str, Pod]:
        """name → pod, applying SYNC batches, RELISTED pruning and watch events in order."""
        view: dict[str, Pod] = {}
        batch: set[str] = set()
        with self._lock:
            calls = list(self.calls)
        for kind, pod in calls:
            if kind == RELISTED:
                view = {name: p for name, p in view.items() if name in batch}
                batch = set()
            elif pod is not None and (kind == "DELETED"):
                view.pop(pod.name, None)
            elif pod is not None:
                view[pod.name] = pod
                if kind == SYNC:
                    batch.add(pod.name)
        return view


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2) as running:
        yield running


@pytest.fixture
def client(fake: FakeKube) -> Iterator[KubeClient]:
    with KubeClient(fake.url, timeout=2.0) as kube:
        yield kube


StartWatcher = Callable[..., tuple[PodWatcher, Recorder]]


@pytest.fixture
def start_watcher(client: KubeClient) -> Iterator[StartWatcher]:
    """Start PodWatchers on NODE in threads; stop them and check they end within 2 s."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start(**kwargs: Any) -> tuple[PodWatcher, Recorder]:
        options: dict[str, Any] = {
            "backoff_base": 0.05,
            "backoff_max": 0.2,
            "watch_timeout": 5.0,
            "read_grace": 1.0,
            "rng": random.Random(7),
        }
        options.update(kwargs)
        stop, recorder = threading.Event(), Recorder()
        watcher = PodWatcher(client, NODE, recorder, stop=stop, **options)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        running.append((stop, thread))
        return watcher, recorder

    yield start
    for stop, _ in running:
        stop.set()
    for _, thread in running:
        thread.join(2.0)
        assert not thread.is_alive(), "PodWatcher did not stop within 2 s"


def _node_pods(fake: FakeKube) -> dict[str, str | None]:
    """name → first waiting reason, for the fake's pods on NODE."""
    out: dict[str, str | None] = {}
    for obj in fake.objects("pods"):
        pod = parse_pod(obj)
        if pod.node_name == NODE:
            out[pod.name] = pod.containers[0].waiting_reason
    return out


def _view_summary(recorder: Recorder) -> dict[str, str | None]:
    return {name: pod.containers[0].waiting_reason for name, pod in recorder.view().items()}


def _synced(recorder: Recorder, count: int = 1) -> Callable[[], bool]:
    return lambda: recorder.kinds().count(RELISTED) >= count


# --------------------------------------------------------------------------- one-shot calls


def test_list_pods_on_node_returns_this_nodes_pods_and_the_list_version(
    fake: FakeKube, client: KubeClient
) -> None:
    """list_pods_on_node sends spec.nodeName=NODE and returns model Pods plus the list RV."""
    fake.add_pod(make_pod("a", node=NODE))
    fake.add_pod(make_pod("b", node="node-b"))
    pods, rv = client.list_pods_on_node(node=NODE)
    assert [p.name for p in pods] == ["a"]
    assert rv == str(fake.resource_version)
    assert fake.requests[-1].query["fieldSelector"] == f"spec.nodeName={NODE}"


def test_get_secret_decodes_data_and_never_shows_it(fake: FakeKube, client: KubeClient) -> None:
    """A Secret is fetched by name, its data base64-decoded, and its repr names keys only."""
    config = b'{"auths":{"r.example":{"auth":"dXNlcjpodW50ZXIy"}}}'
    fake.add_secret("team", "pull", {".dockerconfigjson": config})
    secret = client.get_secret(namespace="team", name="pull")
    assert secret.data[".dockerconfigjson"] == config
    assert secret.type == "kubernetes.io/dockerconfigjson"
    for text in (repr(secret), str(secret)):
        assert "dXNlcjpodW50ZXIy" not in text and ".dockerconfigjson" in text
    assert [r.kind for r in fake.requests] == ["get secrets"]


def test_missing_secret_is_not_found_raised_from_the_api_exception(client: KubeClient) -> None:
    """A 404 becomes KubeNotFound with the API's message, chained from ApiException."""
    with pytest.raises(KubeNotFound) as caught:
        client.get_secret(namespace="team", name="nope")
    assert caught.value.status == 404
    assert '"nope" not found' in str(caught.value)
    assert isinstance(caught.value.__cause__, ApiException)


def test_malformed_secret_data_names_the_key_not_the_value(
    fake: FakeKube, client: KubeClient
) -> None:
    """Invalid base64 in a Secret is KubeMalformed naming the key, without the value."""
    fake.add_object(
        "secrets",
        {"metadata": {"name": "bad", "namespace": "team"}, "data": {"token": "%%s3cr3t%%"}},
    )
    with pytest.raises(KubeMalformed) as caught:
        client.get_secret(namespace="team", name="bad")
    assert "token" in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_get_service_account_returns_pull_secret_names(fake: FakeKube, client: KubeClient) -> None:
    """A ServiceAccount by name yields its imagePullSecrets names in order."""
    fake.add_service_account("team", "builder", ["regcred", "mirror"])
    account = client.get_service_account(namespace="team", name="builder")
    assert account.image_pull_secrets == ("regcred", "mirror")
    with pytest.raises(KubeNotFound):
        client.get_service_account(namespace="team", name="absent")


def test_list_pod_events_selects_by_uid_oldest_first(fake: FakeKube, client: KubeClient) -> None:
    """Events are listed per namespace with involvedObject.uid and returned oldest first."""
    pod = fake.add_pod(make_pod("a", node=NODE))
    other = fake.add_pod(make_pod("b", node=NODE))
    uid = pod["metadata"]["uid"]
    later = make_event(pod, count=4)
    later["lastTimestamp"] = "2030-01-01T00:00:10Z"
    earlier = make_event(pod, reason="Pulling", type="Normal", message='Pulling image "x"')
    earlier["lastTimestamp"] = "2030-01-01T00:00:01Z"
    for event in (later, earlier, make_event(other)):
        fake.add_event(event)
    events = client.list_pod_events(namespace="default", pod_uid=uid)
    assert [(e.reason, e.count) for e in events] == [("Pulling", 1), ("Failed", 4)]
    assert events[1].field_path == "spec.containers{app}"
    assert events[1].message.startswith('Failed to pull image "registry.example.com/team/app:1.0"')
    assert {e.involved_uid for e in events} == {uid}
    assert fake.requests[-1].query["fieldSelector"] == f"involvedObject.uid={uid}"
    assert fake.requests[-1].path == "/api/v1/namespaces/default/events"


def test_create_event_posts_a_valid_core_v1_event(fake: FakeKube, client: KubeClient) -> None:
    """create_event posts an Event about the pod with source, count, timestamps, cut message."""
    pod = parse_pod(fake.add_pod(make_pod("a", namespace="team", node=NODE)))
    long_message = "é" * 2000  # two bytes each: the cut must not split a character
    client.create_event(pod, reason="PullDiagnosed", message=long_message)
    (posted,) = fake.objects("events", "team")
    assert posted["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "a",
        "namespace": "team",
        "uid": pod.uid,
        "resourceVersion": pod.resource_version,
    }
    assert posted["source"] == {"component": "pulldoctor", "host": NODE}
    assert (posted["type"], posted["reason"], posted["count"]) == ("Warning", "PullDiagnosed", 1)
    assert posted["firstTimestamp"] and posted["lastTimestamp"] == posted["firstTimestamp"]
    assert len(posted["message"].encode()) <= EVENT_MESSAGE_LIMIT
    assert posted["message"].endswith("...")
    assert posted["metadata"]["name"].startswith("a.")
    for key in ("metadata",):
        posted[key] = {k: v for k, v in posted[key].items() if k in ("name", "namespace")}
    kubernetes_validate.validate(posted, "1.30", strict=True)


def test_api_errors_map_to_own_types(fake: FakeKube, client: KubeClient) -> None:
    """403, 429 (with Retry-After) and 500 answers become KubeForbidden and KubeUnavailable."""
    fake.fail_next(1, status=403)
    with pytest.raises(KubeForbidden):
        client.get_service_account(namespace="a", name="b")
    fake.fail_next(1, status=429, retry_after=3)
    with pytest.raises(KubeUnavailable) as limited:
        client.get_service_account(namespace="a", name="b")
    assert (limited.value.status, limited.value.retry_after) == (429, 3.0)
    fake.fail_next(1, status=500)
    with pytest.raises(KubeUnavailable) as failed:
        client.get_service_account(namespace="a", name="b")
    assert failed.value.retry_after is None


def test_api_down_is_unavailable(fake: FakeKube, client: KubeClient) -> None:
    """A refused connection becomes KubeUnavailable chained from the urllib3 error."""
    fake.stop()
    with pytest.raises(KubeUnavailable) as caught:
        client.get_secret(namespace="a", name="b")
    assert isinstance(caught.value.__cause__, urllib3.exceptions.HTTPError)


def test_from_config_uses_kubeconfig_and_keeps_the_token_out_of_repr(
    fake: FakeKube, tmp_path: Path
) -> None:
    """from_config(path) authenticates with the kubeconfig's token, which repr never shows."""
    token = "t0k3n-" + "x" * 20
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": fake.url}}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        })
    )  # fmt: skip
    fake.add_service_account("team", "default")
    kube = KubeClient.from_config(str(kubeconfig), timeout=2.0)
    assert kube.get_service_account(namespace="team", name="default").name == "default"
    assert fake.requests[-1].authenticated
    assert token not in repr(kube)
    with pytest.raises(KubeError, match="cannot load"):
        KubeClient.from_config(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    "text",
    [
        "users: [{name: u, user: {token: s3cr3t-t0ken}\n  : : bad",  # YAML syntax error
        "users: s3cr3t-t0ken\ncontexts: 7\ncurrent-context: x\n",  # wrong shapes
    ],
)
def test_broken_kubeconfig_error_never_quotes_the_file(tmp_path: Path, text: str) -> None:
    """A kubeconfig that does not parse is a KubeError that does not echo its content."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text)
    with pytest.raises(KubeError) as caught:
        KubeClient.from_config(str(kubeconfig))
    assert "s3cr3t" not in str(caught.value)


def test_from_config_without_kubeconfig_outside_a_cluster_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a kubeconfig and outside a pod, from_config says in-cluster config is missing."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeError, match="in-cluster"):
        KubeClient.from_config(None)


# --------------------------------------------------------------------------- error table


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0, KubeUnavailable),
        (400, KubeError),
        (401, KubeForbidden),
        (403, KubeForbidden),
        (404, KubeNotFound),
        (409, KubeError),
        (410, KubeGone),
        (429, KubeUnavailable),
        (500, KubeUnavailable),
        (503, KubeUnavailable),
        (504, KubeUnavailable),
    ],
)
def test_api_exception_status_maps_to_the_most_specific_type(
    status: int, expected: type[KubeError]
) -> None:
    """Every HTTP status the API uses maps to exactly the documented own type."""
    mapped = _map_error(ApiException(status=status, reason="x"), "op")
    assert type(mapped) is expected
    assert mapped.status == status


def _all_subclasses(base: type[BaseException]) -> list[type[BaseException]]:
    out, todo = [], [base]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


@pytest.mark.parametrize("foreign", _all_subclasses(urllib3.exceptions.HTTPError), ids=str)
def test_every_urllib3_error_is_unavailable(foreign: type[BaseException]) -> None:
    """Any urllib3 error (connect, timeout, broken stream, TLS) maps to KubeUnavailable."""
    exc = foreign.__new__(foreign)  # some need pool/url arguments; only the type matters
    Exception.__init__(exc, "boom")
    assert type(_map_error(exc, "op")) is KubeUnavailable


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (http.client.IncompleteRead(b""), KubeUnavailable),
        (ConnectionResetError(), KubeUnavailable),
        (TimeoutError(), KubeUnavailable),
        (json.JSONDecodeError("x", "doc", 0), KubeMalformed),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), KubeMalformed),
    ],
)
def test_transport_and_decoding_errors_map(exc: BaseException, expected: type[KubeError]) -> None:
    """Stream, socket and decoding errors are translated, so none escapes the module."""
    assert type(_map_error(exc, "op")) is expected


def test_programming_errors_are_not_translated() -> None:
    """A TypeError or KeyError is a bug and is left alone."""
    assert _map_error(TypeError("x"), "op") is None
    assert _map_error(KeyError("x"), "op") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        (None, None),
        ("99999", 600.0),  # capped
    ],
)
def test_retry_after_parsing(header: str | None, expected: float | None) -> None:
    """Retry-After accepts delta-seconds and HTTP-dates, caps absurd waits, ignores junk."""
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert parse_retry_after(header, now=now) == expected


def test_full_jitter_grows_exponentially_and_is_capped() -> None:
    """Backoff draws from [0, min(cap, base*2**attempt)]: full jitter, exponential, capped."""
    rng = random.Random(1)
    for attempt, bound in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (100, 30.0)]:
        draws = [full_jitter(attempt, base=0.5, cap=30.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= bound for d in draws)
        assert max(draws) > bound * 0.8


# --------------------------------------------------------------------------- parsing


def test_parse_pod_joins_100_containers_init_and_ephemeral_with_status() -> None:
    """Every container of every kind is joined with its own status by name; images from spec."""
    images = {f"c{i}": f"r.example/img{i}:1" for i in range(100)}
    raw = make_pod(
        "big",
        images=images,
        init_images={"setup": "r.example/init:1"},
        waiting={"c42": PULL_BACKOFF},
        image_pull_secrets=["a", "", "b", "a"],
    )
    raw["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    raw["status"]["containerStatuses"].reverse()  # joined by name, not position
    raw["status"]["containerStatuses"][0]["restartCount"] = 3  # this is c99
    pod = parse_pod(raw)
    assert len(pod.containers) == 102
    assert [c.kind for c in pod.containers[:2]] == ["init", "container"]
    assert pod.containers[-1].kind == "ephemeral" and pod.containers[-1].image == "busybox"
    c42 = pod.container("c42")
    assert c42 is not None and c42.image == "r.example/img42:1"
    assert (c42.waiting_reason, c42.running, c42.image_id) == ("ImagePullBackOff", False, None)
    c99 = pod.container("c99")
    assert c99 is not None and c99.running and c99.restart_count == 3 and c99.image_id
    assert pod.image_pull_secrets == ("a", "b")
    assert pod.phase == "Pending"


def test_parse_pod_tolerates_missing_and_null_fields() -> None:
    """Only namespace, name and uid are required; absent or null fields take defaults."""
    pod = parse_pod(
        {"metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": None}, "spec": None}
    )
    assert pod == Pod("n", "p", "u", None, None, (), (), "", None)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.update(spec={"containers": {"name": "x"}}), "spec.containers"),
        (lambda p: p["spec"]["containers"].append("nginx"), "spec.containers[1]"),
        (lambda p: p["spec"]["containers"][0].pop("name"), "spec.containers[0].name"),
        (lambda p: p["spec"].update(nodeName=7), "spec.nodeName"),
        (lambda p: p["status"]["containerStatuses"][0].update(restartCount="2"), "restartCount"),
        (lambda p: p["status"]["containerStatuses"][0].update(restartCount=True), "restartCount"),
        (lambda p: p["status"].update(containerStatuses=[None]), "containerStatuses[0]"),
        (lambda p: p["metadata"].pop("uid"), "metadata.uid"),
        (lambda p: p.update(metadata="x"), "pod.metadata"),
        (lambda p: p["spec"].update(imagePullSecrets=[{"name": 1}]), "imagePullSecrets[0].name"),
    ],
)
def test_parse_pod_wrong_types_name_the_field(
    mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    """A field of the wrong type is KubeMalformed whose message names that field."""
    raw = make_pod("p")
    mutate(raw)
    with pytest.raises(KubeMalformed, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_pod(raw)


@pytest.mark.parametrize("raw", [None, [], "pod", 3])
def test_parse_pod_rejects_non_objects(raw: object) -> None:
    """A watch object that is not a JSON object is KubeMalformed, not a crash."""
    with pytest.raises(KubeMalformed):
        parse_pod(raw)


def test_parse_event_reads_series_and_event_time_forms() -> None:
    """Events written by the events.k8s.io recorder (series, eventTime) parse like legacy ones."""
    raw = make_event(make_pod("p"), count=1)
    raw.update(firstTimestamp=None, lastTimestamp=None, count=None)
    raw["eventTime"] = "2030-01-01T00:00:00.123456Z"
    raw["series"] = {"count": 9, "lastObservedTime": "2030-01-01T00:05:00.000001Z"}
    event = parse_event(raw)
    assert event.count == 9
    assert event.first_timestamp is not None and event.first_timestamp.microsecond == 123456
    assert event.last_timestamp is not None and event.last_timestamp.minute == 5
    raw["eventTime"] = "yesterday"
    with pytest.raises(KubeMalformed, match="eventTime"):
        parse_event(raw)


def test_secret_data_repr_hides_values() -> None:
    """SecretData's repr and str list the keys and never the decoded values."""
    secret = SecretData("n", "s", "Opaque", {"password": b"hunter2"})
    assert "hunter2" not in repr(secret) and "hunter2" not in f"{secret}"
    assert "password" in repr(secret)


def test_model_does_not_import_kubernetes() -> None:
    """agent.model is plain data: importing it loads no kubernetes module."""
    code = "import sys, agent.model; sys.exit('kubernetes' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


# --------------------------------------------------------------------------- PodWatcher


def test_watcher_syncs_this_nodes_pods_then_marks_relisted(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """The first list delivers each pod of this node as SYNC, then one RELISTED marker."""
    for name, node in [("a", NODE), ("b", NODE), ("x", "node-b")]:
        fake.add_pod(make_pod(name, node=node))
    watcher, recorder = start_watcher()
    assert wait_for(_synced(recorder))
    assert recorder.kinds()[:3] == [SYNC, SYNC, RELISTED]
    assert sorted(recorder.names(SYNC)) == ["a", "b"]
    assert wait_for(lambda: watcher.healthy and watcher.watches == 1)
    assert fake.requests[0].query["resourceVersion"] == "0"  # first list from the cache


def test_watch_delivers_adds_updates_deletes_of_this_node_only(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """ADDED, MODIFIED and DELETED arrive for this node's pods; other nodes' never do."""
    watcher, recorder = start_watcher()
    assert wait_for(lambda: fake.open_watches == 1)
    fake.add_pod(make_pod("other", node="node-b"))
    pod = fake.add_pod(make_pod("p", node=NODE))
    fake.update_pod(make_pod("p", node=NODE, waiting={"app": PULL_BACKOFF}))
    fake.delete_pod("default", "p")
    assert wait_for(lambda: recorder.kinds()[1:] == ["ADDED", "MODIFIED", "DELETED"])
    (_, added), (_, modified), (_, deleted) = recorder.calls[1:]
    assert added is not None and added.uid == pod["metadata"]["uid"]
    assert modified is not None and modified.containers[0].waiting_reason == "ImagePullBackOff"
    assert deleted is not None and deleted.deleted
    assert "other" not in recorder.names("ADDED")
    assert watcher.resource_version == str(fake.resource_version)
    watch = next(r for r in fake.requests if r.verb == "watch")
    assert watch.query["allowWatchBookmarks"] == "true"
    assert watch.query["fieldSelector"] == f"spec.nodeName={NODE}"


def test_bookmarks_advance_the_resource_version(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """Changes on other nodes are invisible, but bookmarks move our resourceVersion past them."""
    watcher, recorder = start_watcher()
    assert wait_for(lambda: fake.open_watches == 1)
    for i in range(5):
        fake.add_pod(make_pod(f"elsewhere-{i}", node="node-b"))
    target = str(fake.resource_version)
    assert wait_for(lambda: watcher.resource_version == target, timeout=3)
    assert recorder.kinds() == [RELISTED]
    assert watcher.lists == 1


def test_watch_timeout_rewatches_from_the_newest_version(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """When the server ends a watch at timeoutSeconds, the next starts at our newest RV."""
    fake.add_pod(make_pod("a", node=NODE))
    watcher, _ = start_watcher(watch_timeout=1.0)
    assert wait_for(_synced_watches(fake, 1))
    fake.add_pod(make_pod("b", node=NODE))
    seen = str(fake.resource_version)
    assert wait_for(_synced_watches(fake, 2), timeout=3)
    watches = [r for r in fake.requests if r.verb == "watch"]
    assert watches[0].query["timeoutSeconds"] in ("1", "2")  # jittered: [1x, 2x)
    assert int(watches[1].query["resourceVersion"]) >= int(seen)
    assert (watcher.lists, watcher.errors) == (1, 0)


def _synced_watches(fake: FakeKube, n: int) -> Callable[[], bool]:
    return lambda: fake.count("watch pods") >= n


def test_compaction_gone_relists_and_loses_nothing(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """A gap plus compaction yields 410, a consistent relist, and a view equal to the API's."""
    for name in ("keep", "change", "remove"):
        fake.add_pod(make_pod(name, node=NODE))
    watcher, recorder = start_watcher()
    assert wait_for(lambda: fake.open_watches == 1)
    fake.stop()  # the gap: the watcher cannot see these changes
    fake.update_pod(make_pod("change", node=NODE, waiting={"app": PULL_BACKOFF}))
    fake.delete_pod("default", "remove")
    fake.add_pod(make_pod("new", node=NODE))
    fake.compact()
    fake.start()
    assert wait_for(_synced(recorder, 2), timeout=4)
    assert watcher.gone >= 1 and watcher.lists == 2
    relists = [r for r in fake.requests if r.verb == "list"]
    assert "resourceVersion" not in relists[1].query  # consistent read after 410
    assert _view_summary(recorder) == _node_pods(fake)
    assert _view_summary(recorder)["change"] == "ImagePullBackOff"
    assert wait_for(lambda: watcher.healthy)


def test_dropped_watch_resumes_from_its_version_without_relisting(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """A watch cut mid-stream is resumed from the last RV; changes meanwhile still arrive."""
    fake.add_pod(make_pod("a", node=NODE))
    watcher, recorder = start_watcher()
    assert wait_for(lambda: fake.open_watches == 1)
    before = watcher.resource_version
    fake.drop_watches()
    fake.add_pod(make_pod("b", node=NODE))
    assert wait_for(lambda: "b" in recorder.names("ADDED"))
    assert watcher.lists == 1 and watcher.errors >= 1
    watches = [r for r in fake.requests if r.verb == "watch"]
    assert watches[1].query["resourceVersion"] == before
    assert _view_summary(recorder) == _node_pods(fake)


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_back_off_then_recover(
    fake: FakeKube, start_watcher: StartWatcher, status: int
) -> None:
    """Repeated 5xx answers to the watch are counted, backed off, and then the watch recovers."""
    fake.fail_next(3, status=status, kind="watch pods")
    watcher, recorder = start_watcher()
    assert wait_for(lambda: watcher.errors == 3)
    assert str(status) in (watcher.last_error or "")
    assert wait_for(lambda: fake.open_watches == 1 and watcher.healthy)
    fake.add_pod(make_pod("after", node=NODE))
    assert wait_for(lambda: "after" in recorder.names("ADDED"))
    assert watcher.lists == 1  # the list succeeded: only the watch was retried
    failed = [r.started for r in fake.requests if r.verb == "watch"]
    assert all(b - a <= 0.2 + 0.5 for a, b in zip(failed, failed[1:], strict=False))  # capped


def test_429_retry_after_is_honoured(fake: FakeKube, start_watcher: StartWatcher) -> None:
    """After a 429 with Retry-After: 1 the next request waits ≥1 s although backoff_max is 0.2."""
    fake.fail_next(1, status=429, retry_after=1, kind="list pods")
    watcher, recorder = start_watcher()
    assert wait_for(_synced(recorder), timeout=3)
    lists = [r for r in fake.requests if r.verb == "list"]
    assert lists[0].status == 429
    assert lists[1].started - lists[0].started >= 1.0
    assert watcher.errors == 1


def test_api_down_at_start_is_unhealthy_until_it_comes_back(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """With the API down, healthy is False and last_error says why; after start() it syncs."""
    fake.add_pod(make_pod("a", node=NODE))
    fake.stop()
    watcher, recorder = start_watcher()
    assert wait_for(lambda: watcher.errors >= 2)
    assert not watcher.healthy
    assert "list pods" in (watcher.last_error or "")
    fake.start()
    assert wait_for(lambda: watcher.healthy and "a" in recorder.names(SYNC), timeout=3)


def test_slow_api_still_syncs_and_watches(fake: FakeKube, start_watcher: StartWatcher) -> None:
    """Half a second of latency on every answer delays but does not break list+watch."""
    fake.add_pod(make_pod("a", node=NODE))
    fake.set_latency(0.5)
    watcher, recorder = start_watcher()
    assert wait_for(_synced(recorder), timeout=3)
    fake.add_pod(make_pod("b", node=NODE))
    assert wait_for(lambda: "b" in recorder.names("ADDED"), timeout=3)
    assert watcher.errors == 0


def test_stop_is_noticed_within_a_second_mid_watch(fake: FakeKube, client: KubeClient) -> None:
    """Setting stop ends run() promptly although the watch would stay open for 300 s."""
    stop = threading.Event()
    watcher = PodWatcher(client, NODE, Recorder(), stop=stop, watch_timeout=300)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    assert wait_for(lambda: fake.open_watches == 1)
    time.sleep(0.2)
    started = time.monotonic()
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0
    assert watcher.errors == 0
    assert wait_for(lambda: fake.open_watches == 0)


def test_silent_stream_is_abandoned_by_the_read_timeout(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """A watch that sends nothing and never ends is given up after timeout + grace, then redone."""
    fake.hang_watches = True
    watcher, _ = start_watcher(watch_timeout=1.0, read_grace=0.5)
    assert wait_for(lambda: watcher.errors >= 1, timeout=4)
    assert "timed out" in (watcher.last_error or "").lower()
    fake.hang_watches = False
    fake.drop_watches()
    assert wait_for(lambda: watcher.healthy and fake.open_watches == 1, timeout=3)


def test_hostile_watch_events_do_not_kill_the_watcher(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """Garbage lines and malformed pods are counted and skipped; later pods still arrive."""
    broken = {"metadata": {"name": "broken", "namespace": "d"}}
    fake.add_object("pods", broken | {"spec": {"nodeName": NODE, "containers": "nginx"}})
    watcher, recorder = start_watcher()
    assert wait_for(lambda: fake.open_watches == 1)
    bad_pod = make_pod("bad", node=NODE)
    bad_pod["spec"]["containers"] = {"not": "a list"}
    with capture_logs() as logs:
        for line in (b"not json", b"[1, 2]", b'{"type": "ADDED", "object": "pod"}',
                     b'{"type": "SURPRISE", "object": {}}', b'{"type": "BOOKMARK"}'):  # fmt: skip
            fake.inject_watch_line(line)
        fake.add_pod(bad_pod)
        fake.add_pod(make_pod("good", node=NODE))
        assert wait_for(lambda: "good" in recorder.names("ADDED"))
    assert "bad" not in recorder.names("ADDED")
    assert watcher.bad_objects == 7  # "broken" in the list, 5 garbage lines, "bad"
    assert recorder.names(SYNC) == []
    assert watcher.healthy and watcher.errors == 0
    assert watcher.resource_version == str(fake.resource_version)
    assert any(e["event"] == "kube_object_malformed" for e in logs)


def test_watch_error_event_without_status_backs_off_and_rewatches(
    fake: FakeKube, start_watcher: StartWatcher
) -> None:
    """An ERROR event whose object is garbage is an error, followed by a re-watch, not a crash."""
    watcher, recorder = start_watcher()
    assert wait_for(lambda: fake.open_watches == 1)
    fake.inject_watch_line(b'{"type": "ERROR", "object": ["?"]}')
    assert wait_for(lambda: watcher.errors == 1 and fake.count("watch pods") >= 2)
    fake.add_pod(make_pod("later", node=NODE))
    assert wait_for(lambda: "later" in recorder.names("ADDED"))


def test_callback_exceptions_are_logged_and_the_watch_goes_on(
    fake: FakeKube, client: KubeClient
) -> None:
    """A consumer that raises is counted and logged; the watcher keeps delivering."""
    seen: list[str] = []

    def on_pod(kind: str, pod: Pod | None) -> None:
        seen.append(kind)
        raise RuntimeError("consumer bug")

    stop = threading.Event()
    watcher = PodWatcher(client, NODE, on_pod, stop=stop, watch_timeout=5)
    thread = threading.Thread(target=watcher.run)
    with capture_logs() as logs:
        thread.start()
        assert wait_for(lambda: fake.open_watches == 1)
        fake.add_pod(make_pod("a", node=NODE))
        assert wait_for(lambda: seen == [RELISTED, "ADDED"])
    stop.set()
    thread.join(2)
    assert watcher.callback_errors == 2
    assert [e["event"] for e in logs].count("pod_callback_failed") == 2


def test_gone_on_every_watch_does_not_spin(fake: FakeKube, start_watcher: StartWatcher) -> None:
    """A server that answers every watch with 410 gets backed-off relists, not a hot loop."""
    fake.fail_next(100, status=410, kind="watch pods")
    watcher, _ = start_watcher(backoff_base=0.1, backoff_max=0.4)
    time.sleep(1.5)
    assert watcher.gone >= 2
    assert fake.count("list pods") <= 12
    assert isinstance(_map_error(ApiException(status=410), "x"), KubeGone)


def test_secret_data_decodes_base64_exactly(fake: FakeKube, client: KubeClient) -> None:
    """Binary secret values survive the base64 round trip byte for byte."""
    blob = bytes(range(256))
    fake.add_secret("n", "bin", {"blob": blob}, type="Opaque")
    secret = client.get_secret(namespace="n", name="bin")
    assert secret.data["blob"] == blob
    assert base64.b64encode(blob).decode() not in repr(secret)
