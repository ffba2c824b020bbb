"""Tests for probes.credentials: docker config parsing and the kubelet's keyring matching.

Most tables are the kubelet's own cases (kubernetes pkg/credentialprovider
keyring_test.go and config_test.go) ported as data.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.credentials import (
    Credential,
    DockerConfigError,
    Keyring,
    go_path_match,
    go_split_host_port,
    go_url_parse,
    is_default_registry_match,
    normalize_key,
    parse_docker_config,
    urls_match,
)
from probes.reference import parse_reference

DATA = Path(__file__).resolve().parent.parent / "data" / "nodeconfig"
FOO_BAR = base64.b64encode(b"foo:bar").decode()


def _config(key: str, auth: str = FOO_BAR, **extra: str) -> str:
    return json.dumps({key: {"auth": auth, "email": "foo@bar.baz", **extra}})


def _ring(*keys: str) -> Keyring:
    return Keyring([Credential(key=k, source="test", username=k, password="pw") for k in keys])


# --------------------------------------------------------------------------- URLsMatch

URLS_MATCH = [  # keyring_test.go TestUrlsMatch
    ("*.kubernetes.io", "prefix.kubernetes.io", True),
    ("prefix.*.io", "prefix.kubernetes.io", True),
    ("prefix.kubernetes.*", "prefix.kubernetes.io", True),
    ("*-good.kubernetes.io", "prefix-good.kubernetes.io", True),
    ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", True),
    ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", True),
    ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", True),
    ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", True),
    ("*.kubernetes.io", "kubernetes.io", False),
    ("*.*.kubernetes.io", "prefix.kubernetes.io", False),
    ("*.*.kubernetes.io", "kubernetes.io", False),
    ("kubernetes.io", "kubernetes.com", False),
    ("k*.io", "quay.io", False),
    ("*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", False),
    ("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", False),
]


@pytest.mark.parametrize(("glob", "target", "expected"), URLS_MATCH)
def test_urls_match_kubelet_cases(glob: str, target: str, expected: bool) -> None:
    """urls_match agrees with the kubelet's TestUrlsMatch table."""
    assert urls_match(glob, target) is expected


GLOB_HITS = [  # keyring_test.go TestDockerKeyringForGlob: key, target (+ "/foo/bar")
    ("https://hello.kubernetes.io", "hello.kubernetes.io"),
    ("https://*.docker.io", "prefix.docker.io"),
    ("https://prefix.*.io", "prefix.docker.io"),
    ("https://prefix.docker.*", "prefix.docker.io"),
    ("https://*.docker.io/path", "prefix.docker.io/path"),
    ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
    ("https://prefix.docker.*/path", "prefix.docker.io/path"),
    ("https://*.docker.io:8888", "prefix.docker.io:8888"),
    ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
    ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
    ("https://*.docker.io/path:1111", "prefix.docker.io/path:1111"),
    ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
    ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
    ("https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111"),
    ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
    ("*.docker.io:1111", "prefix.docker.io:1111/path"),
]


@pytest.mark.parametrize(("key", "target"), GLOB_HITS)
def test_keyring_glob_hits(key: str, target: str) -> None:
    """A config entry under a glob key is found for the kubelet's matching image names."""
    ring = parse_docker_config(_config(key), "test", format="dockercfg")
    found = ring.lookup(target + "/foo/bar")
    assert [(c.username, c.password) for c in found] == [("foo", "bar")]


KEYRING_MISSES = [  # keyring_test.go TestKeyringMiss
    ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
    ("https://*.docker.com", "prefix.docker.io"),
    ("https://suffix.*.io", "prefix.docker.io"),
    ("https://prefix.docker.c*", "prefix.docker.io"),
    ("https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111"),
    ("suffix.*.io", "prefix.docker.io"),
]


@pytest.mark.parametrize(("key", "lookup"), KEYRING_MISSES)
def test_keyring_misses(key: str, lookup: str) -> None:
    """No credential is returned when the kubelet's rules say the key does not match."""
    ring = parse_docker_config(_config(key), "test", format="dockercfg")
    assert ring.lookup(lookup + "/foo/bar") == []


DEFAULT_REGISTRY = [  # keyring_test.go TestIsDefaultRegistryMatch
    ("foo/bar", True), ("docker.io/foo/bar", True), ("index.docker.io/foo/bar", True),
    ("foo", True), ("", False), ("registry.tld/foo/bar", False),
    ("registry:5000/foo/bar", False), ("myhostdocker.io/foo/bar", False),
]


@pytest.mark.parametrize(("image", "expected"), DEFAULT_REGISTRY)
def test_is_default_registry_match(image: str, expected: bool) -> None:
    """Docker Hub detection follows the kubelet's isDefaultRegistryMatch."""
    assert is_default_registry_match(image) is expected


@pytest.mark.parametrize("image", [
    "google/docker-registry",  # TestKeyringHitWithUnqualifiedDockerHub
    "jenkins",  # TestKeyringHitWithUnqualifiedLibraryDockerHub
    "index.docker.io/v1//google/docker-registry",  # TestKeyringHitWithQualifiedDockerHub
    "docker.io/library/nginx",  # what Reference.name gives the kubelet today
])
def test_docker_hub_key_hits_hub_images(image: str) -> None:
    """Credentials under https://index.docker.io/v1/ apply to Docker Hub images."""
    ring = parse_docker_config(_config("https://index.docker.io/v1/"), "test", format="dockercfg")
    found = ring.lookup(image)
    assert len(found) == 1 and found[0].username == "foo"


def test_docker_hub_key_misses_other_registry() -> None:
    """Docker Hub credentials are not sent to another registry (TestKeyringMissWithDockerHubCredentials)."""
    ring = parse_docker_config(_config("https://index.docker.io/v1/"), "test", format="dockercfg")
    assert ring.lookup("world.mesos.org/foo/bar") == []


LOOKUP_ORDER = [  # keyring_test.go TestDockerKeyringLookup: grace=bar.example.com/pong, ada=host
    ("bar.example.com", ["ada"]),
    ("bar.example.com/pong", ["grace", "ada"]),
    ("bar.example.com/ping", ["ada"]),
    ("bar.example.com/pongz", ["grace", "ada"]),
    ("bar.example.com/pong/pang", ["grace", "ada"]),
    ("example.com", []),
    ("foo.example.com", []),
]


@pytest.mark.parametrize(("image", "expected"), LOOKUP_ORDER)
def test_lookup_most_specific_first(image: str, expected: list[str]) -> None:
    """All matching entries come back, the longest key first."""
    ring = Keyring([
        Credential(key="bar.example.com/pong", source="t", username="grace", password="squash"),
        Credential(key="bar.example.com", source="t", username="ada", password="smash"),
    ])
    assert [c.username for c in ring.lookup(image)] == expected


@pytest.mark.parametrize("image", ["quay.io", "quay.io/foo", "quay.io/foo/bar"])
def test_issue_3797_v1_path_is_host_only(image: str) -> None:
    """A key with scheme and /v1/ path matches every image on that host (TestIssue3797)."""
    ring = parse_docker_config((DATA / "legacy.dockercfg").read_bytes(), "legacy")
    assert [(c.username, c.password) for c in ring.lookup(image)] == [("rex", "tiny arms")]


# --------------------------------------------------------------------------- distribution names

DISTRIBUTION = [  # image as written -> key that must match it (kubelet sees Reference.name)
    ("nginx", "https://index.docker.io/v1/", True),
    ("library/nginx:1.25", "index.docker.io", True),
    ("docker.io/bitnami/redis", "docker.io", True),
    ("index.docker.io/bitnami/redis", "https://index.docker.io/v1/", True),
    ("nginx", "registry-1.docker.io", False),  # the kubelet ignores this key
    ("localhost:5000/app", "localhost:5000", True),
    ("localhost:5000/app", "localhost", False),
    ("127.0.0.1:5000/team/app@sha256:" + "a" * 64, "127.0.0.1:5000/team", True),
    ("[::1]:5000/app", "[::1]:5000", True),
    ("ghcr.io/acme/tool:v1", "ghcr.io/acme", True),
    ("ghcr.io/acmecorp/tool", "ghcr.io/acme", True),  # string prefix, as the kubelet does
    ("ghcr.io/other/tool", "ghcr.io/acme", False),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/app", "*.dkr.ecr.*.amazonaws.com", True),
    ("myregistry.azurecr.io/app", "*.azurecr.io", True),
    ("a.b.azurecr.io/app", "*.azurecr.io", False),
    ("quay.io/app", "http://quay.io", True),
    ("quay.io/app", "https://quay.io/v2/", True),
    ("registry.example.com:443/app", "registry.example.com", False),
]


@pytest.mark.parametrize(("image", "key", "expected"), DISTRIBUTION)
def test_distribution_names_against_keys(image: str, key: str, expected: bool) -> None:
    """Normalised image names match keys exactly as the kubelet would match them."""
    name = parse_reference(image).name
    assert bool(_ring(key).lookup(name)) is expected


# --------------------------------------------------------------------------- keyring behaviour


def test_union_keeps_order_and_falls_back_per_index() -> None:
    """A union returns each keyring's matches in order; Docker Hub fallback applies per index."""
    pod = _ring("docker.io/library")
    node = _ring("https://index.docker.io/v1/")
    ring = Keyring.union(pod, node)
    assert [c.key for c in ring.lookup("docker.io/library/nginx")] == [
        "docker.io/library", "https://index.docker.io/v1/"]
    assert len(ring) == 2


def test_merge_sorts_all_secrets_into_one_index() -> None:
    """Merged pod secrets are one index: specificity beats secret order; fallback only on no match."""
    first = _ring("https://index.docker.io/v1/")
    second = _ring("docker.io/library")
    ring = Keyring.merge(first, second)
    assert [c.key for c in ring.lookup("docker.io/library/nginx")] == ["docker.io/library"]


def test_duplicate_normalised_keys_keep_document_order() -> None:
    """Two spellings of one key both match, in the order they were written."""
    ring = _ring("https://quay.io/v1/", "quay.io")
    assert [c.key for c in ring.lookup("quay.io/app")] == ["https://quay.io/v1/", "quay.io"]


def test_unparseable_key_is_ignored_with_warning() -> None:
    """A key Go's url.Parse rejects is skipped, as the kubelet skips it, and reported."""
    ring = _ring("registry.example.com:abc", "good.example.com")
    assert [c.key for c in ring.entries] == ["good.example.com"]
    assert any("registry.example.com:abc" in w and "ignores" in w for w in ring.warnings)


def test_near_misses_explain_ignored_keys() -> None:
    """registry-1.docker.io and wrong-port keys are near misses, not matches."""
    ring = _ring("registry-1.docker.io", "registry.example.com:5000", "unrelated.io")
    assert ring.lookup("docker.io/library/nginx") == []
    assert [c.key for c in ring.near_misses("docker.io/library/nginx")] == ["registry-1.docker.io"]
    assert [c.key for c in ring.near_misses("registry.example.com/app")] == [
        "registry.example.com:5000"]


@pytest.mark.parametrize(("key", "expected"), [
    ("https://index.docker.io/v1/", "index.docker.io"),
    ("index.docker.io", "index.docker.io"),
    ("https://quay.io/v2/team/", "quay.io/team/"),
    ("http://registry:5000/", "registry:5000"),
    ("registry.example.com/v1", "registry.example.com/v1"),  # only "/v1/" with slash is stripped
    ("HTTPS://quay.io", "HTTPS://quay.io"),  # case-sensitive prefix check: host "HTTPS:"
    ("user:pw@quay.io/x", "quay.io/x"),
])
def test_normalize_key(key: str, expected: str) -> None:
    """Keys normalise like the kubelet's BasicDockerKeyring.Add."""
    assert normalize_key(key) == expected


# --------------------------------------------------------------------------- Go helpers


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*/b", "abc/b", True), ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*/b", "a/c/b", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True), ("a\\*b", "ab", False), ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False), ("*x", "xxx", True),
    ("[", "a", False), ("[^", "a", False), ("[]a]", "]", False), ("[-]", "-", False),
    ("[x-]", "x", False), ("a[", "a", False), ("\\", "a", False), ("[a-b-c]", "a", False),
])
def test_go_path_match_cases(pattern: str, name: str, expected: bool) -> None:
    """Glob matching follows Go's path/filepath.Match (its own test table); bad patterns never match."""
    assert go_path_match(pattern, name) is expected


@pytest.mark.parametrize(("hostport", "expected"), [
    ("localhost:80", ("localhost", "80")), ("[::1]:443", ("::1", "443")),
    ("host:", ("host", "")), ("[::1]", None), ("a:b:c", None), ("host", None),
    ("[a]b:80", None), ("a]b:80", None),
])
def test_go_split_host_port(hostport: str, expected: tuple[str, str] | None) -> None:
    """SplitHostPort accepts and rejects what Go's net.SplitHostPort does."""
    if expected is None:
        with pytest.raises(ValueError):
            go_split_host_port(hostport)
    else:
        assert go_split_host_port(hostport) == expected


@pytest.mark.parametrize(("raw", "host", "path"), [
    ("https://quay.io/v1/", "quay.io", "/v1/"),
    ("https://a%C3%A9b.io/x%2Fy", "aéb.io", "/x/y"),
    ("https://[::1]:5000/p?q#f", "[::1]:5000", "/p"),
    ("https://user:p%40ss@host/p", "host", "/p"),
])
def test_go_url_parse_parts(raw: str, host: str, path: str) -> None:
    """go_url_parse splits host and unescaped path like net/url."""
    parsed = go_url_parse(raw)
    assert (parsed.host, parsed.path) == (host, path)


@pytest.mark.parametrize("raw", [
    "https://host:abc/", "https://ho st/", "https://host/%zz", "https://[::1/", ":nope",
    "https://host\n/", "1.2.3.4:5/x", "https://a%41.io/",
])
def test_go_url_parse_rejects(raw: str) -> None:
    """Inputs net/url rejects raise ValueError."""
    with pytest.raises(ValueError):
        go_url_parse(raw)


# --------------------------------------------------------------------------- parsing

ENTRY_DECODE = [  # config_test.go TestDockerConfigEntryJSONDecode / TestDecodeDockerConfigFieldAuth
    ({"username": "foo", "password": "bar", "email": "foo@example.com"}, ("foo", "bar")),
    ({"auth": "Zm9vOmJhcg==", "email": "foo@example.com"}, ("foo", "bar")),
    ({"username": "foo", "password": "bar", "auth": "cGluZzpwb25n"}, ("ping", "pong")),
    ({"auth": "Zm9vOmJhcgo="}, ("foo", "bar\n")),
    ({"auth": "Zm9vOmJhcg"}, ("foo", "bar")),  # unpadded: RawStdEncoding
    ({"auth": "Zm9vOmJh\r\ncg=="}, ("foo", "bar")),  # Go ignores CR and LF
    ({"auth": base64.b64encode(b"u:p:a:s:s").decode()}, ("u", "p:a:s:s")),
    ({"auth": base64.b64encode(b":").decode()}, ("", "")),
    ({"Username": "foo", "PASSWORD": "bar"}, ("foo", "bar")),  # encoding/json ignores case
    ({"auth": "", "username": "keep", "password": "me"}, ("keep", "me")),
    ({}, ("", "")),
]


@pytest.mark.parametrize(("entry", "expected"), ENTRY_DECODE)
def test_entry_decoding(entry: dict[str, str], expected: tuple[str, str]) -> None:
    """Entries decode to the username and password the kubelet would send."""
    ring = parse_docker_config(json.dumps({"auths": {"r.io": entry}}), "test")
    cred = ring.entries[0]
    assert (cred.username, cred.password) == expected


@pytest.mark.parametrize(("entry", "field"), [
    ({"auth": "pants"}, "auth"),
    ({"auth": "cGFudHM="}, "auth"),
    ({"auth": "Zm9vOmJhcg="}, "auth"),  # wrong padding
    ({"auth": "Zm9v OmJhcg=="}, "auth"),
    ({"email": False}, "email"),
    ({"username": ["x"]}, "username"),
    ({"password": 1}, "password"),
])
def test_entry_errors_name_field_not_value(entry: dict[str, object], field: str) -> None:
    """Malformed entries raise DockerConfigError naming source, key and field, never the value."""
    with pytest.raises(DockerConfigError) as info:
        parse_docker_config(json.dumps({"auths": {"r.io": entry}}), "secret ns/regcred")
    message = str(info.value)
    assert "secret ns/regcred" in message and "'r.io'" in message and field in message
    for value in entry.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in message


@pytest.mark.parametrize(("name", "problem"), [
    ("bad-auth-type.json", "'auth' must be a string"),
    ("bad-base64.json", "not valid base64"),
    ("auth-without-colon.json", "username:password"),
    ("not-an-object.json", "must be a JSON object"),
    ("truncated.json", "not valid JSON"),
    ("auths-wrong-type.json", "'auths' must be an object"),
])
def test_malformed_fixture_files(name: str, problem: str) -> None:
    """Each malformed fixture fails with a message naming the file and the problem."""
    source = str(DATA / name)
    with pytest.raises(DockerConfigError) as info:
        parse_docker_config((DATA / name).read_bytes(), source)
    assert source in str(info.value) and problem in str(info.value)


def test_config_json_fixture() -> None:
    """A realistic config.json parses: colons in passwords, identity tokens, helper warning."""
    ring = parse_docker_config((DATA / "config.json").read_bytes(), "/var/lib/kubelet/config.json")
    by_key = {c.key: c for c in ring.entries}
    hub = by_key["https://index.docker.io/v1/"]
    assert (hub.username, hub.password) == ("hubuser", "hub:pass:with:colons")
    assert by_key["*.azurecr.io"].identity_token == "eyJ0b2tlbi1pZGVudGl0eSJ9"
    assert [c.username for c in ring.lookup("docker.io/library/busybox")] == ["hubuser"]
    assert [c.key for c in ring.lookup("ghcr.io/acme/app")] == ["ghcr.io/acme"]
    assert [c.key for c in ring.lookup("registry.example.com:5000/x")] == [
        "registry.example.com:5000"]
    assert any("credsstore" in w and "does not run credential helpers" in w for w in ring.warnings)


def test_dockerconfigjson_without_auths_warns() -> None:
    """A config.json without auths yields no credentials and says so."""
    ring = parse_docker_config('{"credsStore": "pass"}', "node", format="auto")
    assert len(ring) == 0 and any("no 'auths'" in w for w in ring.warnings)
    legacy_in_json = parse_docker_config(_config("r.io"), "node", format="dockerconfigjson")
    assert len(legacy_in_json) == 0


def test_credential_repr_hides_secrets() -> None:
    """repr and str show the key and source but never the password or token."""
    cred = Credential(key="r.io", source="secret a/b", username="user-xyz",
                      password="hunter2-secret", identity_token="tok-secret")
    for text in (repr(cred), str(cred), repr(Keyring([cred]))):
        assert "hunter2-secret" not in text and "tok-secret" not in text
    assert "r.io" in repr(cred) and "secret a/b" in repr(cred)


# --------------------------------------------------------------------------- properties

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200),
                 _json_values.map(json.dumps),
                 st.dictionaries(st.text(max_size=30), _json_values, max_size=4).map(
                     lambda d: json.dumps({"auths": d}))))
def test_parse_never_raises_foreign_errors(data: bytes | str) -> None:
    """Arbitrary input either parses or raises DockerConfigError, nothing else."""
    try:
        ring = parse_docker_config(data, "fuzz")
    except DockerConfigError:
        return
    ring.lookup("docker.io/library/nginx")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_matching_total_on_arbitrary_strings(key: str, image: str) -> None:
    """urls_match, the keyring and near_misses never raise, whatever the key and image."""
    urls_match(key, image)
    ring = _ring(key)
    ring.lookup(image)
    ring.near_misses(image)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30).filter(lambda s: "=" not in s))
def test_secret_never_in_error_message(secret: str) -> None:
    """The decoded password never appears in errors or reprs, whatever it is."""
    marker = f"SECRET{secret}"
    auth = base64.b64encode(f"user:{marker}".encode()).decode()
    ring = parse_docker_config(json.dumps({"auths": {"r.io": {"auth": auth}}}), "t")
    assert ring.entries[0].password == marker
    assert marker not in repr(ring.entries[0]) and marker not in repr(ring)
    with pytest.raises(DockerConfigError) as info:
        parse_docker_config(json.dumps({"auths": {"r.io": {"auth": "!" + marker}}}), "t")
    assert marker not in str(info.value)
