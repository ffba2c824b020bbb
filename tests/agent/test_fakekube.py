"""Self-test of tests/fakekube.py over raw HTTP (httpx), independent of the kubernetes client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakekube import FakeKube, make_event, make_pod


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2) as running:
        yield running


def _watch_lines(fake: FakeKube, query: str, *, limit: int = 100) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    with httpx.stream("GET", f"{fake.url}/api/v1/pods?watch=true&{query}", timeout=5) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            lines.append(json.loads(line))
            if len(lines) >= limit:
                break
    return lines


def test_list_honours_node_field_selector_and_omits_item_kind(fake: FakeKube) -> None:
    """A pod list filtered by spec.nodeName returns only that node's pods, shaped like the API's."""
    fake.add_pod(make_pod("a", node="n1"))
    fake.add_pod(make_pod("b", node="n2"))
    body = httpx.get(f"{fake.url}/api/v1/pods", params={"fieldSelector": "spec.nodeName=n1"}).json()
    assert body["kind"] == "PodList"
    assert body["metadata"]["resourceVersion"] == str(fake.resource_version)
    assert [p["metadata"]["name"] for p in body["items"]] == ["a"]
    assert "kind" not in body["items"][0]


def test_unsupported_selectors_are_refused_not_ignored(fake: FakeKube) -> None:
    """An unknown field label or any label selector is a 400, unlike kmock's silent ignoring."""
    bad_field = httpx.get(f"{fake.url}/api/v1/pods", params={"fieldSelector": "spec.foo=x"})
    labels = httpx.get(f"{fake.url}/api/v1/pods", params={"labelSelector": "app=x"})
    assert (bad_field.status_code, labels.status_code) == (400, 400)
    assert bad_field.json()["kind"] == "Status"


def test_watch_filters_by_selector_and_ends_at_timeout_with_a_bookmark(fake: FakeKube) -> None:
    """A watch sees only matching changes, gets bookmarks, and ends after timeoutSeconds."""
    rv = fake.add_pod(make_pod("seed", node="n1"))["metadata"]["resourceVersion"]
    fake.add_pod(make_pod("other", node="n2"))
    fake.add_pod(make_pod("mine", node="n1"))
    started = time.monotonic()
    query = f"fieldSelector=spec.nodeName%3Dn1&resourceVersion={rv}&timeoutSeconds=1"
    lines = _watch_lines(fake, query + "&allowWatchBookmarks=true")
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.0
    assert [line["type"] for line in lines if line["type"] != "BOOKMARK"] == ["ADDED"]
    assert lines[-1]["type"] == "BOOKMARK"
    assert lines[-1]["object"]["metadata"]["resourceVersion"] == str(fake.resource_version)  # type: ignore[index]


def test_watch_from_compacted_version_is_an_error_event_and_exact_list_is_410(
    fake: FakeKube,
) -> None:
    """Compaction makes an old watch answer an ERROR 410 event and an Exact list HTTP 410."""
    old = fake.add_pod(make_pod("a", node="n1"))["metadata"]["resourceVersion"]
    fake.add_pod(make_pod("b", node="n1"))
    fake.compact()
    lines = _watch_lines(fake, f"resourceVersion={old}")
    assert lines[0]["type"] == "ERROR"
    assert lines[0]["object"]["code"] == 410  # type: ignore[index]
    listed = httpx.get(
        f"{fake.url}/api/v1/pods",
        params={"resourceVersion": old, "resourceVersionMatch": "Exact"},
    )
    assert listed.status_code == 410


def test_events_select_by_involved_uid_and_secrets_cannot_be_listed(fake: FakeKube) -> None:
    """Events are filtered by involvedObject.uid; a Secret list is forbidden, a get works."""
    pod_a, pod_b = fake.add_pod(make_pod("a")), fake.add_pod(make_pod("b"))
    fake.add_event(make_event(pod_a))
    fake.add_event(make_event(pod_b, reason="BackOff", type="Normal"))
    uid = pod_b["metadata"]["uid"]
    events = httpx.get(
        f"{fake.url}/api/v1/namespaces/default/events",
        params={"fieldSelector": f"involvedObject.uid={uid}"},
    ).json()["items"]
    assert [e["reason"] for e in events] == ["BackOff"]
    fake.add_secret("default", "pull", {".dockerconfigjson": b"{}"})
    assert httpx.get(f"{fake.url}/api/v1/namespaces/default/secrets").status_code == 403
    got = httpx.get(f"{fake.url}/api/v1/namespaces/default/secrets/pull").json()
    assert got["data"] == {".dockerconfigjson": "e30="}


def test_fail_next_sends_status_and_retry_after_then_recovers(fake: FakeKube) -> None:
    """fail_next answers the next request with the status and Retry-After, then serves again."""
    fake.fail_next(1, status=429, retry_after=7)
    first = httpx.get(f"{fake.url}/api/v1/pods")
    second = httpx.get(f"{fake.url}/api/v1/pods")
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert second.status_code == 200
    assert fake.count("list pods", status=429) == 1


def test_drop_watches_cuts_the_stream_and_stop_start_keeps_the_port(fake: FakeKube) -> None:
    """drop_watches breaks a live stream; stop() refuses connections; start() reuses the port."""
    url = fake.url
    with httpx.stream("GET", f"{url}/api/v1/pods?watch=true", timeout=5) as r:
        time.sleep(0.1)
        assert fake.open_watches == 1
        fake.drop_watches()
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in r.iter_lines():
                pass
    fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/v1/pods")
    fake.start()
    assert fake.url == url
    assert httpx.get(f"{url}/api/v1/pods").status_code == 200
