"""Image references normalise exactly as the distribution library does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.reference import ReferenceError, parse_reference

DIGEST = "sha256:" + "a" * 64

# (input, normalised string, registry, repository, tag, digest); cases from
# distribution/reference's normalize_test.go and reference_test.go.
VALID = [
    ("nginx", "docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.25", "docker.io/library/nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("docker.io/nginx", "docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest",
     None),
    ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1", "docker.io", "library/nginx",
     "1", None),
    ("bitnami/redis", "docker.io/bitnami/redis:latest", "docker.io", "bitnami/redis", "latest",
     None),
    ("localhost/foo", "localhost/foo:latest", "localhost", "foo", "latest", None),
    ("localhost:5000/foo/bar:v2", "localhost:5000/foo/bar:v2", "localhost:5000", "foo/bar", "v2",
     None),
    ("127.0.0.1:25443/test/hello:v1", "127.0.0.1:25443/test/hello:v1", "127.0.0.1:25443",
     "test/hello", "v1", None),
    ("[::1]:5000/a/b", "[::1]:5000/a/b:latest", "[::1]:5000", "a/b", "latest", None),
    (f"ghcr.io/org/app@{DIGEST}", f"ghcr.io/org/app@{DIGEST}", "ghcr.io", "org/app", None, DIGEST),
    (f"ghcr.io/org/app:v1@{DIGEST}", f"ghcr.io/org/app:v1@{DIGEST}", "ghcr.io", "org/app", "v1",
     DIGEST),
    ("registry.example.com/a__b/c-d.e:1.0_rc", "registry.example.com/a__b/c-d.e:1.0_rc",
     "registry.example.com", "a__b/c-d.e", "1.0_rc", None),
    ("foo.bar:latest", "docker.io/library/foo.bar:latest", "docker.io", "library/foo.bar",
     "latest", None),
]

INVALID = [
    "", "   ", "Foo/bar", "docker.io/Library/nginx", "nginx:", "nginx@sha256:abc",
    "a//b", "-a/b", "a/b:-tag", "host:99999/a", "registry.example.com/a b", "a/b@md5:zz",
    "a/" + "b" * 300, ":tag", "nginx:" + "t" * 129,
]


@pytest.mark.parametrize(("text", "full", "registry", "repository", "tag", "digest"), VALID)
def test_valid_references_normalise(text: str, full: str, registry: str, repository: str,
                                    tag: str | None, digest: str | None) -> None:
    """Valid references normalise to docker.io/library defaults, keep ports, tags, digests."""
    ref = parse_reference(text)
    assert (str(ref), ref.registry, ref.repository, ref.tag, ref.digest) == (
        full, registry, repository, tag, digest)


@pytest.mark.parametrize("text", INVALID)
def test_invalid_references_raise_reference_error(text: str) -> None:
    """Anything outside the grammar is a ReferenceError with a message, never another error."""
    with pytest.raises(ReferenceError) as info:
        parse_reference(text)
    assert str(info.value)


@pytest.mark.parametrize(("text", "registry", "host", "port"), [
    ("127.0.0.1:25443", "127.0.0.1:25443", "127.0.0.1", 25443),
    ("registry.example.com", "registry.example.com", "registry.example.com", None),
    ("localhost:5000", "localhost:5000", "localhost", 5000),
    ("[::1]:5000", "[::1]:5000", "::1", 5000),
])
def test_bare_registry_has_no_repository(text: str, registry: str, host: str,
                                         port: int | None) -> None:
    """A bare host[:port] is a registry to probe up to the token layer."""
    ref = parse_reference(text)
    assert ref.is_bare_registry and (ref.registry, ref.host, ref.port) == (registry, host, port)


def test_docker_hub_api_host() -> None:
    """Docker Hub images are fetched from registry-1.docker.io, labelled docker.io."""
    ref = parse_reference("nginx")
    assert (ref.registry, ref.api_domain, ref.name) == (
        "docker.io", "registry-1.docker.io", "docker.io/library/nginx")


def test_manifest_ref_prefers_digest() -> None:
    """A digest pins the manifest even when a tag is present."""
    assert parse_reference(f"r.io/a:v1@{DIGEST}").manifest_ref == DIGEST


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parser_is_total(text: str) -> None:
    """On any text the parser returns a reference or raises ReferenceError, nothing else."""
    try:
        ref = parse_reference(text)
    except ReferenceError:
        return
    assert str(parse_reference(str(ref))) == str(ref)
