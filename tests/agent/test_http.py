"""Tests for agent.http: the endpoints over a real loopback socket."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from agent.http import Server, serve
from agent.metrics import Metrics

SECRET_TEXT = "password=hunter2"


class State:
    """Mutable answers for the callbacks, changed by each test."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.healthy: Callable[[], bool] = lambda: True
        self.ready: Callable[[], tuple[bool, str]] = lambda: (True, "")
        self.diagnoses: Callable[[], list[dict[str, Any]]] = list


@pytest.fixture(scope="module")
def shared_state() -> State:
    return State()


@pytest.fixture()
def state(shared_state: State) -> State:
    shared_state.reset()
    return shared_state


def start(state: State, host: str = "127.0.0.1", timeout: float = 0.5) -> Server:
    registry = CollectorRegistry()
    Metrics(registry, version="9.9.9")
    return serve(host=host, port=0, registry=registry,
                 healthy=lambda: state.healthy(), ready=lambda: state.ready(),
                 diagnoses=lambda: state.diagnoses(), callback_timeout=timeout)


@pytest.fixture(scope="module")
def server(shared_state: State) -> Iterator[Server]:
    srv = start(shared_state)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as c:
        yield c


def test_metrics_serves_prometheus_text_by_default(client: httpx.Client) -> None:
    """/metrics answers the 0.0.4 text format with the registry's metrics."""
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'pulldoctor_build_info{version="9.9.9"} 1.0' in r.text


def test_metrics_serves_openmetrics_when_asked(client: httpx.Client) -> None:
    """An OpenMetrics Accept header gets the OpenMetrics format, ending in # EOF."""
    r = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")


@pytest.mark.parametrize(("healthy", "status", "body"), [
    (True, 200, "ok\n"), (False, 503, "unhealthy\n"),
])
def test_healthz_follows_the_callback(client: httpx.Client, state: State, healthy: bool,
                                      status: int, body: str) -> None:
    """/healthz is 200 "ok" when healthy() is true and 503 otherwise."""
    state.healthy = lambda: healthy
    r = client.get("/healthz")
    assert (r.status_code, r.text) == (status, body)


@pytest.mark.parametrize(("ready", "status", "body"), [
    ((True, ""), 200, "ok\n"),
    ((True, "3 targets"), 200, "3 targets\n"),
    ((False, "waiting for first pod list"), 503, "waiting for first pod list\n"),
    ((False, ""), 503, "not ready\n"),
])
def test_readyz_answers_with_the_reason(client: httpx.Client, state: State,
                                        ready: tuple[bool, str], status: int, body: str) -> None:
    """/readyz is 200 or 503 with the callback's reason as the body."""
    state.ready = lambda: ready
    r = client.get("/readyz")
    assert (r.status_code, r.text) == (status, body)


def test_diagnoses_is_the_callbacks_json_list(client: httpx.Client, state: State) -> None:
    """/diagnoses returns the callback's list as JSON."""
    items = [{"registry": "registry.example.com", "code": "auth_missing", "nodes": 2}]
    state.diagnoses = lambda: items
    r = client.get("/diagnoses")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == items


@pytest.mark.parametrize("path", ["/", "/metricsx", "/healthz/", "/debug/pprof"])
def test_unknown_paths_are_404(client: httpx.Client, path: str) -> None:
    """Anything but the four endpoints is 404."""
    assert client.get(path).status_code == 404


def test_query_string_is_ignored(client: httpx.Client) -> None:
    """A known path with a query string is still served."""
    assert client.get("/healthz?verbose=1").status_code == 200


def test_raising_callback_is_a_short_500_and_the_server_survives(
        client: httpx.Client, state: State) -> None:
    """An exception becomes a 500 without its text; the next request is served normally."""
    def broken() -> bool:
        raise RuntimeError(SECRET_TEXT)

    state.healthy = broken
    with capture_logs() as logs:
        r = client.get("/healthz")
    assert (r.status_code, r.text) == (500, "healthz check failed\n")
    assert SECRET_TEXT not in repr(logs)
    assert {"event": "http_callback_failed", "callback": "healthz", "error": "RuntimeError",
            "log_level": "warning"} in logs
    state.healthy = lambda: True
    assert client.get("/healthz").status_code == 200


def test_unserialisable_diagnoses_is_a_500(client: httpx.Client, state: State) -> None:
    """A diagnoses list that JSON cannot encode is a 500, not a dropped connection."""
    state.diagnoses = lambda: [{"when": object()}]
    r = client.get("/diagnoses")
    assert (r.status_code, r.text) == (500, "internal error\n")


def test_slow_callback_times_out_while_other_requests_are_served(
        client: httpx.Client, state: State) -> None:
    """A hung readiness check answers 500 after the deadline; /metrics is served meanwhile."""
    release = threading.Event()
    state.ready = lambda: (release.wait(10), "late")
    results: dict[str, Any] = {}

    def slow() -> None:
        started = time.monotonic()
        results["r"] = client.get("/readyz")
        results["seconds"] = time.monotonic() - started

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.05)
    assert client.get("/metrics").status_code == 200
    t.join(5)
    release.set()
    assert (results["r"].status_code, results["r"].text) == (500, "readyz check timed out\n")
    assert 0.4 < results["seconds"] < 2.0


def test_hung_callbacks_cannot_pile_up_threads(state: State) -> None:
    """Once every callback slot is held by a hung check, further checks fail at once."""
    release = threading.Event()
    state.healthy = lambda: release.wait(10)
    srv = start(state, timeout=0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=5) as c:
            answers = [c.get("/healthz").text for _ in range(10)]
    finally:
        release.set()
        srv.close()
    assert answers[:8] == ["healthz check timed out\n"] * 8
    assert answers[8:] == ["healthz check busy\n"] * 2


def test_listens_on_ipv6_loopback(state: State) -> None:
    """An IPv6 host is served over AF_INET6."""
    srv = start(state, host="::1")
    try:
        r = httpx.get(f"http://[::1]:{srv.port}/healthz", timeout=5)
    finally:
        srv.close()
    assert (r.status_code, r.text) == (200, "ok\n")


def test_close_frees_the_port(state: State) -> None:
    """After close() nothing listens on the port any more."""
    srv = start(state)
    port = srv.port
    srv.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_diagnoses_body_is_valid_json_for_nested_values(client: httpx.Client,
                                                        state: State) -> None:
    """Nested evidence (lists, numbers, None) round-trips through /diagnoses."""
    items = [{"layers": [{"name": "tls", "seconds": 0.01, "code": None}], "ok": False}]
    state.diagnoses = lambda: items
    assert json.loads(client.get("/diagnoses").content) == items
