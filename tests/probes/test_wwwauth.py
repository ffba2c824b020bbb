"""WWW-Authenticate parsing follows RFC 7235 and never fails on hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.wwwauth import MAX_CHALLENGES, MAX_PARAMS, parse_www_authenticate

CASES = [
    ('Bearer realm="https://auth.example/token",service="registry.example",'
     'scope="repository:a/b:pull"',
     [("bearer", {"realm": "https://auth.example/token", "service": "registry.example",
                  "scope": "repository:a/b:pull"})]),
    ('Basic realm="basic-realm"', [("basic", {"realm": "basic-realm"})]),
    ('Bearer realm="r",scope="repository:x/y:pull,push",error="insufficient_scope"',
     [("bearer", {"realm": "r", "scope": "repository:x/y:pull,push",
                  "error": "insufficient_scope"})]),
    ('Basic realm="a, b", Bearer realm="x\\"y", service=svc',
     [("basic", {"realm": "a, b"}), ("bearer", {"realm": 'x"y', "service": "svc"})]),
    ("Negotiate abc123==, Basic realm=foo", [("negotiate", {}), ("basic", {"realm": "foo"})]),
    ("", []),
    ('BEARER REALM="R"', [("bearer", {"realm": "R"})]),
]


@pytest.mark.parametrize(("header", "expected"), CASES)
def test_parses_challenges(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    """Schemes are lower-cased; quoted strings keep commas and escaped quotes."""
    got = [(c.scheme, c.params) for c in parse_www_authenticate(header)]
    assert got == expected


def test_several_header_values() -> None:
    """Several WWW-Authenticate headers are read in order."""
    got = parse_www_authenticate(['Basic realm="a"', 'Bearer realm="b"'])
    assert [c.scheme for c in got] == ["basic", "bearer"]


def test_thousands_of_parameters_are_bounded() -> None:
    """A challenge with thousands of parameters keeps only the first MAX_PARAMS."""
    header = "Bearer " + ",".join(f'p{i}="v{i}"' for i in range(5000))
    (challenge,) = parse_www_authenticate(header)
    assert len(challenge.params) == MAX_PARAMS and challenge.params["p0"] == "v0"


def test_thousands_of_challenges_are_bounded() -> None:
    """A header listing thousands of schemes yields at most MAX_CHALLENGES."""
    assert len(parse_www_authenticate(", ".join(["Basic realm=x"] * 5000))) == MAX_CHALLENGES


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=500))
def test_parser_is_total(header: str) -> None:
    """Any header value parses to a list without raising."""
    assert isinstance(parse_www_authenticate(header), list)
