"""A probe cache shares endpoint layers within a cycle and reuses tokens until expiry."""

from __future__ import annotations

from probes import Code, parse_reference
from probes.cache import ProbeCache, fingerprint
from probes.credentials import Credential
from probes.engine import run_probe
from probes.targets import upstream_target
from tests.fleet import ALICE, Fleet
from tests.probes.conftest import options_for


def test_second_probe_of_an_endpoint_shares_its_layers(fleet: Fleet) -> None:
    """Endpoint layers run once per cycle; a new repository still gets its own token."""
    host = fleet.registries["token"].host
    options = options_for(fleet, creds={host: ALICE})
    cache = ProbeCache()
    first_ref, second_ref = parse_reference(f"{host}/test/hello:v1"), \
        parse_reference(f"{host}/test/multi:v1")
    before = len(fleet.token_server.requests)
    first = run_probe(first_ref, upstream_target(first_ref, options), options, cache=cache)
    second = run_probe(second_ref, upstream_target(second_ref, options), options, cache=cache)
    assert first.ok and second.ok
    assert not any(layer.evidence.get("shared") for layer in first.layers)
    assert all(layer.evidence.get("shared") for layer in second.layers[:5])
    assert not second.layer("token").evidence.get("shared")  # type: ignore[union-attr]
    assert len(fleet.token_server.requests) - before == 2


def test_token_reused_until_expiry(fleet: Fleet) -> None:
    """The same image probed again in a later cycle reuses its token: no token request."""
    host = fleet.registries["token"].host
    options = options_for(fleet, creds={host: ALICE})
    ref = parse_reference(f"{host}/test/hello:v1")
    cache = ProbeCache()
    run_probe(ref, upstream_target(ref, options), options, cache=cache)
    cache.new_cycle()
    before = len(fleet.token_server.requests)
    again = run_probe(ref, upstream_target(ref, options), options, cache=cache)
    assert again.ok and again.layer("token").evidence["shared"] is True  # type: ignore[union-attr]
    assert len(fleet.token_server.requests) == before


def test_shared_failure_is_reported_for_every_image(fleet: Fleet) -> None:
    """A failing endpoint fails every image probed through it, without probing it again."""
    host = fleet.registries["expired"].host
    options = options_for(fleet)
    cache = ProbeCache()
    codes = []
    for repo in ("test/hello:v1", "test/multi:v1"):
        ref = parse_reference(f"{host}/{repo}")
        codes.append(run_probe(ref, upstream_target(ref, options), options, cache=cache).code)
    assert codes == [Code.TLS_EXPIRED, Code.TLS_EXPIRED] and cache.hits["prefix"] == 1


def test_fingerprint_hides_and_separates_credentials() -> None:
    """Fingerprints differ per secret and never contain it."""
    a = Credential(key="r", source="s", username="u", password="p1")
    b = Credential(key="r", source="s", username="u", password="p2")
    assert fingerprint(a) != fingerprint(b) and "p1" not in fingerprint(a)
    assert fingerprint(None) == "anonymous"
